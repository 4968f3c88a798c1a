"""What the benchmark does inside the page, through ``window.__bench`` (frontend/src/perf.ts).

Timings come from the page's own clock (``performance.now()``, zero at navigation start), so
WebDriver's round trips never enter a figure.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

T = TypeVar("T")

VSYNC_MS: Final = 1000 / 60
POLL_S: Final = 0.05
QUIET_MS: Final = 500.0
CAPTURE_TRY_S: Final = 5.0


class PageError(RuntimeError):
    """The page did not reach the state the benchmark waits for (the message says which)."""


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float) -> T:
    """Poll ``probe`` until it answers; a page too busy to run the probe's script in time
    (a slowed-down phone rendering 10,000 cards) is "not yet", not a failure."""
    from selenium.common.exceptions import TimeoutException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except TimeoutException:
            value = None
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise PageError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def app_url(base_url: str, variant: str, token: str) -> str:
    return f"{base_url}/app/?{urlencode({'variant': variant, 'token': token})}"


def bench_value(driver: Any, expression: str) -> Any:
    return driver.execute_script(f"return window.__bench ? ({expression}) : null")


FIRST_SCREEN_JS: Final = """
const alert = document.querySelector('[role=alert]');
if (alert) return {error: alert.textContent};
return window.__bench ? {at: window.__bench.firstScreenAt} : null;
"""


def open_page(driver: Any, url: str, timeout_s: float) -> float:
    """Navigate; the time (ms from navigation) when the first screen's images had decoded.
    An error the page shows ends the wait at once, with its text."""
    driver.get(url)

    def first_screen() -> float | None:
        state = driver.execute_script(FIRST_SCREEN_JS)
        if state and "error" in state:
            raise PageError(f"the page shows an error: {state['error']}")
        return None if not state or state["at"] is None else float(state["at"])

    return wait_for("the first screen of thumbnails", first_screen, timeout_s)


LCP_JS: Final = """
const done = arguments[arguments.length - 1];
let last = null;
new PerformanceObserver((list) => {
  const entries = list.getEntries();
  last = entries[entries.length - 1].startTime;
}).observe({type: 'largest-contentful-paint', buffered: true});
setTimeout(() => done(last), 200);
"""


def largest_contentful_paint(driver: Any) -> float | None:
    value = driver.execute_async_script(LCP_JS)
    return None if value is None else float(value)


TRANSFER_JS: Final = """
const since = arguments[0];
const entries = [...performance.getEntriesByType('navigation'),
                 ...performance.getEntriesByType('resource')];
let bytes = 0, count = 0, latest = 0;
for (const e of entries) {
  latest = Math.max(latest, e.responseEnd);
  if (e.startTime < since) continue;
  bytes += e.transferSize; count += 1;
}
return {bytes, count, latest, now: performance.now()};
"""


@dataclass(frozen=True)
class Transfer:
    bytes: float
    requests: int


def transferred(driver: Any, since_ms: float = 0.0) -> Transfer:
    raw = driver.execute_script(TRANSFER_JS, since_ms)
    return Transfer(float(raw["bytes"]), int(raw["count"]))


def wait_quiet(driver: Any, timeout_s: float) -> float:
    """Until no response has ended for QUIET_MS; returns the page time then."""

    def quiet() -> float | None:
        raw = driver.execute_script(TRANSFER_JS, 0)
        return float(raw["now"]) if raw["now"] - raw["latest"] > QUIET_MS else None

    return wait_for("the network to go quiet", quiet, timeout_s)


SCROLL_JS: Final = """
const [target, speed, timeoutMs, done] = arguments;
const b = window.__bench;
const root = b.scrollRoot();
if (!root) { done({error: 'no scroll root'}); return; }
const frames = [], longTasks = [];
const observer = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) longTasks.push(e.duration);
});
observer.observe({type: 'longtask'});
const startTop = root.scrollTop;
const goal = () => {
  const count = b.total() ?? target;
  return Math.min(b.offsetOf(Math.max(Math.min(target, count) - 1, 0)),
                  root.scrollHeight - root.clientHeight);
};
let t0 = null, last = null;
const frame = (now) => {
  if (t0 === null) { t0 = now; last = now; requestAnimationFrame(frame); return; }
  frames.push(now - last);
  last = now;
  const end = goal();
  // A list whose size is not known yet (its total is a lower bound) grows as pages arrive.
  const known = b.total() !== null || b.loaded() >= target;
  if ((root.scrollTop >= end - 1 && known) || now - t0 > timeoutMs) {
    setTimeout(() => {
      observer.disconnect();
      done({frames, longTasks, ms: now - t0, from: startTop, to: root.scrollTop, end,
            started: t0, reached: root.scrollTop >= end - 1});
    }, 50);
    return;
  }
  root.scrollTop = Math.min(startTop + speed * (now - t0) / 1000, end);
  requestAnimationFrame(frame);
};
requestAnimationFrame(frame);
"""


@dataclass
class Scroll:
    frames_ms: list[float]
    long_tasks_ms: list[float]
    seconds: float
    started_ms: float
    reached: bool

    @property
    def dropped_share(self) -> float:
        """Share of vsync intervals with no new frame: a delta of n intervals drops n - 1."""
        intervals = [max(1, round(d / VSYNC_MS)) for d in self.frames_ms]
        total = sum(intervals)
        return (total - len(intervals)) / total if total else 0.0


def scroll_to(driver: Any, index: int, speed_px_s: float, timeout_s: float) -> Scroll:
    """Scroll the grid at a steady speed until asset ``index`` (or the list's end) is in view."""
    driver.set_script_timeout(timeout_s + 10)
    raw = driver.execute_async_script(SCROLL_JS, index, speed_px_s, timeout_s * 1000)
    if "error" in raw:
        raise PageError(raw["error"])
    return Scroll(
        [float(f) for f in raw["frames"]],
        [float(t) for t in raw["longTasks"]],
        float(raw["ms"]) / 1000,
        float(raw["started"]),
        bool(raw["reached"]),
    )


def wait_loaded(driver: Any, count: int, timeout_s: float) -> int:
    """Until the page holds ``count`` assets (or all of them)."""

    def enough() -> int | None:
        loaded, total = bench_value(driver, "[__bench.loaded(), __bench.total()]") or (0, None)
        # total is None until a list beyond the server's count cap has its last page.
        return loaded if loaded >= (count if total is None else min(count, total)) else None

    return int(wait_for(f"{count} assets loaded", enough, timeout_s))


@dataclass
class SearchTiming:
    query: str
    typed_to_rendered_ms: float
    results: int


SEARCHES_JS: Final = "return window.__bench.searches.length"


def type_search(driver: Any, query: str, *, keystroke_s: float, timeout_s: float) -> SearchTiming:
    """Type ``query`` into the search box a key at a time, as a person does; the time from the
    last keystroke to the frame that shows its results."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, "input[name=q]")
    if box.get_attribute("value"):
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        _wait_search(driver, "", timeout_s)
    for char in query:
        box.send_keys(char)
        time.sleep(keystroke_s)
    entry = _wait_search(driver, query, timeout_s)
    return SearchTiming(query, entry["renderedAt"] - entry["inputAt"], int(entry["results"]))


def _wait_search(driver: Any, query: str, timeout_s: float) -> dict[str, Any]:
    js = f"return window.__bench.searches.find((s) => s.query === {query!r}) || null"

    def found() -> dict[str, Any] | None:
        entry: dict[str, Any] | None = driver.execute_script(js)
        if entry is not None:
            driver.execute_script("window.__bench.searches.length = 0")
        return entry

    return wait_for(f"the results for {query!r}", found, timeout_s)


@dataclass
class Filmstrip:
    times_ms: list[float] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def capture(driver: Any, timeout_s: float) -> str:
    """A PNG of the viewport (base64), asked of Chromium's DevTools endpoint directly: through
    chromedriver the same command can hang for minutes while a heavy page is loading. An
    attempt that gets no answer in a few seconds is made again, until ``timeout_s``."""
    address = driver.capabilities["goog:chromeOptions"]["debuggerAddress"]

    def attempt() -> str | None:
        try:
            return asyncio.run(asyncio.wait_for(_capture(f"http://{address}"), CAPTURE_TRY_S))
        except (TimeoutError, PageError, OSError):
            return None

    return wait_for("a screenshot", attempt, timeout_s)


async def _capture(endpoint: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{endpoint}/json/list") as response:
            targets = await response.json()
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with session.ws_connect(ws_url, max_msg_size=0) as ws:
            await ws.send_json({"id": 1, "method": "Page.captureScreenshot", "params": {}})
            async for message in ws:
                body = message.json()
                if body.get("id") == 1:
                    if "error" in body:
                        raise PageError(f"screenshot failed: {body['error']}")
                    return str(body["result"]["data"])
    raise PageError("the DevTools connection closed before the screenshot")


def filmstrip(driver: Any, url: str, at_ms: list[float], out_dir: Path, prefix: str) -> Filmstrip:
    """Screenshots at fixed times after navigation starts (each file named by its time; the
    time it was really taken is kept beside it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    strip = Filmstrip()
    driver.get(url)
    started = time.monotonic()
    # A screenshot asked for while the navigation commits can go unanswered: wait for the page.
    wait_for("the page to commit", lambda: bench_value(driver, "true"), 30)
    for at in at_ms:
        delay = at / 1000 - (time.monotonic() - started)
        if delay > 0:
            time.sleep(delay)
        data = capture(driver, timeout_s=30)
        path = out_dir / f"{prefix}-{int(at):04d}ms.png"
        path.write_bytes(base64.b64decode(data))
        strip.times_ms.append((time.monotonic() - started) * 1000)
        strip.files.append(path)
    return strip


SHORTCUT_STATE_JS: Final = """
const focused = document.querySelector('.asset-card.focused');
const count = document.querySelector('.selected-count');
return {
  active: document.activeElement ? document.activeElement.getAttribute('name') : null,
  selected: document.querySelectorAll('.asset-card.selected').length,
  selectedText: count ? count.textContent : '',
  focused: focused ? Number(focused.dataset.index) : null,
  loaded: window.__bench.loaded(),
};
"""


def press(driver: Any, *keys: str) -> None:
    """Keys as a person presses them: Ctrl and Shift held down around the others."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    chain = ActionChains(driver)
    modifiers = [k for k in keys if k in (Keys.CONTROL, Keys.SHIFT)]
    for key in modifiers:
        chain.key_down(key)
    for key in keys:
        if key not in modifiers:
            chain.send_keys(key)
    for key in reversed(modifiers):
        chain.key_up(key)
    chain.perform()


def check_shortcuts(driver: Any) -> dict[str, bool]:
    """The plan page's keyboard shortcuts that change no data, each as a user presses it."""
    from selenium.webdriver.common.keys import Keys

    def state_after(*keys: str) -> dict[str, Any]:
        press(driver, *keys)
        state: dict[str, Any] = driver.execute_script(SHORTCUT_STATE_JS)
        return state

    results = {"slash_focuses_search": state_after("/")["active"] == "q"}
    press(driver, Keys.ESCAPE)
    selected = state_after(Keys.CONTROL, "a")
    results["ctrl_a_selects_loaded"] = selected["selectedText"].startswith(f"{selected['loaded']} ")
    results["escape_clears_selection"] = state_after(Keys.ESCAPE)["selectedText"] == ""
    before = driver.execute_script(SHORTCUT_STATE_JS)["focused"] or 0
    results["arrow_moves_focus"] = state_after(Keys.ARROW_RIGHT)["focused"] == before + 1
    return results
