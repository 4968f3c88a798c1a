"""``python -m reference.batch``: finish batch operations left running (see :mod:`.worker`)."""

import sys

from reference.batch.worker import main

sys.exit(main())
