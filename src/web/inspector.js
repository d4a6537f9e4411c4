// The inspector: looks inside a trained network, in the engine worker (worker.js), beside
// the training runs — one wasm instance, one WebGPU device and its compiled kernels for both.
// It opens the shown run's network on the loaded data, sends the overview (filters,
// predictions, receptive fields, STAs), then inverts every neuron — preferred and most
// suppressive image — a few neurons at a time; a neuron the user clicks jumps the queue.
// Its messages travel inside the engine's as `{ type: "inside", message }` (see worker.js).
import { WebDataset, WebExplainer, initBackend } from "./v1-predictor.js";
import { chooseBackend } from "./compute.js";

// Neurons inverted together (× 2 directions × the starts: one batch).
const CHUNK = 8;
// Gradient steps between looks at the message queue.
const SLICE = 5;

let session = null;

// `msg`: the page's request; answers go out through `emit(message)`.
let emit = () => {};
export function inspect(msg, send) {
  emit = send;
  if (msg.type === "open") {
    if (session) session.closed = true;
    // This request's own session: a newer one may replace `session` while this one awaits.
    const s = { token: msg.token, closed: false, focus: [], done: new Set(), explainer: null, dataset: null };
    if (msg.focus !== undefined) s.focus.push(msg.focus);
    session = s;
    open(msg, s).catch((error) => (s.closed ? release(s) : fail(s, error)));
  } else if (msg.type === "focus" && session && session.token === msg.token) {
    if (!session.done.has(msg.neuron) && !session.focus.includes(msg.neuron)) session.focus.push(msg.neuron);
  } else if (msg.type === "close" && session) {
    session.closed = true;
  }
}

function post(s, message) {
  emit({ token: s.token, ...message });
}

function fail(s, error) {
  post(s, { type: "error", message: String((error && error.message) || error) });
  release(s);
}

function release(s) {
  s.closed = true;
  if (s.explainer) s.explainer.free();
  if (s.dataset) s.dataset.free();
  s.explainer = s.dataset = null;
}

// Lets focus / close messages in between slices.
const breathe = () => new Promise((resolve) => setTimeout(resolve, 0));

async function open(msg, s) {
  const started = performance.now();
  s.dataset = new WebDataset(msg.files);
  const backend = await chooseBackend(msg.backend, initBackend);
  if (s.closed) return release(s);
  s.explainer = await WebExplainer.create(s.dataset, msg.network.name, msg.network.bytes, backend.kind, msg.truth);
  if (s.closed) return release(s);
  post(s, { type: "opened", backend });
  const overview = await s.explainer.overview();
  if (s.closed) return release(s);
  post(s, { type: "overview", overview, ms: performance.now() - started });

  const n = overview.n_neurons;
  const queue = Array.from({ length: n }, (_, i) => i);
  while (!s.closed) {
    // A clicked neuron first, alone, so its views come within a couple of seconds.
    const focus = s.focus.shift();
    let neurons;
    if (focus !== undefined) {
      neurons = s.done.has(focus) ? [] : [focus];
    } else {
      neurons = [];
      while (queue.length && neurons.length < CHUNK) {
        const next = queue.shift();
        if (!s.done.has(next)) neurons.push(next);
      }
      if (!neurons.length && !queue.length) break;
    }
    if (neurons.length) await invert(s, neurons, n);
  }
  if (!s.closed) post(s, { type: "complete", ms: performance.now() - started });
  release(s);
}

async function invert(s, neurons, total) {
  const started = performance.now();
  const targets = neurons.flatMap((neuron) => [
    { neuron, direction: "excite" },
    { neuron, direction: "suppress" },
  ]);
  const job = s.explainer.invert(targets, undefined);
  try {
    for (;;) {
      const progress = await s.explainer.advance(job, SLICE);
      if (s.closed) return;
      post(s, { type: "progress", neurons, stepsDone: progress.stepsDone, done: s.done.size, total });
      if (progress.finished) break;
      await breathe();
      // A click while a chunk runs: serve it now, then carry on with the chunk.
      if (s.focus.length && neurons.length > 1) {
        const focus = s.focus.shift();
        if (!s.done.has(focus) && !neurons.includes(focus)) await invert(s, [focus], total);
        if (s.closed) return;
      }
    }
    const results = await s.explainer.finish(job);
    for (const neuron of neurons) s.done.add(neuron);
    post(s, { type: "inverted", results, ms: performance.now() - started, done: s.done.size, total });
  } finally {
    job.free();
  }
}
