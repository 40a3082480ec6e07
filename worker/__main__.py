"""``python -m worker``: the same as the ``runworker`` console script."""

import sys

from worker.cli.runworker import main

sys.exit(main())
