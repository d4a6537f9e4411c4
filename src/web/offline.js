// Offline use and the page's own address (for a room of students).
//
// registerOffline() installs sw.js, which caches this build's files so the page loads and
// trains with no network after a first visit, and says so under the engine's status. Service
// workers (like WebGPU) exist only in a secure context: https, or http://localhost and
// http://127.0.0.1. A page opened over plain http at a LAN address (http://192.168.1.20:8080,
// as students open a teacher's `trunk serve --address 0.0.0.0`) has none, and this returns
// quietly: the page works as before, online.
import { engineKept } from "./engine.js";

export async function registerOffline() {
  showAddress();
  if (!window.isSecureContext || !("serviceWorker" in navigator)) return;
  const status = document.getElementById("offline-status");
  // The line takes its place now, before the page is ready: filled later, it would push the
  // page down under a click aimed at Train.
  status.textContent = "Making this page work offline…";
  let registration;
  try {
    await engineKept();
    registration = await navigator.serviceWorker.register(new URL("./sw.js", import.meta.url));
  } catch (error) {
    console.warn("offline use unavailable:", error);
    status.textContent = "This browser keeps no offline copy of this page.";
    return;
  }
  // A newer build's worker waits, its cache filled, until the user takes it: the page on show
  // keeps one build's files (its workers, started later, must match it).
  const offerUpdate = (worker) => {
    if (!navigator.serviceWorker.controller || status.querySelector("button")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Reload to update";
    button.addEventListener("click", () => {
      navigator.serviceWorker.addEventListener("controllerchange", () => location.reload());
      worker.postMessage("activate");
    });
    status.textContent = "A new version of the page is ready. ";
    status.append(button);
  };
  const watch = (worker) => {
    if (worker.state === "installed") return offerUpdate(worker);
    worker.addEventListener("statechange", () => worker.state === "installed" && offerUpdate(worker));
  };
  // Taken in another tab: this page's files are of the old build, the cache's of the new.
  const before = navigator.serviceWorker.controller;
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    if (before && !status.querySelector("button")) status.textContent = "A new version is in use: reload the page.";
  });
  if (registration.waiting) offerUpdate(registration.waiting);
  registration.addEventListener("updatefound", () => watch(registration.installing));
  await navigator.serviceWorker.ready;
  // An engine this page kept for an install that did not happen (a worker was already
  // active): the installed worker has its own copy.
  if (registration.active && !registration.installing) caches.delete("v1-predictor-download").catch(() => {});
  if (!status.querySelector("button")) status.textContent = "Works offline now.";
}

// "Students can open: http://192.168.1.20:8080/" — or, served on this computer only, its address
// and that fact (README: "A teacher serves a room").
export function addressLine(place = location) {
  const url = place.origin + place.pathname.replace(/index\.html$/, "");
  const host = place.hostname.replace(/^\[|\]$/g, "");
  const local = host === "localhost" || host.endsWith(".localhost") || host.startsWith("127.") || host === "::1";
  return local ? `This page: ${url} (this computer only)` : `Students can open: ${url}`;
}

function showAddress() {
  const line = document.getElementById("page-address");
  if (line) line.textContent = addressLine();
}
