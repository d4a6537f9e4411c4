// Finished runs, kept in the browser's IndexedDB with their best network's files, so that a
// reloaded page still lists, shows, downloads and looks inside them. One record per run (its
// id made where it ran): two tabs add runs side by side and never overwrite each other's; a
// BroadcastChannel tells the other tabs to list them again.

const DB_NAME = "v1-predictor";
const STORE = "runs";
const CHANNEL = "v1-predictor.runs";
// Where earlier versions of the page kept runs (without weights): moved over once.
const OLD_KEY = "v1-predictor.runs";

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDatabase() {
  const request = indexedDB.open(DB_NAME, 1);
  request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id" });
  return promised(request);
}

// `isRun(record)`: whether a stored record is whole (the engine checks reports);
// `onOtherTab()`: called when another tab changed the runs.
export async function openRunStore({ isRun, onOtherTab }) {
  let db = null;
  let unavailable = null;
  try {
    db = await openDatabase();
  } catch (error) {
    unavailable = `This browser does not keep runs (${error.message || error}): they last until the page closes.`;
  }
  const channel = "BroadcastChannel" in globalThis ? new BroadcastChannel(CHANNEL) : null;
  if (channel) channel.onmessage = () => onOtherTab();
  const transaction = (mode) => db.transaction(STORE, mode).objectStore(STORE);
  const changed = () => channel && channel.postMessage("changed");

  const store = {
    unavailable,
    // Every whole run, oldest first.
    async list() {
      if (!db) return [];
      const records = await promised(transaction("readonly").getAll());
      return records.filter(isRun).sort((a, b) => a.startedUnix - b.startedUnix || a.number - b.number);
    },
    // Throws a message in words when the browser's storage is full.
    async put(run) {
      if (!db) throw new Error(unavailable);
      try {
        await promised(transaction("readwrite").put(run));
      } catch (error) {
        if (error && error.name === "QuotaExceededError") {
          throw new Error("The browser's storage for this page is full: this run is listed until the page " +
            "closes, but not kept. Clear some runs (or download them) to make room.");
        }
        throw error;
      }
      changed();
    },
    async clear() {
      if (!db) return;
      await promised(transaction("readwrite").clear());
      changed();
    },
  };
  await moveOldRuns(store, isRun);
  return store;
}

async function moveOldRuns(store, isRun) {
  let old;
  try {
    old = JSON.parse(localStorage.getItem(OLD_KEY) || "[]");
  } catch {
    old = [];
  }
  if (!Array.isArray(old) || old.length === 0) return;
  for (const run of old.filter((r) => r && typeof r.id === "string" && isRun(r))) {
    await store.put(run).catch(() => {});
  }
  localStorage.removeItem(OLD_KEY);
}

// An element with attributes and children (text or elements): the page builds its tables
// this way, so that no data is ever parsed as HTML.
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === false || value == null) continue;
    if (key === "dataset") Object.assign(element.dataset, value);
    else if (key in element && key !== "list") element[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  element.append(...children.flat().filter((c) => c != null));
  return element;
}
