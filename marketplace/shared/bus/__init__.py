"""The marketplace's one door to Kafka, over aiokafka: publish events, consume them in a group,
read the log outside any group.

- `door.Bus`: one principal's producer and checker. Topic names from the prefix, task/agent ids
  as record keys, the record size cap, signatures on the way out; on the way in, a record that
  is not a valid event for its topic (or is over the cap, or is not vouched for by its
  signature) is published to `dlq` as a bounded excerpt with its size, digest and reason; if
  even that cannot be published it is logged. One record never stops a consumer.
- `consumer.PartitionedConsumer`: the one group member. The services that keep state
  (auctioneer, verifier, recorder) poll it from their own loops; `Bus.subscribe` runs it with a
  handler per event (monitor, `sale job`, the agents, the load test). Offsets are committed after
  the record is done with, so a crash means redelivery (every reader is idempotent), never loss;
  off the consumer's path (`commits.Committer`), in batches, at most `COMMIT_INTERVAL_S` behind,
  and only once what the record caused is acknowledged. A fetch that skipped an offset is read
  again (`rereads.Rereads`).
- `reader`: a consumer of no group that commits nothing, positioned by hand (`from_start`),
  for history, the roster, recall and the benchmarks; `caught_up` says when it has read all.
- `records`: `Source`, `Delivery`, and the trace stamp (`TRACE_HEADER`).
- `addressed`: the inbox, addressed delivery to agents (docs/delivery.md): which partition is
  an agent's (`inbox_partition`), whom a record is for (`addressee`), a record to copy to its
  addressees (`Letter`, sent by `Bus.send_copies`).
"""

from marketplace.shared.bus.addressed import Letter, addressee, inbox_partition
from marketplace.shared.bus.commits import COMMIT_INTERVAL_S, Committer
from marketplace.shared.bus.consumer import DRAIN_S, PartitionedConsumer, PartitionOwner
from marketplace.shared.bus.door import Bus
from marketplace.shared.bus.reader import (
    caught_up,
    from_start,
    new_consumer,
    partitions_of,
    read_back,
    reader,
)
from marketplace.shared.bus.records import (
    TRACE_HEADER,
    Delivery,
    Handler,
    Source,
    Stamp,
    source_of,
    stamp_of,
)
from marketplace.shared.bus.rereads import REREAD_TRIES, Rereads

__all__ = [
    "COMMIT_INTERVAL_S",
    "DRAIN_S",
    "REREAD_TRIES",
    "TRACE_HEADER",
    "Bus",
    "Committer",
    "Delivery",
    "Handler",
    "Letter",
    "PartitionOwner",
    "PartitionedConsumer",
    "Rereads",
    "Source",
    "Stamp",
    "addressee",
    "caught_up",
    "from_start",
    "inbox_partition",
    "new_consumer",
    "partitions_of",
    "read_back",
    "reader",
    "source_of",
    "stamp_of",
]
