"""The browser step of ``make bench``: both pages, the heavy user, cold caches, several rounds.

Per round and page (``before`` against the service in ``URL_MODE=legacy``, ``after`` against
``unified``; each service freshly started, so its URL cache is as cold as the new browser
profile): time to the first screen of decoded thumbnails and Largest Contentful Paint; bytes
until the network is quiet; a steady scroll to asset 1,000 and on to 10,000 with frame times
(``requestAnimationFrame`` deltas), dropped frames and long tasks, then heap and DOM size; the
search typed a key at a time, keystroke to rendered results; then the first screen again under
mobile emulation. Figures are medians over the rounds (``browser.<page>.<metric>``) and savings
of after against before (``browser.saving.<metric>``); the meta keeps every round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchmarks.browser import chrome, page
from fixtures.processes import ServiceProcess
from fixtures.spec import QUICK_SCALE
from reports import uncertainty
from reports.browser import VARIANTS

URL_MODE: Final = {"before": "legacy", "after": "unified"}
SEARCH_PROMPTS: Final = ("red fox", "lighthouse", "dragon")
FILMSTRIP_MS: Final = (100, 250, 500, 750, 1000, 2000)
FRAME_BUCKETS_MS: Final = (17.0, 34.0, 50.0, 100.0, 250.0)
TOKEN_TTL_S: Final = 6 * 3600
#: Figures whose after-against-before saving is a figure too (lower is better for each). Not
#: search: the plan's 300 ms debounce is most of its figure, by design.
SAVINGS: Final = (
    "first_thumbnails_ms",
    "lcp_ms",
    "initial_kb",
    "total_kb",
    "heap_10k_mb",
    "dom_nodes_10k",
)


@dataclass(frozen=True)
class BrowserSettings:
    rounds: int = 3
    scroll_targets: tuple[int, ...] = (1_000, 10_000)
    scroll_speed_px_s: float = 12_000.0
    keystroke_s: float = 0.12
    load_timeout_s: float = 900.0
    scroll_timeout_s: float = 180.0
    mobile: bool = True
    filmstrip: bool = True
    #: How many of SEARCH_PROMPTS each desktop round types.
    searches: int = len(SEARCH_PROMPTS)
    profile: str = "full"

    @classmethod
    def from_env(cls, env: Mapping[str, str], scale: str = "plan") -> BrowserSettings:
        """``BROWSER_PROFILE`` (``full``; ``quick`` by default at SCALE=tiny) and
        ``BROWSER_ROUNDS`` (the profile's rounds when unset)."""
        name = env.get("BROWSER_PROFILE") or ("quick" if scale == QUICK_SCALE else "full")
        if name not in PROFILES:
            raise ValueError(f"BROWSER_PROFILE={name!r}: one of {', '.join(PROFILES)}")
        chosen = PROFILES[name]
        raw = env.get("BROWSER_ROUNDS")
        if raw is None or raw == "":
            return chosen
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"BROWSER_ROUNDS={raw!r}: a whole number of rounds, at least 1")
        return dataclasses.replace(chosen, rounds=int(raw))


#: ``full`` measures everything. ``quick`` keeps what a small dataset can say within the quick
#: run's budget: the desktop first screen, bytes, one typed search and the shortcuts, two
#: rounds (each figure's interval spans both; a round of the pre-plan page is about 13 s even
#: at tiny scale, its 600 full-size images). No scroll (the long-list targets need the plan
#: scale anyway), no filmstrip, and no phone: its targets read "not applicable" with the reason
#: (they need ``browser.phone_rounds``).
PROFILES: Final[Mapping[str, BrowserSettings]] = {
    "full": BrowserSettings(),
    "quick": BrowserSettings(
        rounds=2, scroll_targets=(), mobile=False, filmstrip=False, searches=1, profile="quick"
    ),
}


def target_label(count: int) -> str:
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def reset_search_state(base_url: str, token: str) -> None:
    """The page restores the saved search: every round starts from the default one."""
    body = json.dumps({"query": "", "filters": {}, "sort": {}}).encode()
    request = urllib.request.Request(  # noqa: S310 (loopback, our own service)
        f"{base_url}/v1/search/state",
        data=body,
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        response.read()


def desktop_round(driver: Any, url: str, variant: str, s: BrowserSettings) -> dict[str, Any]:
    found: dict[str, Any] = {}
    found["first_thumbnails_ms"] = page.open_page(driver, url, s.load_timeout_s)
    found["lcp_ms"] = page.largest_contentful_paint(driver)
    page.wait_quiet(driver, s.load_timeout_s)
    initial = page.transferred(driver)
    found["initial_kb"] = initial.bytes / 1000
    found["initial_requests"] = initial.requests
    frames: dict[str, list[float]] = {}
    for target in s.scroll_targets:
        label = target_label(target)
        scroll = page.scroll_to(driver, target, s.scroll_speed_px_s, s.scroll_timeout_s)
        page.wait_loaded(driver, target, s.load_timeout_s)
        page.wait_quiet(driver, s.load_timeout_s)
        memory = chrome.memory(driver)
        frames[label] = scroll.frames_ms
        found[f"scroll_{label}_dropped_share"] = scroll.dropped_share
        found[f"scroll_{label}_frame_p50_ms"] = percentile(scroll.frames_ms, 0.5)
        found[f"scroll_{label}_frame_p95_ms"] = percentile(scroll.frames_ms, 0.95)
        found[f"scroll_{label}_long_tasks"] = len(scroll.long_tasks_ms)
        found[f"scroll_{label}_long_task_ms"] = sum(scroll.long_tasks_ms)
        found[f"scroll_{label}_seconds"] = scroll.seconds
        found[f"scroll_{label}_reached"] = scroll.reached
        found[f"heap_{label}_mb"] = memory["heap_mb"]
        found[f"dom_nodes_{label}"] = memory["dom_nodes"]
        found[f"dom_elements_{label}"] = memory["dom_elements"]
    if s.scroll_targets:
        total = page.transferred(driver)
        found["total_kb"] = total.bytes / 1000
        found["scroll_kb"] = (total.bytes - initial.bytes) / 1000
    found["loaded_assets"] = page.bench_value(driver, "__bench.loaded()")
    searches = [
        page.type_search(driver, q, keystroke_s=s.keystroke_s, timeout_s=s.load_timeout_s)
        for q in SEARCH_PROMPTS[: s.searches]
    ]
    found["search_ms"] = statistics.median(x.typed_to_rendered_ms for x in searches)
    found["search_max_ms"] = max(x.typed_to_rendered_ms for x in searches)
    found["searches"] = [vars(x) for x in searches]
    if variant == "after":
        checks = page.check_shortcuts(driver)
        found["shortcuts"] = checks
        found["shortcuts_ok"] = sum(checks.values()) / len(checks)
    found["frames"] = frames
    found["console_errors"] = chrome.console_errors(driver)
    return found


def mobile_round(driver: Any, url: str, s: BrowserSettings) -> dict[str, Any]:
    first = page.open_page(driver, url, s.load_timeout_s)
    lcp = page.largest_contentful_paint(driver)
    page.wait_quiet(driver, s.load_timeout_s)
    return {
        "first_thumbnails_ms": first,
        "lcp_ms": lcp,
        "initial_kb": page.transferred(driver).bytes / 1000,
        "console_errors": chrome.console_errors(driver),
    }


def _numbers(rounds: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Every numeric per-round value, by name, across the rounds."""
    out: dict[str, list[float]] = {}
    for found in rounds:
        for key, value in found.items():
            if key in ("round", "wall_s") or isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                out.setdefault(key, []).append(float(value))
    return out


Rounds = Mapping[str, list[dict[str, Any]]]


def summarise(rounds: Rounds) -> tuple[dict[str, float], dict[str, Any]]:
    figures: dict[str, float] = {}
    spread: dict[str, dict[str, dict[str, float]]] = {}
    numbers = {variant: _numbers(found) for variant, found in rounds.items()}
    for variant, by_key in numbers.items():
        spread[variant] = {}
        for key, values in by_key.items():
            estimate = uncertainty.median_ci(values)
            if estimate is None:
                continue
            uncertainty.put(figures, f"browser.{variant}.{key}", estimate)
            spread[variant][key] = {
                "median": estimate.value,
                "min": min(values),
                "max": max(values),
            }
    for key in SAVINGS:
        before = numbers.get("before", {}).get(key)
        after = numbers.get("after", {}).get(key)
        if before and after and statistics.median(before) > 0:
            # Both pages' rounds resampled: the saving's interval, as for the benchmarks' pairs.
            saving = uncertainty.saving_ci(before, after)
            uncertainty.put(figures, f"browser.saving.{key.removesuffix('_ms')}", saving)
    return figures, spread


def frame_histograms(rounds: Rounds) -> dict[str, Any]:
    """Frame-time counts per page and scroll, every round pooled, in FRAME_BUCKETS_MS."""
    edges = [*FRAME_BUCKETS_MS, float("inf")]
    out: dict[str, Any] = {}
    for variant, found in rounds.items():
        for r in found:
            for label, frames in r.get("frames", {}).items():
                counts = out.setdefault(variant, {}).setdefault(label, [0] * len(edges))
                for f in frames:
                    counts[next(i for i, edge in enumerate(edges) if f <= edge)] += 1
    return {"bucket_upper_ms": [*FRAME_BUCKETS_MS, None], "counts": out}


@contextlib.contextmanager
def service(dsn: str, mode: str, storage_dir: Path, env: Mapping[str, str]) -> Iterator[str]:
    """A fresh single-process service in ``mode`` with the run's secrets; its base URL."""
    log_path = Path(tempfile.gettempdir()) / f"wsbench-browser-{mode}.log"
    running = ServiceProcess(dsn, mode, storage_dir, log_path, env={**env, "WORKERS": "1"})
    with running:
        yield running.url


def _rounds(
    dsn: str, storage_dir: Path, token: str, s: BrowserSettings, env: Mapping[str, str]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    from selenium.common.exceptions import WebDriverException

    for number in range(s.rounds):
        # Alternate the order so drift on a shared machine does not favour one page.
        order = VARIANTS if number % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            profiles = [chrome.DESKTOP, chrome.MOBILE] if s.mobile else [chrome.DESKTOP]
            for profile in profiles:
                started = time.perf_counter()
                try:
                    with service(dsn, URL_MODE[variant], storage_dir, env) as base:
                        reset_search_state(base, token)
                        url = page.app_url(base, variant, token)
                        with chrome.chromium(profile) as driver:
                            found = (
                                mobile_round(driver, url, s)
                                if profile.mobile
                                else desktop_round(driver, url, variant, s)
                            )
                except (page.PageError, WebDriverException, OSError) as exc:
                    # One failed round is reported; the others still make the medians.
                    found = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
                # The round's wall time, service and browser start included (the step's cost).
                wall = {"round": number + 1, "wall_s": time.perf_counter() - started}
                yield variant, profile.name, found | wall


def filmstrips(
    dsn: str, storage_dir: Path, token: str, out_dir: Path, env: Mapping[str, str]
) -> dict[str, list[dict[str, Any]]]:
    strips: dict[str, list[dict[str, Any]]] = {}
    for variant in VARIANTS:
        with service(dsn, URL_MODE[variant], storage_dir, env) as base:
            reset_search_state(base, token)
            with chrome.chromium(chrome.DESKTOP) as driver:
                strip = page.filmstrip(
                    driver, page.app_url(base, variant, token), list(FILMSTRIP_MS), out_dir,
                    variant,
                )  # fmt: skip
        strips[variant] = [
            {"ms": at, "taken_ms": round(taken), "file": path.name}
            for at, taken, path in zip(FILMSTRIP_MS, strip.times_ms, strip.files, strict=True)
        ]
    return strips


def heavy_user_token(scale: str, env: Mapping[str, str]) -> tuple[str, str]:
    from fixtures.generate import heavy_user_id
    from fixtures.spec import spec_for
    from reference.settings import Settings
    from reference.web.auth import issue_token

    user = heavy_user_id(spec_for(scale))
    return str(user), issue_token(Settings.from_env(env).jwt_secret, user, TOKEN_TTL_S)


def not_measured(reason: str) -> dict[str, Any]:
    return {"figures": {}, "meta": {"measured": False, "reason": reason}}


def run_browser_step(
    dsn: str,
    storage_dir: Path,
    scale: str,
    out_dir: Path,
    *,
    settings: BrowserSettings | None = None,
    env: Mapping[str, str] = os.environ,
    install: bool = True,
) -> dict[str, Any]:
    """Measure both pages; ``{"figures": {...}, "meta": {...}}``, also written to
    ``out_dir/figures/browser.json`` (filmstrip PNGs in ``out_dir/browser/``). Without Chromium
    (and no way to install it) the figures are empty and the meta says why and how to fix it:
    every browser target then reads "not measured"."""
    s = settings or BrowserSettings.from_env(env, scale)
    started = time.perf_counter()
    reason = chrome.ensure_chromium(env, install=install)
    if reason is not None:
        result = not_measured(reason)
    else:
        user, token = heavy_user_token(scale, env)
        rounds: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        mobile: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        failures: list[dict[str, str]] = []
        partial = out_dir / "figures" / "browser.partial.json"
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        for variant, kind, found in _rounds(dsn, storage_dir, token, s, env):
            with partial.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"page": variant, "profile": kind, **found}, default=str))
                log.write("\n")
            if "error" in found:
                failures.append({"page": variant, "profile": kind, "error": found["error"]})
                continue
            (rounds if kind == "desktop" else mobile)[variant].append(found)
        if not rounds["before"] or not rounds["after"]:
            raise page.PageError(f"no round of a page succeeded: {failures}")
        for variant in VARIANTS:
            phones = {found["round"]: found for found in mobile[variant]}
            for desk in rounds[variant]:
                phone = phones.get(desk["round"])
                if phone is None:
                    continue
                desk["mobile_first_thumbnails_ms"] = phone["first_thumbnails_ms"]
                desk["mobile_lcp_ms"] = phone["lcp_ms"]
                desk["mobile_ratio"] = desk["first_thumbnails_ms"] / phone["first_thumbnails_ms"]
                desk["console_errors"] = desk["console_errors"] + phone["console_errors"]
            for found in rounds[variant]:
                found["console_error_count"] = len(found["console_errors"])
        figures, spread = summarise(rounds)
        # Rounds with a phone figure on both pages: targets about the phone require one.
        figures["browser.phone_rounds"] = min(
            sum("mobile_ratio" in found for found in rounds[v]) for v in VARIANTS
        )
        meta: dict[str, Any] = {
            "measured": True,
            "scale": scale,
            "user": user,
            "settings": vars(s) | {"scroll_targets": list(s.scroll_targets)},
            "profiles": {p.name: vars(p) for p in (chrome.DESKTOP, chrome.MOBILE)},
            "search_prompts": list(SEARCH_PROMPTS),
            "spread": spread,
            "failed_rounds": failures,
            "frame_histograms": frame_histograms(rounds),
            "rounds": {v: [_without_frames(r) for r in found] for v, found in rounds.items()},
        }
        if s.filmstrip:
            try:
                meta["filmstrips"] = filmstrips(dsn, storage_dir, token, out_dir / "browser", env)
            except (page.PageError, OSError) as exc:
                meta["filmstrips_error"] = f"{type(exc).__name__}: {exc}"
        result = {"figures": figures, "meta": meta}
    result["meta"]["seconds"] = time.perf_counter() - started
    path = out_dir / "figures" / "browser.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return result


def _without_frames(found: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in found.items() if k != "frames"}


#: The report section's rows: (figure, label, unit), lower is better for each.
