"""How fast the page loads, for BENCHMARKS.md: bytes of the engine (raw, gzip, its brotli copy),
bytes a first visit transfers (the page's own until it is ready, from its performance entries;
and everything the server sent until the service worker has cached the build), and the time
from navigation to the page being ready (data summary shown, device named, Train enabled) on
an emulated 20 Mbit/s link with 20 ms latency (Chromium's network emulation over CDP), with a
cold cache and then warm (a second visit).

Each build is served the way `trunk serve` serves it (checked with curl, see BENCHMARKS.md):
files as they are, no Content-Encoding, Last-Modified and 304 on If-Modified-Since, no
Cache-Control. Builds are measured in turns, in one run, so the machine's drift hits each alike.

Usage: python3 tests/bench/page_load.py [--rounds 2] NAME=DIST_DIR [NAME=DIST_DIR …]
e.g.   python3 tests/bench/page_load.py before=/tmp/dist-before after=dist"""
import argparse, functools, gzip, http.server, pathlib, statistics, sys, threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "e2e"))
from conftest import chromium  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

LINK = {"offline": False, "latency": 20, "downloadThroughput": 20e6 / 8, "uploadThroughput": 20e6 / 8}
# What the page's own requests transferred (the navigation, then every resource). The workers
# fetch nothing on their own: the page hands them the compiled engine.
TRANSFERRED = """return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
  .reduce((sum, e) => sum + e.transferSize, 0)"""


class LikeTrunkServe(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".js": "text/javascript", ".mat": "application/octet-stream", ".gz": "application/gzip",
                      ".br": "application/octet-stream"}

    def copyfile(self, source, outputfile):
        # Every body byte the server sends, to the page, its workers and its service worker.
        with self.server.lock:
            self.server.sent += pathlib.Path(self.translate_path(self.path)).stat().st_size
        super().copyfile(source, outputfile)

    def log_message(self, *args):
        pass


def serve(directory):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(LikeTrunkServe, directory=directory))
    server.lock, server.sent = threading.Lock(), 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def engine_bytes(dist):
    """The engine's bytes: raw, gzip -9, and its brotli copy's (None in a build without one)."""
    wasm = next(pathlib.Path(dist).glob("v1-predictor_bg.wasm"))
    brotli = wasm.with_name(wasm.name + ".br")
    raw = wasm.read_bytes()
    return len(raw), len(gzip.compress(raw, 9)), brotli.stat().st_size if brotli.exists() else None


def visit(driver, url):
    driver.get(url)
    WebDriverWait(driver, 300).until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    ready = driver.execute_script("return performance.getEntriesByName('v1p:ready').pop().startTime")
    return ready, driver.execute_script(TRANSFERRED)


def measure(dist):
    server = serve(dist)
    driver = chromium()
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", LINK)
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        cold_ms, cold_bytes = visit(driver, url)
        # The first visit in full: until the service worker has cached the build.
        WebDriverWait(driver, 300).until(
            lambda d: d.find_element(By.ID, "offline-status").text == "Works offline now.")
        first_visit_sent = server.sent
        driver.get("about:blank")
        warm_ms, warm_bytes = visit(driver, url)
        return cold_ms, cold_bytes, warm_ms, warm_bytes, first_visit_sent
    finally:
        driver.quit()
        server.shutdown()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("builds", nargs="+", help="NAME=DIST_DIR")
    args = parser.parse_args()
    builds = dict(item.split("=", 1) for item in args.builds)
    results = {name: [] for name in builds}
    for round_ in range(args.rounds):
        for name, dist in builds.items():
            results[name].append(measure(dist))
            cold_ms, cold_bytes, warm_ms, warm_bytes, sent = results[name][-1]
            print(f"round {round_ + 1} {name}: cold {cold_ms:.0f} ms, {cold_bytes / 1e6:.2f} MB until ready, "
                  f"{sent / 1e6:.2f} MB sent in all; warm {warm_ms:.0f} ms, {warm_bytes / 1e6:.2f} MB", flush=True)
    print("\n| build | engine raw | engine gzip -9 | engine brotli copy | first visit: transferred until ready | "
          "first visit: sent in all | ready, cold (median) | ready, warm (median) | rounds (cold / warm ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, dist in builds.items():
        raw, packed, brotli = engine_bytes(dist)
        rows = results[name]
        cold = statistics.median(r[0] for r in rows)
        warm = statistics.median(r[2] for r in rows)
        transferred = statistics.median(r[1] for r in rows)
        sent = statistics.median(r[4] for r in rows)
        spread = ", ".join(f"{r[0]:.0f} / {r[2]:.0f}" for r in rows)
        brotli = f"{brotli / 1e6:.2f} MB" if brotli else "none"
        print(f"| {name} | {raw / 1e6:.1f} MB | {packed / 1e6:.2f} MB | {brotli} | {transferred / 1e6:.2f} MB | "
              f"{sent / 1e6:.2f} MB | "
              f"{cold / 1000:.2f} s | {warm / 1000:.2f} s | {spread} |")


if __name__ == "__main__":
    main()
