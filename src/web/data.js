// Section 1, the data: the bundled datasets, the user's files (parsed once, by the engine
// worker), the summary and thumbnails.
import { $, awaitReply, el, hideError, initialParams, request, showError, state } from "./page.js";
import { drawDiagram, syncUrl } from "./form.js";
import { importRecords, loadNetworks } from "./runs.js";
import { fetchInflated, warmDecoder } from "./engine.js";

// A bundled file: its compressed copy (post_build.sh writes them) inflated as it arrives, as
// the engine is; the plain file where there is none or the browser can't inflate it.
async function fetchBundledFile(path) {
  const inflated = await fetchInflated(new URL(path, location.href).href).catch(() => null);
  return inflated ? new Response(inflated) : fetch(path);
}

// A bundled dataset's files as they arrive: `{ response, truth }` (the .mat's response, the
// ground truth's text or null).
function fetchBundled(name) {
  const response = fetchBundledFile(`data/${name}`);
  const truth = fetchBundledFile(`data/${name.replace(/\.mat$/, "")}-truth.json`)
    .then((r) => (r.ok ? r.text() : null))
    .catch(() => null); // a bundled file without ground truth is fine
  return { response, truth };
}

// Starts downloading the list and the dataset the page opens with before the engine has
// loaded: they come while it compiles instead of after it, one request after another.
export function prefetchBundled() {
  // The brotli decoder, which the data's copies need, loads meanwhile (engine.js).
  warmDecoder();
  const names = fetch("data/index.json").then((r) => r.json()).catch(() => []);
  const first = names.then((list) => {
    const wanted = initialParams.get("dataset");
    const name = wanted && list.includes(wanted) ? wanted : list[0];
    return name ? { name, files: fetchBundled(name) } : null;
  });
  return { names, first };
}

export async function listBundledDatasets(prefetched = prefetchBundled()) {
  const select = $("dataset-select");
  const names = await prefetched.names;
  select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  if (names.length === 0) select.replaceChildren(el("option", { value: "" }, "none bundled"));
  const first = await prefetched.first;
  if (first) select.value = first.name;
  if (select.value) await loadBundled(select.value, first && first.name === select.value ? first.files : undefined);
}

export async function loadBundled(name, fetched = fetchBundled(name)) {
  let response;
  try {
    response = await fetched.response;
  } catch (error) {
    return showError("data-error", `data/${name}: ${error.message || error}`);
  }
  if (!response.ok) return showError("data-error", `data/${name}: HTTP ${response.status}`);
  const files = [[name, await response.arrayBuffer()]];
  let about = "";
  let cellTypes = [];
  let truthText = await fetched.truth;
  if (truthText) {
    try {
      const json = JSON.parse(truthText);
      about = json.description;
      cellTypes = json.neurons.map((n) => n.cell_type);
    } catch {
      // Unreadable ground truth: the data still loads, without it.
      truthText = null;
    }
  }
  if (await useDataset(files, name, cellTypes, truthText)) $("dataset-about").textContent = about;
}

// The engine parses the files once (a copy goes to it; this thread keeps the bytes to hand a
// restarted engine); on error the previous dataset stays.
export async function useDataset(files, name, cellTypes = [], truthText = null) {
  const id = state.nextId++;
  const copies = files.map(([n, buffer]) => ({ name: n, bytes: new Uint8Array(buffer.slice(0)) }));
  request({ type: "loadDataset", dataset: id, files: copies }, copies.map((f) => f.bytes.buffer));
  const reply = await awaitReply(id);
  if (reply.type !== "datasetLoaded") {
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
  drawDiagram();
  state.inside.runChanged();
  return true;
}

// One image's pixels, from the engine's copy of the dataset.
export function datasetImage(i) {
  const { height, width } = state.summary;
  return state.dataset.images.subarray(i * height * width, (i + 1) * height * width);
}

export function showSummary(s) {
  const rows = [
    ["Files", s.sources.join(", ")],
    ["Images", `${s.n_images} of ${s.height} × ${s.width} pixels (mean ${s.pixel_mean.toFixed(1)}, ` +
      `sd ${s.pixel_sd.toFixed(1)})`],
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
      image.data[4 * p] = image.data[4 * p + 1] = image.data[4 * p + 2] = v;
      image.data[4 * p + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    strip.appendChild(canvas);
  }
}

// `.mat` files become the dataset; saved networks (`.bpk`) among them are then evaluated on
// it; exported records (`.json`) are listed as runs to compare.
export async function readFiles(fileList, errorId = "data-error") {
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
