// The training worker: loads the same wasm engine as the page and trains in slices of steps,
// so that the page never freezes and pause / resume / stop arrive between slices.
import { WebDataset, WebTrainer, initBackend } from "./v1-predictor.js";
import { chooseBackend } from "./compute.js";
import { engineFromPage } from "./engine.js";

const engine = engineFromPage();

// One run at a time; `control` is how messages reach the loop between slices.
let control = null;
const TARGET_SLICE_MS = 150;

self.onmessage = async (event) => {
  const msg = event.data;
  if (engine.accept(msg)) return;
  if (msg.type === "train") {
    if (control) control.stopped = true;
    const ctl = (control = { paused: false, stopped: false, wake: null });
    // An engine that failed to start is reported like a failed run, not left to hang.
    const report = (error) => post({ type: "error", message: String(error && error.message || error) });
    engine.ready.then(() => train(msg, ctl)).catch(report);
  } else if (control) {
    if (msg.type === "pause") control.paused = true;
    if (msg.type === "resume") control.paused = false;
    if (msg.type === "stop") control.stopped = true;
    if (control.wake) control.wake();
  }
};

function post(message, transfer = []) {
  self.postMessage(message, transfer);
}

async function train(msg, ctl) {
  const dataset = new WebDataset(msg.files);
  const backend = await chooseBackend(msg.backend, initBackend);
  post({ type: "backend", ...backend });
  const trainer = await WebTrainer.create(dataset, msg.config, backend.kind);
  post({ type: "started", report: trainer.report() });

  const started = performance.now();
  let pausedMs = 0;
  let slice = 1;
  let lastReportAt = -Infinity;
  for (;;) {
    while (ctl.paused && !ctl.stopped) {
      const pausedAt = performance.now();
      post({ type: "paused" });
      await new Promise((wake) => (ctl.wake = wake));
      ctl.wake = null;
      pausedMs += performance.now() - pausedAt;
      if (!ctl.paused) post({ type: "resumed" });
    }
    if (ctl.stopped) break;
    const t0 = performance.now();
    const progress = await trainer.advance(slice);
    const took = performance.now() - t0;
    // Aim for slices of ~150 ms: responsive controls, few round trips.
    if (!progress.evaluation) slice = Math.max(1, Math.min(200, Math.round(slice * TARGET_SLICE_MS / Math.max(took, 1))));
    // The full report (history, per-neuron r) at most 4 times a second: small networks on a
    // fast device evaluate far more often than a page can redraw.
    const now = performance.now();
    const sendReport = progress.evaluation && now - lastReportAt > 250;
    if (sendReport) lastReportAt = now;
    post({
      type: "progress",
      progress,
      report: sendReport ? trainer.report() : null,
      elapsedMs: now - started - pausedMs,
    });
    if (progress.finished) break;
    // Let pause / stop messages in.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  const elapsedMs = performance.now() - started - pausedMs;
  // The best network's files are made here, where the network lives (on the GPU, read back
  // asynchronously); the page keeps them for download.
  let networkFiles = [];
  let exportError = null;
  try {
    networkFiles = await trainer.exportNetwork(msg.startedUnix);
  } catch (error) {
    exportError = String(error && error.message || error);
  }
  post({ type: "finished", report: trainer.report(), stopped: ctl.stopped, elapsedMs, networkFiles, exportError },
    networkFiles.map((f) => f.bytes.buffer));
  trainer.free();
  dataset.free();
  if (control === ctl) control = null;
}
