"""Packages that only some commands need, imported on demand.

The services' image (Dockerfile) installs the project without its extras, so that no service
carries the benchmark's datasets and plots or the local broker's binary. A command that needs one
of those imports it through `need`, at the moment it needs it: without the extra, the command
stops with one line naming the extra to install (`sale` prints it), not with a traceback, and
every other command keeps working.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from marketplace.shared.errors import UserError


class MissingExtra(UserError, RuntimeError):
    """A command needs a package of an extra that is not installed."""


def need(module: str, extra: str, purpose: str) -> ModuleType:
    """`module`, imported; `MissingExtra` naming `extra` and what it was for if it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{purpose} needs the `{extra}` extra, which is not installed "
            f"(pip install 'sale-marketplace[{extra}]'): {exc}"
        ) from None
