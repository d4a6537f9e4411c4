// What every part of the page shares: its state, the DOM helpers, and the engine worker's
// request / reply (the worker itself is started by app.js).
//
// The page shows where it stands on <body>: `data-ready` and `data-state` (idle, running,
// paused, finished, stopped, error), what the style sheet dims and highlights by. Timings go
// to the browser's performance timeline (`v1p:ready`, `v1p:run-finished`, …), as any page's
// instrumentation.

export const $ = (id) => document.getElementById(id);
// Read before anything rewrites the address bar.
export const initialParams = new URLSearchParams(location.search);
export const state = {
  engine: null, // wasm bindings on this thread (drawing, presets, exports)
  module: null, // the compiled engine, handed to the engine worker
  worker: null, // the engine worker
  nextId: 1, // ids of datasets, runs and requests in the engine
  replies: new Map(), // id → resolve, for requests the page awaits
  files: null, // [[name, ArrayBuffer]] of the current dataset (for a restarted engine)
  dataset: null, // the engine's dataset: { id, summary, images }
  datasetName: "",
  cellTypes: [], // of the report on show
  datasetCellTypes: [], // of the loaded dataset (the demo data's true cell types)
  datasetTruth: null, // the demo data's ground-truth file (text), for the inside views
  inside: null, // section 5's controller (inside.js)
  barLayout: null, // where the Pearson plot's bars are, for clicks
  neuronTableKey: "", // which best network the per-neuron table shows now
  live: null, // the run in the worker: its id, what it trains on (fixed when it starts), its report
  summary: null,
  report: null,
  running: false,
  paused: false,
  lastDraw: 0,
  drawPending: false,
  drawCost: 0,
  runs: [], // finished runs, oldest first, with their networks' files (kept in IndexedDB)
  store: null, // where they are kept (runs.js)
  shownRunId: null, // the run whose plots and downloads are shown
  compare: [], // ids of the (at most two) runs ticked for comparison
};


// An element with attributes and children (text or elements): the page builds its tables
// this way, so that no data is ever parsed as HTML.
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === false || value == null) continue;
    if (key === "dataset") Object.assign(element.dataset, value);
    else if (key in element && key !== "list") element[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  element.append(...children.flat().filter((c) => c != null));
  return element;
}

export function showError(id, message) {
  $(id).textContent = message;
  $(id).hidden = false;
}

export function hideError(id) {
  $(id).hidden = true;
  $(id).textContent = "";
}

export function formatSeconds(s) {
  if (!Number.isFinite(s)) return "—";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function request(message, transfer = []) {
  state.worker.postMessage(message, transfer);
}

// The engine's reply to request `id` (a dataset's or a network evaluation's).
export function awaitReply(id) {
  return new Promise((resolve) => state.replies.set(id, resolve));
}

export function reply(id, event) {
  const resolve = state.replies.get(id);
  state.replies.delete(id);
  if (resolve) resolve(event);
}

// 1,234,567: toLocaleString's first call in a tab loads the locale's data, 60 ms of a page load.
export const grouped = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
