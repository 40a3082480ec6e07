"""``python -m worker``: the same as the ``runworker`` console script."""

import sys

from worker.cli import main

sys.exit(main())
