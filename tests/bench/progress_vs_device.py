"""Does the page show the steps the GPU has done, or the steps it has queued? For BENCHMARKS.md.

Each build trains the same small network on WebGPU (SwiftShader here) twice in one page (the
second run with the kernels compiled), and the script prints, from the click on: when each
progress line appeared with its step, when the run finished, and which step was shown halfway
between the first step and the end. A page that runs ahead of the GPU shows nearly every step
early and then waits for the last evaluation's read-back; a page that keeps pace shows about
half. Then a third, long run is stopped 3 s after its first step is shown: the script prints
how long the page took from the Stop click to saying the run stopped (that includes reading
the best network back). Builds are measured in turns, in one run.

Usage: python3 tests/bench/progress_vs_device.py [--steps 300] NAME=DIST_DIR [NAME=DIST_DIR …]"""
import argparse, pathlib, sys, time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from conftest import chromium, start_server  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from test_engine import WATCH, seconds_to_stop  # noqa: E402
from test_page import SMALL, open_page, wait_state  # noqa: E402

FINISHED = "return performance.getEntriesByName('v1p:run-finished').at(-1).startTime - window.__t0"


def measure(dist, steps):
    server, url = start_server(dist)
    driver = chromium()
    driver.set_script_timeout(60)
    try:
        open_page(driver, url, backend="wgpu", max_steps=str(steps), **{**SMALL, "eval_every": "100000"})
        for run in ("first run", "second run"):
            driver.execute_script(WATCH)
            started = time.time()
            driver.find_element(By.ID, "train-button").click()
            assert wait_state(driver, {"finished", "error"}, 900) == "finished"
            wall = time.time() - started
            shown = driver.execute_script("return window.__steps")
            finished = driver.execute_script(FINISHED)
            halfway = (shown[0][0] + finished) / 2
            at_halfway = max(step for at, step in shown if at <= halfway)
            sample = shown[:: max(1, len(shown) // 12)] + [shown[-1]]
            print(f"  {run}: first step shown after {shown[0][0]:.0f} ms, finished after {finished:.0f} ms "
                  f"(wall {wall:.1f} s), {len(shown)} progress lines, step {at_halfway} of {steps} shown halfway")
            print("    (ms, step):", [(round(at), step) for at, step in sample])
        # Stop during a long run: the queued steps are what the page waits for.
        open_page(driver, url, backend="wgpu", max_steps=str(20 * steps), **{**SMALL, "eval_every": "100000"})
        took = seconds_to_stop(driver, after=3)
        print(f"  a long run stopped {took:.2f} s after the Stop click "
              f"(step {driver.execute_script('return window.__steps.at(-1)[1]')} shown last)")
    finally:
        driver.quit()
        server.terminate()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("builds", nargs="+", help="NAME=DIST_DIR")
    args = parser.parse_args()
    for build in args.builds:
        name, dist = build.split("=", 1)
        print(f"{name} ({dist}):")
        measure(pathlib.Path(dist), args.steps)


if __name__ == "__main__":
    main()
