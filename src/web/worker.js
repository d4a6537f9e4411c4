// The engine worker: one for the page's lifetime. It owns the datasets, the device, the runs
// and the inside views (src/web/engine.rs); this file only passes the page's requests to it
// and its events back. The protocol (Request, Event) is typed in Rust and nowhere else.
import { Engine } from "./v1-predictor.js";
import { webgpuAdapter } from "./compute.js";
import { engineFromPage } from "./engine.js";
import { cpuWorkers, partnerPort } from "./halves.js";

const loader = engineFromPage();
// Requests that arrive while the engine starts wait for it, in order.
const waiting = [];
let engine = null;
// The second worker of CPU runs (halves.js). It sees the page's datasets from the first
// request on (a restarted engine's data comes before the engine itself), and is given to the
// engine where the machine has two cores or more.
const halves = partnerPort();
let cpuWorkersAsked = null;

self.onmessage = (event) => {
  const message = event.data;
  if (message?.type === "engine") {
    halves.compiled(message.module);
    cpuWorkersAsked = message.cpuWorkers;
  }
  if (loader.accept(message)) return;
  halves.observe(message);
  if (engine) engine.handle(message);
  else waiting.push(message);
};

async function start() {
  // A GPU that never answers must not hold up the CPU path: give it 10 s. Asked for while the
  // engine is instantiated.
  const silent = { ok: false, reason: "the GPU did not answer" };
  const late = new Promise((resolve) => setTimeout(() => resolve(silent), 10_000));
  const [, adapter] = await Promise.all([loader.ready, Promise.race([webgpuAdapter(), late])]);
  const partner = cpuWorkers(cpuWorkersAsked) >= 2 ? halves : null;
  if (!partner) halves.unused();
  engine = new Engine((message, transfer) => self.postMessage(message, transfer), adapter, partner);
  for (const request of waiting.splice(0)) engine.handle(request);
}

start().catch((error) => {
  const message = `the engine could not be started: ${(error && error.message) || error}`;
  self.postMessage({ type: "protocolError", error: { kind: "device", message } });
});
