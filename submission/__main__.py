"""``python -m submission``: see :mod:`submission.cli`."""

import sys

from submission.cli import main

sys.exit(main())
