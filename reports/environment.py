"""What a run was measured on: machine, Python, git commit; and the machine's fingerprint."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    memory_gib: float
    os: str
    python: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float:
    try:
        for line in meminfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return 0.0


def probe_machine() -> Machine:
    return Machine(
        cpu_model=_cpu_model(),
        cores=os.cpu_count() or 1,
        memory_gib=_memory_gib(),
        os=platform.platform(),
        python=platform.python_version(),
    )


def git_commit(root: Path = ROOT) -> dict[str, Any]:
    """The commit the run measured, and whether the working tree had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        subject = git("log", "-1", "--format=%s")
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "short": "unknown", "dirty": False, "subject": ""}
    return {"commit": commit, "short": commit[:10], "dirty": dirty, "subject": subject}


def fingerprint(machine: Mapping[str, Any], pg_version: str | None) -> str:
    """Runs are comparable when CPU model, core count, memory and PostgreSQL version agree."""
    major = (pg_version or "unknown").split()[0]
    key = "|".join(
        (
            str(machine.get("cpu_model", "")),
            str(machine.get("cores", "")),
            f"{float(machine.get('memory_gib', 0) or 0):.0f}",
            major,
        )
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]
