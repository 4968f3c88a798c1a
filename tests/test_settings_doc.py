"""The README's environment-variable tables against the one declaration in reference.settings."""

from __future__ import annotations

import re
from pathlib import Path

from reference.settings import VARIABLES

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| (`[A-Z_]+`(?: / `[A-Z_]+`)*) \| ([^|]*) \|", re.MULTILINE)


def _default(cell: str) -> str:
    quoted = re.match(r"\s*`([^`]*)`", cell)
    return quoted.group(1) if quoted else cell.split(" (")[0].strip()


def documented() -> dict[str, str]:
    """``{variable: default}`` from every table row (``A` / `B`` rows pair their defaults)."""
    rows: dict[str, str] = {}
    for names, defaults in ROW.findall(README.read_text(encoding="utf-8")):
        names_list = [n.strip("` ") for n in names.split(" / ")]
        parts = defaults.split(" / ")
        if len(parts) != len(names_list):
            parts = [defaults] * len(names_list)
        rows.update(zip(names_list, (_default(p) for p in parts), strict=True))
    return rows


def test_every_setting_is_in_the_readme_with_its_default():
    rows = documented()
    missing = [v.name for v in VARIABLES if v.name not in rows]
    assert not missing, f"README tables lack {missing}"
    wrong = {v.name: (rows[v.name], v.default) for v in VARIABLES if rows[v.name] != v.default}
    assert not wrong, f"README default differs from reference/settings.py: {wrong}"


def test_every_setting_has_a_description():
    assert all(v.description for v in VARIABLES)
    assert len({v.name for v in VARIABLES}) == len(VARIABLES)
