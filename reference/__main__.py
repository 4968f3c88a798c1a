"""``python -m reference``: run the service against ``DATABASE_URL`` (see fixtures.serve)."""

from __future__ import annotations

import logging

from aiohttp import web

from reference.app import create_app
from reference.settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    web.run_app(create_app(settings), host=settings.host, port=settings.port, access_log=None)


if __name__ == "__main__":
    main()
