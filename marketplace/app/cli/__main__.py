"""`python -m marketplace.app.cli`: what the `sale` script runs (services and workers are
started this way, with the interpreter that started them)."""

import sys

from marketplace.app.cli.dispatch import main

if __name__ == "__main__":  # imported (as every module is, by a test) it runs nothing
    sys.exit(main())
