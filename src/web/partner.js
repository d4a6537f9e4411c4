// The partner worker: the second half of each batch of the engine's CPU runs, on another
// core (src/web/halves.rs). Started by the engine worker (halves.js), which hands it the
// compiled engine, the datasets and the runs; it answers only with the halves' messages.
import { BatchPartner } from "./v1-predictor.js";
import { engineFromPage } from "./engine.js";
import { Mailbox } from "./halves.js";

const loader = engineFromPage();
const mailbox = new Mailbox();
const waiting = [];
let partner = null;
let broken = null; // why the engine could not start here

const running = new Set(); // the engine's runs this worker has a half of

const port = {
  send(run, step, values) {
    self.postMessage({ type: "half", run, step, values }, [values.buffer]);
  },
  receive: (run) => mailbox.receive(run),
  failed(run, message) {
    self.postMessage({ type: "halfFailed", run, message });
    mailbox.forget(run);
    running.delete(run);
  },
  finished(run) {
    mailbox.forget(run);
    running.delete(run);
  },
};

// A panic in the engine here ends in an exception, in a promise or not, that no run would
// hear of: the engine's side of each run would wait for its next half. Tell them.
function stopped(event) {
  const reason = event.reason?.message || event.reason || event.message || "an error";
  for (const run of [...running]) port.failed(run, `the second worker stopped: ${reason}`);
}
self.addEventListener("error", stopped);
self.addEventListener("unhandledrejection", stopped);

function handle(request) {
  if (broken) {
    if (request.type === "trainHalf") port.failed(request.run, `the second worker could not start: ${broken}`);
    return;
  }
  if (request.type === "trainHalf") running.add(request.run);
  try {
    partner.handle(request);
  } catch (error) {
    if (request.type === "trainHalf") port.failed(request.run, `the second worker failed: ${error}`);
  }
}

self.onmessage = (event) => {
  if (loader.accept(event.data) || mailbox.deliver(event.data)) return;
  if (partner || broken) handle(event.data);
  else waiting.push(event.data);
};

loader.ready
  .then(() => (partner = new BatchPartner(port)))
  .catch((error) => (broken = (error && error.message) || String(error)))
  .then(() => waiting.splice(0).forEach(handle));
