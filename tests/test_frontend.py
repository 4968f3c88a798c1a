"""/app/: the built front end's files, public, and a JSON answer when there is no build."""

from __future__ import annotations

from typing import Any

import pytest

from reference.app import FEATURES, create_app
from reference.system import OPENAPI
from reference.webapp import webapp_feature
from tests.conftest import test_settings as settings_for


@pytest.fixture
def dist(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>w</title>", encoding="utf-8")
    (tmp_path / "app.js").write_text("console.log(1)", encoding="utf-8")
    return tmp_path


def app_with(dsn: str, dist_dir) -> Any:
    features = (*(f for f in FEATURES if f.name != "webapp"), webapp_feature(dist_dir))
    return create_app(settings_for(dsn), features)


async def test_page_and_files_are_served_without_a_token(aiohttp_client, database, dist):
    client = await aiohttp_client(app_with(database.dsn, dist))
    page = await client.get("/app/?variant=before")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<title>w</title>" in await page.text()
    script = await client.get("/app/app.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    again = await client.get("/app/app.js", headers={"If-None-Match": script.headers["ETag"]})
    assert again.status == 304


async def test_bare_path_redirects_keeping_the_query(aiohttp_client, database, dist):
    client = await aiohttp_client(app_with(database.dsn, dist))
    resp = await client.get("/app?variant=before", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/app/?variant=before"


@pytest.mark.parametrize("name", ["missing.js", ".hidden", "..", "%2e%2e%2fpyproject.toml"])
async def test_unknown_or_unsafe_files_are_404_json(aiohttp_client, database, dist, name):
    client = await aiohttp_client(app_with(database.dsn, dist))
    resp = await client.get(f"/app/{name}")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"


async def test_without_a_build_the_page_says_how_to_make_one(aiohttp_client, database, tmp_path):
    client = await aiohttp_client(app_with(database.dsn, tmp_path / "dist"))
    for path in ("/app/", "/app/app.js"):
        resp = await client.get(path)
        assert resp.status == 503
        body = await resp.json()
        assert body["error"] == "webapp_not_built"
        assert "make frontend" in body["message"]


def test_the_page_is_public_and_documented_as_the_webapp():
    doc = create_app(settings_for("postgresql://unused"))[OPENAPI]
    for path in ("/app", "/app/", "/app/{name}"):
        operation = doc["paths"][path]["get"]
        assert operation["tags"] == ["webapp"]
        assert operation["security"] == []


def test_without_chromium_the_browser_targets_read_not_measured(tmp_path):
    from benchmarks.browser.step import run_browser_step
    from reports.browser import section as report_section
    from reports.targets import Verdict, load_targets

    env = {"CHROMIUM": str(tmp_path / "no-chromium"), "CHROMEDRIVER": str(tmp_path / "none")}
    result = run_browser_step(
        "postgresql://unused", tmp_path, "tiny", tmp_path, env=env, install=False
    )
    assert result["figures"] == {}
    assert "apt-get install -y chromium chromium-driver" in result["meta"]["reason"]
    assert (tmp_path / "figures" / "browser.json").exists()
    verdicts = {r.target.id: r.verdict for r in load_targets().evaluate(result["figures"])}
    browser = {k: v for k, v in verdicts.items() if k.startswith("browser_")}
    assert browser
    # The phone's target needs phone rounds (the quick profile has none): with no browser at
    # all it has none either; every other browser target is "not measured" and fails the run.
    assert verdicts.pop("browser_mobile") is Verdict.NOT_APPLICABLE
    browser.pop("browser_mobile")
    assert set(browser.values()) <= {Verdict.NOT_MEASURED, Verdict.NO_FIGURE}
    assert verdicts["browser_initial_load"] is Verdict.NOT_MEASURED
    assert report_section(result) == {"measured": False, "reason": result["meta"]["reason"]}


def test_dropped_frames_count_missed_vsync_intervals():
    from benchmarks.browser.page import Scroll

    scroll = Scroll([16.7, 33.3, 16.6, 50.1], [], 0.1, 0.0, True)
    assert scroll.dropped_share == 3 / 7  # 1 + 2 + 1 + 3 intervals, 3 of them without a frame
    assert Scroll([16.7] * 10, [], 0.2, 0.0, True).dropped_share == 0


def test_figures_are_medians_over_rounds_and_savings_after_against_before():
    from benchmarks.browser.step import summarise

    rounds = {
        "before": [{"first_thumbnails_ms": v, "round": i} for i, v in enumerate((900, 1000, 5000))],
        "after": [{"first_thumbnails_ms": v, "round": i} for i, v in enumerate((100, 300, 200))],
    }
    figures, spread = summarise(rounds)
    assert figures["browser.before.first_thumbnails_ms"] == 1000
    assert figures["browser.after.first_thumbnails_ms"] == 200
    assert figures["browser.saving.first_thumbnails"] == 0.8
    assert spread["before"]["first_thumbnails_ms"] == {"median": 1000, "min": 900, "max": 5000}
    assert not any(key.endswith(".round") for key in figures)
