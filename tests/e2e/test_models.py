"""The model families in the page: the menu explains each model and shows only its settings;
LN, the Gabor ridge and the CNN train on the same split and compare in the runs panel."""
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from test_page import SMALL, open_page, wait_inside, wait_state


def train_and_read_r(driver):
    driver.find_element(By.ID, "train-button").click()
    assert wait_state(driver, {"finished", "error"}, 300) == "finished"
    return float(driver.find_element(By.ID, "mean-r").text)


def test_the_model_menu_explains_and_shows_each_models_settings(driver, base_url):
    open_page(driver, base_url, backend="cpu")
    menu = Select(driver.find_element(By.ID, "model-select"))
    assert [o.get_attribute("value") for o in menu.options] == ["cnn", "cnnplus", "ln", "gabor"]
    assert driver.find_element(By.ID, "flag-conv1").is_displayed()

    menu.select_by_value("ln")
    assert "receptive field" in driver.find_element(By.ID, "model-explanation").text
    assert not driver.find_element(By.ID, "flag-conv1").is_displayed()
    assert driver.find_element(By.ID, "flag-learning_rate").is_displayed()
    assert driver.find_element(By.ID, "flag-output").get_attribute("value") == "softplus"
    assert "model=ln" in driver.current_url

    menu.select_by_value("gabor")
    assert "ridge" in driver.find_element(By.ID, "model-explanation").text
    assert not driver.find_element(By.ID, "flag-learning_rate").is_displayed()
    assert driver.find_element(By.ID, "flag-seed").is_displayed()
    assert driver.find_element(By.ID, "flag-gabor_orientations").is_displayed()

    # A bad bank setting is refused next to its flag, as the CNN's are.
    box = driver.find_element(By.ID, "flag-gabor_positions")
    box.clear()
    box.send_keys("0")
    driver.find_element(By.ID, "train-button").click()
    error = driver.find_element(By.ID, "settings-error")
    WebDriverWait(driver, 10).until(lambda d: error.is_displayed())
    assert "--gabor_positions" in error.text, error.text
    assert box.get_attribute("aria-invalid") == "true"


def test_ln_gabor_and_cnn_train_and_compare_in_the_runs_panel(driver, base_url):
    # LN on WebGPU: its softplus output, Poisson loss and standardised pixels on the GPU path.
    open_page(driver, base_url, backend="wgpu", model="ln", max_steps="300", eval_every="50")
    ln_r = train_and_read_r(driver)
    # Inside the LN model: its filters are the neurons' receptive fields, one per neuron.
    driver.find_element(By.ID, "inside-button").click()
    assert wait_inside(driver, ("overview", "complete", "error"), 300) != "error", \
        driver.find_element(By.ID, "inside-error").text
    assert "receptive field" in driver.find_element(By.ID, "filters-caption").text
    assert driver.find_element(By.ID, "filters-canvas").get_attribute("aria-label").startswith("The 40 LN model's filters")
    open_page(driver, base_url, backend="cpu", model="gabor")
    gabor_r = train_and_read_r(driver)
    # The Gabor model has no network: no weights to download, nothing to look inside.
    assert not driver.find_element(By.ID, "download-network-bpk").is_enabled()
    assert "no network file" in driver.find_element(By.ID, "network-note").text
    assert "no network to look inside" in driver.find_element(By.ID, "inside-section").text
    params = dict(SMALL, max_steps="60", eval_every="20")
    open_page(driver, base_url, backend="cpu", model="cnn", **params)
    cnn_r = train_and_read_r(driver)

    rows = driver.find_elements(By.CSS_SELECTOR, "#runs-table tr[data-run]")
    assert len(rows) == 3
    settings = [r.find_element(By.CSS_SELECTOR, ".settings").text for r in rows]
    assert settings[0].startswith("ln ·") and "output softplus" in settings[0], settings
    assert settings[1].startswith("gabor ·") and "features" in settings[1], settings
    assert settings[2].startswith("cnn ·") and "conv1 4 · conv2 8 · size1 7" in settings[2], settings
    shown = [float(r.find_element(By.CSS_SELECTOR, ".mean-r").text) for r in rows]
    assert shown == [ln_r, gabor_r, cnn_r]
    # On the demo data (simulated V1 with complex cells) the Gabor energies beat a linear
    # filter, as in the paper's comparison.
    assert gabor_r > ln_r, (gabor_r, ln_r)

    # LN (A) against the CNN (B), neuron by neuron.
    for i in (0, 2):
        driver.find_elements(By.CSS_SELECTOR, "#runs-table input[data-compare]")[i].click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "compare-figure").is_displayed())
    caption = driver.find_element(By.ID, "compare-caption").text
    assert f"A = run 1 (mean r {ln_r:.3f})" in caption and f"B = run 3 (mean r {cnn_r:.3f})" in caption, caption
    assert "neurons better than A" in caption, caption
