"""``python -m wattlab.core.worker SPEC.json``: the worker process (see main.py)."""

import sys

from wattlab.core.worker.main import main

sys.exit(main())
