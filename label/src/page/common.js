// nemascope pages, shared by the labelling and the review page: the API,
// the banner, and the queue that sends decisions in key-press order and
// says in the header what is saved. The server holds the truth.
"use strict";

const tab = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
const $ = (id) => document.getElementById(id);
const saver = {
  pending: 0,          // requests not yet answered
  readonly: false,     // another tab took over
  chain: Promise.resolve(),
  saved: () => "",     // the header's text once everything is saved (set by the page)
  readonlyText: "read only (another tab uses this folder)",
  afterError: async () => {},  // the page reloads its state and redraws
};

async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
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
  if (error) {
    s.dataset.state = "error";
    s.textContent = "not saved: see above";
  } else if (saver.readonly) {
    s.dataset.state = "error";
    s.textContent = saver.readonlyText;
  } else if (saver.pending > 0) {
    s.dataset.state = "saving";
    s.textContent = `saving ${saver.pending}…`;
  } else {
    s.dataset.state = "saved";
    s.textContent = saver.saved();
  }
}

// Sends requests one after another, in key-press order.
function send(path, body, then) {
  if (saver.readonly) return;
  saver.pending++;
  showStatus();
  saver.chain = saver.chain
    .then(() => api(path, Object.assign({ tab }, body)))
    .then((v) => { if (then) return then(v); })
    .then(() => { saver.pending--; showStatus(); })
    .catch(async (e) => {
      saver.pending--;
      if (e.status === 409) saver.readonly = true;
      banner(e.message);
      await saver.afterError();
      showStatus(true);
    });
}

// A decision (or an undo), and the page's counters (S, the page's state)
// from the answer; `then` gets what the undo took back.
function sendDecide(body) {
  S.decisions++;
  send("/api/decide", body, (v) => { S.decisions = v.decisions; S.complete = v.complete; });
}

function sendUndo(then) {
  if (saver.readonly) return;
  send("/api/undo", {}, (v) => {
    S.decisions = v.decisions;
    S.complete = v.complete;
    then(v.undone);
  });
}
