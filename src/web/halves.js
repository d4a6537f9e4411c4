// A CPU run's batch in two workers (src/web/halves.rs says why and how): the messages between
// the engine worker and the partner worker. Each side posts its half of a step's gradient to
// the other and waits for the other's; a run's letters wait in its own mailbox, in order.

// The letters of each run, as they arrive: a half (Float32Array), `null` (the other side
// ended the run) or an Error (the other side failed).
export class Mailbox {
  #letters = new Map();
  #waiting = new Map();
  #forgotten = new Set();

  // A message from the other worker; false when it is not one of the halves' messages.
  deliver(message) {
    if (message?.type === "half") this.#put(message.run, message.values);
    else if (message?.type === "end") this.#put(message.run, null);
    else if (message?.type === "halfFailed") this.fail(message.run, message.message);
    else return false;
    return true;
  }

  // The run's next letter (a promise): rejects with the message when it is an Error.
  receive(run) {
    const letters = this.#letters.get(run);
    if (letters?.length) {
      const letter = letters.shift();
      return letter instanceof Error ? Promise.reject(letter.message) : Promise.resolve(letter);
    }
    return new Promise((resolve, reject) => this.#waiting.set(run, { resolve, reject }));
  }

  fail(run, message) {
    this.#put(run, new Error(message));
  }

  // Forgets a run: letters still coming for it are not kept.
  forget(run) {
    this.#letters.delete(run);
    this.#waiting.get(run)?.resolve(null);
    this.#waiting.delete(run);
    this.#forgotten.add(run);
  }

  #put(run, letter) {
    if (this.#forgotten.has(run)) return;
    const waiting = this.#waiting.get(run);
    if (!waiting) {
      if (!this.#letters.has(run)) this.#letters.set(run, []);
      this.#letters.get(run).push(letter);
      return;
    }
    this.#waiting.delete(run);
    if (letter instanceof Error) waiting.reject(letter.message);
    else waiting.resolve(letter);
  }
}

// How many workers a CPU run's batch may use: two where the machine has two cores or more and
// a worker may start a worker of its own. `asked`: the page address's `cpu-workers`, if any
// (1 keeps a core free); the numbers are the same.
export function cpuWorkers(asked) {
  if (typeof Worker !== "function") return 1;
  asked = Number(asked);
  if (asked >= 1) return Math.min(2, Math.floor(asked));
  return (globalThis.navigator?.hardwareConcurrency || 1) >= 2 ? 2 : 1;
}

// The engine worker's port to the partner (halves.rs, `HalfPort`). The partner worker starts
// with the first run that needs it and is given the datasets loaded so far. If it fails, the
// runs it was in are told (their engine goes on alone) and the next run starts a new one.
export function partnerPort() {
  let module = null; // the compiled engine, once the page has sent it
  let worker = null;
  const datasets = new Map(); // dataset id → the page's loadDataset request
  const running = new Set();
  const mailbox = new Mailbox();
  const post = (message, transfer = []) => worker?.postMessage(message, transfer);
  const failed = (message) => {
    worker?.terminate();
    worker = null;
    for (const run of running) mailbox.fail(run, message);
  };
  const started = () => {
    if (worker) return;
    if (!module) throw "the second worker has no engine to start";
    try {
      worker = new Worker("partner.js", { type: "module" });
    } catch (error) {
      worker = null;
      throw `the second worker could not start: ${error.message || error}`;
    }
    worker.onmessage = (event) => mailbox.deliver(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      failed(`the second worker stopped: ${event.message || "an error"}`);
    };
    worker.postMessage({ type: "engine", module });
    for (const request of datasets.values()) worker.postMessage(request);
  };
  let used = true;
  return {
    compiled(engine) {
      module = engine;
    },
    // Where the engine gets no partner: nothing is kept for one.
    unused() {
      used = false;
      datasets.clear();
    },
    // The page's requests about datasets, seen before the engine takes them.
    observe(request) {
      if (!used) return;
      if (request?.type === "loadDataset") datasets.set(request.dataset, request);
      else if (request?.type === "dropDataset") datasets.delete(request.dataset);
      else return;
      post(request);
    },
    start(run, dataset, config) {
      running.add(run);
      try {
        started();
        post({ type: "trainHalf", run, dataset, config });
      } catch (message) {
        mailbox.fail(run, String(message));
      }
    },
    send(run, step, values) {
      post({ type: "half", run, step, values }, [values.buffer]);
    },
    receive: (run) => mailbox.receive(run),
    end(run) {
      running.delete(run);
      post({ type: "end", run });
      mailbox.forget(run);
    },
  };
}
