// Loading the engine (the wasm module). The page fetches and compiles it once and hands the
// compiled module to the engine worker in a message: the worker neither downloads nor
// compiles it again.
//
// `trunk serve` sends every file uncompressed, so the build writes a gzip copy beside the wasm
// (Trunk.toml's post-build hook) and the page inflates it itself while it arrives
// (DecompressionStream, in every browser that has WebGPU), compiling as it goes. The plain
// file is the fallback: an older browser, or a build without the copy.
import init, * as bindings from "./v1-predictor.js";

const WASM_URL = new URL("./v1-predictor_bg.wasm", import.meta.url);

// `onProgress(loadedBytes, totalBytes)` as the download proceeds (total 0 when unknown).
export async function compileEngine(onProgress = () => {}) {
  if ("DecompressionStream" in globalThis) {
    const response = await fetch(`${WASM_URL.href}.gz`).catch(() => null);
    if (response && response.ok && response.body) {
      const inflated = counted(keptForOffline(response), onProgress).pipeThrough(new DecompressionStream("gzip"));
      return WebAssembly.compileStreaming(new Response(inflated, { headers: { "Content-Type": "application/wasm" } }));
    }
  }
  const response = await fetch(WASM_URL);
  if (!response.ok) throw new Error(`could not load the engine: ${response.status} ${response.statusText}`);
  return WebAssembly.compile(await new Response(counted(response, onProgress)).arrayBuffer());
}

// A first visit's download of the engine (gzip) is kept for the service worker (sw.js), which
// would otherwise download it again to work offline; it takes it when it is its build's.
let kept = Promise.resolve();
export const engineKept = () => kept;

function keptForOffline(response) {
  if (!globalThis.caches || globalThis.navigator?.serviceWorker?.controller) return response;
  const [body, copy] = response.body.tee();
  kept = caches.open("v1-predictor-download")
    .then((cache) => cache.put(`${WASM_URL.href}.gz`, new Response(copy, { headers: response.headers })))
    .catch(() => {});
  return new Response(body, { headers: response.headers });
}

// Instantiates a compiled module on this thread; returns the engine's exports.
export async function startEngine(module) {
  await init({ module_or_path: module });
  return bindings;
}

// A worker's engine: it arrives as `{ type: "engine", module }`, the first message the page
// sends. Returns the promise of the exports and the handler that fulfils it.
export function engineFromPage() {
  let resolve;
  const ready = new Promise((r) => (resolve = r));
  return {
    ready,
    accept(message) {
      if (message.type !== "engine") return false;
      resolve(startEngine(message.module));
      return true;
    },
  };
}

function counted(response, onProgress) {
  const total = Number(response.headers.get("Content-Length")) || 0;
  let loaded = 0;
  return response.body.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        loaded += chunk.byteLength;
        onProgress(loaded, total);
        controller.enqueue(chunk);
      },
    }),
  );
}
