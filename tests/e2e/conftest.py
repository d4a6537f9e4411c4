"""Serves the built page (DIST_DIR, default dist/) on 127.0.0.1 and starts headless Chromium
with WebGPU on SwiftShader through the system chromedriver (no driver or browser download)."""
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = pathlib.Path(__file__).resolve().parents[2]
FLAGS = ["--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--enable-unsafe-webgpu",
         "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", "--window-size=1280,2400"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def built_page():
    dist = pathlib.Path(os.environ.get("DIST_DIR", ROOT / "dist"))
    assert (dist / "index.html").exists(), f"{dist} has no built page: run `trunk build` first"
    return dist


def start_server(directory):
    """Serves `directory` on a free port; returns the process and its URL once it answers."""
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "static_server.py"), str(directory), str(port)])
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def base_url():
    server, url = start_server(built_page())
    yield url
    server.terminate()


def chromium(downloads=None):
    """Headless Chromium with WebGPU on SwiftShader, a fresh profile, and downloads (when a
    folder is given) saved there without asking."""
    options = webdriver.ChromeOptions()
    if downloads is not None:
        options.add_experimental_option("prefs", {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "profile.default_content_setting_values.automatic_downloads": 1,
        })
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp()}")
    # The console (workers' too), for what a failing test reports (test_page.page_report).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture
def driver(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = chromium(downloads)
    browser.set_script_timeout(60)
    browser.download_dir = downloads
    yield browser
    browser.quit()
