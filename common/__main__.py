"""``python -m lstm_sweep``: the ``lstm-sweep`` command."""

import sys

from lstm_sweep.search.cli import main

sys.exit(main())
