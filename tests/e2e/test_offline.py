"""Offline use: after a first visit the service worker (src/web/sw.js) has cached the build, and
the page loads and gets ready with the network off (Chromium's offline emulation); a new build
replaces the cache. Also the page's own address, for a room of students."""
import functools
import itertools
import json
import os
import pathlib
import re
import shutil
import subprocess
import urllib.request

import websocket  # websocket-client, which selenium depends on

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import built_page, start_server
from test_page import open_page

ROOT = pathlib.Path(__file__).resolve().parents[2]


def stage(copy):
    """Does what a build does to sw.js: the source, then the post-build hook's stamp."""
    shutil.copy(ROOT / "src" / "web" / "sw.js", copy / "sw.js")
    subprocess.run(["sh", ROOT / "src" / "web" / "post_build.sh", "stamp"], check=True,
                   env={**os.environ, "TRUNK_STAGING_DIR": str(copy)})
    version = re.search(r'const VERSION = "([^"]+)"', (copy / "sw.js").read_text()).group(1)
    assert re.fullmatch(r"[0-9a-f]{16}", version), version
    return version


@pytest.fixture
def site(tmp_path):
    """A copy of the built page (the engine linked, not copied) on its own server, with a file
    no cache holds; yields (copy, url)."""
    copy = tmp_path / "site"
    shutil.copytree(built_page(), copy, ignore=shutil.ignore_patterns("*.wasm", "*.wasm.*"))
    for engine in built_page().glob("*.wasm*"):
        (copy / engine.name).symlink_to(engine.resolve())
    (copy / "probe.txt").write_text("the network is on")
    server, url = start_server(copy)
    yield copy, url
    server.terminate()


def wait_offline_ready(driver):
    WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.ID, "offline-status").text == "Works offline now."
        and d.execute_script("return !!navigator.serviceWorker.controller"))


def cached(driver):
    """{cache name: [paths]} of the page's caches."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        (async () => {
          const out = {};
          for (const name of await caches.keys()) {
            const keys = await (await caches.open(name)).keys();
            out[name] = keys.map((r) => new URL(r.url).pathname);
          }
          return out;
        })().then(done, (e) => done(String(e)));""")


def fetch_text(driver, path):
    """The text the page gets for `path`, or 'failed: …' when the fetch fails."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then((r) => r.text()).then(done, (e) => done('failed: ' + e));""", path)


class Offline:
    """Chromium's offline emulation, for the page and for its service worker (a target of its
    own, which the page's emulation does not cover), while the `with` block lasts."""

    def __init__(self, driver):
        self.driver, self.sockets = driver, []

    def __enter__(self):
        self.emulate(self.driver.execute_cdp_cmd, True)
        address = self.driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
        with urllib.request.urlopen(f"http://{address}/json/list") as listing:
            workers = [t for t in json.load(listing) if t["type"] == "service_worker"]
        assert workers, "no service worker to take offline"
        for target in workers:
            socket = websocket.create_connection(target["webSocketDebuggerUrl"], suppress_origin=True)
            self.sockets.append(socket)
            self.emulate(functools.partial(self.send, socket), True)
        return self

    def __exit__(self, *exc):
        for socket in self.sockets:
            socket.close()  # a closed DevTools session ends its emulation
        self.emulate(self.driver.execute_cdp_cmd, False)

    @staticmethod
    def send(socket, method, params, ids=itertools.count(1)):
        socket.send(json.dumps({"id": (n := next(ids)), "method": method, "params": params}))
        while (reply := json.loads(socket.recv())).get("id") != n:
            pass
        assert "error" not in reply, reply

    @staticmethod
    def emulate(send, offline):
        send("Network.enable", {})
        send("Network.emulateNetworkConditions", {
            "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})


def test_after_a_first_visit_the_page_loads_and_gets_ready_offline(driver, site):
    copy, url = site
    stage(copy)
    open_page(driver, url)
    assert driver.find_element(By.ID, "page-address").text == f"This page: {url}/ (this computer only)"
    wait_offline_ready(driver)
    [(name, paths)] = cached(driver).items()
    assert name == "v1-predictor-" + re.search(r'VERSION = "(\w+)"', (copy / "sw.js").read_text()).group(1)
    # Everything index.html copies into the build, the engine and the bundled data.
    copied = re.findall(r'rel="copy-file" href="src/web/(?:[^"]+/)?([^/"]+)"', (ROOT / "index.html").read_text())
    assert copied and "sw.js" in copied and "brotli_dec_wasm.js" in copied
    # The decoder's wasm is kept as its gzip copy, as the page reads it.
    wanted = {f"/{f}" for f in copied if f not in ("sw.js", "brotli_dec_wasm_bg.wasm")} | {
        "/", "/index.html", "/main.css", "/v1-predictor.js", "/v1-predictor_bg.wasm", "/brotli_dec_wasm_bg.wasm.gz",
        "/data/index.json",
        "/data/simulated-v1.mat.br", "/data/simulated-v1-truth.json.br"}
    assert wanted <= set(paths), wanted - set(paths)
    assert fetch_text(driver, "probe.txt") == "the network is on"

    with Offline(driver):
        # Really offline: a file no cache holds can't be had, by the page or its worker.
        assert fetch_text(driver, "probe.txt").startswith("failed:")
        driver.get(f"{url}/index.html?preset=fast")
        WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "dataset-summary").text)
        assert "270 of 33 × 33" in driver.find_element(By.ID, "dataset-summary").text
        assert driver.find_element(By.ID, "train-button").is_enabled()
        assert fetch_text(driver, "probe.txt").startswith("failed:")
        assert driver.execute_script("return navigator.onLine") is False


def test_the_offline_line_moves_nothing_when_it_comes_late(driver, site):
    """The service worker may finish after the page is ready (a busy machine, a slow link). Its
    line must not push the page down then: a click aimed at Train would land above it and
    start nothing. The worker's install is held for 4 s here."""
    copy, url = site
    stage(copy)
    with open(copy / "sw.js", "a") as worker:
        worker.write('\nself.addEventListener("install", (event) => '
                     'event.waitUntil(new Promise((done) => setTimeout(done, 4000))));\n')
    open_page(driver, url)
    train_top = "return document.getElementById('train-button').getBoundingClientRect().top"
    at_ready = driver.execute_script(train_top)
    assert driver.find_element(By.ID, "offline-status").text != "Works offline now."
    wait_offline_ready(driver)
    assert driver.execute_script(train_top) == at_ready


def test_a_new_build_replaces_the_cache(driver, site):
    copy, url = site
    first = stage(copy)
    open_page(driver, url)
    wait_offline_ready(driver)
    assert list(cached(driver)) == [f"v1-predictor-{first}"]

    # A new build: one file changed, so a new version.
    with open(copy / "app.js", "a") as app:
        app.write("\n// build 2\n")
    second = stage(copy)
    assert second != first
    # The next visit still shows the first build (every file from one build), and offers the new one.
    open_page(driver, url)
    assert "// build 2" not in fetch_text(driver, "app.js")
    button = WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#offline-status button"))
    assert "new version" in driver.find_element(By.ID, "offline-status").text
    button.click()
    WebDriverWait(driver, 120).until(lambda d: d.execute_script(
        "return document.body.dataset.ready === 'true' && !document.querySelector('#offline-status button')"))
    wait_offline_ready(driver)
    assert list(cached(driver)) == [f"v1-predictor-{second}"]
    with Offline(driver):
        assert fetch_text(driver, "app.js").endswith("// build 2\n")


def test_the_address_line_tells_students_the_lan_address(driver, base_url):
    open_page(driver, base_url)
    line = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('./offline.js').then((m) => done([
          m.addressLine({ origin: 'http://192.168.1.20:8080', hostname: '192.168.1.20', pathname: '/index.html' }),
          m.addressLine({ origin: 'http://localhost:8080', hostname: 'localhost', pathname: '/' }),
        ]), (e) => done(String(e)));""")
    assert line == ["Students can open: http://192.168.1.20:8080/", "This page: http://localhost:8080/ (this computer only)"]
