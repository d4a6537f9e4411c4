// Loading the engine (the wasm module). The page fetches and compiles it once and hands the
// compiled module to the engine worker in a message: the worker neither downloads nor
// compiles it again.
//
// `trunk serve` sends every file as it is, so the build writes compressed copies beside the
// 17 MB wasm (src/web/post_build.sh) and the page inflates them itself as they arrive,
// compiling as it goes: the brotli copy (2.3 MB; brotli.js), else the gzip copy (3.6 MB;
// DecompressionStream), else the plain file (an older browser, or a build without copies).
// Once the service worker holds the build, a visit compiles the inflated wasm from its cache:
// decoding brotli again would cost every visit about half a second.
import init, * as bindings from "./v1-predictor.js";

const WASM_URL = new URL("./v1-predictor_bg.wasm", import.meta.url);
const WASM_TYPE = { "Content-Type": "application/wasm" };

// `onProgress(loadedBytes, totalBytes)` as the download proceeds (total 0 when unknown).
export async function compileEngine(onProgress = () => {}) {
  if (globalThis.navigator?.serviceWorker?.controller) {
    const cached = await cachedEngine();
    const module = cached?.ok && (await WebAssembly.compileStreaming(cached).catch(() => null));
    if (module) return module;
  }
  const inflated = await fetchInflated(WASM_URL.href, onProgress);
  if (inflated) {
    // A copy that is corrupt or cut short fails here, not in a half-built engine.
    const module = await WebAssembly.compileStreaming(keptForOffline(inflated)).catch((error) => {
      console.warn("the engine's compressed copy failed; loading the plain file:", error);
      kept = Promise.resolve();
      return null;
    });
    if (module) return module;
  }
  const response = await fetch(WASM_URL);
  if (!response.ok) throw new Error(`could not load the engine: ${response.status} ${response.statusText}`);
  return WebAssembly.compile(await new Response(counted(response, onProgress)).arrayBuffer());
}

// The inflated engine in the service worker's cache (sw.js), read from Cache Storage itself
// rather than through the worker's thread (warm visits ready in 0.84 s against 0.92 s,
// BENCHMARKS.md). The oldest build's cache is the one of the worker that serves this page: a
// newer build's fills beside it, and the older is deleted when the newer takes over.
async function cachedEngine() {
  for (const name of await caches.keys()) {
    if (!name.startsWith("v1-predictor-") || name === "v1-predictor-download") continue;
    const hit = await (await caches.open(name)).match(WASM_URL.href);
    if (hit) return hit;
  }
  return null; // then the compressed copies, not 17 MB of plain wasm
}

// A file's compressed copy, inflated as it arrives: the brotli copy (`url.br`), else the gzip
// copy (`url.gz`); null where neither can be had (no copies, no DecompressionStream).
export async function fetchInflated(url, onProgress = () => {}) {
  if (!("DecompressionStream" in globalThis)) return null;
  for (const copy of [brotliCopy, gzipCopy]) {
    const inflate = await copy(url).catch((error) => console.warn(`${url}: copy unavailable:`, error));
    if (inflate) return inflate(onProgress);
  }
  return null;
}

// The brotli decoder (brotli.js), loaded once: start it early where brotli copies are coming.
let decoder = null;
export function warmDecoder() {
  decoder ??= import("./brotli.js").then(async (brotli) => (await brotli.loadBrotliDecoder(), brotli));
  decoder.catch(() => {}); // a missing decoder is handled where a copy is read
  return decoder;
}

// Each copy: null where it is missing; else a function that, given the progress callback,
// gives the inflated stream.
async function brotliCopy(url) {
  const download = fetch(`${url}.br`);
  const brotli = await warmDecoder().catch((error) => {
    download.then((response) => response.body?.cancel()).catch(() => {});
    throw error;
  });
  const response = await download;
  if (!found(response)) return null;
  return (onProgress) => counted(response, onProgress).pipeThrough(brotli.brotliInflater());
}

async function gzipCopy(url) {
  const response = await fetch(`${url}.gz`);
  if (!found(response)) return null;
  return (onProgress) => counted(response, onProgress).pipeThrough(new DecompressionStream("gzip"));
}

// A server that answers a missing file with a page (an SPA fallback) has not found it either.
function found(response) {
  const html = (response.headers.get("Content-Type") || "").startsWith("text/html");
  if (!response.ok || !response.body || html) {
    response.body?.cancel();
    return false;
  }
  return true;
}

// A first visit's inflated engine is kept for the service worker (sw.js), which would
// otherwise download it again to work offline; it takes it when it is its build's.
let kept = Promise.resolve();
export const engineKept = () => kept;

function keptForOffline(stream) {
  // Only where offline.js registers the service worker that takes it.
  const offline = globalThis.isSecureContext && globalThis.caches && "serviceWorker" in globalThis.navigator;
  if (!offline) return new Response(stream, { headers: WASM_TYPE });
  const [body, copy] = stream.tee();
  kept = caches.open("v1-predictor-download")
    .then((cache) => cache.put(WASM_URL.href, new Response(copy, { headers: WASM_TYPE })))
    .catch(() => {});
  return new Response(body, { headers: WASM_TYPE });
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
