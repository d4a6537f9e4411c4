// The page: data, settings, training controls and plots. The work happens in one engine
// worker for the page's lifetime (worker.js → src/web/engine.rs: datasets, device, runs,
// saved networks, the inside views drawn by inside.js), spoken to in the typed protocol of
// engine.rs. This thread reads files, draws and keeps the runs.
import { createInside } from "./inside.js";
import { compileEngine, startEngine } from "./engine.js";
import { registerOffline } from "./offline.js";
import { $, formatSeconds, grouped, hideError, initialParams, reply, request, saveBlob, showError, state } from "./page.js";
import {
  applyConfig, applyUrl, buildForm, buildModelMenu, clearFlagErrors, readConfig, showSettingsError, syncUrl,
} from "./form.js";
import { listBundledDatasets, loadBundled, prefetchBundled, readFiles } from "./data.js";
import { drawPlots, openNeuron, pearsonClick, scheduleDraw, setupCanvases, showBest } from "./plots.js";
import { addRun, clearRuns, download, insideContext, loadRuns, renderRuns, showRun, toggleCompare } from "./runs.js";

// The download is most of a first visit's wait on a slow link: say how far it has got.
function showLoadProgress(loaded, total) {
  const mb = (bytes) => (bytes / 1e6).toFixed(1);
  $("engine-status").textContent = total
    ? `Loading the engine… ${mb(loaded)} of ${mb(total)} MB`
    : `Loading the engine… ${mb(loaded)} MB`;
}

async function main() {
  // The browser starts its GPU process on the first request for an adapter: this one, made
  // now, lets the worker's own request (compute.js) be answered at once.
  globalThis.navigator?.gpu?.requestAdapter().catch(() => {});
  const bundled = prefetchBundled();
  // The worker starts (its scripts, and the GPU asked for) while the engine compiles, then
  // makes its own instance while this thread makes its own.
  state.compiling = compileEngine(showLoadProgress);
  const engineReady = startEngineWorker(state.compiling);
  try {
    state.module = await state.compiling;
    state.engine = await startEngine(state.module);
  } catch (error) {
    state.worker.terminate();
    $("engine-status").textContent = `The engine could not be loaded (${error.message || error}). ` +
      `Reload the page to try again.`;
    return;
  }
  registerOffline();
  buildForm();
  buildModelMenu();
  applyConfig(state.engine.presetConfig("seed"));
  applyUrl();
  state.inside = createInside({ engine: state.engine, send: request, $, context: insideContext, save: saveBlob });
  wireControls();
  await listBundledDatasets(bundled);
  setupCanvases();
  await loadRuns();
  const adapter = await engineReady;
  $("engine-status").textContent = adapter.webgpu
    ? `Ready. Training runs on this computer's GPU through WebGPU: ${adapter.adapter}.`
    : `Ready. Training will run on the CPU (slower): ${adapter.adapter}.`;
  performance.mark("v1p:ready");
  document.body.dataset.ready = "true";
}

// Starts the worker and hands it the compiled engine once `module` (a promise) gives it;
// resolves with the worker's `ready` event (which GPU, or why none).
function startEngineWorker(module) {
  state.worker = new Worker("worker.js", { type: "module" });
  const worker = state.worker;
  // `cpu-workers=1` in the page's address keeps CPU runs in one worker (halves.js).
  const cpuWorkers = initialParams.get("cpu-workers");
  module.then((compiled) => worker.postMessage({ type: "engine", module: compiled, cpuWorkers }), () => {});
  const ready = new Promise((resolve) => state.replies.set("ready", resolve));
  state.worker.onmessage = (event) => onEngineEvent(event.data);
  state.worker.onerror = (event) => {
    event.preventDefault();
    restartEngine(event.message || "the engine stopped");
  };
  return ready;
}

// Whatever waits for the engine is told it failed: requests, a run, the inside views.
function failWaiting(message) {
  const error = { kind: "device", message };
  for (const id of [...state.replies.keys()]) {
    reply(id, id === "ready" ? { webgpu: false, adapter: message } : { type: "failed", error });
  }
  if (state.running) onRunFailed({ started: true, error });
  if (state.inside) state.inside.fail(message);
}

// A crashed engine (a trap leaves its wasm unusable) is replaced by a fresh one, which gets
// the current data again under the same id.
function restartEngine(message) {
  failWaiting(message);
  showError("train-error", `The engine stopped (${message}) and was started again: train again to continue.`);
  state.worker.terminate();
  startEngineWorker(state.compiling);
  if (state.dataset) {
    const files = state.files.map(([name, buffer]) => ({ name, bytes: new Uint8Array(buffer.slice(0)) }));
    request({ type: "loadDataset", dataset: state.dataset.id, files }, files.map((f) => f.bytes.buffer));
  }
}

function onEngineEvent(event) {
  switch (event.type) {
    case "ready":
      return reply("ready", event);
    case "datasetLoaded":
    case "datasetFailed":
      return reply(event.dataset, event);
    case "networkEvaluated":
    case "evaluationFailed":
      return reply(event.request, event);
    case "insideOpened":
    case "insideOverview":
    case "insideProgress":
    case "insideInverted":
    case "insideComplete":
    case "insideFailed":
      return state.inside.onMessage(event);
    case "protocolError":
      failWaiting(event.error.message);
      return showError("train-error", event.error.message);
    default:
      // A run's events; those of a run the page has moved on from are dropped.
      if (state.live && event.run === state.live.run) onRunEvent(event);
  }
}

function train() {
  performance.mark("v1p:train");
  clearFlagErrors();
  hideError("train-error");
  if (!state.dataset) return showError("train-error", "Choose a dataset first.");
  let config;
  try {
    config = readConfig();
  } catch (error) {
    return showSettingsError(error.message ? error : { message: String(error) });
  }
  // What the run trains on, kept as it is now: the page may load other data meanwhile.
  state.live = {
    run: state.nextId++,
    datasetName: state.datasetName,
    sources: state.summary.sources,
    cellTypes: state.datasetCellTypes,
    started: false,
    report: null,
    backend: "",
    startedUnix: Math.floor(Date.now() / 1000),
  };
  request({
    type: "startRun",
    run: state.live.run,
    dataset: state.dataset.id,
    config,
    backend: $("backend-select").value,
    startedUnix: state.live.startedUnix,
  });
  state.running = true;
  state.paused = false;
  showLive();
  $("backend-notice").hidden = true;
  $("backend-status").textContent = "Starting…";
  $("progress-text").textContent = "Starting (the first steps compile GPU kernels)…";
  document.body.dataset.state = "running";
  updateButtons();
}

function onRunEvent(event) {
  const live = state.live;
  switch (event.type) {
    case "runStarted":
      performance.mark("v1p:run-started");
      live.started = true;
      live.report = event.report;
      live.backend = event.description;
      $("backend-status").textContent = `Computing on: ${event.description}`;
      if (event.notice) showNotice(event.notice);
      if (!state.shownRunId) {
        state.report = event.report;
        drawPlots();
      }
      break;
    case "progress":
      onProgress(event);
      break;
    case "runNotice":
      live.backend = event.description;
      $("backend-status").textContent = `Computing on: ${event.description}`;
      // After the run's own notice (a GPU fallback), if it has one.
      showNotice($("backend-notice").hidden ? event.notice : `${$("backend-notice").textContent} ${event.notice}`);
      break;
    case "paused":
      $("progress-text").textContent += " — paused";
      document.body.dataset.state = "paused";
      break;
    case "resumed":
      document.body.dataset.state = "running";
      break;
    case "runFinished":
      onFinished(event);
      break;
    case "runFailed":
      onRunFailed(event);
      break;
  }
}

// The run is kept (with its network) before the page says it finished.
async function onFinished(event) {
  const { report, stopped, elapsedMs } = event;
  state.running = false;
  onProgress({ progress: { steps_done: report.steps_done, max_steps: report.flags.max_steps, best: report.best },
    report, elapsedMs });
  const verb = stopped ? "Stopped" : "Finished";
  $("progress-text").textContent = `${verb} after ${report.steps_done} steps in ${formatSeconds(elapsedMs / 1000)}.`;
  if (report.best) {
    const live = state.live;
    await addRun({ kind: "trained", startedUnix: live.startedUnix, datasetName: live.datasetName,
      sources: live.sources, cellTypes: live.cellTypes, report, elapsedMs, backend: live.backend, stopped },
    event.networkFiles);
  }
  if (event.exportError) {
    showError("train-error", `The best network could not be read back for download: ${event.exportError}`);
  }
  renderRuns();
  performance.mark("v1p:run-finished", { detail: { elapsedMs } });
  document.body.dataset.state = stopped ? "stopped" : "finished";
  updateButtons();
}

function onRunFailed({ started, error }) {
  state.running = false;
  updateButtons();
  renderRuns();
  // A refused setting: the run never began; the page goes back to where it was.
  if (!started && error.kind === "flag") {
    state.live = null;
    document.body.dataset.state = "idle";
    $("backend-status").textContent = "";
    $("progress-text").textContent = "Not started.";
    return showSettingsError(error);
  }
  showError("train-error", error.message);
  document.body.dataset.state = "error";
}

function showNotice(text) {
  $("backend-notice").textContent = text;
  $("backend-notice").hidden = false;
}

function onProgress({ progress, report, elapsedMs }) {
  // The plots follow the live run unless the user chose a stored run to look at.
  const showing = !state.shownRunId;
  if (report && state.live) state.live.report = report;
  if (report && showing) state.report = report;
  const { steps_done: done, max_steps: max } = progress;
  $("progress-bar").value = done / max;
  const seconds = elapsedMs / 1000;
  const rate = done / Math.max(seconds, 1e-3);
  const left = (max - done) / Math.max(rate, 1e-9);
  $("progress-text").textContent = `Step ${grouped(done)} of ${grouped(max)} ` +
    `· ${rate.toFixed(rate < 10 ? 2 : 0)} steps/s · about ${formatSeconds(left)} left`;
  if (progress.best && showing) showBest("Best network so far", progress.best);
  if (report && showing) scheduleDraw();
}

// Puts the live run (its latest report, or nothing yet) back on the plots.
function showLive() {
  state.shownRunId = null;
  state.report = state.live ? state.live.report : null;
  state.cellTypes = state.live ? state.live.cellTypes : state.datasetCellTypes;
  $("downloads").hidden = true;
  $("results").replaceChildren();
  const best = state.report && state.report.best;
  if (best) showBest("Best network so far", best);
  drawPlots();
  renderRuns();
  state.inside.runChanged();
}

function updateButtons() {
  $("train-button").disabled = state.running;
  $("pause-button").disabled = !state.running;
  $("stop-button").disabled = !state.running;
  $("pause-button").textContent = state.paused ? "Resume" : "Pause";
}

function togglePause() {
  if (!state.running) return;
  state.paused = !state.paused;
  request({ type: state.paused ? "pause" : "resume", run: state.live.run });
  updateButtons();
}

function stop() {
  if (state.running) request({ type: "stop", run: state.live.run });
}

// The engine worker stays: only the run is stopped, and forgotten.
function reset() {
  if (state.running) stop();
  state.running = false;
  state.paused = false;
  state.live = null;
  showLive();
  $("progress-bar").value = 0;
  $("progress-text").textContent = "Not started.";
  $("backend-status").textContent = "";
  $("backend-notice").hidden = true;
  hideError("train-error");
  document.body.dataset.state = "idle";
  drawPlots();
  updateButtons();
}

function wireControls() {
  $("train-button").addEventListener("click", train);
  $("pause-button").addEventListener("click", togglePause);
  $("stop-button").addEventListener("click", stop);
  $("reset-button").addEventListener("click", reset);
  $("preset-seed").addEventListener("click", () => applyConfig(state.engine.presetConfig("seed")));
  $("preset-fast").addEventListener("click", () => applyConfig(state.engine.presetConfig("fast")));
  $("preset-best").addEventListener("click", () => applyConfig(state.engine.presetConfig("best")));
  $("copy-link").addEventListener("click", async () => {
    syncUrl();
    try {
      await navigator.clipboard.writeText(location.href);
      $("copy-link").textContent = "Link copied";
    } catch {
      $("copy-link").textContent = "Copy the address bar";
    }
  });
  $("backend-select").addEventListener("change", syncUrl);
  $("sort-select").addEventListener("change", drawPlots);
  $("pearson-canvas").addEventListener("click", pearsonClick);
  $("neuron-table").addEventListener("click", (e) => {
    if (e.target.dataset.neuron) openNeuron(Number(e.target.dataset.neuron));
  });
  $("dataset-select").addEventListener("change", (e) => loadBundled(e.target.value));
  // Emptied after reading, so that choosing the same file again is a change too.
  const readAndClear = (errorId) => async (e) => {
    await readFiles(e.target.files, errorId);
    e.target.value = "";
  };
  $("file-input").addEventListener("change", readAndClear("data-error"));
  $("network-input").addEventListener("change", readAndClear("runs-error"));
  $("clear-runs").addEventListener("click", clearRuns);
  for (const button of document.querySelectorAll("#downloads button")) {
    button.addEventListener("click", () => download(button));
  }
  $("runs-table").addEventListener("change", (e) => {
    if (e.target.dataset.compare) toggleCompare(e.target.dataset.compare, e.target.checked);
  });
  $("runs-table").addEventListener("click", (e) => {
    if (e.target.dataset.show === "live") showLive();
    else if (e.target.dataset.show) showRun(e.target.dataset.show);
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    readFiles(e.dataTransfer.files);
  });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("file-input").click();
    }
  });
}

main().catch((error) => {
  $("engine-status").textContent = `The engine failed to start: ${error}`;
});
