"""How the page loads its engine: the gzip copy (what a first visit downloads), compiled once on
the page and handed to the workers, and the plain wasm when the copy is missing."""
import functools
import http.server
import shutil
import threading

import pytest
from selenium.webdriver.common.by import By

from conftest import built_page, start_server
from test_page import SMALL, open_page, wait_state


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built page and records every path asked for, by the page and its workers."""
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".js": "text/javascript"}
    requests = []

    def do_GET(self):
        self.requests.append(self.path.split("?")[0].rsplit("/", 1)[-1])
        super().do_GET()

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def recorded_page():
    requests = []
    handler = type("Handler", (RecordingHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(built_page())))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def wasm_requests(requests):
    return [path for path in requests if ".wasm" in path]


def test_the_page_downloads_the_gzip_engine_once_and_the_workers_reuse_it(driver, recorded_page):
    url, requests = recorded_page
    open_page(driver, url, max_steps="3", backend="cpu", **SMALL)
    assert wasm_requests(requests) == ["v1-predictor_bg.wasm.gz"]
    assert "Ready." in driver.find_element(By.ID, "engine-status").text
    # A run in the training worker works on the module the page handed over.
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
    assert wasm_requests(requests) == ["v1-predictor_bg.wasm.gz"]


@pytest.fixture
def page_without_gzip(tmp_path):
    copy = tmp_path / "dist"
    shutil.copytree(built_page(), copy, ignore=shutil.ignore_patterns("*.gz"))
    server, url = start_server(copy)
    yield url
    server.terminate()


def test_without_the_gzip_copy_the_page_loads_the_plain_wasm(driver, page_without_gzip):
    open_page(driver, page_without_gzip, max_steps="3", backend="cpu", **SMALL)
    assert "v1-predictor_bg.wasm" in driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name.split('/').pop())")
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
