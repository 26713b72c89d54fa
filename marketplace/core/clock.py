"""The marketplace's one clock: UTC, as every producer stamps its events."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """A naive timestamp is read as UTC, the marketplace's only clock, not the local zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
