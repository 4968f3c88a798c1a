"""``python -m reference``: run the service against ``DATABASE_URL`` (see fixtures.serve)."""

from __future__ import annotations

import logging

from aiohttp import web

from reference.app import create_app
from reference.settings import Settings, SettingsError, announce_generated


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"bad setting: {exc}") from None
    announce_generated(settings)
    web.run_app(create_app(settings), host=settings.host, port=settings.port, access_log=None)


if __name__ == "__main__":
    main()
