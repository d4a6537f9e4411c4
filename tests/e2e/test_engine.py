"""The one engine behind the page: runs reuse one worker (WebGPU started and its kernels
compiled once), runs survive in IndexedDB with their networks, two tabs keep both their runs,
and a class's exported records import into the runs panel to compare."""
import shutil
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import built_page, start_server
from test_page import SMALL, open_page, stored_runs, upload, wait_download, wait_inside, wait_state

# Every change of the progress line, time-stamped from the click on.
WATCH = """window.__steps = []; window.__t0 = null;
// From the click as the page receives it (its event's time stamp), not from WebDriver's call.
document.addEventListener('click', (e) => {
  if (e.target.id === 'train-button') window.__t0 = e.timeStamp;
}, { capture: true, once: true });
const line = document.getElementById('progress-text');
if (window.__watch) window.__watch.disconnect();
window.__watch = new MutationObserver(() => {
  const m = /^Step ([\\d,]+) of/.exec(line.textContent);
  if (m && window.__t0 !== null) {
    window.__steps.push([performance.now() - window.__t0, Number(m[1].replace(/,/g, ''))]);
  }
});
window.__watch.observe(line, { childList: true, characterData: true, subtree: true });"""


def timed_run(driver):
    """(ms from the click to the first step shown, steady ms per step of the run's later part)."""
    driver.execute_script(WATCH)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 600) == "finished"
    steps = driver.execute_script("return window.__steps")
    start = next(s for s in steps if s[1] >= steps[-1][1] / 4)
    return steps[0][0], (steps[-1][0] - start[0]) / max(steps[-1][1] - start[1], 1)


def seconds_to_stop(driver, after):
    """Starts a run and presses Stop `after` seconds after its first step is shown; returns the
    seconds from that click until the page says the run stopped."""
    driver.execute_script(WATCH)
    driver.find_element(By.ID, "train-button").click()
    WebDriverWait(driver, 300).until(lambda d: d.execute_script("return window.__steps.length"))
    time.sleep(after)
    clicked = time.monotonic()
    driver.find_element(By.ID, "stop-button").click()
    assert wait_state(driver, {"stopped", "error"}, 900) == "stopped"
    return time.monotonic() - clicked


def rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")


def test_two_runs_reuse_the_engine_and_the_second_starts_at_once(driver, base_url):
    open_page(driver, base_url, backend="wgpu", max_steps="30", **{**SMALL, "eval_every": "100000"})
    first_ms, steady_ms = timed_run(driver)
    # The median of three later runs: one run's start on this shared machine varies by ±30 %.
    later = sorted(timed_run(driver)[0] for _ in range(3))
    print(f"WebGPU: first run's first step after {first_ms:.0f} ms, steady {steady_ms:.0f} ms/step; "
          f"later runs' first step after {[round(ms) for ms in later]} ms")
    # One worker for the page: worker.js was fetched once, whatever the number of runs.
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/worker.js')).length")
    assert fetched == 1
    assert later[1] <= 2 * steady_ms, (later, steady_ms)
    assert later[1] < first_ms / 3, (later, first_ms)


def test_webgpu_progress_shows_the_steps_the_gpu_has_done_and_stop_is_prompt(driver, base_url):
    # On WebGPU a step only queues work. The page once queued steps ten times faster than
    # SwiftShader did them: it showed step 298 of 300 ten seconds into a 28-second run, and a
    # Stop waited 27 s for the steps queued (BENCHMARKS.md).
    open_page(driver, base_url, backend="wgpu", max_steps="200", **{**SMALL, "eval_every": "100000"})
    driver.execute_script(WATCH)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 600) == "finished"
    steps = driver.execute_script("return window.__steps")
    # Halfway between the first step shown and the last, the steps shown are about half.
    halfway = (steps[0][0] + steps[-1][0]) / 2
    shown = max(step for at, step in steps if at <= halfway)
    print(f"WebGPU, 200 steps: first shown after {steps[0][0]:.0f} ms, the last after {steps[-1][0]:.0f} ms; "
          f"step {shown} shown halfway")
    assert 50 <= shown <= 150, (shown, steps)

    # A long run, stopped 2 s after its first step is shown, stops at once.
    open_page(driver, base_url, backend="wgpu", max_steps="5000", **{**SMALL, "eval_every": "100000"})
    took = seconds_to_stop(driver, after=2)
    print(f"WebGPU: stopped {took:.2f} s after the click")
    assert took < 10, took


def test_on_the_cpu_too_a_later_run_s_first_step_comes_within_two_steps(driver, base_url):
    # A later run's start has a fixed part, whatever the step: the click → engine → page round
    # trip and the run's set-up, 80–130 ms in one CI run. The test asks whether the engine is
    # reused (a new one would take seconds), so its step must be long beside that fixed part:
    # the seed's network twice as wide in its convolutions (conv 2 has four times the work)
    # with batch 180, the demo's whole training set. The seed's own width at batch 180 took
    # 87 ms a step on two workers in one CI run, and a later run's start 2.3 steps
    # (BENCHMARKS.md).
    open_page(driver, base_url, backend="cpu", max_steps="30", eval_every="100000", optimizer="adam",
              batch_size="180", conv1="32", conv2="64")
    _, steady_ms = timed_run(driver)
    # The median of three later runs: one run's start on this shared machine varies by ±30 %.
    later = sorted(timed_run(driver)[0] for _ in range(3))
    print(f"CPU: steady {steady_ms:.0f} ms/step; later runs' first step after {later} ms")
    assert later[1] <= 2 * steady_ms, (later, steady_ms)


def test_two_tabs_keep_both_runs(driver, base_url):
    open_page(driver, base_url, backend="cpu", max_steps="6", **SMALL)
    first = driver.current_window_handle
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished"}, 300) == "finished"

    driver.switch_to.new_window("tab")
    open_page(driver, base_url, backend="cpu", max_steps="8", seed="3", **SMALL)
    assert len(rows(driver)) == 1, "the second tab lists the first tab's run"
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished"}, 300) == "finished"
    assert len(rows(driver)) == 2

    # The first tab hears of the second's run, and neither overwrote the other.
    driver.switch_to.window(first)
    WebDriverWait(driver, 20).until(lambda d: len(rows(d)) == 2)
    runs = stored_runs(driver)
    assert len({r["id"] for r in runs}) == 2
    assert all(any(name.endswith(".bpk") for name in r["files"]) for r in runs)
    assert not any(r["bytes"] for r in runs), "a run's record holds no network bytes: listing stays light"
    assert [row.find_elements(By.TAG_NAME, "td")[1].text for row in rows(driver)] == ["1", "2"]
    open_page(driver, base_url)
    assert len(rows(driver)) == 2


def test_a_classs_exported_records_import_and_compare(driver, base_url, tmp_path):
    open_page(driver, base_url, backend="cpu", max_steps="10", **SMALL)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished"}, 300) == "finished"
    trained_r = driver.find_element(By.ID, "mean-r").text
    tag = stored_runs(driver)[0]["startedUnix"]
    driver.find_element(By.ID, "download-pearson-json").click()
    pearson = wait_download(driver, f"pearsondata_{tag}.json")
    driver.find_element(By.ID, "download-training-json").click()
    training = wait_download(driver, f"training_manualsave_{tag}.json")

    # A student's two files, dropped on the teacher's page: listed, with curves and r.
    driver.find_element(By.ID, "network-input").send_keys(f"{pearson}\n{training}")
    WebDriverWait(driver, 30).until(lambda d: len(rows(d)) == 2)
    assert "imported pearsondata_" in rows(driver)[1].text
    assert driver.find_element(By.ID, "mean-r").text == trained_r
    for i in range(2):  # each tick redraws the table: find the boxes again
        driver.find_elements(By.CSS_SELECTOR, "#runs-table input[data-compare]")[i].click()
    caption = driver.find_element(By.ID, "compare-caption")
    WebDriverWait(driver, 30).until(lambda d: caption.is_displayed())
    assert "B predicts 0 of 40 neurons better than A" in caption.text

    # Not an export: refused in words, nothing listed.
    junk = tmp_path / "pearsondata_1.json"
    junk.write_text('{"rval": "no"}')
    driver.find_element(By.ID, "network-input").send_keys(str(junk))
    error = driver.find_element(By.ID, "runs-error")
    WebDriverWait(driver, 20).until(lambda d: error.is_displayed())
    assert "pearsondata_1.json" in error.text and "not a pearsondata" in error.text, error.text
    assert len(rows(driver)) == 2


def test_a_full_browser_storage_is_said_and_the_run_stays_listed(driver, base_url):
    open_page(driver, base_url, backend="cpu", max_steps="6", **SMALL)
    # A tiny quota for this page's origin: the run's network cannot be kept.
    driver.execute_cdp_cmd("Storage.overrideQuotaForOrigin", {"origin": base_url, "quotaSize": 20_000})
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished"}, 300) == "finished"
    error = driver.find_element(By.ID, "runs-error")
    WebDriverWait(driver, 20).until(lambda d: error.is_displayed())
    assert "storage" in error.text and "full" in error.text, error.text
    assert len(rows(driver)) == 1
    assert stored_runs(driver) == []


# The store as the page's first version wrote it (database version 1): the network files inside
# the run's record (and a run older still, in localStorage). Made from the page's own stores, on
# a page of the same origin that does not open them (the app lets go when the database goes).
AS_VERSION_1 = """const done = arguments[arguments.length - 1];
(async () => {
  const opened = (request) => new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const now = await opened(indexedDB.open('v1-predictor'));
  const tx = now.transaction(['runs', 'networks']);
  const [runs, networks] = await Promise.all([opened(tx.objectStore('runs').getAll()),
    opened(tx.objectStore('networks').getAll())]);
  now.close();
  await opened(indexedDB.deleteDatabase('v1-predictor'));
  const open = indexedDB.open('v1-predictor', 1);
  open.onupgradeneeded = () => open.result.createObjectStore('runs', { keyPath: 'id' });
  const db = await opened(open);
  const write = db.transaction('runs', 'readwrite');
  for (const run of runs) {
    const old = { ...run, networkFiles: networks.find((n) => n.id === run.id).files };
    delete old.networkNames;
    write.objectStore('runs').put(old);
    // An imported record of that version: no network.
    write.objectStore('runs').put({ ...old, id: old.id + '-imported', addedAt: old.addedAt + 1, networkFiles: [] });
    // And a run of the versions before, in localStorage (no network, no IndexedDB).
    const { networkFiles: _, ...older } = old;
    const before = [{ ...older, id: old.id + '-older', addedAt: old.addedAt + 2 }];
    localStorage.setItem('v1-predictor.runs', JSON.stringify(before));
  }
  write.oncomplete = () => { db.close(); done(db.version); };
})().catch((error) => done(String(error)));"""

STORE_COUNTS = """const done = arguments[arguments.length - 1];
const open = indexedDB.open('v1-predictor');
open.onsuccess = () => {
  const db = open.result, tx = db.transaction(['runs', 'networks']);
  const counts = ['runs', 'networks'].map((name) => tx.objectStore(name).count());
  tx.oncomplete = () => { db.close(); done([db.version, ...counts.map((c) => c.result)]); };
};"""


def test_runs_kept_by_the_first_store_version_are_moved_over(driver, base_url):
    open_page(driver, base_url, backend="cpu", max_steps="6", **SMALL)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished"}, 300) == "finished"
    tag = stored_runs(driver)[0]["startedUnix"]
    driver.find_element(By.ID, "download-network-bpk").click()
    network = wait_download(driver, f"network_{tag}.bpk")
    network.rename(network.with_suffix(".first"))

    driver.get(f"{base_url}/not-the-app")  # same origin, no page code
    assert driver.execute_async_script(AS_VERSION_1) == 1
    assert [r["bytes"] for r in stored_runs(driver)] == [True, True]

    # The page upgrades the store: the files move beside the record, in the same transaction;
    # the localStorage run moves in after.
    open_page(driver, base_url, backend="cpu")
    assert len(rows(driver)) == 3
    assert driver.execute_script("return localStorage.getItem('v1-predictor.runs')") is None
    runs = stored_runs(driver)
    without = [r for r in runs if r["id"].endswith(("-imported", "-older"))]
    assert [(r["files"], r["names"], r["bytes"]) for r in without] == [([], [], False)] * 2
    [kept] = [r for r in runs if r not in without]
    files = [f"network_{tag}.bpk", f"network_manualsave_{tag}.npz"]
    assert sorted(kept["files"]) == sorted(kept["names"]) == files and not kept["bytes"]
    assert driver.execute_async_script(STORE_COUNTS) == [2, 3, 1]

    # The run kept before still downloads (the same bytes) and opens inside; the other has no network.
    rows(driver)[1].find_element(By.CSS_SELECTOR, "button[data-show]").click()
    assert not driver.find_element(By.ID, "download-network-bpk").is_enabled()
    rows(driver)[0].find_element(By.CSS_SELECTOR, "button[data-show]").click()
    driver.find_element(By.ID, "download-network-bpk").click()
    assert wait_download(driver, f"network_{tag}.bpk").read_bytes() == network.with_suffix(".first").read_bytes()
    driver.find_element(By.ID, "inside-button").click()
    assert wait_inside(driver, ("overview", "complete", "error"), 300) != "error", \
        driver.find_element(By.ID, "inside-error").text

    # Clearing empties both stores.
    driver.find_element(By.ID, "clear-runs").click()
    WebDriverWait(driver, 20).until(lambda d: d.execute_async_script(STORE_COUNTS) == [2, 0, 0])


def kept_runs(driver):
    """The runs the page kept, oldest first: what each computed on (`backend`) and its report."""
    return driver.execute_async_script("""const done = arguments[arguments.length - 1];
        const open = indexedDB.open('v1-predictor');
        open.onsuccess = () => {
          const db = open.result;
          if (!db.objectStoreNames.contains('runs')) { db.close(); return done([]); }
          const all = db.transaction('runs').objectStore('runs').getAll();
          all.onsuccess = () => {
            db.close();
            done(all.result.sort((a, b) => a.id - b.id)
              .map((run) => ({ backend: run.backend, history: run.report.history, best: run.report.best })));
          };
        };""")


def cpu_run(driver, url, workers, **flags):
    """A small CPU run with `cpu-workers=workers`, trained to its end; the run the page kept."""
    open_page(driver, url, backend="cpu", **{**SMALL, **flags, "cpu-workers": workers})
    kept = len(kept_runs(driver))
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
    WebDriverWait(driver, 30).until(lambda d: len(kept_runs(d)) > kept)
    return kept_runs(driver)[-1]


def test_a_cpu_run_takes_its_batch_in_two_workers_with_the_numbers_of_one(driver, base_url):
    """On a machine with two cores the page's CPU runs give half of each batch to a second
    worker, and the two workers' run is the one-worker run (`cpu-workers=1`) to the bit: every
    evaluation's losses and r, the best step and every neuron's r. It fails if a half, or a
    gradient in the workers' messages, went astray, or if the second worker was not used or
    stopped (the engine then says "on one worker")."""
    assert driver.execute_script("return navigator.hardwareConcurrency") >= 2
    runs = {workers: cpu_run(driver, base_url, workers, max_steps="16", seed="5") for workers in ("2", "1")}
    assert "two halves on two workers" in runs["2"]["backend"], runs["2"]["backend"]
    assert "two workers" not in runs["1"]["backend"], runs["1"]["backend"]
    assert len(runs["2"]["history"]) == len(runs["1"]["history"]) >= 3
    assert runs["2"]["history"] == runs["1"]["history"]
    assert runs["2"]["best"] == runs["1"]["best"]
    # The network learnt: the evaluations' losses moved.
    losses = [record["train_loss"] for record in runs["2"]["history"]]
    assert len(set(losses)) > 1, losses


def missing_partner(dist):
    (dist / "partner.js").unlink()


def partner_with_a_fault(dist):
    """A fault no code path reports, as a panic in the engine ends: an exception in a promise,
    shortly after the partner is given its run."""
    with open(dist / "partner.js", "a") as script:
        script.write('\nself.addEventListener("message", (event) => {\n'
                     '  if (event.data?.type === "trainHalf") setTimeout(() => Promise.reject(new Error("injected")), 50);\n'
                     '});\n')


@pytest.mark.parametrize("breaks", [missing_partner, partner_with_a_fault], ids=["missing", "fault"])
def test_without_its_second_worker_a_cpu_run_goes_on_in_one_with_the_same_numbers(driver, tmp_path, breaks):
    """A second worker that cannot start (its script missing) or fails (an exception in a
    promise) costs the run its pace, not its numbers: the engine computes both halves itself,
    and the run ends as a one-worker run does."""
    copy = tmp_path / "dist"
    shutil.copytree(built_page(), copy)
    breaks(copy)
    server, url = start_server(copy)
    try:
        runs = {workers: cpu_run(driver, url, workers, max_steps="12", seed="4") for workers in ("2", "1")}
    finally:
        server.terminate()
    # The run says where it went on (the page's notice, kept with the run).
    assert runs["2"]["backend"].endswith("each batch in two halves on one worker"), runs["2"]["backend"]
    assert runs["2"]["history"] == runs["1"]["history"]
    assert runs["2"]["best"] == runs["1"]["best"]
