"""The workspace page in a real headless Chromium, on the tiny dataset, as a person uses it.

Chromium and chromedriver are Debian's packages (never a download); without them every test
here is skipped with the command that installs them. The service runs in its own process on
loopback, over a private copy of the seeded database and its stored files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.browser import chrome, page
from benchmarks.browser.step import reset_search_state, service
from fixtures.database import create_database, drop_database, run_async
from fixtures.prepare import ensure_dataset
from reference.web.auth import issue_token
from tests.conftest import SETTINGS

pytestmark = pytest.mark.skipif(
    chrome.missing() is not None, reason=f"no browser here: {chrome.missing()}"
)

TIMEOUT_S = 60.0
PROMPT = "red fox"


@pytest.fixture(scope="module")
def frontend_db(database, seeded_template) -> Iterator[tuple[str, Any]]:
    dsn = run_async(create_database(database.dsn, "wsb_fe", seeded_template.dsn))
    try:
        yield dsn, seeded_template
    finally:
        run_async(drop_database(database.dsn, dsn))


@pytest.fixture(scope="module")
def storage(frontend_db, tmp_path_factory):
    directory = tmp_path_factory.mktemp("storage")
    run_async(ensure_dataset(frontend_db[0], frontend_db[1].spec, directory))
    return directory


@pytest.fixture(scope="module")
def token(frontend_db) -> str:
    return issue_token(SETTINGS.jwt_secret, frontend_db[1].heavy_user)


def _service(frontend_db, storage, mode: str) -> Iterator[str]:
    # The tests' secrets, so the token above verifies in the service's process.
    env = {**os.environ, **SETTINGS.secrets()}
    with service(frontend_db[0], mode, storage, env) as base:
        yield base


@pytest.fixture(scope="module")
def unified(frontend_db, storage) -> Iterator[str]:
    yield from _service(frontend_db, storage, "unified")


@pytest.fixture(scope="module")
def legacy(frontend_db, storage) -> Iterator[str]:
    yield from _service(frontend_db, storage, "legacy")


@pytest.fixture
def driver():
    with chrome.chromium(chrome.DESKTOP) as d:
        yield d


def api(base: str, token: str, path: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"{base}{path}", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def open_app(driver, base: str, token: str, variant: str = "after") -> None:
    reset_search_state(base, token)
    page.open_page(driver, page.app_url(base, variant, token), TIMEOUT_S)


def js(driver, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def wait(driver, what: str, script: str, *args: Any) -> Any:
    """Wait for ``script`` to answer; a timeout names the page's console errors (a failed
    request shows there), so a failure on a loaded machine says what the page saw."""
    try:
        return page.wait_for(what, lambda: js(driver, script, *args), TIMEOUT_S)
    except page.PageError as error:
        raise page.PageError(f"{error}; console errors: {chrome.console_errors(driver)}") from None


def results_text(driver) -> str:
    return str(js(driver, "return document.querySelector('.search-results').textContent"))


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


#: An image card of the grid (a video card has a badge).
IMAGE_CARD = (
    "return [...document.querySelectorAll('.asset-card[data-index]')]"
    ".find((c) => !c.querySelector('.badge')) || null"
)
#: The picture of an image card wholly inside the grid's scrolled view, as a person would click
#: it. A card rendered in the grid's overscan, half out of view, was scrolled to by the driver
#: and clicked at the centre of its visible part, which could be its checkbox or its "job"
#: button: no viewer opened (3 runs in 9, after a scroll to the end).
VISIBLE_IMAGE = """
const view = document.querySelector('.virtual-grid').getBoundingClientRect();
const card = [...document.querySelectorAll('.asset-card[data-index]')].find((c) => {
  const r = c.getBoundingClientRect();
  return !c.querySelector('.badge') && r.top >= view.top && r.bottom <= view.bottom;
});
return card ? card.querySelector('img.progressive-image') : null;
"""


RESULTS_START = (
    "return document.querySelector('.search-results').textContent.startsWith(arguments[0]) || null"
)


def wait_total(driver, total: int) -> None:
    wait(driver, f"{total} results", RESULTS_START, f"{total:,} results")


def no_console_errors(driver) -> None:
    assert chrome.console_errors(driver) == []


def test_first_screen_scroll_to_the_end_and_high_res(driver, unified, token):
    total = api(unified, token, "/v1/search?limit=1")["total"]
    open_app(driver, unified, token)
    decoded = js(
        driver,
        "return [...document.querySelectorAll('.progressive-image')]"
        ".filter((i) => i.complete && i.naturalWidth > 0).length",
    )
    assert decoded >= 6
    assert results_text(driver).startswith(f"{total:,} results")

    scroll = page.scroll_to(driver, total, 20_000, TIMEOUT_S)
    assert scroll.reached
    assert page.wait_loaded(driver, total, TIMEOUT_S) == total
    last = wait(
        driver, "the last card", f"return document.querySelector('[data-index=\"{total - 1}\"]')"
    )
    assert last is not None
    cards = js(driver, "return document.querySelectorAll('.asset-card').length")
    assert cards < total / 2, "the grid renders only the rows near the viewport"

    wait(driver, "an image card in view", VISIBLE_IMAGE).click()
    high = wait(
        driver,
        "the high-res image",
        "return document.querySelector('.viewer [data-quality=high] img')",
    )
    assert "/storage/v1/object/sign/" in high.get_attribute("src")
    assert js(driver, "return arguments[0].naturalWidth", high) > 1  # the 16-px original
    from selenium.webdriver.common.keys import Keys

    page.press(driver, Keys.ESCAPE)
    wait(driver, "the viewer to close", "return document.querySelector('.viewer') === null")
    no_console_errors(driver)


def test_a_failed_high_res_load_is_tried_again(driver, unified, token):
    """The opened image's high-res file fails to load (the browser blocks it, as a dropped
    connection would): the viewer keeps the thumbnail, says it is retrying, and shows the
    high-res image once the file can be fetched again."""
    open_app(driver, unified, token)
    card = wait(driver, "an image card", IMAGE_CARD)
    asset = api(unified, token, f"/v1/assets/{card.get_attribute('data-asset-id')}")
    high_path = urllib.parse.urlsplit(asset["high_res_url"]).path
    assert high_path != urllib.parse.urlsplit(asset["thumbnail_url"]).path
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [f"*{high_path}*"]})
    card.click()
    wait(
        driver,
        "the failed high-res load to be retried",
        "return document.querySelector('.viewer [data-high-res=retrying]')",
    )
    assert js(driver, "return document.querySelector('.viewer [data-quality=thumbnail] img')")
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    high = wait(
        driver,
        "the high-res image after a retry",
        "return document.querySelector('.viewer [data-high-res=shown][data-quality=high] img')",
    )
    assert urllib.parse.urlsplit(high.get_attribute("src")).path == high_path


def test_a_failed_page_of_the_grid_is_asked_for_again(driver, unified, token):
    """The grid's next page fails (the browser blocks it, as a dropped connection would): the
    page says it is trying again and asks again by itself, the user having stopped scrolling;
    once the requests get through, every asset loads without another scroll."""
    total = api(unified, token, "/v1/search?limit=1")["total"]
    open_app(driver, unified, token)
    # The page asks for the second page as soon as the first is shown: the third is blocked.
    loaded = wait(
        driver,
        "the second page",
        "return window.__bench.loaded() > 50 ? window.__bench.loaded() : null",
    )
    assert loaded < total
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*&cursor=*"]})
    page.scroll_to(driver, total, 20_000, 3.0)  # past what is loaded: the next page is asked for
    wait(
        driver,
        "the failed page to be tried again",
        "return document.querySelector('.error[role=alert]')?.textContent"
        ".includes('trying again') || null",
    )
    assert page.bench_value(driver, "__bench.loaded()") == loaded
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    wait(driver, "the next page", "return window.__bench.loaded() > arguments[0] || null", loaded)
    assert js(driver, "return document.querySelector('.error[role=alert]')") is None
    # The user is still at the end of the grid, on placeholders, and scrolls no more: each page
    # that arrives asks for the next one.
    assert page.wait_loaded(driver, total, TIMEOUT_S) == total


def test_a_new_search_has_all_its_tries(driver, unified, token):
    """Tries spent on one search's pages are not held against the next search: its first page
    failing too (the service still away) is tried again."""
    from selenium.webdriver.support.select import Select

    total = api(unified, token, "/v1/search?limit=1")["total"]
    open_app(driver, unified, token)
    wait(driver, "the second page", "return window.__bench.loaded() > 50 || null")
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*&cursor=*"]})
    page.scroll_to(driver, total, 20_000, 3.0)
    wait(
        driver,
        "the tries to run out",
        "const alert = document.querySelector('.error[role=alert]');"
        "return alert && !alert.textContent.includes('trying again') || null",
    )
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*&cursor=*", "*type=image*"]})
    Select(css(driver, "select[name=type]")).select_by_value("image")
    wait(
        driver,
        "the new search's first page to be tried again",
        "return document.querySelector('.error[role=alert]')?.textContent"
        ".includes('trying again') || null",
    )


def test_search_with_filters(driver, unified, token):
    open_app(driver, unified, token)
    timing = page.type_search(driver, PROMPT, keystroke_s=0.05, timeout_s=TIMEOUT_S)
    expected = api(unified, token, "/v1/search?q=red+fox&limit=1")["total"]
    assert expected > 0
    assert timing.results == expected
    assert results_text(driver).startswith(f"{expected:,} results")
    prompts = js(
        driver,
        "return [...document.querySelectorAll('.asset-card .prompt')].map((p) => p.textContent)",
    )
    assert prompts
    assert all(PROMPT in p.lower() for p in prompts)

    from selenium.webdriver.support.select import Select

    Select(css(driver, "select[name=type]")).select_by_value("video")
    videos = api(unified, token, "/v1/search?q=red+fox&type=video&limit=1")["total"]
    wait_total(driver, videos)
    no_console_errors(driver)


def checkbox(driver, index: int):
    return css(driver, f'[data-index="{index}"] input[type=checkbox]')


def selected_text(driver) -> str:
    return str(
        js(
            driver,
            "const c = document.querySelector('.selected-count'); return c ? c.textContent : ''",
        )
    )


def visible_ids(driver) -> set[str]:
    return set(
        js(
            driver,
            "return [...document.querySelectorAll('[data-asset-id]')]"
            ".map((c) => c.dataset.assetId)",
        )
    )


def test_select_by_shift_click_and_job_then_dismiss_undo_redo(driver, unified, token):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    open_app(driver, unified, token)
    total = api(unified, token, "/v1/search?limit=1")["total"]
    checkbox(driver, 0).click()
    ActionChains(driver).key_down(Keys.SHIFT).click(checkbox(driver, 3)).key_up(
        Keys.SHIFT
    ).perform()
    assert selected_text(driver).startswith("4 selected")
    page.press(driver, Keys.ESCAPE)
    assert selected_text(driver) == ""

    job_button = css(driver, ".asset-card .select-job")
    job_card = job_button.find_element("xpath", "./..")
    job_id = api(unified, token, f"/v1/assets/{job_card.get_attribute('data-asset-id')}")["job_id"]
    job_button.click()
    members = [
        a["id"]
        for a in api(unified, token, "/v1/search?limit=200")["assets"]
        if a["job_id"] == job_id
    ]
    assert selected_text(driver).startswith(f"{len(members)} selected (1 job)")

    css(driver, ".dismiss-btn").click()
    wait_total(driver, total - len(members))
    assert not visible_ids(driver) & set(members)
    css(driver, ".undo-btn").click()
    wait_total(driver, total)
    wait(
        driver,
        "the job's assets back",
        "return arguments[0].every((id) =>"
        ' document.querySelector(`[data-asset-id="${id}"]`)) || null',
        members,
    )

    first = css(driver, '[data-index="0"]').get_attribute("data-asset-id")
    checkbox(driver, 0).click()
    css(driver, ".dismiss-btn").click()
    wait_total(driver, total - 1)
    page.press(driver, Keys.CONTROL, "z")
    wait_total(driver, total)
    assert first in visible_ids(driver)
    page.press(driver, Keys.CONTROL, Keys.SHIFT, "z")
    wait_total(driver, total - 1)
    assert first not in visible_ids(driver)
    page.press(driver, Keys.CONTROL, "z")
    wait_total(driver, total)
    no_console_errors(driver)


def test_keyboard_shortcuts(driver, unified, token):
    open_app(driver, unified, token)
    checks = page.check_shortcuts(driver)
    assert checks == dict.fromkeys(checks, True)
    no_console_errors(driver)


def test_before_page_loads_everything_full_size_and_filters_in_memory(driver, legacy, token):
    total = api(legacy, token, "/v1/search?limit=1")["total"]
    open_app(driver, legacy, token, "before")
    assert js(driver, "return document.querySelectorAll('.before-card').length") == total
    widths = js(
        driver,
        "return [...document.querySelectorAll('.before-card img')].slice(0, 6)"
        ".map((i) => i.naturalWidth)",
    )
    assert widths
    assert min(widths) > 1, "full-size images, not thumbnails"
    timing = page.type_search(driver, PROMPT, keystroke_s=0.05, timeout_s=TIMEOUT_S)
    assert timing.results == api(legacy, token, "/v1/search?q=red+fox&limit=1")["total"]
    assert js(driver, "return document.querySelectorAll('.before-card').length") == timing.results
    no_console_errors(driver)


def test_browser_step_measures_both_pages(frontend_db, storage, tmp_path):
    from benchmarks.browser.step import BrowserSettings, run_browser_step
    from reports.browser import section as report_section

    settings = BrowserSettings(rounds=1, scroll_targets=(100, 400), keystroke_s=0.02)
    env = {**os.environ, **SETTINGS.secrets()}
    result = run_browser_step(frontend_db[0], storage, "tiny", tmp_path, settings=settings, env=env)
    figures, meta = result["figures"], result["meta"]
    for side in ("before", "after"):
        for key in ("first_thumbnails_ms", "mobile_first_thumbnails_ms", "initial_kb", "search_ms"):
            assert figures[f"browser.{side}.{key}"] > 0, (side, key)
        assert figures[f"browser.{side}.heap_400_mb"] > 0
        assert figures[f"browser.{side}.console_error_count"] == 0
        assert meta["frame_histograms"]["counts"][side]["100"]
    assert figures["browser.after.shortcuts_ok"] == 1.0
    assert "browser.saving.first_thumbnails" in figures
    section = report_section(result)
    assert section["measured"]
    rows = {row["figure"]: row for row in section["rows"]}
    for key in ("first_thumbnails_ms", "mobile_first_thumbnails_ms", "initial_kb", "search_ms"):
        assert rows[key]["before"]["median"] > 0
        assert rows[key]["after"]["median"] > 0
    strips = section["filmstrips"]
    assert [s["ms"] for s in strips["after"]] == [100, 250, 500, 750, 1000, 2000]
    assert all((tmp_path / "browser" / s["file"]).exists() for s in strips["before"])
    from reports.report import RunData, render_html
    from reports.targets import load_targets

    run = RunData(scale="tiny", targets=load_targets(), figures=figures, meta={"browser": meta})
    html = render_html(run, tmp_path)
    assert "<table id='browser'>" in html
    assert html.count("data:image/png;base64,") == len(strips["before"]) + len(strips["after"])


def test_the_quick_profile_measures_the_desktop_first_screen_and_says_what_it_leaves_out(
    frontend_db, storage, tmp_path
):
    from benchmarks.browser.step import PROFILES, run_browser_step
    from reports.browser import section as report_section

    settings = dataclasses.replace(PROFILES["quick"], rounds=1, keystroke_s=0.02)
    env = {**os.environ, **SETTINGS.secrets()}
    result = run_browser_step(frontend_db[0], storage, "tiny", tmp_path, settings=settings, env=env)
    figures, meta = result["figures"], result["meta"]
    assert figures["browser.phone_rounds"] == 0
    for side in ("before", "after"):
        assert figures[f"browser.{side}.first_thumbnails_ms"] > 0
        assert f"browser.{side}.mobile_first_thumbnails_ms" not in figures
        assert not any(k.startswith(f"browser.{side}.scroll_") for k in figures)
        assert [len(r["searches"]) for r in meta["rounds"][side]] == [1]
    assert figures["browser.after.shortcuts_ok"] == 1.0
    assert "filmstrips" not in meta
    section = report_section(result)
    assert section["profile"] == "quick"
    assert "First screen, mobile (4x CPU, 4G, phone)" in section["not_measured"]
    assert {row["figure"] for row in section["rows"]} >= {"first_thumbnails_ms", "search_ms"}
