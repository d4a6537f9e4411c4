// The page: data, settings, training controls and plots. The work happens in one engine
// worker for the page's lifetime (worker.js → src/web/engine.rs: datasets, device, runs,
// saved networks), spoken to in the typed protocol of engine.rs; the inside views in
// inspector.js (driven by inside.js). This thread reads files, draws and keeps the runs.
import { createInside } from "./inside.js";
import { compileEngine, startEngine } from "./engine.js";
import { registerOffline } from "./offline.js";
import { el, openRunStore } from "./runs.js";

// The seed's flags, grouped and worded as its `--help`; `path` is where they sit in the
// engine's TrainingConfig.
const FLAGS = [
  { group: "training", name: "learning_rate", help: "Initial learning rate.", type: "float", path: ["learning_rate"] },
  { group: "training", name: "max_steps", help: "Number of steps to run trainer.", type: "int", path: ["max_steps"] },
  { group: "training", name: "batch_size", help: "Batch size.", type: "int", path: ["batch_size"] },
  { group: "training", name: "trainingset_frac", help: "Training set size (fraction of images).", type: "float", path: ["trainingset_frac"] },
  { group: "training", name: "earlystop_frac", help: "Early stop set size (fraction of images).", type: "float", path: ["earlystop_frac"] },
  { group: "training", name: "optimizer", help: "sgd: plain gradient descent (the seed); adam: faster.", type: "choice", choices: ["sgd", "adam"], path: ["optimizer"] },
  { group: "training", name: "eval_every", help: "Steps between evaluations.", type: "int", path: ["eval_every"] },
  { group: "training", name: "seed", help: "Random seed: split, initial weights, batches, dropout.", type: "int", path: ["seed"] },
  { group: "CNN params", name: "conv1", help: "Number of filters in conv 1.", type: "int", path: ["model", "conv1"] },
  { group: "CNN params", name: "conv2", help: "Number of filters in conv 2.", type: "int", path: ["model", "conv2"] },
  { group: "CNN params", name: "conv1size", help: "Size (linear) of convolution kernel layer 1.", type: "int", path: ["model", "conv1size"] },
  { group: "CNN params", name: "nk1", help: "Size of max pool kernel layer 1.", type: "int", path: ["model", "nk1"] },
  { group: "CNN params", name: "nstride1", help: "Size of max pool stride layer 1.", type: "int", path: ["model", "nstride1"] },
  { group: "CNN params", name: "conv2size", help: "Size (linear) of convolution kernel layer 2.", type: "int", path: ["model", "conv2size"] },
  { group: "CNN params", name: "nk2", help: "Size of max pool kernel layer 2.", type: "int", path: ["model", "nk2"] },
  { group: "CNN params", name: "nstride2", help: "Size of max pool stride.", type: "int", path: ["model", "nstride2"] },
  { group: "CNN params", name: "numconvlayer", help: "Number of convolutional layers (1–3).", type: "int", path: ["model", "numconvlayer"] },
  { group: "hidden layer", name: "hidden1", help: "Number of units in hidden layer 1.", type: "int", path: ["model", "hidden1"] },
  { group: "hidden layer", name: "dropout", help: "Drop out keep rate during training.", type: "float", path: ["model", "dropout"] },
  { group: "training", name: "loss", help: "mse: squared error (the seed); poisson: made for spike counts.", type: "choice", choices: ["mse", "poisson"], path: ["loss"] },
  { group: "training", name: "patience", help: "Stop after this many evaluations without a better early-stop loss (0 = never).", type: "int", path: ["patience"] },
  { group: "training", name: "weight_decay", help: "Penalty on large weights (0 = none).", type: "float", path: ["weight_decay"] },
  { group: "output", name: "output", help: "How a neuron's drive becomes a rate: relu (the seed), softplus or exp.", type: "choice", choices: ["relu", "softplus", "exp"], path: ["model", "output"] },
  { group: "output", name: "ensemble", help: "Networks trained side by side, their predictions averaged.", type: "int", path: ["model", "ensemble"] },
  { group: "output", name: "standardise", help: "Rescale pixels to mean 0, sd 1 first (the seed uses raw 0…255).", type: "bool", choices: ["false", "true"], path: ["model", "standardise"] },
  { group: "Gabor bank", name: "gabor_orientations", help: "Orientations of the edge detectors.", type: "int", path: ["model", "gabor", "orientations"] },
  { group: "Gabor bank", name: "gabor_frequencies", help: "Sizes (spatial frequencies), an octave apart.", type: "int", path: ["model", "gabor", "frequencies"] },
  { group: "Gabor bank", name: "gabor_min_wavelength", help: "Wavelength of the finest, in pixels.", type: "float", path: ["model", "gabor", "min_wavelength"] },
  { group: "Gabor bank", name: "gabor_positions", help: "Positions per side of the image.", type: "int", path: ["model", "gabor", "positions"] },
];

// Which groups of flags mean something for each model (the rest are hidden).
const GROUPS = {
  cnn: ["training", "output", "CNN params", "hidden layer"],
  cnnplus: ["training", "output", "CNN params", "hidden layer"],
  ln: ["training", "output"],
  gabor: ["split", "Gabor bank"],
};
// For the Gabor ridge (no training loop) only the split's flags apply.
const SPLIT_FLAGS = ["trainingset_frac", "earlystop_frac", "seed"];

const $ = (id) => document.getElementById(id);
// Read before anything rewrites the address bar.
const initialParams = new URLSearchParams(location.search);
const state = {
  engine: null, // wasm bindings on this thread (drawing, presets, exports)
  module: null, // the compiled engine, handed to each worker
  worker: null, // the engine worker
  nextId: 1, // ids of datasets, runs and requests in the engine
  replies: new Map(), // id → resolve, for requests the page awaits
  files: null, // [[name, ArrayBuffer]] of the current dataset (for the inspector)
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

// ---------- start-up ----------

// The download is most of a first visit's wait on a slow link: say how far it has got.
function showLoadProgress(loaded, total) {
  const mb = (bytes) => (bytes / 1e6).toFixed(1);
  $("engine-status").textContent = total
    ? `Loading the engine… ${mb(loaded)} of ${mb(total)} MB`
    : `Loading the engine… ${mb(loaded)} MB`;
}

async function main() {
  buildForm();
  try {
    state.module = await compileEngine(showLoadProgress);
    state.engine = await startEngine(state.module);
  } catch (error) {
    $("engine-status").textContent = `The engine could not be loaded (${error.message || error}). Reload the page to try again.`;
    return;
  }
  registerOffline();
  const engineReady = startEngineWorker();
  buildModelMenu();
  applyConfig(state.engine.presetConfig("seed"));
  applyUrl();
  state.inside = createInside({ engine: state.engine, module: state.module, $, context: insideContext, save: saveBlob });
  wireControls();
  await listBundledDatasets();
  setupCanvases();
  await loadRuns();
  const adapter = await engineReady;
  $("engine-status").textContent = adapter.webgpu
    ? `Ready. Training runs on this computer's GPU through WebGPU: ${adapter.adapter}.`
    : `Ready. Training will run on the CPU (slower): ${adapter.adapter}.`;
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  document.body.dataset.ready = "true";
}

// ---------- settings form ----------

function buildForm() {
  const form = $("settings-form");
  for (const group of ["training", "output", "CNN params", "hidden layer", "Gabor bank"]) {
    const fieldset = document.createElement("fieldset");
    fieldset.dataset.group = group;
    fieldset.innerHTML = `<legend>${group}</legend><div class="flags"></div>`;
    for (const flag of FLAGS.filter((f) => f.group === group)) {
      const div = document.createElement("div");
      div.className = "flag";
      div.dataset.flag = flag.name;
      const id = `flag-${flag.name}`;
      const input = flag.choices
        ? `<select id="${id}" name="${flag.name}">${flag.choices.map((c) => `<option>${c}</option>`).join("")}</select>`
        : `<input id="${id}" name="${flag.name}" type="text" inputmode="decimal" autocomplete="off">`;
      div.innerHTML = `<label for="${id}">--${flag.name}</label>${input}<span class="help" id="${id}-help">${flag.help}</span>`;
      div.querySelector(`#${id}`).setAttribute("aria-describedby", `${id}-help`);
      fieldset.querySelector(".flags").appendChild(div);
    }
    form.appendChild(fieldset);
  }
  form.addEventListener("input", () => {
    clearFlagErrors();
    syncUrl();
  });
}

function getPath(object, path) {
  return path.reduce((o, key) => o[key], object);
}

// The model menu, from the engine's list; a choice loads that model's own settings.
function buildModelMenu() {
  state.families = Array.from(state.engine.modelFamilies());
  $("model-select").replaceChildren(...state.families.map((f) => el("option", { value: f.name }, f.label)));
  $("model-select").addEventListener("change", () => {
    const family = state.families.find((f) => f.name === $("model-select").value);
    applyConfig(family.config);
  });
}

// Shows only the flags that mean something for the chosen model, and what it is.
function showModel(name) {
  const family = state.families.find((f) => f.name === name);
  $("model-explanation").textContent = family ? family.explanation : "";
  const groups = GROUPS[name] || GROUPS.cnn;
  for (const fieldset of document.querySelectorAll("#settings-form fieldset")) {
    const group = fieldset.dataset.group;
    fieldset.hidden = !(groups.includes(group) || (groups.includes("split") && group === "training"));
  }
  for (const div of document.querySelectorAll("#settings-form .flag")) {
    div.hidden = groups.includes("split") && div.closest("fieldset").dataset.group === "training" && !SPLIT_FLAGS.includes(div.dataset.flag);
  }
}

function applyConfig(config) {
  $("model-select").value = config.model.family;
  showModel(config.model.family);
  for (const flag of FLAGS) {
    const value = getPath(config, flag.path);
    $(`flag-${flag.name}`).value = flag.type === "float" ? String(Number(value.toPrecision(6))) : String(value);
  }
  syncUrl();
}

// The form as a TrainingConfig, or a thrown error naming the flag.
function readConfig() {
  const config = state.engine.presetConfig("seed");
  for (const flag of FLAGS) {
    const text = $(`flag-${flag.name}`).value.trim();
    let value = text;
    if (flag.type === "bool") {
      value = text === "true";
    } else if (flag.type !== "choice") {
      value = Number(text);
      if (text === "" || !Number.isFinite(value)) throw flagError(flag.name, `"${text}" is not a number`);
      if (flag.type === "int" && (!Number.isInteger(value) || value < 0)) throw flagError(flag.name, `"${text}" must be a whole number ≥ 0`);
    }
    getPath(config, flag.path.slice(0, -1))[flag.path[flag.path.length - 1]] = value;
  }
  config.model.family = $("model-select").value;
  return config;
}

function flagError(flag, message) {
  return Object.assign(new Error(`--${flag}: ${message}`), { flag });
}

// `error`: { flag?, message } — the engine's structured error, or the form's own.
function showSettingsError({ flag, message }) {
  const input = flag && $(`flag-${flag}`);
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
  showError("settings-error", message);
}

function clearFlagErrors() {
  document.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  hideError("settings-error");
}

// Settings live in the URL query so that a teacher can share a link.
function syncUrl() {
  const params = new URLSearchParams();
  params.set("model", $("model-select").value);
  for (const flag of FLAGS) params.set(flag.name, $(`flag-${flag.name}`).value);
  params.set("backend", $("backend-select").value);
  if (state.datasetName && !state.datasetName.startsWith("upload:")) params.set("dataset", state.datasetName);
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

function applyUrl() {
  const params = initialParams;
  if (params.get("preset")) {
    try {
      applyConfig(state.engine.presetConfig(params.get("preset")));
    } catch (error) {
      showSettingsError({ message: String(error) });
    }
  }
  const family = state.families.find((f) => f.name === params.get("model"));
  if (family && !params.get("preset")) applyConfig(family.config);
  for (const flag of FLAGS) {
    if (params.has(flag.name)) $(`flag-${flag.name}`).value = params.get(flag.name);
  }
  if (["auto", "wgpu", "cpu"].includes(params.get("backend"))) $("backend-select").value = params.get("backend");
}

// ---------- data ----------

async function listBundledDatasets() {
  const select = $("dataset-select");
  let names = [];
  try {
    names = await (await fetch("data/index.json")).json();
  } catch {
    names = [];
  }
  select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  if (names.length === 0) select.replaceChildren(el("option", { value: "" }, "none bundled"));
  const wanted = initialParams.get("dataset");
  if (wanted && names.includes(wanted)) select.value = wanted;
  if (select.value) await loadBundled(select.value);
}

async function loadBundled(name) {
  const response = await fetch(`data/${name}`);
  if (!response.ok) return showError("data-error", `data/${name}: HTTP ${response.status}`);
  const files = [[name, await response.arrayBuffer()]];
  let about = "";
  let cellTypes = [];
  let truthText = null;
  try {
    const truth = await fetch(`data/${name.replace(/\.mat$/, "")}-truth.json`);
    if (truth.ok) {
      truthText = await truth.text();
      const json = JSON.parse(truthText);
      about = json.description;
      cellTypes = json.neurons.map((n) => n.cell_type);
    }
  } catch {
    // A bundled file without ground truth is fine.
    truthText = null;
  }
  if (await useDataset(files, name, cellTypes, truthText)) $("dataset-about").textContent = about;
}

// The engine parses the files once (a copy goes to it; this thread keeps the bytes for the
// inspector); on error the previous dataset stays.
async function useDataset(files, name, cellTypes = [], truthText = null) {
  const id = state.nextId++;
  const copies = files.map(([n, buffer]) => ({ name: n, bytes: new Uint8Array(buffer.slice(0)) }));
  request({ type: "loadDataset", dataset: id, files: copies }, copies.map((f) => f.bytes.buffer));
  const reply = await awaitReply(id);
  if (reply.type === "datasetFailed") {
    const previous = state.datasetName || "none";
    showError("data-error", `${reply.error.message}\nThe previous dataset (${previous}) is still loaded.`);
    return false;
  }
  hideError("data-error");
  if (state.dataset) request({ type: "dropDataset", dataset: state.dataset.id });
  state.dataset = { id, summary: reply.summary, images: reply.images };
  state.files = files;
  state.datasetName = name;
  state.datasetCellTypes = cellTypes;
  state.datasetTruth = truthText;
  if (!state.running && !state.shownRunId) state.cellTypes = cellTypes;
  state.summary = reply.summary;
  showSummary(state.summary);
  syncUrl();
  state.inside.runChanged();
  return true;
}

// One image's pixels, from the engine's copy of the dataset.
function datasetImage(i) {
  const { height, width } = state.summary;
  return state.dataset.images.subarray(i * height * width, (i + 1) * height * width);
}

function showSummary(s) {
  const rows = [
    ["Files", s.sources.join(", ")],
    ["Images", `${s.n_images} of ${s.height} × ${s.width} pixels (mean ${s.pixel_mean.toFixed(1)}, sd ${s.pixel_sd.toFixed(1)})`],
    ["Neurons", `${s.n_neurons}`],
    ["Mean rate", `${s.mean_rate.toFixed(3)} spikes per 50 ms (max ${s.max_rate.toFixed(2)})`],
  ];
  $("dataset-summary").replaceChildren(el("table", {}, rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k),
    el("td", {}, v)))));
  const strip = $("thumbnails");
  strip.replaceChildren();
  for (let i = 0; i < Math.min(16, s.n_images); i++) {
    const pixels = datasetImage(i);
    const canvas = document.createElement("canvas");
    canvas.width = s.width;
    canvas.height = s.height;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `stimulus image ${i + 1}`);
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(s.width, s.height);
    const lo = Math.min(0, s.pixel_min);
    const hi = Math.max(255, s.pixel_max);
    for (let p = 0; p < pixels.length; p++) {
      const v = Math.round(((pixels[p] - lo) / (hi - lo)) * 255);
      image.data.set([v, v, v, 255], p * 4);
    }
    ctx.putImageData(image, 0, 0);
    strip.appendChild(canvas);
  }
}

// `.mat` files become the dataset; saved networks (`.bpk`) among them are then evaluated on
// it; exported records (`.json`) are listed as runs to compare.
async function readFiles(fileList, errorId = "data-error") {
  const files = [];
  for (const file of fileList) files.push([file.name, await file.arrayBuffer()]);
  const ending = (ext) => files.filter(([name]) => name.toLowerCase().endsWith(ext));
  const [mats, networks, records] = [ending(".mat"), ending(".bpk"), ending(".json")];
  if (mats.length > 0) {
    if (!(await useDataset(mats, `upload:${mats.map((f) => f[0]).join("+")}`))) return;
    $("dataset-about").textContent = `Your file${mats.length > 1 ? "s" : ""}, read in this browser only.`;
  }
  if (networks.length > 0) await loadNetworks(networks, errorId);
  if (records.length > 0) await importRecords(records, errorId === "data-error" ? "runs-error" : errorId);
  const others = files.filter(([name]) => !/\.(mat|bpk|json)$/i.test(name));
  if (others.length > 0) {
    showError(errorId, `${others.map(([n]) => n).join(", ")}: not a .mat data file, a saved network (.bpk) ` +
      "or an exported run (.json).");
  }
}

// ---------- the engine worker ----------

// Starts the worker; resolves with its `ready` event (which GPU, or why none).
function startEngineWorker() {
  state.worker = new Worker("worker.js", { type: "module" });
  state.worker.postMessage({ type: "engine", module: state.module });
  const ready = new Promise((resolve) => state.replies.set("ready", resolve));
  state.worker.onmessage = (event) => onEngineEvent(event.data);
  state.worker.onerror = (event) => {
    event.preventDefault();
    onEngineEvent({ type: "protocolError", error: { kind: "device", message: event.message || "the engine crashed" } });
  };
  return ready;
}

function request(message, transfer = []) {
  state.worker.postMessage(message, transfer);
}

// The engine's reply to request `id` (a dataset's or a network evaluation's).
function awaitReply(id) {
  return new Promise((resolve) => state.replies.set(id, resolve));
}

function reply(id, event) {
  const resolve = state.replies.get(id);
  state.replies.delete(id);
  if (resolve) resolve(event);
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
    case "protocolError":
      return showError("train-error", event.error.message);
    default:
      // A run's events; those of a run the page has moved on from are dropped.
      if (state.live && event.run === state.live.run) onRunEvent(event);
  }
}

// ---------- training ----------

function train() {
  clearFlagErrors();
  hideError("train-error");
  if (!state.dataset) return showError("train-error", "Choose a dataset first.");
  let config;
  try {
    config = readConfig();
  } catch (error) {
    return showSettingsError({ flag: error.flag, message: String(error.message || error) });
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
      live.started = true;
      live.report = event.report;
      live.backend = event.description;
      $("backend-status").textContent = `Computing on: ${event.description}`;
      document.body.dataset.backend = event.backend;
      if (event.notice) showNotice(event.notice);
      if (!state.shownRunId) {
        state.report = event.report;
        drawPlots();
      }
      break;
    case "progress":
      onProgress(event);
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

function onFinished(event) {
  const { report, stopped, elapsedMs } = event;
  state.running = false;
  onProgress({ progress: { steps_done: report.steps_done, max_steps: report.flags.max_steps, best: report.best },
    report, elapsedMs });
  const verb = stopped ? "Stopped" : "Finished";
  $("progress-text").textContent = `${verb} after ${report.steps_done} steps in ${formatSeconds(elapsedMs / 1000)}.`;
  document.body.dataset.elapsedMs = String(elapsedMs);
  if (report.best) {
    const live = state.live;
    addRun({ kind: "trained", startedUnix: live.startedUnix, datasetName: live.datasetName, sources: live.sources,
      cellTypes: live.cellTypes, report, elapsedMs, backend: live.backend, stopped }, event.networkFiles);
  }
  if (event.exportError) {
    showError("train-error", `The best network could not be read back for download: ${event.exportError}`);
  }
  renderRuns();
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
  $("progress-text").textContent = `Step ${done.toLocaleString()} of ${max.toLocaleString()} · ${rate.toFixed(rate < 10 ? 2 : 0)} steps/s · about ${formatSeconds(left)} left`;
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

function showBest(title, best) {
  $("results").replaceChildren(`${title} (step ${best.step}): mean r = `,
    el("span", { id: "mean-r" }, best.mean_r.toFixed(3)), " · FVE = ", el("span", { id: "fve" }, best.fve.toFixed(3)));
}

// Redraws in an animation frame, at most every 300 ms and never more than a fifth of the
// time: a redraw costs ~2 ms here (BENCHMARKS.md), but a slow machine or a huge dataset must
// not let redraws crowd out the controls.
function scheduleDraw() {
  if (state.drawPending) return;
  state.drawPending = true;
  const gap = Math.max(300, 4 * state.drawCost);
  const wait = Math.max(0, gap - (performance.now() - state.lastDraw));
  setTimeout(() => requestAnimationFrame(() => {
    state.drawPending = false;
    const started = performance.now();
    drawPlots();
    state.lastDraw = performance.now();
    state.drawCost = state.lastDraw - started;
  }), wait);
}

function formatSeconds(s) {
  if (!Number.isFinite(s)) return "—";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
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

// ---------- plots ----------

function setupCanvases() {
  const resize = () => {
    for (const canvas of [$("progress-canvas"), $("pearson-canvas")]) {
      const ratio = window.devicePixelRatio || 1;
      canvas.width = Math.round(canvas.clientWidth * ratio);
      canvas.height = Math.round(canvas.clientHeight * ratio);
    }
    drawPlots();
  };
  new ResizeObserver(resize).observe($("plots-section"));
  new ResizeObserver(drawCompare).observe($("runs-section"));
  resize();
}

function drawPlots() {
  const ratio = window.devicePixelRatio || 1;
  const report = state.report;
  for (const canvas of [$("progress-canvas"), $("pearson-canvas")]) {
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  }
  state.barLayout = null;
  if (!report) return;
  try {
    state.engine.drawProgress($("progress-canvas"), report, { scale: ratio });
    state.barLayout = state.engine.drawPearson($("pearson-canvas"), report, {
      scale: ratio,
      sortByR: $("sort-select").value === "r",
      cellTypes: state.cellTypes.length === (report.best ? report.best.r.length : -1) ? state.cellTypes : [],
    });
  } catch (error) {
    console.error(error);
  }
  describePlots(report);
}

// Text alternatives: the plots' key numbers, and the per-neuron table.
function describePlots(report) {
  const last = report.history[report.history.length - 1];
  const best = report.best;
  $("progress-canvas").setAttribute("aria-label", last
    ? `Training progress: at step ${last.step} training loss ${last.train_loss.toFixed(4)}, early-stop loss ${last.early_stop_loss.toFixed(4)}, evaluation loss ${last.eval_loss.toFixed(4)}, mean r ${last.mean_r.toFixed(3)}; baseline loss ${report.baseline_loss.toFixed(4)}${best ? `; best step ${best.step}` : ""}.`
    : "Training progress: no evaluation yet.");
  if (!best) return;
  $("pearson-canvas").setAttribute("aria-label", `Pearson r per neuron for the best network (step ${best.step}): mean ${best.mean_r.toFixed(3)}, lowest ${Math.min(...best.r).toFixed(3)}, highest ${Math.max(...best.r).toFixed(3)}.`);
  const types = state.cellTypes.length === best.r.length;
  // Rebuilt only when it changes: a redraw (every 300 ms while training, or on a resize) must
  // not take the keyboard focus away from a neuron's button.
  const key = `${best.mean_r}:${best.step}:${best.r.length}:${types}:${state.shownRunId}`;
  if (key === state.neuronTableKey) return;
  state.neuronTableKey = key;
  const head = ["neuron", ...(types ? ["true cell type"] : []), "Pearson r", "eval loss", "baseline loss"];
  $("neuron-table").replaceChildren(el("tr", {}, head.map((h) => el("th", { scope: "col" }, h))),
    ...best.r.map((r, i) => el("tr", {},
      el("td", {}, el("button", { type: "button", className: "link", dataset: { neuron: i },
        "aria-label": `look inside neuron ${i + 1}` }, String(i + 1))),
      types ? el("td", {}, state.cellTypes[i]) : null, el("td", {}, r.toFixed(3)),
      el("td", {}, best.eval_loss_per_neuron[i].toFixed(4)),
      el("td", {}, report.baseline_loss_per_neuron[i].toFixed(4)))));
}

// ---------- wiring ----------

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

// ---------- runs: kept results, downloads, comparison ----------

// The runs, from the browser's store (runs.js): this tab's and other tabs'.
async function loadRuns() {
  state.store = await openRunStore({
    isRun: (record) => state.engine.isCompleteReport(record.report),
    onOtherTab: () => refreshRuns(),
  });
  if (state.store.unavailable) showError("runs-error", state.store.unavailable);
  await refreshRuns();
}

async function refreshRuns() {
  const stored = await state.store.list();
  // Runs the store could not keep (storage full) stay listed until the page closes.
  const unkept = state.runs.filter((run) => run.unkept);
  state.runs = stored.concat(unkept);
  renderRuns();
}

// Numbered after every run kept so far (other tabs' too), and kept with its network.
async function addRun(run, networkFiles = []) {
  await refreshRuns();
  run.number = state.runs.reduce((m, r) => Math.max(m, r.number), 0) + 1;
  run.id = run.id || `${run.startedUnix}-${run.number}-${Math.random().toString(36).slice(2, 8)}`;
  run.networkFiles = Array.from(networkFiles);
  try {
    await state.store.put(run);
  } catch (error) {
    run.unkept = true;
    showError("runs-error", error.message || String(error));
  }
  if (!state.runs.some((r) => r.id === run.id)) state.runs.push(run);
  showRun(run.id);
}

function findRun(id) {
  return state.runs.find((r) => r.id === id);
}

// Puts a run's plots, figures and downloads on the page.
function showRun(id) {
  const run = findRun(id);
  if (!run) return;
  state.shownRunId = id;
  state.report = run.report;
  state.cellTypes = run.cellTypes || [];
  drawPlots();
  showBest(run.kind === "loaded" ? `Run ${run.number}, loaded from ${run.fileName}` : `Run ${run.number}, best network`, run.report.best);
  const hasNetwork = run.networkFiles.length > 0;
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
function insideContext() {
  const run = findRun(state.shownRunId);
  if (!run) return { ok: false, why: "Train a network, or show a run from section 6, to look inside it." };
  if (run.report.flags.model.family === "gabor") {
    return { ok: false, why: `Run ${run.number} is the Gabor ridge model: its filters are fixed edge detectors, not learned, so there is no network to look inside.` };
  }
  const bpk = run.networkFiles.find((f) => f.name.endsWith(".bpk"));
  if (!bpk) {
    return { ok: false, why: `Run ${run.number} came without its network: load its .bpk file to look inside.` };
  }
  if (!state.dataset) return { ok: false, why: "Load the data the network was trained on first." };
  if (run.datasetName !== state.datasetName) {
    return { ok: false, why: `Run ${run.number} was trained on ${run.datasetName.replace(/^upload:/, "")}: load that data to look inside it.` };
  }
  return {
    ok: true,
    runId: run.id,
    runNumber: run.number,
    family: run.report.flags.model.family,
    datasetName: state.datasetName,
    nNeurons: run.report.best.r.length,
    startedUnix: run.startedUnix,
    files: state.files,
    network: bpk,
    truth: state.datasetTruth,
    backend: $("backend-select").value,
    image: datasetImage,
  };
}

// A click on the Pearson plot: the neuron whose bar is under it, opened in section 5.
function pearsonClick(event) {
  const layout = state.barLayout;
  if (!layout) return;
  const ratio = window.devicePixelRatio || 1;
  const x = event.offsetX * ratio;
  const slot = Math.floor(((x - layout.x0) / (layout.x1 - layout.x0)) * layout.order.length);
  if (slot < 0 || slot >= layout.order.length) return;
  openNeuron(layout.order[slot]);
}

function openNeuron(neuron) {
  state.inside.focus(neuron);
  $("inside-section").scrollIntoView({ behavior: "smooth", block: "start" });
  // Keyboard users land where the neuron's views are.
  $("neuron-select").focus({ preventScroll: true });
}

function download(button) {
  const run = findRun(state.shownRunId);
  if (!run) return;
  hideError("runs-error");
  if (button.dataset.plot) {
    const [canvasId, prefix] = button.dataset.plot.split(":");
    $(canvasId).toBlob((blob) => saveBlob(blob, `${prefix}${run.startedUnix}.png`), "image/png");
    return;
  }
  const [prefix, ext] = button.dataset.file.split(":");
  let files;
  try {
    files = prefix.startsWith("network")
      ? run.networkFiles
      : Array.from(state.engine.exportReport(run.report, run.startedUnix, run.sources || [], run.cellTypes || []));
  } catch (error) {
    return showError("runs-error", `Could not make the file: ${error.message || error}`);
  }
  // `network_` also starts `network_manualsave_`: the tag must follow the prefix directly.
  const file = files.find((f) => f.name === `${prefix}${run.startedUnix}.${ext}`);
  if (!file) return showError("runs-error", `This run has no ${prefix}….${ext} file.`);
  saveBlob(new Blob([file.bytes], { type: file.mime }), file.name);
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  document.body.dataset.lastDownload = name;
}

// Evaluates saved networks on the loaded dataset, without training, and lists them as runs.
async function loadNetworks(files, errorId) {
  hideError(errorId);
  if (!state.dataset) return showError(errorId, "Load the dataset the network was trained on first.");
  for (const [name, buffer] of files) {
    const id = state.nextId++;
    const bytes = new Uint8Array(buffer.slice(0));
    request({ type: "evaluateNetwork", request: id, dataset: state.dataset.id, file: { name, bytes } }, [bytes.buffer]);
    const result = await awaitReply(id);
    if (result.type === "evaluationFailed") {
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
async function importRecords(files, errorId) {
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

// Every setting of the run that matters for its model, on one line (the engine's wording).
function settingsText(flags) {
  try {
    return state.engine.settingsText(flags);
  } catch {
    return "(settings of an older version)";
  }
}

function renderRuns() {
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

function toggleCompare(id, on) {
  state.compare = state.compare.filter((c) => c !== id);
  if (on) state.compare.push(id);
  // Two at a time: ticking a third unticks the oldest.
  while (state.compare.length > 2) state.compare.shift();
  renderRuns();
}

function drawCompare() {
  const runs = state.compare.map(findRun).filter(Boolean);
  const figure = $("compare-figure");
  if (runs.length !== 2) {
    figure.hidden = true;
    return;
  }
  figure.hidden = false;
  const canvas = $("compare-canvas");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(canvas.clientWidth * ratio);
  canvas.height = Math.round(canvas.clientHeight * ratio);
  const [a, b] = runs;
  try {
    state.engine.drawCompare(canvas, [
      { label: `run ${a.number}`, report: a.report },
      { label: `run ${b.number}`, report: b.report },
    ], { scale: ratio });
  } catch (error) {
    console.error(error);
  }
  const [ra, rb] = [a.report.best.r, b.report.best.r];
  const same = ra.length === rb.length;
  const better = same ? rb.filter((r, i) => r > ra[i]).length : 0;
  const text = `A = run ${a.number} (mean r ${a.report.best.mean_r.toFixed(3)}), B = run ${b.number} (mean r ${b.report.best.mean_r.toFixed(3)}). ` +
    (same ? `B predicts ${better} of ${ra.length} neurons better than A.` : "They predict different neurons, so only the curves compare.");
  $("compare-caption").textContent = `Left: evaluation (solid) and training (dashed) loss of both runs. Right: each neuron's r in A against B. ${text}`;
  canvas.setAttribute("aria-label", `Comparison of two runs. ${text}`);
}

async function clearRuns() {
  state.runs = [];
  state.compare = [];
  state.shownRunId = null;
  await state.store.clear();
  $("downloads").hidden = true;
  hideError("runs-error");
  renderRuns();
  state.inside.runChanged();
}

function showError(id, message) {
  $(id).textContent = message;
  $(id).hidden = false;
}

function hideError(id) {
  $(id).hidden = true;
  $(id).textContent = "";
}

main().catch((error) => {
  $("engine-status").textContent = `The engine failed to start: ${error}`;
});
