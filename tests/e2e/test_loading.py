"""How the page loads its engine: the brotli copy (what a first visit downloads), compiled once
on the page and handed to the workers; the gzip copy, then the plain wasm, when copies are missing."""
import functools
import http.server
import pathlib
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


def engine_requests(requests):
    return [path for path in requests if path.startswith("v1-predictor_bg.wasm")]


def test_the_page_downloads_the_brotli_engine_once_and_the_workers_reuse_it(driver, recorded_page):
    url, requests = recorded_page
    open_page(driver, url, max_steps="3", backend="cpu", **SMALL)
    assert engine_requests(requests) == ["v1-predictor_bg.wasm.br"]
    assert "brotli_dec_wasm_bg.wasm.gz" in requests
    assert "Ready." in driver.find_element(By.ID, "engine-status").text
    # A run in the training worker works on the module the page handed over.
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
    assert engine_requests(requests) == ["v1-predictor_bg.wasm.br"]


@pytest.fixture
def page_without(tmp_path, request):
    """The built page without the files the test's parameter names."""
    copy = tmp_path / "dist"
    shutil.copytree(built_page(), copy, ignore=shutil.ignore_patterns(*request.param))
    server, url = start_server(copy)
    yield url
    server.terminate()


class PageForMissingFiles(RecordingHandler):
    """A server as trunk's default (single-page-app) mode: a missing file is answered with the
    page itself, status 200."""

    def send_head(self):
        if not pathlib.Path(self.translate_path(self.path)).exists():
            self.path = "/index.html"
        return super().send_head()


@pytest.fixture
def spa_server_without_the_decoder(tmp_path):
    """The built page without the brotli decoder's wasm, on a server that answers every missing
    file (the decoder, the data's gzip copies) with the page."""
    copy = tmp_path / "dist"
    shutil.copytree(built_page(), copy, ignore=shutil.ignore_patterns("brotli_dec_wasm_bg.wasm*"))
    handler = functools.partial(PageForMissingFiles, directory=str(copy))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_page_answered_for_a_missing_copy_counts_as_missing(driver, spa_server_without_the_decoder):
    # No decoder: the engine comes from its gzip copy; the data has no gzip copy (the server
    # sends the page instead), so it must come from the plain file, not from inflating HTML.
    open_page(driver, spa_server_without_the_decoder, max_steps="3", backend="cpu", **SMALL)
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name.split('/').pop())")
    assert "v1-predictor_bg.wasm.gz" in loaded and "simulated-v1.mat" in loaded, loaded
    assert "270 of 33 × 33" in driver.find_element(By.ID, "dataset-summary").text
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"


@pytest.fixture
def page_with_a_truncated_copy(tmp_path):
    """The built page whose engine's brotli copy stops half-way, as a broken download would."""
    copy = tmp_path / "dist"
    shutil.copytree(built_page(), copy, ignore=shutil.ignore_patterns("*.wasm.br"))
    packed = next(built_page().glob("v1-predictor_bg.wasm.br")).read_bytes()
    (copy / "v1-predictor_bg.wasm.br").write_bytes(packed[: len(packed) // 2])
    server, url = start_server(copy)
    yield url
    server.terminate()


def test_a_truncated_brotli_copy_falls_back_to_the_plain_wasm(driver, page_with_a_truncated_copy):
    open_page(driver, page_with_a_truncated_copy, max_steps="3", backend="cpu", **SMALL)
    loaded = driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name.split('/').pop())")
    assert "v1-predictor_bg.wasm.br" in loaded and "v1-predictor_bg.wasm" in loaded, loaded
    assert "Ready." in driver.find_element(By.ID, "engine-status").text
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"


@pytest.mark.parametrize("page_without, expected", [
    (["*.br"], "v1-predictor_bg.wasm.gz"),
    (["*.br", "*.gz"], "v1-predictor_bg.wasm"),
], indirect=["page_without"], ids=["no-brotli", "no-copies"])
def test_without_a_copy_the_page_loads_the_next(driver, page_without, expected):
    open_page(driver, page_without, max_steps="3", backend="cpu", **SMALL)
    loaded = driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name.split('/').pop())")
    assert expected in loaded, loaded
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
