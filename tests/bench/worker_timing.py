"""What the browser itself costs the page's CPU runs, for BENCHMARKS.md, measured in headless
Chromium without the engine (plain JavaScript in workers, as the page's engine and partner
workers use them):

1. yielding to the event loop from a worker, 5 ms of work between yields, chained as the
   engine's loop chains them: `setTimeout(0)` against a MessageChannel message;
2. a gradient's round trip between a worker and the worker it started (the engine worker and
   its partner, src/web/halves.js): each side posts a fresh copy of 125 000 floats (the seed
   network's gradient, 500 KB), transferred, and waits for the other's; with no work between
   swaps, and with exactly equal work (10 ms a side), so that what is left is the message's
   own cost and the machine's noise, not a difference between the halves' work; each with a
   new array a swap (as the page does) and with the arrays sent back and forth (the one
   received carries the next half back).

The pages are served cross-origin isolated, only so that `performance.now()` is not coarsened
to 0.1 ms; the messages are the same either way.

Usage: python3 tests/bench/worker_timing.py [--rounds 2]"""
import argparse, functools, http.server, pathlib, sys, tempfile, threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from conftest import chromium  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

FILES = {
    "index.html": """<!doctype html><html><body><pre id="out"></pre><script type="module">
const worker = new Worker(location.search.includes("swap") ? "swap.js" : "yield.js", { type: "module" });
worker.onmessage = (e) => { document.getElementById("out").textContent = e.data; document.body.dataset.done = "1"; };
worker.postMessage(new URLSearchParams(location.search).get("work"));
</script></body></html>""",
    "common.js": """export const FLOATS = 125000;
export function busy(ms) { const t = performance.now(); let x = 0; while (performance.now() - t < ms) x += Math.sqrt(x + 1); return x; }
export function quantiles(values) {
  const v = [...values].sort((a, b) => a - b), q = (p) => v[Math.floor(p * (v.length - 1))].toFixed(3);
  const mean = (v.reduce((s, x) => s + x, 0) / v.length).toFixed(3);
  return `p5 ${q(0.05)}, median ${q(0.5)}, p95 ${q(0.95)}, mean ${mean} ms`;
}
// One side of the swaps, posting to `target`: copies its half out of its memory (the engine's
// wasm memory, in the page) into a new array, or with `reuse` into the array it last received,
// posts it (transferred) and copies the other side's half in.
export function swapper(target, reuse) {
  const memory = new Float32Array(2 * FLOATS);
  let spare = null, deliver = null;
  return {
    deliver: (values) => deliver(values),
    async swap() {
      const mine = spare || new Float32Array(FLOATS);
      mine.set(memory.subarray(0, FLOATS));
      const theirs = new Promise((r) => (deliver = r));
      target.postMessage(mine, [mine.buffer]);
      const received = await theirs;
      memory.set(received, FLOATS);
      if (reuse) spare = received;
    },
  };
}""",
    "yield.js": """import { busy, quantiles } from "./common.js";
const channel = new MessageChannel();
let resume = null;
channel.port1.onmessage = () => resume();
const ways = {
  "setTimeout(0)": () => new Promise((r) => setTimeout(r, 0)),
  "MessageChannel": () => new Promise((r) => { resume = r; channel.port2.postMessage(null); }),
};
self.onmessage = async () => {
  let out = "";
  for (const [name, yieldOnce] of Object.entries(ways)) {
    const waits = [];
    for (let i = 0; i < 60; i++) {
      busy(5);
      const t = performance.now();
      await yieldOnce();
      waits.push(performance.now() - t);
    }
    out += `yield by ${name}: first five ${waits.slice(0, 5).map((w) => w.toFixed(2)).join(", ")} ms; `
      + `the 50 after the tenth: ${quantiles(waits.slice(10))}\\n`;
  }
  self.postMessage(out);
};""",
    "swap.js": """import { busy, quantiles, swapper, FLOATS } from "./common.js";
const STEPS = 600, WARM = 100;
self.onmessage = async (e) => {
  const [work, reuse] = e.data.split(",").map(Number);
  const partner = new Worker("partner.js", { type: "module" });
  const side = swapper(partner, reuse);
  partner.onmessage = (m) => side.deliver(m.data);
  partner.postMessage(e.data);
  const waits = [];
  for (let step = 0; step < STEPS; step++) {
    busy(work);
    const sent = performance.now();
    await side.swap();
    if (step >= WARM) waits.push(performance.now() - sent);
  }
  partner.terminate();
  self.postMessage(`swap of ${FLOATS} floats, ${work} ms of work a side, ${reuse ? "arrays sent back and forth" : "a new array a swap"}: wait ${quantiles(waits)}\\n`);
};""",
    "partner.js": """import { busy, swapper } from "./common.js";
let side = null;
self.onmessage = async (e) => {
  if (side) return side.deliver(e.data);
  const [work, reuse] = e.data.split(",").map(Number);
  side = swapper(self, reuse);
  for (;;) {
    busy(work);
    await side.swap();
  }
};""",
}


class Isolated(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for name, text in FILES.items():
            (pathlib.Path(directory) / name).write_text(text)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Isolated, directory=directory))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        driver = chromium()
        try:
            for round_ in range(1, args.rounds + 1):
                for query in ("yield", "swap&work=0,0", "swap&work=0,1", "swap&work=10,0", "swap&work=10,1"):
                    driver.get(f"http://127.0.0.1:{server.server_address[1]}/index.html?{query}")
                    WebDriverWait(driver, 300).until(lambda d: d.execute_script("return document.body.dataset.done") == "1")
                    assert driver.execute_script("return crossOriginIsolated"), "the page is not isolated: coarse timers"
                    text = driver.execute_script("return document.getElementById('out').textContent")
                    print("\n".join(f"round {round_}: {line}" for line in text.strip().splitlines()), flush=True)
        finally:
            driver.quit()
            server.shutdown()


if __name__ == "__main__":
    main()
