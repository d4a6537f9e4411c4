"""End-to-end tests of the built page in real headless Chromium, driven over WebDriver
(chromedriver), served on 127.0.0.1. WebGPU runs on SwiftShader (a CPU Vulkan), so runs are
kept to a few steps of a small network.

Run by .ci/test after `trunk build`: python3 -m pytest tests/e2e (DIST_DIR = the built page)."""
import base64
import json
import os
import pathlib
import struct
import time
import urllib.parse

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parents[2]
KOHN = ROOT.parent / "shared" / "data" / "kohn-v1"
ARTIFACTS = ROOT / "tests" / "artifacts"

# A small network keeps SwiftShader runs short.
SMALL = {"conv1": "4", "conv2": "8", "hidden1": "32", "batch_size": "20", "eval_every": "5",
         "optimizer": "adam", "learning_rate": "0.001"}


def open_page(driver, base_url, **params):
    query = urllib.parse.urlencode(params)
    driver.get(f"{base_url}/index.html" + (f"?{query}" if query else ""))
    WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "dataset-summary").text)


def inside_state(driver):
    """What section 5 shows: "error" (its message), "complete" (every neuron's images),
    "overview" (the views), or None while it opens."""
    return driver.execute_script("""
      const shown = (id) => !document.getElementById(id).hidden;
      const status = document.getElementById('inside-status').textContent;
      // A failure empties the status line; a notice (WebGPU → CPU) shown meanwhile does not.
      if (shown('inside-error') && !shown('inside-views') && !status) return 'error';
      if (!shown('inside-views')) return null;
      return /^All \\d+ neurons' preferred images are ready/.test(status) ? 'complete' : 'overview';""")


def wait_inside(driver, states, timeout):
    WebDriverWait(driver, timeout).until(lambda d: inside_state(d) in states)
    return inside_state(driver)


def computed_on(driver):
    """The device the page says the run computed on: "wgpu" or "cpu"."""
    text = driver.find_element(By.ID, "backend-status").text
    return "wgpu" if "WebGPU" in text else "cpu" if "CPU" in text else text


def page_report(driver):
    """What the page shows now, for a failure's message: its state, its status lines, and the
    last lines of the browser's console. A page that no longer answers is said so."""
    try:
        shown = driver.execute_script("""
          const text = (id) => (document.getElementById(id) || {}).textContent;
          return { state: document.body.dataset.state, engine: text('engine-status'),
                   device: text('backend-status'), progress: text('progress-text'), error: text('train-error') };""")
        console = [entry["message"] for entry in driver.get_log("browser")][-20:]
    except Exception as error:  # a crashed or hung renderer: the reason is the report
        return f"the page did not answer ({error})"
    return f"the page shows {shown}; its console's last lines: {console}"


def wait_state(driver, states, timeout):
    try:
        WebDriverWait(driver, timeout).until(
            lambda d: d.execute_script("return document.body.dataset.state") in states)
    except TimeoutException:
        report = page_report(driver)
        ARTIFACTS.mkdir(exist_ok=True)
        test = os.environ.get("PYTEST_CURRENT_TEST", "a-test").split(" ")[0].split("::")[-1]
        try:
            driver.save_screenshot(str(ARTIFACTS / f"{test}-never-reached-its-state.png"))
        except Exception:
            pass
        pytest.fail(f"page never reached {states} in {timeout} s: {report}")
    return driver.execute_script("return document.body.dataset.state")


def canvas_has_drawing(driver, canvas_id):
    """Counts pixels that are neither white nor transparent."""
    return driver.execute_script("""
        const c = document.getElementById(arguments[0]);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i+3] > 0 && (d[i] < 200 || d[i+1] < 200 || d[i+2] < 200)) n++;
        return n;""", canvas_id)


def upload(driver, *paths):
    box = driver.find_element(By.ID, "file-input")
    box.send_keys("\n".join(str(p) for p in paths))


def test_page_loads_with_the_bundled_data(driver, base_url):
    open_page(driver, base_url)
    summary = driver.find_element(By.ID, "dataset-summary").text
    assert "270 of 33 × 33" in summary and "40" in summary, summary
    assert Select(driver.find_element(By.ID, "dataset-select")).first_selected_option.text == "simulated-v1.mat"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#thumbnails canvas")) == 16
    assert "Nothing leaves your browser" in driver.find_element(By.TAG_NAME, "header").text
    assert "simulated" in driver.find_element(By.ID, "dataset-about").text


def test_short_webgpu_run_draws_both_plots_and_reports_mean_r(driver, base_url):
    open_page(driver, base_url, max_steps="12", backend="wgpu", **SMALL)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 600) == "finished"
    assert computed_on(driver) == "wgpu"
    assert "WebGPU" in driver.find_element(By.ID, "backend-status").text
    mean_r = float(driver.find_element(By.ID, "mean-r").text)
    assert -1.0 <= mean_r <= 1.0
    assert canvas_has_drawing(driver, "progress-canvas") > 1000
    assert canvas_has_drawing(driver, "pearson-canvas") > 1000
    rows = driver.find_elements(By.CSS_SELECTOR, "#neuron-table tr")
    assert len(rows) == 41  # header + 40 neurons, with their true cell types
    assert "simple" in driver.find_element(By.ID, "neuron-table").get_attribute("textContent")
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "page-after-webgpu-run.png"))
    driver.execute_script("document.getElementById('plots-section').scrollIntoView()")
    driver.save_screenshot(str(ARTIFACTS / "plots-after-webgpu-run.png"))


@pytest.mark.skipif(not KOHN.exists(), reason="../shared/data/kohn-v1 is absent")
def test_real_session_uploads_and_trains_on_the_cpu(driver, base_url):
    open_page(driver, base_url, max_steps="8", backend="cpu", **SMALL)
    upload(driver, KOHN / "07mean50ms_smallim_d2_crop.mat")
    WebDriverWait(driver, 30).until(lambda d: "07mean50ms" in d.find_element(By.ID, "dataset-summary").text)
    assert "36" in driver.find_element(By.ID, "dataset-summary").text
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
    assert computed_on(driver) == "cpu"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#neuron-table tr")) == 37


def test_bad_file_shows_its_error_and_the_page_still_trains(driver, base_url, tmp_path):
    open_page(driver, base_url, max_steps="6", backend="cpu", **SMALL)
    bad = tmp_path / "broken.mat"
    bad.write_bytes(b"MATLAB 7.3 MAT-file, HDF5 schema".ljust(116) + bytes(12))
    upload(driver, bad)
    error = driver.find_element(By.ID, "data-error")
    WebDriverWait(driver, 20).until(lambda d: error.is_displayed())
    assert "broken.mat" in error.text and "v7.3" in error.text and "-v7" in error.text
    assert "simulated-v1.mat" in driver.find_element(By.ID, "dataset-summary").text
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"


def test_absurd_setting_is_refused_next_to_its_flag(driver, base_url):
    open_page(driver, base_url, batch_size="5000", backend="cpu")
    driver.find_element(By.ID, "train-button").click()
    message = driver.find_element(By.ID, "settings-error")
    WebDriverWait(driver, 10).until(lambda d: message.is_displayed())
    assert message.text.startswith("--batch_size:"), message.text
    assert driver.find_element(By.ID, "flag-batch_size").get_attribute("aria-invalid") == "true"
    assert driver.execute_script("return document.body.dataset.state") in (None, "idle")


def test_cpu_path_when_webgpu_is_forced_off(driver, base_url):
    open_page(driver, base_url, max_steps="6", backend="cpu", **SMALL)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
    assert "CPU" in driver.find_element(By.ID, "backend-status").text


def test_pause_and_resume(driver, base_url):
    open_page(driver, base_url, max_steps="100000", backend="cpu", **SMALL)
    driver.find_element(By.ID, "train-button").click()
    WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "progress-bar").get_attribute("value") not in ("0", None))
    driver.find_element(By.ID, "pause-button").click()
    assert wait_state(driver, {"paused"}, 60) == "paused"
    value = driver.find_element(By.ID, "progress-bar").get_attribute("value")
    time.sleep(2)
    assert driver.find_element(By.ID, "progress-bar").get_attribute("value") == value, "no steps while paused"
    driver.find_element(By.ID, "pause-button").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "progress-bar").get_attribute("value") != value)
    driver.find_element(By.ID, "stop-button").click()
    assert wait_state(driver, {"stopped", "finished"}, 120) in ("stopped", "finished")


def test_settings_url_round_trips(driver, base_url):
    open_page(driver, base_url, learning_rate="0.0003", numconvlayer="1", optimizer="adam", backend="cpu")
    assert driver.find_element(By.ID, "flag-learning_rate").get_attribute("value") == "0.0003"
    assert driver.find_element(By.ID, "flag-numconvlayer").get_attribute("value") == "1"
    box = driver.find_element(By.ID, "flag-hidden1")
    box.clear()
    box.send_keys("123")
    url = driver.current_url
    params = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    assert params["hidden1"] == ["123"] and params["optimizer"] == ["adam"] and params["backend"] == ["cpu"]
    driver.get(url)
    WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    assert driver.find_element(By.ID, "flag-hidden1").get_attribute("value") == "123"
    assert driver.find_element(By.ID, "flag-learning_rate").get_attribute("value") == "0.0003"
    assert Select(driver.find_element(By.ID, "backend-select")).first_selected_option.get_attribute("value") == "cpu"


def wait_download(driver, name, timeout=60):
    path = driver.download_dir / name
    WebDriverWait(driver, timeout).until(lambda d: path.exists() and not (d.download_dir / (name + ".crdownload")).exists(),
                                         message=f"{name} never arrived; have {sorted(p.name for p in driver.download_dir.iterdir())}")
    time.sleep(0.2)
    return path


def mark(driver, name):
    """The page's last `v1p:<name>` performance mark: (ms since navigation, its detail)."""
    return driver.execute_script(
        "const m = performance.getEntriesByName('v1p:' + arguments[0]).pop(); return m && [m.startTime, m.detail];",
        name)


def stored_runs(driver):
    """The runs the page keeps in IndexedDB: id, number, start tag, the names of the network files
    kept for it in the "networks" store (`files`) and the names its record lists (`names`), and
    whether its record in "runs" holds bytes itself (`bytes`: it should not, listing stays light)."""
    return driver.execute_async_script("""const done = arguments[arguments.length - 1];
        const open = indexedDB.open('v1-predictor');
        open.onsuccess = () => {
          const db = open.result;
          const stores = [...db.objectStoreNames].filter((n) => n === 'runs' || n === 'networks');
          if (!stores.includes('runs')) { db.close(); return done([]); }
          const tx = db.transaction(stores);
          const runs = tx.objectStore('runs').getAll();
          const networks = stores.includes('networks') ? tx.objectStore('networks').getAll() : { result: [] };
          tx.oncomplete = () => {
            db.close();
            const kept = new Map(networks.result.map((n) => [n.id, n.files]));
            const bytes = (v) => v instanceof Uint8Array || v instanceof ArrayBuffer
              || (v !== null && typeof v === 'object' && Object.values(v).some(bytes));
            done(runs.result.map((r) => ({ id: r.id, number: r.number, startedUnix: r.startedUnix,
              files: (kept.get(r.id) || []).map((f) => f.name), names: r.networkNames || [],
              bytes: 'networkFiles' in r || bytes(r) })));
          };
        };""")


def store_junk_run(driver):
    """A malformed record, as an older page or a hand edit could leave."""
    driver.execute_async_script("""const done = arguments[arguments.length - 1];
        const open = indexedDB.open('v1-predictor');
        open.onsuccess = () => {
          const tx = open.result.transaction('runs', 'readwrite');
          tx.objectStore('runs').put({ id: 'junk', number: 9, report: { best: {} } });
          tx.oncomplete = () => { open.result.close(); done(); };
        };""")


DOWNLOADS = {
    "download-training-json": ("training_manualsave_{}.json", "training_json"),
    "download-training-npz": ("training_manualsave_{}.npz", "training_npz"),
    "download-progress-png": ("training_plot_{}.png", "progress_png"),
    "download-pearson-json": ("pearsondata_{}.json", "pearson_json"),
    "download-pearson-npz": ("pearsondata_{}.npz", "pearson_npz"),
    "download-csv": ("neurons_{}.csv", "csv"),
    "download-pearson-png": ("pearsonplot_{}.png", "pearson_png"),
    "download-network-npz": ("network_manualsave_{}.npz", "network_npz"),
    "download-network-bpk": ("network_{}.bpk", "network_bpk"),
}


def test_webgpu_run_downloads_every_file_and_numpy_reads_them(driver, base_url):
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "numpy"))
    import numpy as np
    from seed_files import check_run_files

    open_page(driver, base_url, max_steps="10", backend="wgpu", **SMALL)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 600) == "finished"
    assert computed_on(driver) == "wgpu"
    assert driver.find_element(By.ID, "downloads").is_displayed()
    tag = stored_runs(driver)[0]["startedUnix"]
    files = {}
    for button, (pattern, kind) in DOWNLOADS.items():
        driver.find_element(By.ID, button).click()
        files[kind] = wait_download(driver, pattern.format(tag))
    for kind in ["progress_png", "pearson_png"]:
        assert files[kind].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[kind].stat().st_size > 5000
    # The weights read back from WebGPU, in the seed's layout, give numpy the page's r.
    r_numpy, r_page = check_run_files(files, [ROOT / "data" / "simulated-v1.mat"])
    np.testing.assert_allclose(r_numpy, r_page, atol=2e-4)
    assert np.count_nonzero(np.abs(r_page) > 0.02) > 10, r_page
    assert f"{np.load(files['pearson_npz'])['meanr']:.3f}" == driver.find_element(By.ID, "mean-r").text
    lines = files["csv"].read_text().splitlines()
    assert len(lines) == 41 and lines[0].startswith("neuron,cell_type,pearson_r")


def test_saved_network_reloads_runs_persist_compare_and_clear(driver, base_url):
    open_page(driver, base_url, max_steps="10", backend="cpu", **SMALL)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
    trained_r = driver.find_element(By.ID, "mean-r").text
    [run] = stored_runs(driver)
    tag = run["startedUnix"]
    # The network's files are kept beside the run's record, not in it.
    assert sorted(run["files"]) == sorted(run["names"]) == [f"network_{tag}.bpk", f"network_manualsave_{tag}.npz"]
    assert not run["bytes"]
    driver.find_element(By.ID, "download-network-bpk").click()
    network = wait_download(driver, f"network_{tag}.bpk")

    # Runs survive a reload with their weights: the network downloads again, the same bytes.
    # A malformed stored entry (an older page, a hand edit) is skipped, not fatal.
    store_junk_run(driver)
    network.rename(network.with_suffix(".first"))
    open_page(driver, base_url, backend="cpu")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")) == 1
    driver.find_element(By.CSS_SELECTOR, "#runs-table button[data-show]").click()
    assert driver.find_element(By.ID, "mean-r").text == trained_r
    assert canvas_has_drawing(driver, "pearson-canvas") > 1000
    driver.find_element(By.ID, "download-network-bpk").click()
    network = wait_download(driver, f"network_{tag}.bpk")
    assert network.read_bytes() == network.with_suffix(".first").read_bytes()

    # The saved network, dropped together with its data: evaluated without training, same r.
    upload(driver, ROOT / "data" / "simulated-v1.mat", network)
    WebDriverWait(driver, 60).until(lambda d: "loaded from network_" in d.find_element(By.ID, "results").text)
    assert driver.find_element(By.ID, "mean-r").text == trained_r
    assert "loaded from network_" in driver.find_element(By.ID, "results").text
    assert len(driver.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")) == 2
    assert canvas_has_drawing(driver, "pearson-canvas") > 1000

    # Compare the two: curves overlaid, r against r (identical networks: B better for none).
    for i in range(2):  # each tick redraws the table: find the boxes again
        driver.find_elements(By.CSS_SELECTOR, "#runs-table input[data-compare]")[i].click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "compare-figure").is_displayed())
    assert canvas_has_drawing(driver, "compare-canvas") > 1000
    assert "B predicts 0 of 40 neurons better than A" in driver.find_element(By.ID, "compare-caption").text
    ARTIFACTS.mkdir(exist_ok=True)
    driver.execute_script("document.getElementById('runs-section').scrollIntoView()")
    driver.save_screenshot(str(ARTIFACTS / "runs-and-compare.png"))

    # A network that does not fit the data is refused, in words; the page keeps working.
    if KOHN.exists():
        upload(driver, KOHN / "07mean50ms_smallim_d2_crop.mat")
        WebDriverWait(driver, 30).until(lambda d: "07mean50ms" in d.find_element(By.ID, "dataset-summary").text)
        driver.find_element(By.ID, "network-input").send_keys(str(network))
        error = driver.find_element(By.ID, "runs-error")
        WebDriverWait(driver, 30).until(lambda d: error.is_displayed())
        assert "40 neurons" in error.text and "36 neurons" in error.text, error.text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")) == 2

    driver.find_element(By.ID, "clear-runs").click()
    assert "No runs yet" in driver.find_element(By.ID, "runs-table").text
    assert stored_runs(driver) == []
    open_page(driver, base_url)
    assert "No runs yet" in driver.find_element(By.ID, "runs-table").text


def test_a_stored_run_can_be_shown_while_another_trains(driver, base_url):
    open_page(driver, base_url, max_steps="10", backend="cpu", **SMALL)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
    first_r = driver.find_element(By.ID, "mean-r").text

    box = driver.find_element(By.ID, "flag-max_steps")
    box.clear()
    box.send_keys("100000")
    driver.find_element(By.ID, "train-button").click()
    WebDriverWait(driver, 120).until(lambda d: "so far" in d.find_element(By.ID, "results").text)
    assert not driver.find_element(By.ID, "downloads").is_displayed()

    # Show run 1: its figures and downloads stay while the live run keeps reporting.
    driver.find_element(By.CSS_SELECTOR, "#runs-table tr[data-run] button[data-show]").click()
    assert "Run 1" in driver.find_element(By.ID, "results").text
    time.sleep(3)
    assert "Run 1" in driver.find_element(By.ID, "results").text
    assert driver.find_element(By.ID, "mean-r").text == first_r
    assert driver.find_element(By.ID, "downloads").is_displayed()

    # And back to the live run.
    driver.find_element(By.CSS_SELECTOR, "#runs-table button[data-show='live']").click()
    WebDriverWait(driver, 30).until(lambda d: "so far" in d.find_element(By.ID, "results").text)
    assert not driver.find_element(By.ID, "downloads").is_displayed()
    driver.find_element(By.ID, "stop-button").click()
    assert wait_state(driver, {"stopped"}, 120) == "stopped"
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")) == 2)
