"""One valid instance of every event type, for round-trip and transport tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from schemas.events import (
    MAX_PROMPT,
    AgentHeartbeat,
    AuctionClosed,
    AuctionOpened,
    BidRequested,
    BidScore,
    BidSubmitted,
    CodingChecks,
    CodingInputs,
    DeadLetter,
    Event,
    FailedDraft,
    JuryCalled,
    LeanClose,
    LeanDraft,
    LeanEstimate,
    MemoryExample,
    RefinementCalled,
    RefinementInvite,
    ReviewSubmitted,
    ScoredBid,
    SearchChecks,
    SearchInputs,
    SubmissionRejected,
    TaskChecks,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
    Weights,
)

BID = UUID("00000000-0000-4000-8000-000000000001")
DRAFT = UUID("00000000-0000-4000-8000-000000000002")
LATER = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=30)
PLAN = "1. Parse the input.\n2. Loop over pairs.\n3. Return early on a match."
# Malformed and under the record cap: its dead letter, holding it whole base64-encoded, was
# over the producer's request limit (issue 13).
BIG_GARBAGE = b"{" + b"x" * 900_000


def huge_task(examples: int = 20) -> TaskPosted:
    """A task valid field by field (each example under its cap) and `examples` × 100 kB long:
    the 50 MB task of issue 13 was one of these."""
    return TaskPosted(
        producer="client",
        task_id="huge",
        kind="coding",
        prompt="def f(): ...",
        inputs=CodingInputs(entry_point="f", examples=["x" * MAX_PROMPT] * examples),
    )


def every_event(task_id: str = "he-0") -> list[Event]:
    usage = Usage(requests=1, prompt_tokens=120, completion_tokens=40, cost=0.000008)
    scored = ScoredBid(
        bid_id=BID,
        agent_id="small",
        round=0,
        price=0.05,
        plan_tokens=40,
        entropy=0.7,
        jury={"small": 4.0, "large": None},
        cost=2.0,
        value=4.7,
        score=-2.7,
    )
    example = MemoryExample(
        task_id="he-1",
        prompt="def g(): ...",
        similarity=0.83,
        losing_agent="small",
        losing_plan="guess",
        winning_agent="large",
        winning_plan=PLAN,
        passed=True,
    )
    bid = BidSubmitted(
        producer="small",
        task_id=task_id,
        bid_id=BID,
        agent_id="small",
        model="smollm2-135m",
        plan=PLAN,
        plan_tokens=40,
        entropy=0.7,
        price=0.05,
        usage=usage,
        memory_refs=["he-1"],
    )
    return [*_paper(task_id, usage, scored, example, bid), *_lean(task_id + "l", usage)]


def _paper(
    task_id: str, usage: Usage, scored: ScoredBid, example: MemoryExample, bid: BidSubmitted
) -> list[Event]:
    return [
        TaskPosted(
            producer="client",
            task_id=task_id,
            kind="coding",
            prompt="def f(x): ...",
            inputs=CodingInputs(entry_point="f", examples=["assert f(1) == 2"]),
            budget=0.01,
            bid_window_s=5.0,
            tenant="acme",
        ),
        TaskPosted(
            producer="client",
            task_id=task_id + "s",
            kind="search",
            prompt="Who wrote Dune?",
            inputs=SearchInputs(corpus="wiki"),
        ),
        TaskChecks(
            producer="client",
            task_id=task_id,
            checks=CodingChecks(entry_point="f", tests="assert f(2) == 3"),
        ),
        TaskChecks(
            producer="client", task_id=task_id + "s", checks=SearchChecks(answers=["Frank Herbert"])
        ),
        bid,
        ReviewSubmitted(
            producer="large",
            task_id=task_id,
            juror="large",
            scores=[BidScore(bid_id=BID, score=3.5)],
            usage=usage,
        ),
        AuctionOpened(
            producer="auctioneer", task_id=task_id, agents=["small", "large"], bid_deadline=LATER
        ),
        JuryCalled(
            producer="auctioneer",
            task_id=task_id,
            round=0,
            jurors=["small", "large"],
            bids=[bid],
            deadline=LATER,
        ),
        RefinementCalled(
            producer="auctioneer",
            task_id=task_id,
            provisional_bid_id=BID,
            provisional_agent_id="large",
            provisional_score=-1.5,
            invites=[RefinementInvite(agent_id="small", examples=[example])],
            deadline=LATER,
            scored=[scored],
        ),
        SubmissionRejected(
            producer="auctioneer",
            task_id=task_id,
            agent_id="small",
            bid_id=BID,
            submission="bid",
            rejected_event_id=BID,
            reason="late",
            detail="after the bid deadline",
        ),
        AuctionClosed(
            producer="auctioneer",
            task_id=task_id,
            reason="awarded",
            winner_bid_id=BID,
            winner_agent_id="small",
            winning_plan=PLAN,
            weights=Weights(cost=1.0, entropy=0.5, jurors={"large": 2.0}),
            bids=[scored],
        ),
        TaskResult(
            producer="small",
            task_id=task_id,
            agent_id="small",
            bid_id=BID,
            output="def f(x):\n    return x + 1\n",
            usage=usage,
            cost=0.000008,
            duration_s=1.5,
        ),
        TaskOutcome(
            producer="verifier", task_id=task_id, passed=True, score=1.0, details="3/3 tests"
        ),
        AgentHeartbeat(
            producer="small", agent_id="small", model="smollm2-135m", price=0.05, kinds=["coding"]
        ),
        DeadLetter.of(
            b"\xff\xfenot json",
            b"he-0",
            "(top level): Invalid JSON",
            excerpt=4096,
            producer="recorder",
            source_topic="sale.bids",
            partition=2,
            offset=17,
            consumer_group="recorder",
        ),
    ]


def _lean(task_id: str, usage: Usage) -> list[Event]:
    """A lean auction's own events: a call with feedback, a draft bid, and a close."""
    estimates = [
        LeanEstimate(
            agent_id=agent,
            examples_pass=0.5,
            right_if_pass=0.9,
            right_if_fail=0.0,
            cost=0.01,
            reservation=0.88,
            price=price,
        )
        for agent, price in (("small", 0.05), ("large", 0.36))
    ]
    failed = LeanDraft(agent_id="small", bid_id=BID, examples_pass=False, worth=0.0)
    passed = LeanDraft(agent_id="large", bid_id=DRAFT, examples_pass=True, worth=0.9)
    return [
        BidRequested(
            producer="auctioneer",
            task_id=task_id,
            call=2,
            agent_id="large",
            estimates=estimates,
            value=1.0,
            why="large may beat the draft in hand (0.88 > 0)",
            feedback=FailedDraft(agent_id="small", source="def f(x): ...", error="AssertionError"),
            deadline=LATER,
            drafts=[failed],
        ),
        BidSubmitted(
            producer="large",
            task_id=task_id,
            bid_id=DRAFT,
            agent_id="large",
            model="qwen-7b",
            plan="def f(x):\n    return x + 1\n",
            plan_tokens=12,
            entropy=0.0,
            price=0.36,
            usage=usage,
            examples_pass=True,
        ),
        AuctionClosed(
            producer="auctioneer",
            task_id=task_id,
            reason="awarded",
            winner_bid_id=DRAFT,
            winner_agent_id="large",
            winning_plan="def f(x):\n    return x + 1\n",
            mechanism="lean",
            lean=LeanClose(
                estimates=estimates,
                value=1.0,
                drafts=[failed, passed],
                why="no agent left to ask can beat large's draft (0.9)",
            ),
        ),
    ]


def awarding(result: TaskResult) -> AuctionClosed:
    """The close that awards `result`'s task to its agent and bid (the verifier grades, and the
    projections book, only an awarded result)."""
    return AuctionClosed(
        producer="auctioneer",
        task_id=result.task_id,
        reason="awarded",
        winner_agent_id=result.agent_id,
        winner_bid_id=result.bid_id,
    )
