"""`python -m marketplace.app.cli`: what the `sale` script runs (services and workers are
started this way, with the interpreter that started them)."""

import sys

from marketplace.app.cli.dispatch import main
from marketplace.shared.children import exit_with_parent_if_asked

if __name__ == "__main__":  # imported (as every module is, by a test) it runs nothing
    exit_with_parent_if_asked()  # started by a test run: not to outlive it (`shared.children`)
    sys.exit(main())
