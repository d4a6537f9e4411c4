// Finished runs, kept in the browser's IndexedDB with their best network's files, so that a
// reloaded page still lists, shows, downloads and looks inside them. One record per run (its
// id made where it ran): two tabs add runs side by side and never overwrite each other's; a
// BroadcastChannel tells the other tabs to list them again. The network's files (about half
// a megabyte a run) live in a store of their own, read only when a run's network is needed:
// listing the runs stays light however many are kept.

import { $, awaitReply, el, formatSeconds, hideError, request, saveBlob, showError, state } from "./page.js";
import { settingsText } from "./form.js";
import { datasetImage } from "./data.js";
import { drawCompare, drawPlots, showBest } from "./plots.js";

const DB_NAME = "v1-predictor";
// 1: runs with their network files inside; 2: the files in NETWORKS, under the run's id.
const DB_VERSION = 2;
const STORE = "runs";
const NETWORKS = "networks";
const CHANNEL = "v1-predictor.runs";
// Where earlier versions of the page kept runs (without weights): moved over once.
const OLD_KEY = "v1-predictor.runs";

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

// Done when the transaction commits (a full disk aborts it after the request succeeded).
function committed(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onabort = transaction.onerror = () => reject(transaction.error);
  });
}

// A run's record as kept in STORE: the names of its network's files, not their bytes.
function runRecord(run, networkFiles) {
  const record = { ...run, networkNames: networkFiles.map((f) => f.name) };
  delete record.networkFiles;
  delete record.unkept;
  return record;
}

// In the versionchange transaction: it commits whole or not at all, so a run is never left
// without its network (or kept twice) by an upgrade cut short.
function upgrade(db, transaction) {
  const runs = db.objectStoreNames.contains(STORE)
    ? transaction.objectStore(STORE)
    : db.createObjectStore(STORE, { keyPath: "id" });
  const networks = db.objectStoreNames.contains(NETWORKS)
    ? transaction.objectStore(NETWORKS)
    : db.createObjectStore(NETWORKS, { keyPath: "id" });
  // Version 1's records carry their files: moved over (a record without them has none).
  runs.openCursor().onsuccess = (event) => {
    const cursor = event.target.result;
    if (!cursor) return;
    const run = cursor.value;
    if (!Array.isArray(run.networkNames)) {
      const files = Array.isArray(run.networkFiles) ? run.networkFiles.filter((f) => f && f.name) : [];
      if (files.length > 0) networks.put({ id: run.id, files });
      cursor.update(runRecord(run, files));
    }
    cursor.continue();
  };
}

function openDatabase() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    let gaveUp = false;
    request.onupgradeneeded = () => upgrade(request.result, request.transaction);
    request.onsuccess = () => (gaveUp ? request.result.close() : resolve(request.result));
    request.onerror = () => reject(request.error);
    // A tab of an older page (which does not let go of the store) would hold the page up
    // until it closes; the upgrade still happens then, for the next visit.
    request.onblocked = () => {
      gaveUp = true;
      const blocked = new Error("A tab with an older version of this page is open, so runs are not kept: " +
        "close it and reload this one. Runs trained meanwhile last until the page closes.");
      blocked.plain = true;
      reject(blocked);
    };
  });
}

// `isRun(record)`: whether a stored record is whole (the engine checks reports);
// `onOtherTab()`: called when another tab changed the runs.
export async function openRunStore({ isRun, onOtherTab }) {
  let db = null;
  let unavailable = null;
  try {
    db = await openDatabase();
  } catch (error) {
    unavailable = error.plain ? error.message
      : `This browser does not keep runs (${error.message || error}): they last until the page closes.`;
  }
  const channel = "BroadcastChannel" in globalThis ? new BroadcastChannel(CHANNEL) : null;
  if (channel) channel.onmessage = () => onOtherTab();
  const transaction = (stores, mode) => db.transaction(stores, mode);
  const changed = () => channel && channel.postMessage("changed");
  // The runs listed last: still listed after a newer page in another tab took the store.
  let listed = [];

  const store = {
    unavailable,
    // Every whole run, oldest first, without its network's bytes (`networkNames` says which).
    async list() {
      if (!db) return listed;
      const records = await promised(transaction(STORE, "readonly").objectStore(STORE).getAll());
      // In the order they were kept (runs of older pages: by their start).
      const kept = (run) => run.addedAt || run.startedUnix * 1000;
      listed = records.filter(isRun).map((run) => ({ networkNames: [], ...run }))
        .sort((a, b) => kept(a) - kept(b));
      return listed.map((run) => ({ ...run }));
    },
    // A kept run's network files ([] when it has none).
    async network(id) {
      if (!db) throw new Error(store.unavailable);
      const record = await promised(transaction(NETWORKS, "readonly").objectStore(NETWORKS).get(id));
      return record ? record.files : [];
    },
    // The run and its network in one transaction: kept together or not at all.
    // Throws a message in words when the browser's storage is full.
    async put(run, networkFiles = []) {
      if (!db) throw new Error(store.unavailable);
      try {
        const tx = transaction([STORE, NETWORKS], "readwrite");
        tx.objectStore(STORE).put(runRecord(run, networkFiles));
        if (networkFiles.length > 0) tx.objectStore(NETWORKS).put({ id: run.id, files: networkFiles });
        else tx.objectStore(NETWORKS).delete(run.id);
        await committed(tx);
      } catch (error) {
        if (error && error.name === "QuotaExceededError") {
          throw new Error("The browser's storage for this page is full: this run is listed until the page " +
            "closes, but not kept. Clear some runs (or download them) to make room.");
        }
        throw error;
      }
      changed();
    },
    async clear() {
      listed = [];
      if (!db) return;
      const tx = transaction([STORE, NETWORKS], "readwrite");
      tx.objectStore(STORE).clear();
      tx.objectStore(NETWORKS).clear();
      await committed(tx);
      changed();
    },
  };
  // A newer page in another tab upgrades the store: this one lets go rather than hold it up.
  if (db) {
    db.onversionchange = () => {
      db.close();
      db = null;
      store.unavailable = "A newer version of this page opened in another tab: reload this one to keep its runs.";
    };
  }
  await moveOldRuns(store, isRun);
  return store;
}

async function moveOldRuns(store, isRun) {
  let old;
  try {
    old = JSON.parse(localStorage.getItem(OLD_KEY) || "[]");
  } catch {
    old = [];
  }
  if (!Array.isArray(old) || old.length === 0) return;
  // Forgotten only once every run is kept (they had no network files then).
  try {
    for (const run of old.filter((r) => r && typeof r.id === "string" && isRun(r))) {
      await store.put(run, []);
    }
    localStorage.removeItem(OLD_KEY);
  } catch {
    // Kept where they were; the next visit tries again.
  }
}

// ---------- the runs panel ----------

// The runs, from the browser's store (runs.js): this tab's and other tabs'.
export async function loadRuns() {
  state.store = await openRunStore({
    isRun: (record) => state.engine.isCompleteReport(record.report),
    onOtherTab: () => refreshRuns(),
  });
  if (state.store.unavailable) showError("runs-error", state.store.unavailable);
  await refreshRuns();
}

export async function refreshRuns() {
  const stored = await state.store.list();
  // Runs the store could not keep (storage full) stay listed until the page closes.
  const unkept = state.runs.filter((run) => run.unkept);
  // Numbered as listed, so that two tabs' runs never share a number.
  state.runs = stored.concat(unkept).map((run, i) => Object.assign(run, { number: i + 1 }));
  renderRuns();
}

// Numbered after every run kept so far (other tabs' too), and kept with its network.
export async function addRun(run, networkFiles = []) {
  const files = Array.from(networkFiles);
  run.id = `${run.startedUnix}-${Math.random().toString(36).slice(2, 10)}`;
  run.addedAt = Date.now();
  run.networkNames = files.map((f) => f.name);
  try {
    await state.store.put(run, files);
  } catch (error) {
    // Not kept: its network stays with it in memory, until the page closes.
    run.unkept = true;
    run.networkFiles = files;
    state.runs.push(run);
    showError("runs-error", error.message || String(error));
  }
  await refreshRuns();
  showRun(run.id);
}

export function findRun(id) {
  return state.runs.find((r) => r.id === id);
}

// A run's network file by name, read from the store when asked (a kept run's bytes are not
// held in memory); null when the run has no such file.
async function networkFile(run, name) {
  if (!run.networkNames.includes(name)) return null;
  const files = run.networkFiles || await state.store.network(run.id);
  return files.find((f) => f.name === name) || null;
}

// Puts a run's plots, figures and downloads on the page.
export function showRun(id) {
  const run = findRun(id);
  if (!run) return;
  state.shownRunId = id;
  state.report = run.report;
  state.cellTypes = run.cellTypes || [];
  drawPlots();
  showBest(run.kind === "loaded" ? `Run ${run.number}, loaded from ${run.fileName}` : `Run ${run.number}, ` +
    `best network`, run.report.best);
  const hasNetwork = run.networkNames.length > 0;
  for (const button of document.querySelectorAll("#downloads button[data-file]")) {
    button.disabled = button.dataset.file.startsWith("network") && !hasNetwork;
  }
  const isRidge = run.report.flags.model.family === "gabor";
  $("network-note").textContent = hasNetwork ? ""
    : isRidge ? "The Gabor ridge model has no network file: refitting it takes a second."
      : "This run came without its network (an imported record).";
  $("download-tag").textContent = `${run.startedUnix}, ${new Date(run.startedUnix * 1000).toLocaleString()}`;
  $("downloads").hidden = false;
  renderRuns();
  state.inside.runChanged();
}

// What section 5 needs to open the shown run's network, or why it cannot.
export function insideContext() {
  const run = findRun(state.shownRunId);
  if (!run) return { ok: false, why: "Train a network, or show a run from section 6, to look inside it." };
  if (run.report.flags.model.family === "gabor") {
    return { ok: false, why: `Run ${run.number} is the Gabor ridge model: its filters are fixed edge detectors, ` +
      `not learned, so there is no network to look inside.` };
  }
  const bpk = run.networkNames.find((name) => name.endsWith(".bpk"));
  if (!bpk) {
    return { ok: false, why: `Run ${run.number} came without its network: load its .bpk file to look inside.` };
  }
  if (!state.dataset) return { ok: false, why: "Load the data the network was trained on first." };
  if (run.datasetName !== state.datasetName) {
    const data = run.datasetName.replace(/^upload:/, "");
    return { ok: false, why: `Run ${run.number} was trained on ${data}: load that data to look inside it.` };
  }
  return {
    ok: true,
    runId: run.id,
    runNumber: run.number,
    family: run.report.flags.model.family,
    datasetName: state.datasetName,
    nNeurons: run.report.best.r.length,
    startedUnix: run.startedUnix,
    datasetId: state.dataset.id,
    // Resolves with the .bpk file ({ name, bytes }); throws when the store cannot give it.
    loadNetwork: async () => {
      const file = await networkFile(run, bpk);
      if (!file) throw new Error(`run ${run.number}'s network is no longer kept in this browser`);
      return file;
    },
    truth: state.datasetTruth,
    backend: $("backend-select").value,
    image: datasetImage,
  };
}

export async function download(button) {
  const run = findRun(state.shownRunId);
  if (!run) return;
  hideError("runs-error");
  if (button.dataset.plot) {
    const [canvasId, prefix] = button.dataset.plot.split(":");
    $(canvasId).toBlob((blob) => saveBlob(blob, `${prefix}${run.startedUnix}.png`), "image/png");
    return;
  }
  const [prefix, ext] = button.dataset.file.split(":");
  // `network_` also starts `network_manualsave_`: the tag must follow the prefix directly.
  const name = `${prefix}${run.startedUnix}.${ext}`;
  let file;
  try {
    file = prefix.startsWith("network")
      ? await networkFile(run, name)
      : Array.from(state.engine.exportReport(run.report, run.startedUnix, run.sources || [], run.cellTypes || []))
        .find((f) => f.name === name);
  } catch (error) {
    const what = prefix.startsWith("network") ? "read the network from the browser's storage" : "make the file";
    return showError("runs-error", `Could not ${what}: ${error.message || error}`);
  }
  if (!file) return showError("runs-error", `This run has no ${prefix}….${ext} file.`);
  saveBlob(new Blob([file.bytes], { type: file.mime }), file.name);
}

// Evaluates saved networks on the loaded dataset, without training, and lists them as runs.
export async function loadNetworks(files, errorId) {
  hideError(errorId);
  if (!state.dataset) return showError(errorId, "Load the dataset the network was trained on first.");
  for (const [name, buffer] of files) {
    const id = state.nextId++;
    const bytes = new Uint8Array(buffer.slice(0));
    request({ type: "evaluateNetwork", request: id, dataset: state.dataset.id, file: { name, bytes } }, [bytes.buffer]);
    const result = await awaitReply(id);
    if (result.type !== "networkEvaluated") {
      showError(errorId, result.error.message);
      continue;
    }
    await addRun({ kind: "loaded", fileName: name, startedUnix: result.info.started_unix,
      datasetName: state.datasetName, sources: state.summary.sources, cellTypes: state.datasetCellTypes,
      report: result.report, elapsedMs: null, backend: "evaluated on the CPU", stopped: false }, result.networkFiles);
    if (result.warning) showError(errorId, result.warning);
  }
}

// A class's exports (`pearsondata_T.json`, with `training_manualsave_T.json` for the curves),
// listed beside this page's runs to compare; no weights come with them.
export async function importRecords(files, errorId) {
  hideError(errorId);
  const tagOf = (name) => (/_(\d+)(?: \(\d+\))?\.json$/.exec(name) || [])[1];
  const training = new Map(files.filter(([n]) => n.startsWith("training_manualsave_")).map(([n, b]) => [tagOf(n), b]));
  const pearson = files.filter(([n]) => n.startsWith("pearsondata_"));
  if (pearson.length === 0) return showError(errorId, "To compare a run, drop its pearsondata_….json file.");
  for (const [name, buffer] of pearson) {
    const record = training.get(tagOf(name));
    let imported;
    try {
      imported = state.engine.importRun(new Uint8Array(buffer), record ? new Uint8Array(record) : undefined);
    } catch (error) {
      showError(errorId, `${name}: ${error.message || error}`);
      continue;
    }
    await addRun({ kind: "imported", fileName: name, startedUnix: imported.started_unix,
      datasetName: imported.sources.join("+") || "(not recorded)", sources: imported.sources, cellTypes: [],
      report: imported.report, elapsedMs: null, backend: "", stopped: false });
  }
}

export function renderRuns() {
  const table = $("runs-table");
  const head = ["compare", "run", "started", "data", "how", "settings", "best step", "mean r", "FVE", "time", ""];
  const rows = state.runs.map((run) => {
    const best = run.report.best;
    const how = { loaded: `loaded ${run.fileName}`, imported: `imported ${run.fileName}` }[run.kind] ||
      `${run.stopped ? "stopped" : "trained"}, ${run.backend}`;
    const box = el("input", { type: "checkbox", dataset: { compare: run.id }, checked: state.compare.includes(run.id),
      "aria-label": `compare run ${run.number}` });
    return el("tr", { className: run.id === state.shownRunId ? "shown" : "", dataset: { run: run.id } },
      el("td", {}, box), el("td", {}, String(run.number)),
      el("td", {}, new Date(run.startedUnix * 1000).toLocaleString()),
      el("td", {}, run.datasetName.replace(/^upload:/, "")), el("td", {}, how),
      el("td", { className: "settings" }, settingsText(run.report.flags)), el("td", {}, String(best.step)),
      el("td", { className: "mean-r" }, best.mean_r.toFixed(3)), el("td", {}, best.fve.toFixed(3)),
      el("td", {}, run.elapsedMs == null ? "—" : formatSeconds(run.elapsedMs / 1000)),
      el("td", {}, el("button", { type: "button", dataset: { show: run.id } }, "Show")));
  });
  // While a run trains, a row to bring it back on the plots after showing a stored run.
  if (state.running) {
    const data = state.live.datasetName.replace(/^upload:/, "");
    rows.unshift(el("tr", { className: state.shownRunId ? "" : "shown" }, el("td"), el("td", {}, "now"),
      el("td", { colSpan: 8 }, `training (${data})…`),
      el("td", {}, el("button", { type: "button", dataset: { show: "live" } }, "Show"))));
  }
  if (rows.length === 0) {
    table.replaceChildren(el("tr", {}, el("td", {}, "No runs yet: train a network, or load a saved one.")));
    state.compare = [];
    $("compare-figure").hidden = true;
    return;
  }
  table.replaceChildren(el("tr", {}, head.map((h) => el("th", { scope: "col" }, h))), ...rows);
  drawCompare();
}

export function toggleCompare(id, on) {
  state.compare = state.compare.filter((c) => c !== id);
  if (on) state.compare.push(id);
  // Two at a time: ticking a third unticks the oldest.
  while (state.compare.length > 2) state.compare.shift();
  renderRuns();
}

export async function clearRuns() {
  state.runs = [];
  state.compare = [];
  state.shownRunId = null;
  await state.store.clear();
  $("downloads").hidden = true;
  hideError("runs-error");
  renderRuns();
  state.inside.runChanged();
}
