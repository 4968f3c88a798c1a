"""Load-test settings from the environment, and the simulated users' identities.

No locust import here: the runner (``python -m loadtests``) uses it before Locust starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from uuid import UUID

REPO: Final = Path(__file__).resolve().parent.parent
DEFAULT_OUT: Final = REPO / "reports" / "out"
DEFAULT_HEAVY_WEIGHT: Final = 20.0


@dataclass(frozen=True)
class Identity:
    user_id: str
    token: str
    weight: float = 1.0
    heavy: bool = False


@dataclass(frozen=True)
class LoadSettings:
    tokens_file: Path | None
    scale: str
    targets_file: Path | None
    out_dir: Path
    url_mode: str
    heavy_weight: float
    thumbnails_visible: int
    etag_window_s: float

    @property
    def figure_prefix(self) -> str:
        return "load" if self.url_mode == "unified" else f"load_{self.url_mode}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> LoadSettings:
        tokens = env.get("LOAD_TOKENS")
        targets = env.get("TARGETS_FILE")
        return cls(
            tokens_file=Path(tokens) if tokens else None,
            scale=env.get("SCALE", "plan"),
            targets_file=Path(targets) if targets else None,
            out_dir=Path(env.get("LOAD_OUT", str(DEFAULT_OUT))),
            url_mode=env.get("URL_MODE", "unified"),
            heavy_weight=float(env.get("LOAD_HEAVY_WEIGHT", DEFAULT_HEAVY_WEIGHT)),
            thumbnails_visible=int(env.get("LOAD_THUMBNAILS_VISIBLE", "24")),
            etag_window_s=float(env.get("LOAD_ETAG_WINDOW_S", "3600")),
        )


def write_tokens(path: Path, identities: list[Identity]) -> None:
    rows = [
        {"user_id": i.user_id, "token": i.token, "weight": i.weight, "heavy": i.heavy}
        for i in identities
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"users": rows}, indent=1), encoding="utf-8")
    path.chmod(0o600)


def read_tokens(path: Path) -> list[Identity]:
    """``{"users": [{"user_id", "token", "weight"?, "heavy"?}]}``, or one token per line."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        rows = json.loads(text)["users"]
        return [
            Identity(
                str(r.get("user_id", "")),
                str(r["token"]),
                float(r.get("weight", 1.0)),
                bool(r.get("heavy", False)),
            )
            for r in rows
        ]
    return [Identity("", line.strip()) for line in text.splitlines() if line.strip()]


def fixture_identities(
    scale: str, heavy_weight: float, env: Mapping[str, str] = os.environ
) -> list[Identity]:
    """The fixtures' users of ``scale`` with tokens signed by ``JWT_SECRET`` (or the default)."""
    from fixtures.generate import user_ids
    from fixtures.spec import spec_for
    from reference.settings import Settings
    from reference.web.auth import issue_token

    secret = env.get("JWT_SECRET") or Settings().jwt_secret
    users: list[UUID] = user_ids(spec_for(scale))
    return [
        Identity(str(u), issue_token(secret, u), heavy_weight if n == 0 else 1.0, n == 0)
        for n, u in enumerate(users)
    ]


def identities(settings: LoadSettings) -> list[Identity]:
    if settings.tokens_file is not None:
        return read_tokens(settings.tokens_file)
    return fixture_identities(settings.scale, settings.heavy_weight)
