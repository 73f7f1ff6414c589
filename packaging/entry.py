"""Frozen-app entry point: the same dispatch as the `wattlab` console script."""

import sys

from wattlab.app.entry import main

sys.exit(main())
