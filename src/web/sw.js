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
  "worker.js", "offline.js", "page.js", "form.js", "data.js", "plots.js", "runs.js",
  "v1-predictor.js", "data/index.json",
];
// The engine: the page downloads the gzip copy and inflates it itself (engine.js). The plain
// wasm, five times larger, is what a browser without DecompressionStream fetches instead (and
// what a build without the copy has): it is cached when it is fetched, not installed ahead.
const ENGINE_GZ = "v1-predictor_bg.wasm.gz";
const ENGINE_GZ_SHA256 = "__ENGINE_GZ_SHA256__";
const ENGINE = "v1-predictor_bg.wasm";
// Where a first visit's page leaves the engine it downloaded (engine.js).
const DOWNLOAD = `${PREFIX}download`;

// Straight from the server, never from the browser's HTTP cache: a new cache holds new files.
const fresh = (path) => new Request(path, { cache: "reload" });

async function fill(cache) {
  await cache.addAll(FILES.map(fresh));
  const gzip = (await fromPage()) || (await fetch(fresh(ENGINE_GZ)));
  if (gzip.ok) await cache.put(ENGINE_GZ, gzip);
  else await cache.add(fresh(ENGINE));
  const names = await (await cache.match("data/index.json")).json();
  for (const name of names) {
    // The gzip copies the page reads (data.js), or the plain files of a build without them.
    // Ground truth is optional, as in data.js.
    const truth = `data/${name.replace(/\.mat$/, "")}-truth.json`;
    for (const [path, optional] of [[`data/${name}`, false], [truth, true]]) {
      const gzip = await fetch(fresh(`${path}.gz`));
      if (gzip.ok) {
        await cache.put(`${path}.gz`, gzip);
        continue;
      }
      const plain = await fetch(fresh(path));
      if (plain.ok) await cache.put(path, plain);
      else if (!optional) throw new Error(`${path}: HTTP ${plain.status}`);
    }
  }
}

// The engine the page downloaded moments ago, if it is this build's (its hash, written by the
// build, says so): a first visit then downloads it once.
async function fromPage() {
  const kept = await (await caches.open(DOWNLOAD)).match(ENGINE_GZ);
  await caches.delete(DOWNLOAD);
  if (!kept) return null;
  const bytes = await kept.arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return hex === ENGINE_GZ_SHA256 ? new Response(bytes, { headers: kept.headers }) : null;
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
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok && new URL(request.url).pathname.endsWith(`/${ENGINE}`)) {
    event.waitUntil(cache.put(request, response.clone()));
  }
  return response;
}
