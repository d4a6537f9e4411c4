"""Page benchmark of section 5 ("Inside the network") for BENCHMARKS.md, in headless Chromium
on this machine: trains the seed's default network (16@7×7, 32@7×7, 300 hidden) on the demo
data for a few hundred Adam steps, opens the inside views on the CPU backend (or BACKEND),
and times: the overview (filters, RF estimates, predictions), one neuron's preferred and
suppressive images after a click on its bar, and all 40 neurons' images; and the main
thread's largest stall meanwhile (the lateness of a 20 ms timer).
Usage: python3 inside_bench.py [DIST_DIR] [BACKEND] [STEPS]"""
import pathlib, subprocess, sys, time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from conftest import ROOT, chromium, free_port  # noqa: E402
from test_page import inside_state  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

dist = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "dist")
backend = sys.argv[2] if len(sys.argv) > 2 else "cpu"
steps = sys.argv[3] if len(sys.argv) > 3 else "300"
port = free_port()
server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "static_server.py"), dist, str(port)])
time.sleep(0.5)
driver = chromium()
body = lambda key: driver.execute_script(f"return document.body.dataset.{key}")
try:
    driver.get(f"http://127.0.0.1:{port}/index.html?backend={backend}&preset=fast&max_steps={steps}")
    WebDriverWait(driver, 120).until(lambda d: body("ready") == "true")
    driver.find_element(By.ID, "train-button").click()
    WebDriverWait(driver, 1800).until(lambda d: body("state") in ("finished", "error"))
    assert body("state") == "finished", driver.find_element(By.ID, "train-error").text
    driver.execute_script("""window.__maxLag = 0; let expected = performance.now() + 20;
        setInterval(() => { const now = performance.now(); window.__maxLag = Math.max(window.__maxLag, now - expected); expected = now + 20; }, 20);""")
    opened = time.time()
    driver.find_element(By.ID, "inside-button").click()
    WebDriverWait(driver, 600).until(lambda d: inside_state(d) in ("overview", "complete", "error"))
    assert inside_state(driver) != "error", driver.find_element(By.ID, "inside-error").text
    overview_s = time.time() - opened
    # A click on the last bar: a neuron at the end of the queue.
    canvas = driver.find_element(By.ID, "pearson-canvas")
    ActionChains(driver).move_to_element_with_offset(canvas, int(canvas.size["width"] * 0.43), 0).click().perform()
    shown = lambda: driver.find_element(By.ID, "neuron-select").get_attribute("value")
    WebDriverWait(driver, 10).until(lambda d: shown() not in (None, "0"))
    neuron = int(shown())
    WebDriverWait(driver, 600).until(lambda d: "rate" in d.find_element(By.ID, "preferred-text").text)
    click_ms = driver.execute_script("return performance.getEntriesByName('v1p:neuron-view').pop().detail.ms")
    WebDriverWait(driver, 1800).until(lambda d: inside_state(d) in ("complete", "error"))
    total_s = time.time() - opened
    inside_ms = driver.execute_script("return performance.getEntriesByName('v1p:inside-complete').pop().detail.ms")
    print(f"backend {backend}, network trained {steps} steps; {driver.find_element(By.ID, 'inside-status').text}")
    print(f"overview {overview_s:.1f} s after the click on 'Look inside'; neuron {neuron + 1}'s images "
          f"{click_ms / 1000:.1f} s after its bar was clicked; all 40 neurons {total_s:.1f} s "
          f"(page: {inside_ms / 1000:.1f} s); main thread's largest stall "
          f"{driver.execute_script('return window.__maxLag'):.0f} ms")
    print(driver.find_element(By.ID, "preferred-text").text)
finally:
    driver.quit()
    server.terminate()
