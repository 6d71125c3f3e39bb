// nemascope review: the counts of a model beside the frames, the labels it
// was trained from, and the technician's corrections (the store's
// decisions, saved before the server answers; common.js queues them).
"use strict";

let S = null;      // state from /api/state; S.review: the count run
let R = null;      // S.review
let cls = 0;       // class being corrected
let img = 0;       // image shown
let unit = 0;      // tile of that image

saver.readonlyText = "read only (another tab reviews into this folder)";
saver.saved = () => S
  ? `all saved · ${S.decisions} corrections · ${S.complete} rows the trainer will see (${S.out}/labels.csv)`
  : "";
saver.afterError = async () => { await load(); render(); };

async function load() {
  S = await api("/api/state");
  R = S.review;
}

const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const mark = (ch) => (ch === "1" ? "present" : ch === "0" ? "absent" : "–");

// The model's objects of class c whose centre lies in unit u of image i.
function countedIn(i, u, c) {
  const v = S.units[i][u];
  return R.images[i].objects
    .filter((o) => o.class === R.classes[c] && o.x >= v.x && o.x < v.x + v.width && o.y >= v.y && o.y < v.y + v.height)
    .reduce((n, o) => n + o.count, 0);
}

function corrections(i) {
  return S.decided[i].filter((b) => b !== ".".repeat(S.classes.length)).length;
}

function tables() {
  const head = `<tr><th>sample</th><th>images</th>${R.classes.map((c) => `<th>${esc(c)}</th>`).join("")}</tr>`;
  $("samples").innerHTML = head + R.samples.map((s) =>
    `<tr><td>${esc(s.sample)}</td><td>${s.images}</td>${s.counts.map((n) => `<td>${n}</td>`).join("")}</tr>`).join("");
  $("images").innerHTML = `<tr><th>image</th>${R.classes.map((c) => `<th>${esc(c)}</th>`).join("")}<th title="corrections">marks</th></tr>` +
    R.images.map((m, i) =>
      `<tr data-i="${i}" class="${i === img ? "cur" : ""}"><td>${esc(S.images[i].name)}</td>` +
      `${m.counts.map((n) => `<td>${n}</td>`).join("")}<td>${corrections(i) || ""}</td></tr>`).join("") +
    R.failed.map(([f, why]) => `<tr class="failed"><td colspan="${R.classes.length + 2}">${esc(f)}: ${esc(why)}</td></tr>`).join("");
  if (R.checks) {
    $("checks-section").hidden = false;
    const pct = (n, d) => (d ? `${n} of ${d} (${Math.round((100 * n) / d)} %)` : "–");
    const cells = (per) => per.map((t) =>
      `<td>${pct(t.counted_in_absent, t.absent)}</td><td>${pct(t.nothing_in_present, t.present)}</td>`).join("");
    $("checks").innerHTML =
      `<tr><th rowspan="2">image</th>${R.classes.map((c) => `<th colspan="2">${esc(c)}</th>`).join("")}</tr>` +
      `<tr>${R.classes.map(() => "<th>counted in absent</th><th>nothing in present</th>").join("")}</tr>` +
      R.checks.images.map((per, i) => `<tr><td>${esc(S.images[i].name)}</td>${cells(per)}</tr>`).join("") +
      `<tr class="total"><td>all</td>${cells(R.checks.total)}</tr>`;
  }
  if (R.db) {
    $("db-section").hidden = false;
    $("db-path").textContent = R.db.path;
    const classes = [...new Set(R.db.samples.flatMap((s) => Object.keys(s.counts)))];
    $("db-samples").innerHTML = `<tr><th>unit</th><th>sample</th><th>frames</th>${classes.map((c) => `<th>${esc(c)}</th>`).join("")}<th>warnings</th></tr>` +
      R.db.samples.map((s) => `<tr><td>${esc(s.unit)}</td><td>${esc(s.sample)}</td><td>${s.reports}</td>` +
        `${classes.map((c) => `<td>${s.counts[c] || 0}</td>`).join("")}<td>${s.warnings}</td></tr>`).join("");
    $("db-reports").innerHTML = "<tr><th>unit</th><th>#</th><th>sample</th><th>counts</th><th>ms</th><th>warnings</th></tr>" +
      R.db.reports.map((r) => `<tr><td>${esc(r.unit)}</td><td>${r.seq}</td><td>${esc(r.sample)}</td>` +
        `<td>${r.counts.map(([c, n]) => `${esc(c)} ${n}`).join(", ")}</td><td>${r.frame_ms}</td><td>${r.warnings}</td></tr>`).join("");
  }
}

// Draws the tiles on both pictures: the current one outlined, the model's
// count in each, the training label and the correction as fills.
function grids() {
  const im = S.images[img];
  const sw = Math.max(2, im.width / 300);
  const fs = Math.max(14, im.width / 40);
  const whole = S.cut === "whole";
  ["overlay-grid", "frame-grid"].forEach((id, k) => {
    const svg = $(id);
    svg.setAttribute("viewBox", `0 0 ${im.width} ${im.height}`);
    svg.innerHTML = S.units[img].map((v, u) => {
      const corr = S.decided[img][u][cls];
      const fill = corr === "1" ? "rgba(26,143,60,.35)" : corr === "0" ? "rgba(120,120,120,.55)" : "none";
      const cur = u === unit;
      const n = countedIn(img, u, cls);
      const label = R.labels ? R.labels[img][u][cls] : ".";
      const text = k === 0 && !whole
        ? `<text x="${v.x + sw * 2}" y="${v.y + fs}" font-size="${fs}" fill="#fff" stroke="#000" stroke-width="${sw / 2}">${n || ""}${label === "1" ? " L" : ""}</text>`
        : "";
      return `<rect data-u="${u}" x="${v.x}" y="${v.y}" width="${v.width}" height="${v.height}" fill="${fill}" ` +
        `stroke="${cur ? "#1f5fd6" : "rgba(255,255,255,.75)"}" stroke-width="${cur ? 3 * sw : sw}"/>${text}`;
    }).join("");
  });
}

function render() {
  if (!S) return;
  const tabs = S.classes.map((c, k) =>
    `<button role="tab" aria-selected="${k === cls}" data-k="${k}">${esc(c)}</button>`).join("");
  if ($("classes").innerHTML !== tabs) $("classes").innerHTML = tabs;
  const im = S.images[img];
  const m = R.images[img];
  $("image-title").textContent =
    `image ${img + 1} of ${S.images.length}: ${im.name} · sample ${m.sample} · counted ` +
    R.classes.map((c, k) => `${m.counts[k]} ${c}`).join(", ");
  const w = 900;
  if ($("frame").dataset.i !== String(img)) {
    $("frame").dataset.i = String(img);
    $("frame").src = `/img/frame/${img}?w=${w}`;
    $("overlay").hidden = !R.overlays[img];
    $("overlay").parentElement.hidden = !R.overlays[img];
    $("no-overlay").hidden = R.overlays[img];
    if (R.overlays[img]) $("overlay").src = `/img/overlay/${img}?w=${w}`;
  }
  const src = `/img/unit/${img}/${unit}`;
  if ($("tile-img").getAttribute("src") !== src) $("tile-img").src = src;
  const v = S.units[img][unit];
  const corr = S.decided[img][unit][cls];
  const label = R.labels ? R.labels[img][unit][cls] : null;
  $("tile-caption").innerHTML = (S.cut === "whole" ? `whole image` : `tile ${unit + 1} of ${S.units[img].length} at (${v.x}, ${v.y})`) +
    ` · <b>${esc(S.classes[cls])}</b>: the model counted <b>${countedIn(img, unit, cls)}</b> here` +
    (label !== null ? ` · trained as <b>${mark(label)}</b>` : "") +
    ` · your correction: <b id="correction">${mark(corr)}</b>`;
  tables();
  grids();
  showStatus();
}

function moveTo(i, u) {
  img = Math.min(S.images.length - 1, Math.max(0, i));
  unit = Math.min(S.units[img].length - 1, Math.max(0, u));
  render();
}

function setBits(i, u, c, ch) {
  const s = S.decided[i][u];
  S.decided[i][u] = s.slice(0, c) + ch + s.slice(c + 1);
}

function correct(present) {
  if (saver.readonly) { showStatus(); return; }
  setBits(img, unit, cls, present ? "1" : "0");
  sendDecide({ image: img, unit, class: cls, present },
    `${present ? "Y" : "N"} (${S.classes[cls]} ${present ? "present" : "absent"}) on ${S.images[img].name} tile ${unit + 1}`);
  render();
}

function undo() {
  sendUndo((d) => {
    if (d.image !== null && d.unit !== null) {
      setBits(d.image, d.unit, d.class, d.value);
      img = d.image; unit = d.unit; cls = d.class;
    }
    render();
  });
}

document.addEventListener("keydown", (e) => {
  if (!S) return;
  if (e.ctrlKey && e.key === "z") { e.preventDefault(); undo(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const cols = new Set(S.units[img].map((v) => v.x)).size;
  const keys = {
    y: () => correct(true), Y: () => correct(true),
    n: () => correct(false), N: () => correct(false),
    u: undo, U: undo, Backspace: undo,
    ArrowRight: () => moveTo(img, unit + 1), ArrowLeft: () => moveTo(img, unit - 1),
    ArrowDown: () => moveTo(img, unit + cols), ArrowUp: () => moveTo(img, unit - cols),
    PageDown: () => moveTo(img + 1, 0), PageUp: () => moveTo(img - 1, 0),
    Tab: () => { cls = (cls + (e.shiftKey ? S.classes.length - 1 : 1)) % S.classes.length; render(); },
  };
  const f = keys[e.key];
  if (f) { e.preventDefault(); f(); }
});

["overlay-grid", "frame-grid"].forEach((id) => $(id).addEventListener("click", (e) => {
  const r = e.target.closest("rect");
  if (r) moveTo(img, Number(r.dataset.u));
}));
$("images").addEventListener("click", (e) => {
  const r = e.target.closest("tr[data-i]");
  if (r) moveTo(Number(r.dataset.i), 0);
});
$("classes").addEventListener("click", (e) => {
  const b = e.target.closest("button");
  if (b) { cls = Number(b.dataset.k); render(); }
});
$("btn-yes").onclick = () => correct(true);
$("btn-no").onclick = () => correct(false);
$("btn-undo").onclick = undo;

(async () => {
  try {
    S = await api("/api/claim", { tab });
    R = S.review;
    $("folder").textContent = `${R.model} · corrections → ${S.out}`;
    if (S.warnings.length) banner(S.warnings.join("\n"), true);
    $("fill-note").textContent = R.fill;
    render();
  } catch (e) {
    banner(e.message);
    showStatus(true);
  }
})();
