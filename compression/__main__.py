"""``python -m compression``: same as the ``obert-compress`` command."""

import sys

from compression.cli import main

sys.exit(main())
