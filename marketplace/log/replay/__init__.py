"""Replay: every recorded auction decision recomputed, and history re-scored under other weights.

`AuctionClosed` carries every term of every bid's score and the weights, so each decision can be
recomputed from that one event with the very functions the auctioneer used: a difference means
the log was changed, or the mechanism was. The rest of the log is evidence for the terms
themselves. The checks are pure — events in, `Discrepancy` values or a `Counterfactual` out — so
tests and both sources of the log (Postgres, or Kafka from offset 0) share them; the readers do
the I/O.

This is the entry point `sale replay` calls, and it re-exports only what the command line uses:
`read` the log (a `Log`; `LogUnavailable`, whose usual message is `NO_LOG`, when there is none),
`verify` its decisions, or re-score them under other weights with `counterfactual`. Everything
else is imported from the module that holds its concept:

- `discrepancy`: what replay reports (`Discrepancy`) and how values are compared;
- `history`: the log indexed by task, each task's closes and the evidence for them;
- `checks`: `verify`, each close sent to the checks of its kind —
  `paper_checks` (the paper's auction), `lean_checks` (the lean auction, call by call),
  `refusal_checks` (an `over_budget` refusal); and `market_checks`, the rules of the market
  over the whole log (graded = awarded: one outcome per award, on the awarded result);
- `rescoring`: counterfactuals (`counterfactual`, `redecide`);
- `replayed_log`: what a reader returns (`Log`) and what it reads; `readers`: the readers,
  from the Postgres log (`read_postgres`) or from the broker (`read_kafka`).
"""

from __future__ import annotations

from marketplace.log.replay.checks import verify
from marketplace.log.replay.readers import read
from marketplace.log.replay.replayed_log import NO_LOG, Log, LogUnavailable
from marketplace.log.replay.rescoring import counterfactual

__all__ = ["NO_LOG", "Log", "LogUnavailable", "counterfactual", "read", "verify"]
