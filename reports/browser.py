"""The report's browser section: the browser step's figures as rows, charts and filmstrips.

Pure shaping of ``figures/browser.json`` (``benchmarks/browser`` measures it); the report embeds
the filmstrip screenshots so that ``index.html`` stays one self-contained file.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

VARIANTS: Final = ("before", "after")
REPORT_ROWS: Final = (
    ("first_thumbnails_ms", "First screen of thumbnails decoded", "ms"),
    ("lcp_ms", "Largest Contentful Paint", "ms"),
    ("mobile_first_thumbnails_ms", "First screen, mobile (4x CPU, 4G, phone)", "ms"),
    ("initial_kb", "Bytes, initial load", "kB"),
    ("scroll_kb", "Bytes, scrolling to asset 10,000", "kB"),
    ("scroll_1k_dropped_share", "Dropped frames, scroll to 1,000", "share"),
    ("scroll_10k_dropped_share", "Dropped frames, scroll 1,000 to 10,000", "share"),
    ("scroll_10k_long_task_ms", "Long tasks, scroll 1,000 to 10,000", "ms"),
    ("heap_1k_mb", "JS heap after scrolling to 1,000", "MB"),
    ("heap_10k_mb", "JS heap after scrolling to 10,000", "MB"),
    ("dom_nodes_10k", "DOM nodes after scrolling to 10,000", "nodes"),
    ("search_ms", "Search, last keystroke to rendered results", "ms"),
)


def section(component: Mapping[str, Any]) -> dict[str, Any]:
    """The report's browser section as data (``component``: run_browser_step's result): rows of
    before and after side by side (median, min, max), frame-time histograms, filmstrips."""
    meta = component.get("meta", {})
    if not meta.get("measured"):
        return {"measured": False, "reason": meta.get("reason", "the browser step did not run")}
    spread = meta.get("spread", {})
    figures = component.get("figures", {})
    rows, left_out = [], []
    for key, label, unit in REPORT_ROWS:
        sides = {v: spread.get(v, {}).get(key) for v in VARIANTS}
        if not any(sides.values()):
            left_out.append(label)
            continue
        saving = figures.get(f"browser.saving.{key.removesuffix('_ms')}")
        rows.append({"figure": key, "label": label, "unit": unit, **sides, "saving": saving})
    return {
        "measured": True,
        "profile": (meta.get("settings") or {}).get("profile", "full"),
        "not_measured": left_out,
        "scale": meta.get("scale"),
        "seconds": meta.get("seconds"),
        "rows": rows,
        "mobile_ratio": spread.get("after", {}).get("mobile_ratio"),
        "shortcuts": [r.get("shortcuts") for r in meta.get("rounds", {}).get("after", [])],
        "frame_histograms": meta.get("frame_histograms"),
        "filmstrips": meta.get("filmstrips", {}),
        "filmstrip_dir": "browser",
    }


def filmstrip_images(
    section_data: Mapping[str, Any], run_dir: Path
) -> dict[str, list[dict[str, Any]]]:
    """Each variant's screenshots as ``data:`` URIs with their time, for inline ``<img>``."""
    found: dict[str, list[dict[str, Any]]] = {}
    folder = run_dir / str(section_data.get("filmstrip_dir", "browser"))
    for variant, shots in (section_data.get("filmstrips") or {}).items():
        for shot in shots or []:
            path = folder / str(shot.get("file", ""))
            if not path.is_file():
                continue
            encoded = base64.b64encode(path.read_bytes()).decode("ascii")
            found.setdefault(variant, []).append(
                {"ms": shot.get("ms"), "src": f"data:image/png;base64,{encoded}"}
            )
    return found
