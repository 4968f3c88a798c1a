"""``python -m reference``: run the service against ``DATABASE_URL`` (``WORKERS`` processes)."""

from __future__ import annotations

import logging
import sys

from reference.settings import Settings, SettingsError, announce_generated
from reference.workers import serve


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"bad setting: {exc}") from None
    announce_generated(settings)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
