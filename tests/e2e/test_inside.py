"""Section 5, "Inside the network", end to end in headless Chromium: the views open for a run
trained on the CPU and on WebGPU, a click on a Pearson bar opens that neuron, the figures on
the page are the engine's, and the downloaded arrays agree with what the page shows."""
import re
import time

import numpy as np
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from test_page import (ARTIFACTS, SMALL, canvas_has_drawing, mark, open_page, stored_runs, wait_download, wait_inside,
                       wait_state)


def train_and_open(driver, base_url, backend, steps):
    open_page(driver, base_url, max_steps=str(steps), backend=backend, **SMALL)
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 600) == "finished"
    button = driver.find_element(By.ID, "inside-button")
    assert button.is_enabled()
    button.click()
    assert wait_inside(driver, ("overview", "complete", "error"), 600) != "error", \
        driver.find_element(By.ID, "inside-error").text


def tile_drawn(driver, canvas_id):
    """Non-white pixels of a tile canvas (drawn at one canvas pixel per image pixel)."""
    return driver.execute_script("""
        const c = document.getElementById(arguments[0]);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) n++;
        return n;""", canvas_id)


def preferred_figures(driver):
    text = driver.find_element(By.ID, "preferred-text").text
    match = re.search(r"rate ([\d.]+) \(best data image ([\d.]+)\) · agreement of starts (-?[\d.]+)", text)
    assert match, text
    return [float(g) for g in match.groups()]


def test_inside_views_on_the_cpu_reveal_every_neuron(driver, base_url):
    train_and_open(driver, base_url, "cpu", 60)
    options = Select(driver.find_element(By.ID, "neuron-select")).options
    assert len(options) == 40
    assert "(simple)" in options[0].text
    assert tile_drawn(driver, "filters-canvas") > 50
    for tile in ["tile-rf", "tile-sta"]:
        assert tile_drawn(driver, tile) > 100, tile
    assert tile_drawn(driver, "tile-truth") > 40  # a simple cell's small Gabor
    assert canvas_has_drawing(driver, "scatter-canvas") > 1000
    assert canvas_has_drawing(driver, "stimulus-canvas") > 1000
    assert len(driver.find_elements(By.CSS_SELECTOR, "#top-measured canvas")) == 6
    # The r shown for every neuron is the one the run reported (its Pearson table).
    table = [row.find_elements(By.TAG_NAME, "td")[2].get_attribute("textContent")
             for row in driver.find_elements(By.CSS_SELECTOR, "#neuron-table tr")[1:]]
    shown = [float(re.search(r"r = (-?[\d.]+)", o.text).group(1)) for o in options]
    assert len(table) == len(shown) == 40
    assert all(abs(float(t) - s) <= 0.0051 for t, s in zip(table, shown)), (table, shown)

    # The stimulus browser: another evaluation image, other rates.
    caption = driver.find_element(By.ID, "stimulus-caption").text
    stimulus = Select(driver.find_element(By.ID, "stimulus-select"))
    # The seed's split of 270 images: 180 train, 38 early stop, 52 evaluation.
    assert len(stimulus.options) == 52
    stimulus.select_by_index(5)
    assert driver.find_element(By.ID, "stimulus-caption").text != caption
    assert f"Image {int(stimulus.options[5].get_attribute('value')) + 1}:" in driver.find_element(By.ID, "stimulus-caption").text

    # From the keyboard: open the per-neuron table (Enter on its summary), then Enter on a
    # neuron's number opens that neuron.
    summary = driver.find_element(By.CSS_SELECTOR, "#plots-section details summary")
    driver.execute_script("arguments[0].scrollIntoView()", summary)
    summary.send_keys(Keys.ENTER)
    # (Opening it resizes the section, which redraws the plots: the table must survive that.)
    button = driver.find_element(By.CSS_SELECTOR, "#neuron-table button[data-neuron='4']")
    time.sleep(1)
    driver.execute_script("arguments[0].scrollIntoView()", button)
    button.send_keys(Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "neuron-select").get_attribute("value") == "4")
    assert driver.switch_to.active_element.get_attribute("id") == "neuron-select"

    # A click on a bar in the right part of the Pearson plot opens a neuron there (bars are in
    # neuron order), and its preferred image arrives within seconds.
    canvas = driver.find_element(By.ID, "pearson-canvas")
    time.sleep(1)  # the previous step's smooth scroll ends
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    before = driver.find_element(By.ID, "neuron-select").get_attribute("value")
    clicked = time.time()
    ActionChains(driver).move_to_element_with_offset(canvas, int(canvas.size["width"] * 0.3), 0).click().perform()
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "neuron-select").get_attribute("value") != before)
    neuron = int(driver.find_element(By.ID, "neuron-select").get_attribute("value"))
    assert 20 <= neuron < 40, neuron
    assert Select(driver.find_element(By.ID, "neuron-select")).first_selected_option.get_attribute("value") == str(neuron)
    WebDriverWait(driver, 120).until(lambda d: "rate" in d.find_element(By.ID, "preferred-text").text)
    print(f"neuron {neuron + 1}: views {time.time() - clicked:.1f} s after the click "
          f"(page: {mark(driver, 'neuron-view')[1]['ms']:.0f} ms)")
    assert tile_drawn(driver, "tile-preferred") > 100
    assert tile_drawn(driver, "tile-suppressive") > 100

    wait_inside(driver, ("complete",), 600)
    print(f"all preferred images in {mark(driver, 'inside-complete')[1]['ms']:.0f} ms")
    rate, best_data, agreement = preferred_figures(driver)
    assert -1 <= agreement <= 1
    assert rate > best_data, (rate, best_data)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.execute_script("document.getElementById('inside-section').scrollIntoView()")
    driver.save_screenshot(str(ARTIFACTS / "inside-the-network.png"))

    # The downloaded arrays hold what the page shows.
    tag = stored_runs(driver)[0]["startedUnix"]
    driver.find_element(By.ID, "download-explain").click()
    views = np.load(wait_download(driver, f"explain_{tag}.npz"))
    assert views["preferred"].shape == (40, 33, 33)
    assert views["rf"].shape == (40, 33, 33) and views["sta"].shape == (40, 33, 33)
    assert f"{views['preferred_rate'][neuron]:.2f}" == f"{rate:.2f}"
    assert f"{views['predicted'][:, neuron].max():.2f}" == f"{best_data:.2f}"
    assert views["cell_types"].item().split(",")[0] == "simple"
    png = wait_download(driver, f"explain_neurons_{tag}.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inside_views_on_webgpu(driver, base_url):
    train_and_open(driver, base_url, "wgpu", 10)
    assert mark(driver, "inside-opened")[1]["backend"] == "wgpu"
    assert tile_drawn(driver, "filters-canvas") > 50
    assert tile_drawn(driver, "tile-rf") > 100
    # A neuron from the end of the queue (inverted 8 at a time) jumps it, on the GPU: its
    # images come while most neurons' are still waiting.
    Select(driver.find_element(By.ID, "neuron-select")).select_by_value("33")
    # The page shows that neuron (its tiles are described as neuron 34's).
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "tile-rf").get_attribute("aria-label")
                                    .startswith("Receptive-field estimate of neuron 34:"))
    WebDriverWait(driver, 900).until(lambda d: "rate" in d.find_element(By.ID, "preferred-text").text)
    print(f"WebGPU (SwiftShader): neuron 34's views after {mark(driver, 'neuron-view')[1]['ms']:.0f} ms")
    assert float(driver.find_element(By.ID, "inside-progress").get_attribute("value")) < 1
    assert tile_drawn(driver, "tile-preferred") > 100
