"""The settings as a first-time visitor meets them: plain words first and the seed's flag beside
them, a few up front and the rest under "All settings", a diagram of the network that follows
the settings, and every control reachable and named for the keyboard and screen readers."""
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from test_page import open_page


def diagram(driver):
    return driver.find_element(By.ID, "network-diagram").get_attribute("aria-label")


def test_plain_words_first_the_rest_under_all_settings(driver, base_url):
    open_page(driver, base_url)
    label = driver.find_element(By.CSS_SELECTOR, "label[for='flag-conv1']").text
    assert "filters" in label and "--conv1" in label, label
    # Up front: a few; the seed's other flags wait, folded, under "All settings".
    up_front = [e for e in driver.find_elements(By.CSS_SELECTOR, ".flags.everyday .flag") if e.is_displayed()]
    assert 3 <= len(up_front) <= 6, len(up_front)
    assert not driver.find_element(By.ID, "flag-nstride2").is_displayed()
    driver.find_element(By.CSS_SELECTOR, "#all-settings > summary").click()
    assert driver.find_element(By.ID, "flag-nstride2").is_displayed()
    # One help text per flag, the same words as `v1p train --help` (both from the flag table).
    help_text = driver.find_element(By.ID, "flag-nstride2-help").text
    assert help_text.startswith("Size of max pool stride"), help_text


def test_the_network_diagram_follows_the_settings(driver, base_url):
    open_page(driver, base_url, conv1="4", numconvlayer="2")
    before = diagram(driver)
    assert "image: 33 × 33 pixels → " in before and "4 filters" in before and "→ output: 40 neurons" in before, before
    box = driver.find_element(By.ID, "flag-conv1")
    box.clear()
    box.send_keys("12")
    WebDriverWait(driver, 5).until(lambda d: "12 filters" in diagram(d))
    Select(driver.find_element(By.ID, "model-select")).select_by_value("gabor")
    WebDriverWait(driver, 5).until(lambda d: "Gabor bank" in diagram(d))
    assert "filters" not in diagram(driver)
    # Settings that make no network say why, instead of a wrong drawing.
    Select(driver.find_element(By.ID, "model-select")).select_by_value("cnn")
    box = driver.find_element(By.ID, "flag-conv1")
    box.clear()
    box.send_keys("0")
    WebDriverWait(driver, 5).until(
        lambda d: "No network" in d.find_element(By.ID, "network-diagram").text)


def test_every_control_is_named_and_the_keyboard_reaches_train(driver, base_url):
    open_page(driver, base_url)
    unnamed = driver.execute_script("""
        const named = (e) => (e.labels && e.labels.length) || e.getAttribute('aria-label') ||
          e.getAttribute('aria-labelledby') || (e.tagName === 'BUTTON' && e.textContent.trim());
        return [...document.querySelectorAll('input, select, button, textarea')]
          .filter((e) => !named(e)).map((e) => e.outerHTML.slice(0, 80));""")
    assert unnamed == [], unnamed
    # Every canvas that shows a figure has a text alternative.
    silent = driver.execute_script("""
        return [...document.querySelectorAll('canvas[role=img]')].filter((c) => !c.getAttribute('aria-label'))
          .map((c) => c.id);""")
    assert silent == [], silent
    # Tab from the top of the page reaches the Train button.
    body = driver.find_element(By.TAG_NAME, "body")
    body.click()
    for _ in range(200):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if driver.switch_to.active_element.get_attribute("id") == "train-button":
            break
    assert driver.switch_to.active_element.get_attribute("id") == "train-button"
