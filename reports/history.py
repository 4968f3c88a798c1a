"""History of runs: one JSON line per run of ``make bench`` or ``make gate``, read by the report's
trend charts and by the gate, whose baseline is a line of it.

The file lives at ``reports/history.jsonl`` (``HISTORY_FILE`` overrides): outside
``reports/out/`` and ``.data/`` so that ``make clean`` keeps it, and git-ignored because its lines
describe one machine (they are only compared with runs of the same fingerprint and scale; a
committed file would mix machines and conflict on every merge). CI starts from a clean clone, so
its first gate run finds no baseline and records itself.

A line holds commit, time, machine fingerprint, scale, verdict and every figure; when the run timed
benchmarks, also each benchmark's raw rounds (at most ``MAX_ROUNDS``, evenly spaced order
statistics when there were more, 4 significant digits: enough for the gate's rank test, a few
kilobytes a line) and the outcome of its regression check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import numpy as np

from reports.environment import ROOT

DEFAULT_HISTORY: Final = ROOT / "reports" / "history.jsonl"
RECORD_VERSION: Final = 2
#: What the figures of a line mean. 2: every figure with its 95% interval, load figures without
#: the warm-up, no dataset stand-in for the fixture-load rate. Trends compare only lines of the
#: current definitions.
FIGURES_VERSION: Final = 2
#: A run stopped by Ctrl-C: recorded, never a baseline, never a point of a trend.
INTERRUPTED: Final = "interrupted"
MAX_ROUNDS: Final = 50
DIGITS: Final = 4


class RegressionCheck(StrEnum):
    OK = "ok"
    REGRESSION = "regression"
    FIRST = "no baseline"
    NOT_CHECKED = "not checked"


BASELINE_WORTHY: Final = frozenset({RegressionCheck.OK, RegressionCheck.FIRST})


def history_path(env: Mapping[str, str] = os.environ) -> Path:
    raw = env.get("HISTORY_FILE")
    return Path(raw) if raw else DEFAULT_HISTORY


@dataclass(frozen=True)
class RunRecord:
    time: str
    commit: str
    fingerprint: str
    scale: str
    verdict: str
    figures: Mapping[str, float]
    machine: Mapping[str, Any] = field(default_factory=dict)
    source: str = "bench"
    regression: str = RegressionCheck.NOT_CHECKED.value
    baseline: str | None = None
    rounds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    line: int = 0
    figures_version: int = FIGURES_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "figures_version": self.figures_version,
            "time": self.time,
            "commit": self.commit,
            "fingerprint": self.fingerprint,
            "scale": self.scale,
            "verdict": self.verdict,
            "machine": dict(self.machine),
            "figures": dict(self.figures),
            "source": self.source,
            "regression": self.regression,
            "baseline": self.baseline,
            "rounds": {k: dict(v) for k, v in self.rounds.items()},
        }

    @property
    def has_rounds(self) -> bool:
        return any(v.get("data") for v in self.rounds.values())

    def label(self) -> str:
        return f"line {self.line} ({self.source}, {self.commit[:10] or '?'}, {self.time})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], line: int = 0) -> RunRecord:
        figures = {
            str(k): float(v)
            for k, v in dict(data.get("figures") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        return cls(
            time=str(data.get("time", "")),
            commit=str(data.get("commit", "")),
            fingerprint=str(data.get("fingerprint", "")),
            scale=str(data.get("scale", "")),
            verdict=str(data.get("verdict", "")),
            figures=figures,
            machine=dict(data.get("machine") or {}),
            source=str(data.get("source") or "bench"),
            regression=str(data.get("regression") or RegressionCheck.NOT_CHECKED.value),
            baseline=str(data["baseline"]) if data.get("baseline") else None,
            rounds=_read_rounds(data.get("rounds")),
            line=line,
            figures_version=int(data.get("figures_version") or 1),
        )


def _read_rounds(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        return {}
    rounds = {}
    for name, entry in raw.items():
        if isinstance(entry, dict) and isinstance(entry.get("data"), list):
            rounds[str(name)] = {
                "group": entry.get("group"),
                "median": entry.get("median"),
                "data": [float(x) for x in entry["data"] if isinstance(x, int | float)],
            }
    return rounds


def _sig(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def compact_rounds(data: Sequence[float], limit: int = MAX_ROUNDS) -> list[float]:
    """At most ``limit`` rounds, sorted: all of them, or ``limit`` evenly spaced order statistics
    (the distribution's shape is what the rank test needs, not every round)."""
    values = np.sort(np.asarray(data, dtype=float))
    if len(values) > limit:
        values = np.quantile(values, (np.arange(limit) + 0.5) / limit, method="inverted_cdf")
    return [_sig(float(v)) for v in values]


def rounds_of(bench_json: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per benchmark of a pytest-benchmark JSON: group, median and compact raw rounds."""
    result: dict[str, dict[str, Any]] = {}
    for bench in bench_json.get("benchmarks") or []:
        stats = bench.get("stats") or {}
        data = stats.get("data")
        if not isinstance(data, list) or not data or "median" not in stats:
            continue
        result[str(bench["fullname"])] = {
            "group": bench.get("group"),
            "median": _sig(float(stats["median"])),
            "data": compact_rounds(data),
        }
    return result


def append_run(record: RunRecord, path: Path | None = None) -> Path:
    path = path or history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record.as_dict(), sort_keys=True, separators=(",", ":"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    return path


def read_history(path: Path | None = None) -> list[RunRecord]:
    """Every readable line, oldest first; a damaged line is skipped, not fatal."""
    path = path or history_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            records.append(RunRecord.from_dict(data, number))
    return records


def comparable(records: Iterable[RunRecord], fingerprint: str, scale: str) -> list[RunRecord]:
    """Complete runs of this machine and scale whose figures mean what today's mean."""
    return [
        r
        for r in records
        if r.fingerprint == fingerprint
        and r.scale == scale
        and r.verdict != INTERRUPTED
        and r.figures_version == FIGURES_VERSION
    ]


def series(records: Sequence[RunRecord], metric: str) -> list[float | None]:
    return [r.figures.get(metric) for r in records]


class BaselineError(ValueError):
    """A pinned baseline (``GATE_BASELINE``) that names no usable line."""


def gate_baseline(
    records: Sequence[RunRecord], fingerprint: str, scale: str, pin: str | None = None
) -> RunRecord | None:
    """The gate's baseline: the most recent comparable run (same machine fingerprint and scale)
    that passed its regression check (or was the first, with nothing to check against) and has raw
    rounds. ``pin`` chooses one instead: a line number of the history file, or a commit (prefix);
    a pinned line need not have passed its check, but must have rounds and the same scale."""
    if pin:
        # A short number is a line; 7+ characters are a commit prefix, digits or not.
        if pin.isdigit() and len(pin) < 7:
            chosen = [r for r in records if r.line == int(pin)]
        else:
            chosen = [
                r for r in comparable(records, fingerprint, scale) if r.commit.startswith(pin)
            ]
        chosen = [r for r in chosen if r.has_rounds]
        if not chosen:
            raise BaselineError(f"GATE_BASELINE={pin}: no line of the history with raw rounds")
        if chosen[-1].scale != scale:
            raise BaselineError(
                f"GATE_BASELINE={pin}: {chosen[-1].label()} is scale {chosen[-1].scale}"
            )
        return chosen[-1]
    for record in reversed(comparable(records, fingerprint, scale)):
        if record.has_rounds and record.regression in BASELINE_WORTHY:
            return record
    return None
