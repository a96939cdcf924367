"""python3 -m lossd_client: the lossd-cli console script."""

import sys

from .cli import main

sys.exit(main())
