"""Backpressure through the real broker: a flood of tasks faster than the agents can bid
queues on the tasks topic; the auctioneer keeps its bound on open auctions and none closes
for want of bids."""

from __future__ import annotations

from collections import Counter

from agents.scripted_agent import ScriptedAgent
from marketplace.shared.config import AdmissionConfig, BrokerConfig
from schemas.events import AuctionClosed, AuctionOpened
from tests.integration.test_auctioneer import Market, make_config, task

FLOOD = 50
AGENT_DELAY_S = 0.05  # per event: the agents answer far slower than the tasks arrive
# A phase ends early once every agent answered; the window is only the timeout, and it must
# outlast an agent working through its queue of the whole flood (50 × 0.05 s, more under load).
WINDOW_S = 10.0


async def test_a_flood_queues_within_the_bound_and_no_auction_closes_bidless(
    broker_config: BrokerConfig, topics: object
) -> None:
    config = make_config(broker_config, window_s=WINDOW_S).model_copy(
        update={"admission": AdmissionConfig(open_per_agent=2, max_open=3)}
    )
    async with Market(config) as m:
        await m.agent(ScriptedAgent("a", price=0.05, delay_s=AGENT_DELAY_S))
        await m.agent(ScriptedAgent("b", price=0.1, delay_s=AGENT_DELAY_S))
        auctioneer = await m.auctioneer()
        posted = [task(f"flood-{i:03d}") for i in range(FLOOD)]
        for p in posted:
            await m.post(p)
        for p in posted:
            await m.closed(p.task_id, timeout_s=120)
        assert auctioneer.bound(auctioneer.clock()) == 3
    bidless = [e.task_id for e in m.watch.of(AuctionClosed) if not e.bids]
    assert bidless == []
    closes = Counter(e.task_id for e in m.watch.of(AuctionClosed))
    assert all(closes[p.task_id] == 1 for p in posted), closes
    assert max_open_at_once(m.watch.of(AuctionOpened), m.watch.of(AuctionClosed)) <= 3


def max_open_at_once(opened: list[AuctionOpened], closed: list[AuctionClosed]) -> int:
    """The most auctions open at one time, by the auctioneer's own clock (a close first on a
    tie: it frees the room the open takes)."""
    moments = sorted(
        [(e.occurred_at, 0, -1) for e in closed] + [(e.occurred_at, 1, +1) for e in opened]
    )
    open_now = most = 0
    for _, _, change in moments:
        open_now += change
        most = max(most, open_now)
    return most
