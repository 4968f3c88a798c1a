"""``python -m reference``: run the service against ``DATABASE_URL`` (``WORKERS`` processes)."""

from __future__ import annotations

import logging
import sys

from reference.settings import Settings
from reference.workers import serve


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
    return serve(Settings.from_env())


if __name__ == "__main__":
    sys.exit(main())
