"""Numbers as the report, the charts and the terminal tables print them.

Two styles: :func:`fmt_value` for the HTML report and its charts (``—`` when missing, thousands
separators) and :func:`fmt_terse` for the gate's terminal tables (``-`` when missing, ASCII only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

ValueFormat = Callable[[float | None, str], str]


def format_number(value: float) -> str:
    """Short, readable number: 1,234 / 12.3 / 0.0123."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    if magnitude >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2g}"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if unit in ("saving", "ratio"):
        return f"{value * 100:.1f}%" if abs(value) >= 0.001 or value == 0 else f"{value:.2%}"
    if unit == "x":
        return f"{value:,.1f}x"
    if unit == "assets":
        return f"{value:,.0f}"
    if unit == "rows/s":
        return f"{value:,.0f} {unit}"
    return f"{format_number(value)} {unit}"


def fmt_terse(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "saving":
        return f"{value:.1%}"
    if unit == "x":
        return f"{value:.1f}x"
    return f"{value:,.6g}"


def fmt_bound(op: str, bound: float | None, unit: str, style: ValueFormat = fmt_value) -> str:
    """``< 500 ms``; a missing bound reads as ``style`` writes a missing figure."""
    return style(None, unit) if bound is None else f"{op} {style(bound, unit)}"


def fmt_margin(margin: float | None) -> str:
    return "—" if margin is None else f"{margin * 100:+.0f}%"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1:
        return f"{value:.3f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3f} ms"
    return f"{value * 1e6:.1f} us"


def fmt_count(value: Any) -> str | None:
    """Thousands separators for an int; None for anything else, so the row is left out."""
    return f"{value:,}" if isinstance(value, int) else None
