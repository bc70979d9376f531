"""``python -m mbviz``; see :mod:`mbviz.cli`."""

import sys

from .cli import main

sys.exit(main())
