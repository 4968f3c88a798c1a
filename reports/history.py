"""History of runs: one JSON line per ``make bench`` run, read by the trend charts and the gate.

The file lives at ``reports/history.jsonl`` (``HISTORY_FILE`` overrides): outside
``reports/out/`` and ``.data/`` so that ``make clean`` keeps it, and git-ignored because its lines
describe one machine (they are only compared with runs of the same fingerprint and scale; a
committed file would mix machines and conflict on every merge). CI starts from a clean clone, so
its gate compares before/after ratios measured in the same run and uses history when it has some.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from reports.environment import ROOT

DEFAULT_HISTORY: Final = ROOT / "reports" / "history.jsonl"
RECORD_VERSION: Final = 1


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "time": self.time,
            "commit": self.commit,
            "fingerprint": self.fingerprint,
            "scale": self.scale,
            "verdict": self.verdict,
            "machine": dict(self.machine),
            "figures": dict(self.figures),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
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
        )


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
    for line in lines:
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            records.append(RunRecord.from_dict(data))
    return records


def comparable(records: Iterable[RunRecord], fingerprint: str, scale: str) -> list[RunRecord]:
    return [r for r in records if r.fingerprint == fingerprint and r.scale == scale]


def series(records: Sequence[RunRecord], metric: str) -> list[float | None]:
    return [r.figures.get(metric) for r in records]


def baseline(
    fingerprint: str,
    scale: str,
    *,
    last: int = 5,
    path: Path | None = None,
    passing_only: bool = True,
) -> dict[str, float]:
    """The gate's baseline: per figure, the median over the last ``last`` comparable runs
    (same machine fingerprint and scale; by default only runs whose verdict was ``pass``).
    Empty when there is no such run."""
    runs = comparable(read_history(path), fingerprint, scale)
    if passing_only:
        runs = [r for r in runs if r.verdict == "pass"]
    runs = runs[-last:] if last > 0 else runs
    keys = {k for r in runs for k in r.figures}
    return {
        key: statistics.median(values)
        for key in sorted(keys)
        if (values := [r.figures[key] for r in runs if key in r.figures])
    }
