"""``python -m mbkernels.bench ...``: see :mod:`mbkernels.bench.cli`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
