"""One agent protocol: the scripted agent that the tests, the load test and the benchmark's fast
paths run must answer every event as the real agent (`LLMAgent`) does — the same replies, to the
same events, in the same order. Each case feeds one sequence of events to both and compares the
shape of every reply (what it is, for which task and round, a plan or a draft, failed or not)."""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import pytest

from agents.agent import LLMAgent
from agents.backends.scripted import ScriptedLLM
from agents.scripted_agent import ScriptedAgent
from marketplace.shared.config import AgentConfig
from schemas.events import (
    AuctionClosed,
    BidRequested,
    BidSubmitted,
    Event,
    GeneralInputs,
    JuryCalled,
    LeanClose,
    Mechanism,
    MemoryExample,
    RefinementCalled,
    RefinementInvite,
    ReviewSubmitted,
    TaskPosted,
    TaskResult,
)
from tests.samples import LATER

ME = "a"


def real(mechanism: Mechanism) -> LLMAgent:
    config = AgentConfig(
        id=ME,
        backend="scripted",
        model=f"scripted-{ME}",
        input_price=0.1,
        output_price=0.1,
        kinds=["coding", "general", "search"],
    )
    return LLMAgent(config, ScriptedLLM(config.model), mechanism)


def scripted(mechanism: Mechanism) -> ScriptedAgent:
    return ScriptedAgent(ME, price=0.1, mechanism=mechanism, refined_plan_tokens=50)


def task(task_id: str = "t1", kind: str = "general") -> TaskPosted:
    return TaskPosted(
        producer="client",
        task_id=task_id,
        kind=kind,
        prompt="Name a prime number.",
        inputs=GeneralInputs(),
    )


def call(task_id: str = "t1", agent_id: str = ME) -> BidRequested:
    return BidRequested(
        producer="auctioneer",
        task_id=task_id,
        call=1,
        agent_id=agent_id,
        estimates=[],
        value=1.0,
        why="first",
        deadline=LATER,
        checkable=False,
    )


def plan_bid(agent_id: str, task_id: str = "t1", round_: int = 0) -> BidSubmitted:
    return BidSubmitted(
        producer=agent_id,
        task_id=task_id,
        agent_id=agent_id,
        model=f"scripted-{agent_id}",
        round=round_,
        plan=f"scripted plan of {agent_id}, round {round_}: step",
        plan_tokens=7,
        entropy=1.0,
        price=0.1,
    )


def jury(task_id: str = "t1", round_: int = 0) -> JuryCalled:
    bids = [plan_bid(ME, task_id, round_), plan_bid("b", task_id, round_)]
    return JuryCalled(
        producer="auctioneer",
        task_id=task_id,
        round=round_,
        jurors=[ME, "b"],
        bids=bids,
        deadline=LATER,
    )


def refinement(task_id: str = "t1", agent_id: str = ME) -> RefinementCalled:
    example = MemoryExample(
        task_id="past",
        prompt="Name an even number.",
        similarity=0.9,
        losing_agent="b",
        losing_plan="guess",
        winning_agent=ME,
        winning_plan="think",
        passed=True,
    )
    return RefinementCalled(
        producer="auctioneer",
        task_id=task_id,
        provisional_bid_id=uuid4(),
        provisional_agent_id="b",
        provisional_score=-2.0,
        invites=[RefinementInvite(agent_id=agent_id, examples=[example])],
        deadline=LATER,
        scored=[],
    )


def paper_close(task_id: str = "t1", winner: str = ME) -> AuctionClosed:
    return AuctionClosed(
        producer="auctioneer",
        task_id=task_id,
        reason="awarded",
        winner_bid_id=uuid4(),
        winner_agent_id=winner,
        winning_plan=f"scripted plan of {winner}, round 0: step",
    )


def lean_close(task_id: str = "t1", winner: str = ME) -> AuctionClosed:
    return AuctionClosed(
        producer="auctioneer",
        task_id=task_id,
        reason="awarded",
        winner_bid_id=uuid4(),
        winner_agent_id=winner,
        winning_plan="scripted answer",
        mechanism="lean",
        lean=LeanClose(estimates=[], value=1.0, why="unchecked"),
    )


def shape(reply: Event) -> tuple:
    """What a reply is, apart from the words a model chose and what they cost."""
    match reply:
        case BidSubmitted():
            made = "draft" if reply.examples_pass is not None else "plan"
            return ("bid", reply.task_id, reply.round, made, reply.examples_pass, reply.memory_refs)
        case ReviewSubmitted():
            return ("review", reply.task_id, reply.round, [s.bid_id for s in reply.scores])
        case TaskResult():
            return ("result", reply.task_id, reply.bid_id, reply.error is None)
    return (reply.type, getattr(reply, "task_id", None))


Sequence = Callable[[], list[Event]]
CASES: dict[str, tuple[Mechanism, Sequence]] = {
    "lean: a call before its task is answered when the task arrives": (
        "lean",
        lambda: [call(), task(), lean_close()],
    ),
    "lean: a call repeated before its task is answered once": (
        "lean",
        lambda: [call(), call(), task(), lean_close()],
    ),
    "lean: task, call, award": ("lean", lambda: [task(), call(), lean_close()]),
    "lean: calls and awards for someone else": (
        "lean",
        lambda: [task(), call(agent_id="b"), lean_close(winner="b")],
    ),
    "lean: a call for another task than the one posted": ("lean", lambda: [task(), call("t2")]),
    "paper: bid, jury, refinement, second jury, award": (
        "paper",
        lambda: [task(), jury(), refinement(), jury(round_=1), paper_close()],
    ),
    "paper: a task posted twice is bid on twice": ("paper", lambda: [task(), task()]),
    "paper: a jury for a task it never saw": ("paper", lambda: [jury("unseen")]),
    "paper: a refinement for a task it never saw": ("paper", lambda: [refinement("unseen")]),
    "paper: an award for a task it never saw": ("paper", lambda: [paper_close("unseen")]),
    "paper: a refinement for someone else": ("paper", lambda: [task(), refinement(agent_id="b")]),
    "paper: a call (lean) while bidding plans": ("paper", lambda: [call(), task()]),
}


@pytest.mark.parametrize("case", CASES)
async def test_the_scripted_agent_answers_as_the_real_agent_does(case: str) -> None:
    mechanism, events = CASES[case]
    model, script = real(mechanism), scripted(mechanism)
    for event in events():
        mine = [shape(r) for r in await model.respond(event)]
        theirs = [shape(r) for r in await script.respond(event)]
        assert theirs == mine, f"{case}: after {event.type}"


def test_the_scripted_agent_is_the_real_agent() -> None:
    """Not a copy of the protocol: the real agent's dispatcher, with a scripted model."""
    assert isinstance(scripted("paper"), LLMAgent)


async def test_the_script_sets_plans_scores_and_silence_through_the_real_agent() -> None:
    """A scripted setting is read back through the real agent's own parsing: the plan's length
    and entropy, the juror's score from its log-probabilities, and silence as a model failure."""
    agent = ScriptedAgent(ME, price=0.1, plan_tokens=12, entropy=0.7, scores={"b:0": 4.5})
    [bid] = await agent.respond(task())
    assert (bid.plan_tokens, bid.entropy) == (12, pytest.approx(0.7))
    [review] = await agent.respond(jury())
    assert [s.score for s in review.scores] == [pytest.approx(3.0), pytest.approx(4.5)]
    mute = ScriptedAgent(ME, price=0.1, bids=False, judges=False)
    assert await mute.respond(task()) == [] and await mute.respond(jury()) == []
    assert await mute.respond(refinement()) == []  # it bid no plan: there is none to refine


def test_answer_is_respond_for_callers_without_an_event_loop() -> None:
    agent = ScriptedAgent(ME, price=0.1, mechanism="lean")
    assert agent.answer(call()) == []  # the call waits for its task
    [draft] = agent.answer(task())
    assert draft.plan == f"scripted answer of {ME}" and draft.examples_pass is True
