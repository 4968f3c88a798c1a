"""Open the generated report in a real headless Chromium (system packages, driven by Selenium).

Never downloads a browser or a driver: it uses ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``
(``CHROMIUM`` / ``CHROMEDRIVER`` override) and is skipped, saying how to enable it, when they are
missing. ``.ci/run`` installs both, so in CI it always runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from reports.report import write_outputs
from reports.targets import load_targets
from tests.report_data import synthetic_run

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or ""
ENABLE = "install them with: apt-get install chromium chromium-driver"

webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium missing: {ENABLE}")

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and CHROMEDRIVER and Path(CHROMEDRIVER).exists()),
    reason=f"no Chromium ({CHROMIUM}) or chromedriver on this machine: {ENABLE}",
)


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="wsbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_report_renders_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By

    run = synthetic_run(load_targets(), overrides={"load.search.p95_ms": 750.0})
    _, html_path = write_outputs(run, tmp_path)
    browser.get(html_path.as_uri())

    assert "workspace-bench report" in browser.title
    table = browser.find_element(By.ID, "targets")
    assert table.is_displayed()
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == len(run.targets.targets)

    failing = browser.find_element(By.CSS_SELECTOR, "tr[data-target='search_response'] td.fail")
    background = failing.value_of_css_property("background-color")
    red, green, blue = (int(v) for v in background[background.index("(") + 1 :].split(",")[:3])
    assert red > green, background
    assert red > blue, background
    banner = browser.find_element(By.ID, "verdict")
    assert banner.text.startswith("FAIL")

    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) >= 12
    for chart in charts:
        size = chart.size
        assert size["width"] > 100, size
        assert size["height"] > 80, size
    drawn = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg.chart'))"
        ".map(s => s.querySelectorAll('rect, polyline').length)"
    )
    assert min(drawn) >= 1

    details = browser.find_element(By.CSS_SELECTOR, "details summary")
    details.click()
    assert "Index Scan" in browser.find_element(By.CSS_SELECTOR, "details").text

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []


def test_scale_curve_fits_the_page_and_its_plans_open(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from tests.test_report_curve import curve_document, read_back

    run = synthetic_run(load_targets())
    run.curve = read_back(curve_document(plans=True), tmp_path)
    _, html_path = write_outputs(run, tmp_path)
    browser.get(html_path.as_uri())
    section = browser.find_element(By.ID, "curve")
    width = section.size["width"]
    charts = section.find_elements(By.CSS_SELECTOR, "svg")
    assert len(charts) >= 4
    for chart in charts:
        assert chart.size["width"] > 0.9 * width, chart.size
    assert browser.find_element(By.ID, "curve-table").size["width"] <= width + 1
    plan = section.find_element(By.CSS_SELECTOR, "details pre")
    assert not plan.is_displayed()
    section.find_element(By.CSS_SELECTOR, "details summary").click()
    assert plan.is_displayed()
