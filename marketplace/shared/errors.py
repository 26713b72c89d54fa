"""The errors a user causes or can fix: a flag, the config, no database, an empty log, a missing
extra. Each derives from `UserError`, which `sale` ends in one line and an exit status
(`marketplace.app.cli.dispatch`), never a traceback; anything else is a bug and keeps its
traceback. Defined here, the lowest layer that every module raising one can import.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can put right; the message says what, in one line."""
