// The page's service worker: after a first visit the page loads, and trains, with no network.
//
// Every build writes its own version below (a Trunk.toml post-build hook hashes the staged
// files), so a new build is a new sw.js: the browser installs it beside the old one, it fills a
// cache of its own, and it takes over when the page asks (offline.js: "Reload to update") or
// when no tab uses the old one; the old caches are deleted then. Until that moment every file
// of an open page, the workers it starts later included, comes from one build's cache.
const VERSION = "__BUILD_VERSION__";
const PREFIX = "v1-predictor-";
const CACHE = `${PREFIX}${VERSION}`;

// What the page needs to start: keep in step with index.html's copy-file lines
// (tests/e2e/test_offline.py checks it). The bundled data is read from data/index.json.
const FILES = [
  "./", "index.html", "main.css", "app.js", "engine.js", "compute.js", "inside.js",
  "worker.js", "halves.js", "partner.js", "offline.js", "page.js", "form.js", "data.js", "plots.js", "runs.js",
  "v1-predictor.js", "data/index.json",
  // The brotli decoder (brotli.js), for a page that finds the engine missing here.
  "brotli.js", "brotli_dec_wasm.js", "brotli_dec_wasm_bg.wasm.gz",
];
// The engine, inflated: a first visit's page downloads a compressed copy and inflates it
// (engine.js); the worker keeps the result, and later visits compile it from here.
const ENGINE = "v1-predictor_bg.wasm";
const ENGINE_SHA256 = "__ENGINE_SHA256__";
const WASM_TYPE = { "Content-Type": "application/wasm" };
// Where a first visit's page leaves the engine it downloaded (engine.js).
const DOWNLOAD = `${PREFIX}download`;

// From the server, never unchecked from the browser's HTTP cache (a new cache holds new
// files), but revalidated: what the page has just downloaded comes back as a 304.
const fresh = (path) => new Request(path, { cache: "no-cache" });

async function fill(cache) {
  await cache.addAll(FILES.map(fresh));
  const engine = (await fromPage()) || (await inflatedGzip().catch(() => null)) || (await fetch(fresh(ENGINE)));
  if (!engine.ok) throw new Error(`${ENGINE}: HTTP ${engine.status}`);
  await cache.put(ENGINE, engine);
  const names = await (await cache.match("data/index.json")).json();
  for (const name of names) {
    // The compressed copy the page reads (engine.js: brotli, else gzip), or the plain file of
    // a build without copies. Ground truth is optional, as in data.js.
    const truth = `data/${name.replace(/\.mat$/, "")}-truth.json`;
    for (const [path, optional] of [[`data/${name}`, false], [truth, true]]) {
      const found = await firstFound([`${path}.br`, `${path}.gz`, path]);
      if (found) await cache.put(found.path, found.response);
      else if (!optional) throw new Error(`${path}: not on the server`);
    }
  }
}

async function firstFound(paths) {
  for (const path of paths) {
    const response = await fetch(fresh(path));
    if (response.ok) return { path, response };
  }
  return null;
}

// The engine the page inflated moments ago, if it is this build's (its hash, written by the
// build, says so): a first visit then downloads it once.
async function fromPage() {
  const kept = await (await caches.open(DOWNLOAD)).match(ENGINE);
  await caches.delete(DOWNLOAD);
  if (!kept) return null;
  const bytes = await kept.arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return hex === ENGINE_SHA256 ? new Response(bytes, { headers: WASM_TYPE }) : null;
}

// Else the gzip copy, inflated here (the brotli decoder lives in the page).
async function inflatedGzip() {
  if (!("DecompressionStream" in self)) return null;
  const gzip = await fetch(fresh(`${ENGINE}.gz`));
  if (!gzip.ok || !gzip.body) return null;
  const bytes = await new Response(gzip.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
  return new Response(bytes, { headers: WASM_TYPE });
}

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then(fill));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
    // A first visit's page is controlled at once, so it works offline without a reload.
    await self.clients.claim();
  })());
});

// offline.js asks a waiting worker to take over (the user pressed "Reload to update").
self.addEventListener("message", (event) => {
  if (event.data === "activate") self.skipWaiting();
});

// Cache first (fast warm loads, offline), the network otherwise. The query string is ignored:
// the page keeps its settings there.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(cacheFirst(event));
});

async function cacheFirst(event) {
  const request = event.request;
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request, { ignoreSearch: true, ignoreVary: true });
  return hit || fetch(request);
}
