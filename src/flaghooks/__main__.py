"""``python -m flaghooks``: the ``flaghooks`` command."""

import sys

from .cli import main

sys.exit(main())
