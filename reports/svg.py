"""Small inline-SVG charts for the report: grouped bars, lines, histograms.

Each function returns one ``<svg>`` element for inline use in HTML (so no xmlns; no scripts, fonts
or links outside it) with a title, labelled axes and units: the report opens from disk anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Final, Literal

from reports.formatting import format_number

PALETTE: Final = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#9c755f",
)
FONT: Final = "font-family='system-ui, -apple-system, Segoe UI, sans-serif'"
AXIS: Final = "#555"
GRID: Final = "#e3e3e3"


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]
    xs: Sequence[float] | None = None
    #: 95% intervals, drawn as error bars where given (None: no interval for that value).
    intervals: Sequence[tuple[float, float] | None] = ()
    #: Line charts: a colour of its own (several series of one subject share one), a dash
    #: pattern, and whether the legend names it.
    color: str = ""
    dash: str = ""
    in_legend: bool = True

    def interval(self, index: int) -> tuple[float, float] | None:
        return self.intervals[index] if index < len(self.intervals) else None


@dataclass(frozen=True)
class RefLine:
    label: str
    value: float
    color: str = "#c0392b"
    unit: str = ""

    @property
    def text(self) -> str:
        return f"{self.label} {format_number(self.value)}{' ' + self.unit if self.unit else ''}"


def _t(text: object) -> str:
    return escape(str(text), quote=True)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick positions covering [low, high] (Heckbert's nice numbers)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    span = high - low
    raw = span / max(count - 1, 1)
    exponent = math.floor(math.log10(raw))
    fraction = raw / 10**exponent
    step_fraction = next(f for f in (1, 2, 2.5, 5, 10) if fraction <= f)
    step = step_fraction * 10**exponent
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.5:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _open(width: int, height: int, title: str) -> list[str]:
    return [
        f"<svg viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' role='img' aria-label='{_t(title)}' "
        f"class='chart' {FONT} font-size='12'>",
        f"<title>{_t(title)}</title>",
        f"<rect width='{width}' height='{height}' fill='#fff'/>",
        f"<text x='{width / 2:.1f}' y='18' text-anchor='middle' font-size='14' "
        f"font-weight='600'>{_t(title)}</text>",
    ]


LEGEND_ROWS: Final = 4


def _legend_height(count: int) -> int:
    return 16 * min(count, LEGEND_ROWS)


def _legend(labels: Sequence[str], x: float, y: float, colors: Sequence[str]) -> list[str]:
    """Columns of at most LEGEND_ROWS entries, so many series do not squash the plot."""
    parts = []
    column_width = 24 + 7 * max((len(label) for label in labels), default=0)
    for i, (label, color) in enumerate(zip(labels, colors, strict=False)):
        lx = x + (i // LEGEND_ROWS) * column_width
        ly = y + (i % LEGEND_ROWS) * 16
        parts.append(f"<rect x='{lx:.1f}' y='{ly - 9:.1f}' width='10' height='10' fill='{color}'/>")
        parts.append(f"<text x='{lx + 14:.1f}' y='{ly:.1f}'>{_t(label)}</text>")
    return parts


def _empty(width: int, height: int, title: str, message: str) -> str:
    parts = _open(width, height, title)
    parts.append(
        f"<text x='{width / 2:.1f}' y='{height / 2:.1f}' text-anchor='middle' fill='{AXIS}'>"
        f"{_t(message)}</text></svg>"
    )
    return "".join(parts)


@dataclass(frozen=True)
class _Axis:
    """A numeric axis: ``low`` at one edge of the plot, ``high`` at the other."""

    low: float
    high: float
    ticks: Sequence[float]
    label: str = ""
    log: bool = False
    #: Tick labels by value, where a number is not what the reader needs (a run's commit).
    names: Mapping[float, str] = field(default_factory=dict)

    def tick_text(self, value: float) -> str:
        return self.names.get(value) or format_number(value)

    @property
    def shown_ticks(self) -> list[float]:
        return [t for t in self.ticks if self.low <= t <= self.high]

    def fraction(self, value: float) -> float:
        if self.log:
            value = max(value, self.low)
            return math.log10(value / self.low) / math.log10(self.high / self.low)
        return (value - self.low) / (self.high - self.low)


#: A bar chart whose values span more than this factor draws a logarithmic axis, so the small
#: bars (a warm page in 0.2 ms beside a cold one in 3 s) stay visible.
LOG_SPAN: Final = 100.0


def log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten covering [low, high]."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0**e for e in range(first, last + 1)]


@dataclass(frozen=True)
class _Frame:
    """A chart's size and the margins around its plot area."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom

    @property
    def base(self) -> int:
        return self.height - self.bottom

    def x(self, axis: _Axis, value: float) -> float:
        return self.left + self.plot_width * axis.fraction(value)

    def y(self, axis: _Axis, value: float) -> float:
        return self.base - self.plot_height * axis.fraction(value)


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, dash: str = "") -> str:
    dashes = f" stroke-dasharray='{dash}'" if dash else ""
    return (
        f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' stroke='{stroke}'{dashes}/>"
    )


def _tick_label(x: float, y: float, text: str, anchor: str) -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' fill='{AXIS}'>{_t(text)}</text>"


def _axes(
    frame: _Frame, x: _Axis, y: _Axis | None = None, *, grid: Literal["x", "y"] = "y"
) -> tuple[list[str], list[str]]:
    """(gridlines and tick labels, drawn under the data; axis lines and titles, drawn over it).

    Gridlines cross the plot at the ticks of the ``grid`` axis, the one that carries the values;
    without ``y`` (bars by category) the chart labels its own rows."""
    top, base, left = frame.top, frame.base, frame.left
    right = left + frame.plot_width
    under = []
    over = [
        _line(left, top, left, base, AXIS),
        _line(left, base, right, base, AXIS),
        f"<text x='{left + frame.plot_width / 2:.1f}' y='{frame.height - 8}' "
        f"text-anchor='middle' fill='{AXIS}'>{_t(x.label)}</text>",
    ]
    for tick in x.shown_ticks:
        px = frame.x(x, tick)
        if grid == "x":
            under.append(_line(px, top, px, base, GRID))
        under += [
            _line(px, base, px, base + 4, AXIS),
            _tick_label(px, base + 16, x.tick_text(tick), "middle"),
        ]
    if y is None:
        return under, over
    for tick in y.shown_ticks:
        py = frame.y(y, tick)
        if grid == "y":
            under.append(_line(left, py, right, py, GRID))
        under.append(_tick_label(left - 6, py + 4, y.tick_text(tick), "end"))
    if y.label:
        over.append(
            f"<text transform='translate(14 {top + frame.plot_height / 2:.1f}) rotate(-90)' "
            f"text-anchor='middle' fill='{AXIS}'>{_t(y.label)}</text>"
        )
    return under, over


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    unit: str,
    *,
    width: int = 720,
    bar_height: int = 16,
) -> str:
    """Horizontal grouped bars: one group per category, one bar per series (before/after)."""
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    if not categories or not values:
        return _empty(width, 120, title, "no data")
    label_width = min(260, 12 + 7 * max(len(c) for c in categories))
    top = 34 + _legend_height(len(series))
    group_height = bar_height * len(series) + 10
    frame = _Frame(width, top + group_height * len(categories) + 44, label_width, 70, top, 44)
    bounds = values + [b for s in series for iv in s.intervals if iv for b in iv]
    positive = [v for v in bounds if v > 0 and math.isfinite(v)]
    if positive and max(positive) / min(positive) > LOG_SPAN:
        ticks = log_ticks(min(positive), max(positive))
        x_axis = _Axis(ticks[0], ticks[-1], ticks, f"{unit} (log scale)", log=True)
    else:
        ticks = nice_ticks(0.0, max(bounds))
        x_axis = _Axis(0.0, ticks[-1], ticks, unit)
    left = frame.left

    colors = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
    parts = _open(width, frame.height, title)
    parts += _legend([s.label for s in series], left, 38, colors)
    under, over = _axes(frame, x_axis, grid="x")
    parts += under
    for ci, category in enumerate(categories):
        gy = top + ci * group_height + 5
        parts.append(
            f"<text x='{left - 6}' y='{gy + group_height / 2:.1f}' text-anchor='end' "
            f"dominant-baseline='middle'>{_t(category)}</text>"
        )
        for si, s in enumerate(series):
            value = s.values[ci] if ci < len(s.values) else None
            y = gy + si * bar_height
            if value is None or not math.isfinite(value):
                parts.append(
                    f"<text x='{left + 4}' y='{y + bar_height - 4}' fill='{AXIS}'>n/a</text>"
                )
                continue
            w = max(frame.x(x_axis, value) - left, 0.5)
            interval = s.interval(ci)
            spread = (
                f" (95% interval {format_number(interval[0])} to {format_number(interval[1])})"
                if interval
                else ""
            )
            parts.append(
                f"<rect x='{left}' y='{y}' width='{w:.1f}' height='{bar_height - 2}' "
                f"fill='{colors[si]}'><title>{_t(s.label)}: {_t(format_number(value))} "
                f"{_t(unit)}{_t(spread)}</title></rect>"
            )
            label_x = left + w
            if interval is not None:
                x1, x2 = frame.x(x_axis, interval[0]), frame.x(x_axis, interval[1])
                mid = y + (bar_height - 2) / 2
                parts += [
                    _line(x1, mid, x2, mid, "#222"),
                    _line(x1, mid - 4, x1, mid + 4, "#222"),
                    _line(x2, mid - 4, x2, mid + 4, "#222"),
                ]
                label_x = max(label_x, x2)
            parts.append(
                f"<text x='{label_x + 4:.1f}' y='{y + bar_height - 5}'>"
                f"{_t(format_number(value))}</text>"
            )
    return "".join([*parts, *over, "</svg>"])


def _log_axis(low: float, high: float, label: str, names: Mapping[float, str]) -> _Axis:
    """A log axis a little wider than the data, so points at the ends are off the frame;
    ticks at the named values, else at the powers of ten."""
    pad = 10**0.12
    low, high = low / pad, high * pad
    ticks = sorted(names) if names else log_ticks(low, high)
    return _Axis(low, high, ticks, f"{label} (log scale)", log=True, names=names)


def _error_bar(x: float, y1: float, y2: float, color: str) -> list[str]:
    return [
        _line(x, y1, x, y2, color),
        _line(x - 3, y1, x + 3, y1, color),
        _line(x - 3, y2, x + 3, y2, color),
    ]


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    refs: Sequence[RefLine] = (),
    width: int = 720,
    height: int = 300,
    y_from_zero: bool = True,
    x_names: Mapping[float, str] | None = None,
    x_log: bool = False,
    y_log: bool | None = False,
) -> str:
    """Lines over a numeric x axis; ``refs`` draws labelled horizontal lines (targets);
    ``x_names`` labels x ticks by value (then the ticks are those values); ``x_log`` draws x on
    a logarithmic axis (sizes that grow tenfold); ``y_log`` None puts y on one when the values
    span more than LOG_SPAN. A series' intervals are vertical error bars."""
    points = [
        (x, y)
        for s in series
        for x, y in zip(s.xs or range(len(s.values)), s.values, strict=False)
        if y is not None and math.isfinite(y)
    ]
    if x_log:
        points = [(x, y) for x, y in points if x > 0]
    if not points:
        return _empty(width, height, title, "no data")
    legend = [s for s in series if s.in_legend]
    frame = _Frame(width, height, 64, 20, 34 + _legend_height(len(legend)), 46)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + [r.value for r in refs]
    ys += [b for s in series for iv in s.intervals if iv for b in iv if math.isfinite(b)]
    positive = [y for y in ys if y > 0]
    spans = bool(positive) and len(positive) == len(ys) and max(ys) / min(positive) > LOG_SPAN
    if positive and (y_log or (y_log is None and spans)):
        y_ticks = log_ticks(min(positive), max(positive))
        y_axis = _Axis(y_ticks[0], y_ticks[-1], y_ticks, f"{y_label} (log scale)", log=True)
    else:
        y_ticks = nice_ticks(0.0 if y_from_zero else min(ys), max(ys))
        y_axis = _Axis(y_ticks[0], y_ticks[-1], y_ticks, y_label)
    x_lo, x_hi = min(xs), max(xs)
    if x_log:
        x_axis = _log_axis(x_lo, x_hi, x_label, x_names or {})
    else:
        if x_hi == x_lo:
            x_lo, x_hi = x_lo - 1, x_hi + 1
        x_ticks = [t for t in nice_ticks(x_lo, x_hi, 6) if x_lo <= t <= x_hi]
        if all(float(x).is_integer() for x in xs):
            # Counts (run numbers, seconds) take whole ticks, never 1.2 of a run.
            x_ticks = sorted({float(round(t)) for t in x_ticks} | {float(x_lo), float(x_hi)})
        if x_names:
            step = max(1, math.ceil(len(x_names) / 8))
            x_ticks = sorted(x_names)[::step]
        x_axis = _Axis(x_lo, x_hi, x_ticks, x_label, names=x_names or {})
    left, right = frame.left, frame.left + frame.plot_width

    colors = [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]
    parts = _open(width, height, title)
    parts += _legend(
        [s.label for s in legend],
        left + 4,
        38,
        [c for c, s in zip(colors, series, strict=True) if s.in_legend],
    )
    under, over = _axes(frame, x_axis, y_axis)
    parts += under
    for ref in refs:
        y = frame.y(y_axis, ref.value)
        parts.append(
            _line(left, y, right, y, ref.color, "6 4")
            + f"<text x='{right - 4}' y='{y - 4:.1f}' text-anchor='end' "
            f"fill='{ref.color}'>{_t(ref.text)}</text>"
        )
    for color, s in zip(colors, series, strict=True):
        drawn = [
            (i, frame.x(x_axis, x), frame.y(y_axis, y))
            for i, (x, y) in enumerate(zip(s.xs or range(len(s.values)), s.values, strict=False))
            if y is not None and math.isfinite(y) and (x > 0 or not x_log)
        ]
        if not drawn:
            continue
        dash = f" stroke-dasharray='{s.dash}'" if s.dash else ""
        coords = " ".join(f"{px:.1f},{py:.1f}" for _, px, py in drawn)
        parts.append(
            f"<polyline fill='none' stroke='{color}' stroke-width='2'{dash} "
            f"points='{coords}'><title>{_t(s.label)}</title></polyline>"
        )
        for i, px, _ in drawn:
            interval = s.interval(i)
            if interval is not None:
                low, high = (frame.y(y_axis, b) for b in interval)
                parts += _error_bar(px, low, high, color)
        if len(drawn) <= 40:
            parts += [
                f"<circle cx='{px:.1f}' cy='{py:.1f}' r='3' fill='{color}'/>" for _, px, py in drawn
            ]
    return "".join([*parts, *over, "</svg>"])


def histogram(
    title: str,
    edges: Sequence[float],
    counts: Sequence[float],
    *,
    x_label: str,
    y_label: str = "requests",
    marks: Sequence[RefLine] = (),
    width: int = 720,
    height: int = 280,
) -> str:
    """Bars between consecutive ``edges`` (len(edges) == len(counts) + 1); ``marks`` are
    vertical lines such as percentiles."""
    if len(edges) != len(counts) + 1 or not counts or max(counts) <= 0:
        return _empty(width, height, title, "no data")
    x_lo, x_hi = edges[0], edges[-1]
    if x_hi <= x_lo:
        return _empty(width, height, title, "no data")
    frame = _Frame(width, height, 64, 20, 34, 46)
    x_axis = _Axis(x_lo, x_hi, nice_ticks(x_lo, x_hi, 7), x_label)
    y_ticks = nice_ticks(0.0, max(counts))
    y_axis = _Axis(0.0, y_ticks[-1], y_ticks, y_label)

    def sx(v: float) -> float:
        return frame.x(x_axis, min(max(v, x_lo), x_hi))

    parts = _open(width, height, title)
    under, over = _axes(frame, x_axis, y_axis)
    parts += under
    for lo, hi, count in zip(edges, edges[1:], counts, strict=False):
        x0, x1 = sx(lo), sx(hi)
        y = frame.y(y_axis, count)
        parts.append(
            f"<rect x='{x0:.1f}' y='{y:.1f}' width='{max(x1 - x0 - 1, 0.5):.1f}' "
            f"height='{frame.base - y:.1f}' fill='{PALETTE[0]}'><title>"
            f"{_t(format_number(lo))}-{_t(format_number(hi))}: {_t(format_number(count))}"
            f"</title></rect>"
        )
    for i, mark in enumerate(marks):
        x = sx(mark.value)
        parts.append(
            _line(x, frame.top, x, frame.base, mark.color, "5 3")
            + f"<text x='{x + 3:.1f}' y='{frame.top + 12 + 14 * i}' fill='{mark.color}'>"
            f"{_t(mark.text)}</text>"
        )
    return "".join([*parts, *over, "</svg>"])


def bins_from_samples(samples: Sequence[float], count: int = 30) -> tuple[list[float], list[float]]:
    return bins_from_weighted([(value, 1.0) for value in samples], count)


def bins_from_weighted(
    points: Sequence[tuple[float, float]], count: int = 30
) -> tuple[list[float], list[float]]:
    """Equal-width bins of ``(value, weight)`` points up to the 99.5th percentile (the long tail
    would flatten the rest); values above it fall into the last bin."""
    if not points:
        return [], []
    ordered = sorted(points)
    total = sum(w for _, w in ordered)
    low, high, seen = ordered[0][0], ordered[-1][0], 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= total * 0.995:
            high = value
            break
    if high <= low:
        high = low + 1.0
    step = (high - low) / count
    edges = [low + i * step for i in range(count + 1)]
    counts = [0.0] * count
    for value, weight in ordered:
        counts[min(int((value - low) / step), count - 1)] += weight
    return edges, counts
