"""Page benchmarks for BENCHMARKS.md, in headless Chromium (WebGPU on SwiftShader here):
time from opening the page to ready, ms per training step of the seed's default network
(batch 50) on WebGPU and on the CPU backend, and the longest main-thread stall while training
(the largest gap between animation frames). Usage: python3 page_bench.py [DIST_DIR]"""
import pathlib, subprocess, sys, time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from conftest import ROOT, chromium, free_port  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

dist = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "dist")
port = free_port()
server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "static_server.py"), dist, str(port)])
time.sleep(0.5)
driver = chromium()

# Two probes: the largest gap between animation frames (needs the GPU process, which
# SwiftShader keeps busy here), and the largest lateness of a 20 ms timer (the main thread's
# own event loop: what a click waits for).
PROBE = """window.__maxGap = 0; window.__maxLag = 0; let last = performance.now();
function tick(t) { window.__maxGap = Math.max(window.__maxGap, t - last); last = t; requestAnimationFrame(tick); }
requestAnimationFrame(tick);
let expected = performance.now() + 20;
setInterval(() => { const now = performance.now(); window.__maxLag = Math.max(window.__maxLag, now - expected); expected = now + 20; }, 20);"""


def run(backend, steps):
    driver.get(f"http://127.0.0.1:{port}/index.html?backend={backend}&max_steps={steps}&eval_every=100000")
    WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    ready = driver.execute_script("return performance.getEntriesByName('v1p:ready').pop().startTime")
    driver.execute_script(PROBE)
    time.sleep(0.5)
    driver.find_element(By.ID, "train-button").click()
    WebDriverWait(driver, 900).until(lambda d: d.execute_script("return document.body.dataset.state") in ("finished", "error"))
    assert driver.execute_script("return document.body.dataset.state") == "finished"
    elapsed = driver.execute_script("return performance.getEntriesByName('v1p:run-finished').pop().detail.elapsedMs")
    return ready, elapsed, driver.execute_script("return [window.__maxGap, window.__maxLag]")


for backend, (short, long) in {"cpu": (10, 40), "wgpu": (3, 13)}.items():
    r1, t1, g1 = run(backend, short)
    r2, t2, g2 = run(backend, long)
    print(f"{backend}: page ready {r1:.0f} / {r2:.0f} ms after navigation; {short} steps {t1:.0f} ms, "
          f"{long} steps {t2:.0f} ms → {(t2 - t1) / (long - short):.1f} ms per step (steady state); "
          f"largest gap between animation frames {max(g1[0], g2[0]):.0f} ms; "
          f"largest main-thread event-loop delay {max(g1[1], g2[1]):.0f} ms")
driver.quit()
server.terminate()
