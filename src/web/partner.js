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

const port = {
  send(run, step, values) {
    self.postMessage({ type: "half", run, step, values }, [values.buffer]);
  },
  receive: (run) => mailbox.receive(run),
  failed(run, message) {
    self.postMessage({ type: "halfFailed", run, message });
    mailbox.forget(run);
  },
  finished: (run) => mailbox.forget(run),
};

function handle(request) {
  if (broken) {
    if (request.type === "trainHalf") port.failed(request.run, `the second worker could not start: ${broken}`);
    return;
  }
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
