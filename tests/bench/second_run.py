"""Start-up cost of a run in the page: two runs of the same small network in a row, on WebGPU
and on the CPU backend (and the seed's network on the CPU). For each run: the time from the Train click to the first step shown,
and the steady-state time per step of that run; the ratio first-step / steady-step says what a
run pays to start. Issue 9's goal: a later run's first step within 2× the first run's steady
state. The clock starts at the click's own event time (not at WebDriver's call, ~0.1 s earlier).
Only the DOM is read (the progress line), so any version of the page can be measured.
Usage: python3 tests/bench/second_run.py [DIST_DIR]"""
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from conftest import ROOT, chromium, free_port  # noqa: E402
# The page's progress line, time-stamped from the click's own event: the test's watcher.
from test_engine import WATCH  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

dist = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "dist")
port = free_port()
server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "static_server.py"), dist, str(port)])
time.sleep(0.5)
driver = chromium()
driver.set_script_timeout(30)


def one_run():
    driver.execute_script(WATCH)
    driver.find_element(By.ID, "train-button").click()
    WebDriverWait(driver, 900).until(
        lambda d: d.execute_script("return document.body.dataset.state") in ("finished", "error"))
    assert driver.execute_script("return document.body.dataset.state") == "finished"
    steps = driver.execute_script("return window.__steps")
    first_ms, first_step = steps[0]
    # Steady state: from the first quarter of the run to its last report.
    start = next(s for s in steps if s[1] >= steps[-1][1] / 4)
    steady = (steps[-1][0] - start[0]) / max(steps[-1][1] - start[1], 1)
    return first_ms, first_step, steady


RUNS = 3
SMALL = "conv1=4&conv2=8&hidden1=32&batch_size=20&optimizer=adam&learning_rate=0.001"
# The small network on both backends, then the seed's own network (batch 50) on the CPU, where
# a step is long enough for the start of a run to be compared with it.
for label, backend, steps, settings in (("wgpu", "wgpu", 40, SMALL), ("cpu", "cpu", 200, SMALL),
                                        ("cpu, seed network", "cpu", 30, "optimizer=adam")):
    driver.get(f"http://127.0.0.1:{port}/index.html?backend={backend}&max_steps={steps}"
               f"&eval_every=100000&{settings}")
    WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "dataset-summary").text)
    # The first run, then RUNS more: each later run's first step against the first's steady step.
    later = []
    for run in range(1, RUNS + 2):
        first_ms, first_step, steady = one_run()
        if run == 1:
            steady_first = steady
        else:
            later.append(first_ms / steady_first)
        print(f"{label} run {run}: click → step {first_step} shown {first_ms:.0f} ms; "
              f"steady {steady:.1f} ms/step; first / steady = {first_ms / steady:.1f}×", flush=True)
    print(f"{label}: later runs' first step / first run's steady step: "
          f"median {statistics.median(later):.2f}× ({', '.join(f'{r:.2f}' for r in later)})", flush=True)
driver.quit()
server.terminate()
