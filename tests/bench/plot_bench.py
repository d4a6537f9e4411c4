"""Time to draw the two result plots in the page, for two builds in one browser process
(a baseline build against the current one), in headless Chromium.

Usage: python3 tests/bench/plot_bench.py BASELINE_DIST [DIST]
Each build trains a short run (so that the browser keeps a real report), then draws the
progress and Pearson plots 10 times from that report, timed with performance.now()."""
import pathlib, statistics, subprocess, sys, time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from conftest import ROOT, chromium, free_port  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

builds = {"baseline": sys.argv[1], "current": sys.argv[2] if len(sys.argv) > 2 else str(ROOT / "dist")}
driver = chromium()
driver.set_script_timeout(300)

TIME_DRAWS = """
const done = arguments[arguments.length - 1];
(async () => {
// Where the page keeps its runs: IndexedDB now, localStorage in builds before issue 9's.
const stored = JSON.parse(localStorage.getItem('v1-predictor.runs') || 'null');
const report = stored ? stored.slice(-1)[0].report : await new Promise((resolve) => {
  const open = indexedDB.open('v1-predictor');
  open.onsuccess = () => {
    const all = open.result.transaction('runs').objectStore('runs').getAll();
    all.onsuccess = () => resolve(all.result.sort((a, b) => a.startedUnix - b.startedUnix).pop().report);
  };
});
// The page's own instance of the engine (older builds also put it on window.wasmBindings).
const e = window.wasmBindings || await import('./v1-predictor.js'), ratio = window.devicePixelRatio || 1;
const progress = [], pearson = [];
for (let i = 0; i < 10; i++) {
  let t = performance.now();
  e.drawProgress(document.getElementById('progress-canvas'), report, { scale: ratio });
  progress.push(performance.now() - t);
  t = performance.now();
  e.drawPearson(document.getElementById('pearson-canvas'), report, { scale: ratio });
  pearson.push(performance.now() - t);
}
done([progress, pearson]);
})();"""

results = {}
servers = []
for name, dist in builds.items():
    port = free_port()
    servers.append(subprocess.Popen([sys.executable, str(ROOT / "tests" / "static_server.py"), dist, str(port)]))
    time.sleep(0.5)
    driver.get(f"http://127.0.0.1:{port}/index.html?backend=cpu&max_steps=20&eval_every=5&conv1=4&conv2=8&hidden1=32")
    WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    driver.find_element(By.ID, "train-button").click()
    WebDriverWait(driver, 600).until(lambda d: d.execute_script("return document.body.dataset.state") in ("finished", "error"))
    time.sleep(1)
    results[name] = driver.execute_async_script(TIME_DRAWS)
for name, (progress, pearson) in results.items():
    print(f"{name}: progress plot median {statistics.median(progress):.1f} ms, "
          f"Pearson plot median {statistics.median(pearson):.1f} ms (10 draws each)")
base = [statistics.median(x) for x in results["baseline"]]
cur = [statistics.median(x) for x in results["current"]]
print(f"speed-up: progress ×{base[0] / cur[0]:.1f}, Pearson ×{base[1] / cur[1]:.1f}")
driver.quit()
for s in servers:
    s.terminate()
