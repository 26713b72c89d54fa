"""The SALE marketplace. The front door for Python code (`marketplace.client`):

    from marketplace import Client, Outcome

    async with Client(config) as client:
        outcome = await client.ask("Name three prime numbers.")

The names are loaded on first use, so importing any part of the marketplace (the pure core,
the config) does not bring in the Kafka client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marketplace.client import (
        Client,
        InvalidTask,
        Outcome,
        Refused,
        SubmitError,
        SubmitTimeout,
    )

__all__ = ["Client", "InvalidTask", "Outcome", "Refused", "SubmitError", "SubmitTimeout"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("marketplace.client"), name)
    raise AttributeError(f"module 'marketplace' has no attribute {name!r}")
