"""Allow ``python -m fillrobust``."""

import sys

from fillrobust.cli import main

sys.exit(main())
