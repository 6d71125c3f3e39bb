// nemascope pages, shared by the labelling and the review page: the API,
// the banner, and the queue that sends decisions in key-press order and
// says in the header what is saved. The server holds the truth.
"use strict";

const tab = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
// The server's secret for this folder, in the page it served: no other web
// site can read it, so none can write here (server: http.rs).
const token = document.querySelector('meta[name="nemascope-token"]').content;
const $ = (id) => document.getElementById(id);
const saver = {
  pending: 0,          // key presses not yet saved
  readonly: false,     // another tab took over
  chain: Promise.resolve(),
  retrying: null,      // what waits for the server to answer again
  lost: [],            // key presses the server refused or that could not be sent
  saved: () => "",     // the header's text once everything is saved (set by the page)
  readonlyText: "read only (another tab uses this folder)",
  afterError: async () => {},  // the page reloads its state and redraws
};

async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Nemascope-Token": token },
    body: JSON.stringify(body),
  });
  const v = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) {
    const e = new Error(v.error || `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return v;
}

function banner(text, warn) {
  const b = $("banner");
  b.textContent = text;
  b.className = warn ? "warn" : "";
  b.hidden = !text;
}

function showStatus(error) {
  const s = $("status");
  s.dataset.pending = String(saver.pending);
  const lost = saver.lost.length ? ` · ${saver.lost.length} key press(es) not saved, see above` : "";
  if (error) {
    s.dataset.state = "error";
    s.textContent = "not saved: see above";
  } else if (saver.readonly) {
    s.dataset.state = "error";
    s.textContent = saver.readonlyText;
  } else if (saver.retrying) {
    s.dataset.state = "retrying";
    s.textContent = `not saved yet: ${saver.pending} waiting for the server…`;
  } else if (saver.pending > 0) {
    s.dataset.state = "saving";
    s.textContent = `saving ${saver.pending}…`;
  } else {
    s.dataset.state = "saved";
    s.textContent = saver.saved() + lost;
  }
}

function showLost() {
  banner(saver.lost.length ? saver.lost.join("\n") : "", true);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Sends requests one after another, in key-press order; `what` names the
// key press in messages. A request that never reached the server (stopped,
// restarting) is sent again until it does, and later key presses wait
// behind it; one the server refused is not, and the page says which.
function send(path, body, then, what, retry) {
  if (saver.readonly) return;
  saver.pending++;
  showStatus();
  saver.chain = saver.chain.then(() => deliver(path, Object.assign({ tab }, body), then, what, retry));
}

async function deliver(path, body, then, what, retry) {
  for (let attempt = 0; ; attempt++) {
    try {
      const v = await api(path, body);
      saver.pending--;
      if (saver.retrying) { saver.retrying = null; showLost(); }
      try { if (then) then(v); } catch (e) { console.error(e); }
      showStatus();
      return;
    } catch (e) {
      const unreached = e.status === undefined || e.status === 503 || e.status === 408;
      if (unreached && retry) {
        saver.retrying = what;
        banner(`${what} is not saved yet: the server does not answer (${e.message}). ` +
          "It is sent again until the server runs; keep this page open.", true);
        showStatus();
        await sleep(Math.min(4000, 250 * 2 ** Math.min(attempt, 4)));
        continue;
      }
      saver.pending--;
      saver.retrying = null;
      if (e.status === 409) saver.readonly = true;
      saver.lost.push(unreached
        ? `${what} was not sent: the server does not answer (${e.message}); press it again once it runs.`
        : `${what} was not saved: ${e.message}`);
      showLost();
      try { await saver.afterError(); } catch (_) { /* shown again on the next answer */ }
      showStatus();
      return;
    }
  }
}

// Leaving with key presses not yet on disk asks first.
window.addEventListener("beforeunload", (e) => {
  if (saver.pending > 0) { e.preventDefault(); e.returnValue = ""; }
});

// A decision (or an undo), and the page's counters (S, the page's state)
// from the answer; `then` gets what the undo took back.
function sendDecide(body, what) {
  S.decisions++;
  send("/api/decide", body, (v) => { S.decisions = v.decisions; S.complete = v.complete; }, what, true);
}

// An undo is never sent twice: one whose answer was lost may have been
// done, and a second would take back one more decision.
function sendUndo(then) {
  if (saver.readonly) return;
  send("/api/undo", {}, (v) => {
    S.decisions = v.decisions;
    S.complete = v.complete;
    then(v.undone);
  }, "Undo", false);
}
