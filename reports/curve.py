"""The scale curve as the report draws it: ``make bench-scale``'s ``curve.json`` (figures
``curve.<route>.<scale>.p50_ms`` / ``.p95_ms`` with their intervals, ``.failed`` for a route that
answered other than 200, and ``curve.flatness_p95``; meta with the scales, routes, when and at
which commit it was measured, and optionally ``plans``).

Charts are small multiples, one per family of routes, latency against the heavy user's assets on
a log axis; the table and the target rows are shaped by :mod:`reports.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from fixtures.spec import spec_for
from reports import svg, uncertainty
from reports.environment import ROOT
from reports.uncertainty import Estimate

#: Where ``make bench-scale`` writes the curve, and ``make bench`` looks for the latest one.
CURVE_FILE: Final = ROOT / "reports" / "out" / "figures" / "curve.json"
#: ``make bench-scale``'s page of the curve alone.
CURVE_PAGE: Final = ROOT / "reports" / "out" / "curve.html"
#: The figures of each route and scale, as the table shows them.
STATS: Final = ("p50_ms", "p95_ms")
#: Chart families by route-name prefix, first match wins; at most len(PALETTE) lines a chart.
FAMILIES: Final = (
    ("Workspace pages", ("workspace",)),
    ("Text search, each sort", ("search_text_sort",)),
    ("Text search, alone and with each filter", ("search_text",)),
    ("Search without text", ("search", "filters")),
    ("Organize: duplicates, groups, tags", ("duplicates", "groups", "tags", "organize")),
    ("Batch operations and downloads", ("dismiss", "batch", "download", "delete", "restore")),
)
OTHER: Final = "Other routes"


@dataclass(frozen=True)
class Curve:
    """One ``curve.json``: its numeric figures and meta; ``file_time`` is when the file was
    written, for a file whose meta does not say when it was measured."""

    figures: Mapping[str, float]
    meta: Mapping[str, Any] = field(default_factory=dict)
    file_time: str = ""

    @property
    def scales(self) -> list[tuple[str, int]]:
        """``(scale, assets of the heavy user)``, smallest first."""
        raw = self.meta.get("scales")
        found: dict[str, int] = {}
        if isinstance(raw, Mapping):
            found = {str(k): int(v) for k, v in raw.items() if isinstance(v, int | float)}
        for key in self.figures:
            parts = key.split(":", 1)[0].split(".")
            if len(parts) == 4 and parts[0] == "curve" and parts[2] not in found:
                found[parts[2]] = _assets_of(parts[2])
        return sorted(found.items(), key=lambda item: item[1])

    @property
    def routes(self) -> list[str]:
        """Every measured route, family by family (as the charts group them)."""
        found = {
            k.split(".")[1] for k in self.figures if k.startswith("curve.") and k.count(".") >= 3
        }
        families = [title for title, _ in FAMILIES] + [OTHER]
        return sorted(found, key=lambda route: (families.index(family_of(route)), route))

    @property
    def paged(self) -> frozenset[str]:
        raw = self.meta.get("paged")
        return frozenset(str(r) for r in raw) if isinstance(raw, list) else frozenset()

    def path(self, route: str) -> str:
        raw = self.meta.get("routes")
        return str(raw.get(route, "")) if isinstance(raw, Mapping) else ""

    def estimate(self, route: str, scale: str, stat: str) -> Estimate | None:
        return uncertainty.get(self.figures, f"curve.{route}.{scale}.{stat}")

    def failed(self, route: str, scale: str) -> int:
        """Answers other than 200 (a route measured as failing at that scale)."""
        return int(self.figures.get(f"curve.{route}.{scale}.failed", 0))

    def growth(self, route: str) -> Estimate | None:
        """p95 at the largest scale / p95 at the smallest, the interval from the ends of the two
        intervals (conservative), as ``curve.flatness_p95`` is for the worst paged route."""
        scales = self.scales
        if len(scales) < 2:
            return None
        small = self.estimate(route, scales[0][0], "p95_ms")
        large = self.estimate(route, scales[-1][0], "p95_ms")
        if small is None or large is None or min(small.value, small.low) <= 0:
            return None
        return Estimate(
            large.value / small.value, large.low / small.high, large.high / small.low, large.n
        )

    def scale_label(self, scale: str) -> str:
        assets = dict(self.scales).get(scale)
        return f"{assets_label(assets)} ({scale})" if assets else scale

    def charts(self) -> list[str]:
        """One chart per family of routes: p95 solid, p50 dashed, one colour per route."""
        by_family: dict[str, list[str]] = {}
        for route in self.routes:
            by_family.setdefault(family_of(route), []).append(route)
        size = len(svg.PALETTE)
        drawn = []
        for title, routes in by_family.items():
            for start in range(0, len(routes), size):
                part = f" ({start // size + 1})" if len(routes) > size else ""
                drawn.append(self._chart(f"{title}{part}", routes[start : start + size]))
        return drawn

    def _chart(self, title: str, routes: Sequence[str]) -> str:
        scales = self.scales
        xs = [float(assets) for _, assets in scales]
        series = []
        for i, route in enumerate(routes):
            color = svg.PALETTE[i % len(svg.PALETTE)]
            for stat, dash in (("p95_ms", ""), ("p50_ms", "5 4")):
                found = [self.estimate(route, scale, stat) for scale, _ in scales]
                series.append(
                    svg.Series(
                        f"{route} p50" if dash else route,
                        [None if e is None else e.value for e in found],
                        xs,
                        intervals=[None if e is None else (e.low, e.high) for e in found],
                        color=color,
                        dash=dash,
                        in_legend=not dash,
                    )
                )
        return svg.line_chart(
            f"{title}: p95 (solid) and p50 (dashed), bars: 95% intervals",
            series,
            x_label="assets of the heavy user",
            y_label="latency, ms",
            x_names={x: assets_label(x) for x in xs if x > 0},
            x_log=True,
            y_log=None,
            width=960,
            height=320,
        )

    def provenance(self, run_commit: str = "") -> list[str]:
        """When, where and how the curve was measured; beside a bench run, whether it was
        this run's commit."""
        meta = self.meta
        raw_commit = meta.get("commit")
        commit: Mapping[str, Any] = raw_commit if isinstance(raw_commit, Mapping) else {}
        when = meta.get("measured_at")
        lines = []
        if when or commit:
            short = str(commit.get("short") or "?")
            dirty = " with uncommitted changes" if commit.get("dirty") else ""
            subject = f" “{commit['subject']}”" if commit.get("subject") else ""
            took = meta.get("seconds")
            took_text = f", in {float(took):.0f} s" if isinstance(took, int | float) else ""
            lines.append(
                f"Measured by make bench-scale at {when or 'an unrecorded time'}{took_text}, "
                f"commit {short}{dirty}{subject}."
            )
            if run_commit and commit.get("commit"):
                lines.append(
                    "Same commit as this run."
                    if str(commit["commit"]) == run_commit
                    else f"Not this run's commit ({run_commit[:10]}): the curve describes the "
                    "code as it was then."
                )
        else:
            written = f" (file written {self.file_time})" if self.file_time else ""
            lines.append(f"When and at which commit: not recorded in curve.json{written}.")
        requests, warmup = meta.get("requests"), meta.get("warmup")
        if requests:
            lines.append(
                f"Each route: {requests} timed requests after {warmup or 0} untimed ones, one at "
                "a time from one client, against one service process, for the heavy user."
            )
        load = meta.get("load_average")
        if isinstance(load, Mapping):
            machine = meta.get("machine")
            cores = machine.get("cores") if isinstance(machine, Mapping) else None
            parts = [
                f"{moment} {float(values[0]):.2f}"
                for moment in ("start", "end")
                if isinstance(values := load.get(moment), list | tuple) and values
            ]
            if parts:
                lines.append(
                    "Machine load (1-minute load average): "
                    + ", ".join(parts)
                    + (f", on {cores} cores." if cores else ".")
                )
        return lines

    def plans(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """``EXPLAIN (ANALYZE, BUFFERS)`` text per route, each scale smallest first."""
        raw = self.meta.get("plans")
        if not isinstance(raw, Mapping):
            return []
        rank = {name: i for i, (name, _) in enumerate(self.scales)}
        found = []
        for route, by_scale in raw.items():
            if not isinstance(by_scale, Mapping):
                continue
            texts = [(str(s), str(t)) for s, t in by_scale.items() if isinstance(t, str) and t]
            texts.sort(key=lambda item: rank.get(item[0], len(rank)))
            if texts:
                found.append((str(route), [(self.scale_label(s), t) for s, t in texts]))
        return found


def _assets_of(scale: str) -> int:
    try:
        return spec_for(scale).heavy_assets
    except (KeyError, ValueError):
        return 0


def assets_label(count: float) -> str:
    """600, 2k, 10k, 100k, 1M."""
    for bound, suffix in ((1_000_000, "M"), (1_000, "k")):
        if count >= bound:
            return f"{count / bound:.3g}{suffix}"
    return f"{count:.0f}"


def family_of(route: str) -> str:
    for title, prefixes in FAMILIES:
        if route.startswith(prefixes):
            return title
    return OTHER
