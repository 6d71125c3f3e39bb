// nemascope label: the page. The server holds the truth (decisions are on
// disk before it answers); this page shows it, queues key presses in order
// (common.js) and says what is saved.
"use strict";

let S = null;          // state from /api/state
let cls = 0;           // class being labelled
let cur = 0;           // index into items
let items = [];        // [image, unit] in labelling order
let tilePx = null;     // tile display size: fitted to the window until +/- is used

saver.readonlyText = "read only (another tab labels this folder)";
saver.saved = () => S ? `all saved · ${S.decisions} decisions · ${S.complete} rows in labels.csv` : "";
saver.afterError = async () => {
  await reload();
  if (!$("label").hidden) { $("grid").dataset.key = ""; render(); }
};

async function reload() {
  S = await api("/api/state");
  items = [];
  S.units.forEach((us, i) => us.forEach((_, u) => items.push([i, u])));
}

function value(k, c) {
  const [i, u] = items[k];
  return S.decided[i][u][c];
}

function setValue(k, c, ch) {
  const [i, u] = items[k];
  const s = S.decided[i][u];
  S.decided[i][u] = s.slice(0, c) + ch + s.slice(c + 1);
}

function firstOpen(c) {
  const k = items.findIndex((_, k) => value(k, c) === ".");
  return k;
}

// ---- setup: choose the tile size on the first image ----

async function showSetup() {
  $("setup").hidden = false;
  $("label").hidden = true;
  document.querySelectorAll(".cls-list").forEach((e) => (e.textContent = S.classes.join(" / ")));
  $("setup-frame").src = "/img/frame/0?w=1024";
  $("tile-size").min = S.min_tile;
  $("tile-size").focus();
  $("tile-size").select();
  await drawPlan();
}

function setupCut() {
  return $("whole").checked ? "whole" : String($("tile-size").value);
}

async function drawPlan() {
  const svg = $("setup-grid");
  const img0 = S.images[0];
  svg.setAttribute("viewBox", `0 0 ${img0.width} ${img0.height}`);
  svg.innerHTML = "";
  try {
    const p = await api(`/api/plan?cut=${encodeURIComponent(setupCut())}`);
    $("plan").textContent = p.cut === "whole"
      ? `${p.total} images, one decision each per class`
      : `${p.first.length} tiles on ${img0.name}, ${p.total} in all`;
    $("start").disabled = false;
    banner("");
    svg.innerHTML = p.first.map((u) =>
      `<rect x="${u.x}" y="${u.y}" width="${u.width}" height="${u.height}" fill="none" stroke="#ffd400" stroke-width="${Math.max(2, img0.width / 400)}"/>`).join("");
  } catch (e) {
    $("plan").textContent = "";
    $("start").disabled = true;
    banner(e.message);
  }
}

// ---- labelling ----

function startLabelling() {
  $("setup").hidden = true;
  $("label").hidden = false;
  let c = S.classes.findIndex((_, c) => firstOpen(c) >= 0);
  cls = c < 0 ? 0 : c;
  const k = firstOpen(cls);
  cur = k < 0 ? 0 : k;
  render();
}

let lastCur = null;     // the unit highlighted at the last render

function render() {
  const [i, u] = items[cur];
  const img = S.images[i];
  const us = S.units[i];
  // Classes.
  const tabs = S.classes.map((c, k) =>
    `<button role="tab" aria-selected="${k === cls}" data-k="${k}">${c}</button>`).join("");
  if ($("classes").innerHTML !== tabs) $("classes").innerHTML = tabs;
  // Progress over every unit and class.
  const total = items.length * S.classes.length;
  let done = 0, doneCls = 0;
  items.forEach((_, k) => S.classes.forEach((_, c) => {
    if (value(k, c) !== ".") { done++; if (c === cls) doneCls++; }
  }));
  $("bar").style.width = `${(100 * done) / total}%`;
  const unitWord = S.cut === "whole" ? "images" : "tiles";
  $("progress-text").textContent =
    `${doneCls} / ${items.length} ${unitWord} decided for ${S.classes[cls]} · ${done} / ${total} decisions in all` +
    (doneCls === items.length ? " · this class is done" : "");
  // Current unit.
  const ch = value(cur, cls);
  const src = `/img/unit/${i}/${u}`;
  if ($("current-img").getAttribute("src") !== src) $("current-img").src = src;
  $("current-caption").textContent =
    `${img.name}` + (S.cut === "whole" ? "" : ` · tile ${u + 1} of ${us.length} at (${us[u].x}, ${us[u].y})`) +
    ` · ${S.classes[cls]}: ` + (ch === "1" ? "present" : ch === "0" ? "absent" : "not decided");
  $("image-name").textContent = `image ${i + 1} of ${S.images.length}: ${img.name} (${img.width}×${img.height})`;
  // Page of units: the tiles of this image, or in whole mode all images.
  const page = S.cut === "whole" ? items.map((_, k) => k) : items.map((_, k) => k).filter((k) => items[k][0] === i);
  const grid = $("grid");
  const cols = S.cut === "whole" ? 6 : Math.max(1, new Set(us.map((v) => v.x)).size);
  const fit = Math.floor((grid.clientWidth - 12 - 4 * (cols - 1)) / cols) - 6;
  document.documentElement.style.setProperty("--tile", `${tilePx || Math.max(64, Math.min(256, fit))}px`);
  const key = `${page[0]}-${page.length}|${cls}`;
  let all = false;
  if (grid.dataset.key !== key) {
    all = true;
    grid.dataset.key = key;
    grid.style.setProperty("--cols", cols);
    grid.innerHTML = page.map((k) => {
      const [pi, pu] = items[k];
      return `<div class="tile" id="t${k}" data-k="${k}"><img loading="lazy" src="/img/unit/${pi}/${pu}" alt=""><span class="mark"></span></div>`;
    }).join("");
    const svg = $("frame-grid");
    svg.setAttribute("viewBox", `0 0 ${img.width} ${img.height}`);
    const sw = Math.max(2, img.width / 300);
    svg.innerHTML = S.cut === "whole" ? "" : us.map((v, k) =>
      `<rect id="r${k}" x="${v.x}" y="${v.y}" width="${v.width}" height="${v.height}" stroke-width="${sw}"/>`).join("");
  }
  // The frame with every tile's decision for this class.
  if ($("frame").dataset.i !== String(i)) {
    $("frame").dataset.i = String(i);
    $("frame").src = `/img/frame/${i}?w=768`;
  }
  const dirty = all ? page : [...new Set([lastCur, cur, ...painted.splice(0)])];
  dirty.forEach((k) => { if (k !== null && page.includes(k)) paint(k); });
  lastCur = cur;
  $("t" + cur).scrollIntoView({ block: "nearest" });
  showStatus();
}

const painted = [];    // units whose decision changed since the last render

// Shows unit k's decision for the class in the grid and on the frame.
function paint(k) {
  const t = $("t" + k);
  const v = value(k, cls);
  t.dataset.v = v;
  t.querySelector(".mark").textContent = v === "1" ? `✓ ${S.classes[cls]}` : v === "0" ? "✗" : "";
  t.classList.toggle("cur", k === cur);
  const r = $("r" + items[k][1]);
  if (r && S.cut !== "whole") {
    r.setAttribute("fill", v === "1" ? "rgba(26,143,60,.35)" : v === "0" ? "rgba(0,0,0,.35)" : "none");
    r.setAttribute("stroke", k === cur ? "#1f5fd6" : "#ffd400");
    const sw = Math.max(2, S.images[items[k][0]].width / 300);
    r.setAttribute("stroke-width", k === cur ? 3 * sw : sw);
  }
}

function decide(k, present) {
  if (saver.readonly) { showStatus(); return; }
  const [i, u] = items[k];
  setValue(k, cls, present ? "1" : "0");
  painted.push(k);
  const where = S.cut === "whole" ? S.images[i].name : `${S.images[i].name} tile ${u + 1}`;
  sendDecide({ image: i, unit: u, class: cls, present },
    `${present ? "Y" : "N"} (${S.classes[cls]} ${present ? "present" : "absent"}) on ${where}`);
  if (k === cur && cur < items.length - 1) cur = nextAfter(cur);
  render();
}

// The next unit after k still open for the class, else the one after k: a
// finer labelling (--finer-of) skips the tiles its coarse one settled.
function nextAfter(k) {
  for (let j = k + 1; j < items.length; j++) if (value(j, cls) === ".") return j;
  return k + 1;
}

function undo() {
  sendUndo((d) => {
    if (d.image !== null && d.unit !== null) {
      const k = items.findIndex(([i, u]) => i === d.image && u === d.unit);
      if (k >= 0) { cur = k; cls = d.class; setValue(k, cls, d.value); painted.push(k); }
    }
    render();
  });
}

function tileNow() {
  return parseInt(getComputedStyle(document.documentElement).getPropertyValue("--tile"), 10) || 120;
}

function move(dk) {
  cur = Math.min(items.length - 1, Math.max(0, cur + dk));
  render();
}

function nextImage(dir) {
  const i = items[cur][0] + dir;
  const k = items.findIndex(([ii]) => ii === i);
  if (k >= 0) { cur = k; render(); }
}

document.addEventListener("keydown", (e) => {
  if (!S || $("label").hidden) return;
  if (e.ctrlKey && e.key === "z") { e.preventDefault(); undo(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const [i] = items[cur];
  const cols = S.cut === "whole" ? 6 : new Set(S.units[i].map((v) => v.x)).size;
  const keys = {
    y: () => decide(cur, true), Y: () => decide(cur, true),
    n: () => decide(cur, false), N: () => decide(cur, false), " ": () => decide(cur, false),
    u: undo, U: undo, Backspace: undo,
    ArrowRight: () => move(1), ArrowLeft: () => move(-1),
    ArrowDown: () => move(cols), ArrowUp: () => move(-cols),
    PageDown: () => nextImage(1), PageUp: () => nextImage(-1),
    Tab: () => { cls = (cls + (e.shiftKey ? S.classes.length - 1 : 1)) % S.classes.length; render(); },
    "+": () => { tilePx = Math.min(512, tileNow() + 24); render(); },
    "-": () => { tilePx = Math.max(48, tileNow() - 24); render(); },
  };
  const f = keys[e.key];
  if (f) { e.preventDefault(); f(); }
});

$("grid").addEventListener("click", (e) => {
  const t = e.target.closest(".tile");
  if (t) { cur = Number(t.dataset.k); decide(cur, !e.shiftKey); }
});
$("grid").addEventListener("contextmenu", (e) => {
  const t = e.target.closest(".tile");
  if (t) { e.preventDefault(); cur = Number(t.dataset.k); decide(cur, false); }
});
$("classes").addEventListener("click", (e) => {
  const b = e.target.closest("button");
  if (b) { cls = Number(b.dataset.k); render(); }
});
$("btn-yes").onclick = () => decide(cur, true);
$("btn-no").onclick = () => decide(cur, false);
$("btn-undo").onclick = undo;
$("tile-size").addEventListener("input", drawPlan);
$("whole").addEventListener("change", drawPlan);
$("setup-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api("/api/setup", { tab, cut: setupCut() });
    await reload();
    startLabelling();
  } catch (err) {
    banner(err.message);
  }
});

(async () => {
  try {
    S = await api("/api/claim", { tab });
    $("folder").textContent = `${S.folder} → ${S.out}`;
    if (S.warnings.length) banner(S.warnings.join("\n"), true);
    if (S.cut === null) { await showSetup(); } else { await reload(); startLabelling(); }
    showStatus();
  } catch (e) {
    banner(e.message);
    showStatus(true);
  }
})();
