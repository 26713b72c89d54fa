"""A user's price list: the archived drafts priced as someone else would pay for them.

The matrix keeps every call's tokens by direction, so any price list can be applied after the
fact (`marketplace.core.measures.cost`). A price list is a TOML file, one table per agent id,
prices per million tokens in any currency:

    [S]
    input = 0.1
    cached_input = 0.025   # optional: the input price if left out
    output = 0.4

The lean auction weighs prices in its decisions, so a new price list also changes what it
does: its priors' mean draft cost is refitted on the training split at the new prices, and a
right answer's worth keeps its ratio to the dearest agent's prior cost (the unit `sale lean fit`
chooses it in, `lean_replay.VALUES`), so the policy is the same one in another currency.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from marketplace.core.measures import Prices
from marketplace.shared.config import ConfigError, LeanConfig, PriorConfig
from schemas.events import Price

if TYPE_CHECKING:
    from marketplace.evaluation.matrix import Matrix

FIELDS = ("input", "cached_input", "output")
REQUIRED = ("input", "output")


@dataclass(frozen=True)
class PriceList:
    """Prices by agent id, and where they come from (said in the report beside the figures)."""

    source: str
    prices: dict[str, Price]


def read_prices(path: Path, agents: Sequence[str]) -> PriceList:
    """The price list at `path` for exactly `agents`; ConfigError naming the file and the agent
    or field at fault (a missing agent, an unknown one, a missing or bad price)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"prices file {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"prices file {path}: not TOML ({exc})") from None
    if unknown := sorted(set(data) - set(agents)):
        raise ConfigError(
            f"prices file {path}: [{unknown[0]}] is not an agent of the config "
            f"(agents: {', '.join(agents)})"
        )
    return PriceList(str(path), {agent: _price(path, agent, data.get(agent)) for agent in agents})


def _price(path: Path, agent: str, table: object) -> Price:
    where = f"prices file {path}: [{agent}]"
    if table is None:
        raise ConfigError(f"{where} is missing: every agent of the config needs its prices")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table of {', '.join(FIELDS)}")
    if unknown := sorted(set(table) - set(FIELDS)):
        raise ConfigError(f"{where}.{unknown[0]}: unknown field (fields: {', '.join(FIELDS)})")
    if missing := [f for f in REQUIRED if f not in table]:
        raise ConfigError(f"{where}.{missing[0]} is missing")
    values = {name: _number(f"{where}.{name}", value) for name, value in table.items()}
    return Price(**values)


def _number(where: str, value: object) -> float:
    """A price: a finite number ≥ 0 (TOML booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: must be a finite number ≥ 0, not {value!r}")
    return float(value)


def repriced_lean(lean: LeanConfig, train: Matrix, prices: Prices) -> LeanConfig:
    """The lean table at `prices`: priors refitted on `train` (their costs change, their rates
    do not), and the worth of a right answer scaled with the dearest agent's prior cost, which
    is the unit `sale lean fit` chose it in. A table without priors is returned as it is."""
    from marketplace.evaluation.lean_replay import fit_priors

    if not lean.priors:
        return lean
    priors = fit_priors(train, prices)
    before = max(p.cost for p in lean.priors.values())
    after = max(p.cost for p in priors.values())
    value = lean.value * after / before if before else lean.value
    table = {a: PriorConfig(**vars(p)) for a, p in priors.items()}
    return lean.model_copy(update={"value": value, "priors": table})
