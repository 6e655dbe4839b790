"""``python -m linrep`` is the ``linrep`` command."""

import sys

from .cli import main

sys.exit(main())
