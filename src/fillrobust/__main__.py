"""Allow ``python -m fillrobust``: through the fork server when one runs (fillrobust.forkserver)."""

import sys

from fillrobust.forkserver import run_via_server

code = run_via_server(sys.argv[1:])
if code is None:  # no server yet (one is starting for the next job) or switched off
    from fillrobust.cli import main

    code = main()
sys.exit(code)
