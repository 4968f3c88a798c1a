"""``wsbench``: the installed console script, its dispatch and its exit codes (no full runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reports import cli

WSBENCH = Path(sys.executable).parent / "wsbench"


def wsbench(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WSBENCH), *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_command_with_its_exit_codes() -> None:
    done = wsbench("--help")
    assert done.returncode == 0, done.stderr
    for name, command in cli.COMMANDS.items():
        assert f"  {name:<6} {command.summary}" in done.stdout
    assert "3 could not measure" in done.stdout


@pytest.mark.parametrize(("args", "message"), [((), "required: command"), (("nope",), "nope")])
def test_a_missing_or_unknown_command_is_a_usage_error(args: tuple[str, ...], message: str) -> None:
    done = wsbench(*args)
    assert done.returncode == 2
    assert message in done.stderr


def test_gate_on_a_missing_input_could_not_measure(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    args = ["gate", "--json", str(missing), "--figures-dir", str(tmp_path), "--no-record"]
    done = wsbench(*args, HISTORY_FILE=str(tmp_path / "history.jsonl"))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "not_measured (exit 3)" in done.stdout
    assert json.loads((tmp_path / "gate.json").read_text())["exit"] == 3
    assert not (tmp_path / "history.jsonl").exists()


def test_dispatch_returns_the_commands_own_code(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.json")
    args = ["gate", "--json", missing, "--figures-dir", str(tmp_path), "--no-record"]
    assert cli.main(args) == 3


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("bench", "--fast"), {}),
        (("bench",), {"SCALE": "huge"}),
        (("serve", "extra"), {}),
        (("load", "--modes", "bogus"), {}),
        (("data", "--scale", "huge"), {}),
    ],
)
def test_bad_arguments_or_settings_exit_2_before_anything_starts(
    args: tuple[str, ...], env: dict[str, str]
) -> None:
    done = wsbench(*args, **env)
    assert done.returncode == 2, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("bench", "usage: wsbench bench"),
        ("gate", "usage: python -m reports.gate"),
        ("serve", "usage: wsbench serve"),
        ("data", "usage: python -m fixtures up"),
        ("load", "usage: python -m loadtests"),
    ],
)
def test_each_command_answers_help_from_anywhere(command: str, usage: str, tmp_path: Path) -> None:
    done = wsbench(command, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(usage)
