"""Where the page's CPU training step spends its time: `perf record` of a headless Chromium
training on the CPU backend, with V8 naming each compiled wasm function (`--perf-basic-prof`
writes /tmp/perf-PID.map).

The shipped engine has no symbol names (`strip = true`), so profile a build that keeps them.
Keep its `wasm-release` profile and only turn `strip` off: the `release` profile (16 codegen
units) compiles some hot loops differently: one took 3.5× as long in a stand-alone copy built
that way (BENCHMARKS.md). From a copy of the tree (any scratch directory):

    sed -i '/^\[profile.wasm-release\]/,/^strip/s/^strip = true/strip = false/' Cargo.toml
    trunk build --dist /tmp/dist-names

then, as root (perf samples every process):

    python3 tests/bench/page_profile.py /tmp/dist-names /tmp/page.perf
    perf report -i /tmp/page.perf --comm DedicatedWorker --children --sort sym -g none

Usage: page_profile.py DIST_DIR PERF_DATA [--steps 1000] [--seconds 25] [--workers 1]"""
import argparse, os, pathlib, subprocess, sys, tempfile, time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
import conftest  # noqa: E402
from page_load import serve  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dist")
    parser.add_argument("perf_data")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=25, help="how long perf samples")
    parser.add_argument("--workers", type=int, default=1, help="the page's CPU workers (1 or 2)")
    args = parser.parse_args()
    conftest.FLAGS = [*conftest.FLAGS, "--js-flags=--perf-basic-prof"]
    server = serve(str(pathlib.Path(args.dist).resolve()))
    perf_data = str(pathlib.Path(args.perf_data).resolve())
    # V8 writes its isolate-*-v8.log files into the browser's working directory.
    os.chdir(tempfile.mkdtemp(prefix="page-profile-"))
    driver = conftest.chromium()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        driver.get(f"{base}/index.html?backend=cpu&max_steps={args.steps}&eval_every=100000"
                   f"&cpu-workers={args.workers}")
        WebDriverWait(driver, 300).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
        driver.find_element(By.ID, "train-button").click()
        time.sleep(8)  # V8 compiles the hot functions with its optimising tier first
        subprocess.run(["perf", "record", "-F", "997", "-a", "-g", "-o", perf_data, "--",
                        "sleep", str(args.seconds)], check=True)
        WebDriverWait(driver, 900).until(
            lambda d: d.execute_script("return document.body.dataset.state") in ("finished", "error"))
        print("run:", driver.execute_script("return document.body.dataset.state"))
    finally:
        driver.quit()
        server.shutdown()


if __name__ == "__main__":
    main()
