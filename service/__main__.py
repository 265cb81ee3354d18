"""``python -m service ...``: the ops command line (see service/ops_cli.py)."""

import sys

from service.ops_cli import main

sys.exit(main())
