"""The event contract: every event survives the wire, and bad records are refused by name."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import EventDecodeError, decode, encode
from schemas.events import (
    MAX_PLAN,
    AgentHeartbeat,
    AuctionClosed,
    BidScore,
    BidSubmitted,
    Event,
    ReviewSubmitted,
    TaskPosted,
    Usage,
    Weights,
)
from schemas.topics import STREAMS, Topics
from tests.samples import BID, every_event


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_every_event_round_trips(event: Event) -> None:
    assert decode(encode(event)) == event


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_every_event_has_a_topic_and_a_key(event: Event) -> None:
    assert Topics("x.").for_event(event).startswith("x.")
    assert event.key


def test_the_samples_cover_every_event_type() -> None:
    sampled = {type(e) for e in every_event()}
    assert sampled == {model for models in STREAMS.values() for model in models}


def test_events_are_frozen() -> None:
    event = every_event()[0]
    with pytest.raises(ValueError):
        event.task_id = "other"  # type: ignore[misc]


def _bid_json(**changes: object) -> bytes:
    bid = json.loads(encode(next(e for e in every_event() if isinstance(e, BidSubmitted))))
    bid.update(changes)
    return json.dumps({k: v for k, v in bid.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"type": "BidPlaced", "producer": "x"}', "unknown event type 'BidPlaced'"),
        (b'{"producer": "x"}', "type: field required"),
        (_bid_json(plan_tokens=...), "BidSubmitted.plan_tokens: Field required"),
        (_bid_json(plan_tokens="forty"), "BidSubmitted.plan_tokens: Input should be a valid int"),
        (_bid_json(plan_tokens=-1), "BidSubmitted.plan_tokens: Input should be greater than"),
        (_bid_json(price=-0.5), "BidSubmitted.price: Input should be greater than"),
        (_bid_json(plan="x" * (MAX_PLAN + 1)), "BidSubmitted.plan: String should have at most"),
        (_bid_json(round=2), "BidSubmitted.round: Input should be 0 or 1"),
        (_bid_json(schema_version=2), "BidSubmitted.schema_version: Input should be 1"),
        (_bid_json(surprise=True), "BidSubmitted.surprise: Extra inputs are not permitted"),
        (_bid_json(event_id="nope"), "BidSubmitted.event_id: Input should be a valid UUID"),
        (_bid_json(agent_id="a b"), "BidSubmitted.agent_id: String should match pattern"),
        (_bid_json(usage={"prompt_tokens": -3}), "BidSubmitted.usage.prompt_tokens"),
    ],
)
def test_bad_records_are_refused_naming_the_field(raw: bytes, names: str) -> None:
    with pytest.raises(EventDecodeError, match=names.replace("(", r"\(")):
        decode(raw)


def test_jury_scores_outside_0_to_5_are_refused() -> None:
    review = {
        "type": "ReviewSubmitted",
        "producer": "j",
        "task_id": "t",
        "juror": "j",
        "scores": [{"bid_id": str(BID), "score": 5.5}],
    }
    with pytest.raises(EventDecodeError, match=r"scores\[0\].score: Input should be less than"):
        decode(json.dumps(review))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_numbers_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="entropy"):
        BidSubmitted(
            producer="a",
            task_id="t",
            agent_id="a",
            model="m",
            plan="p",
            plan_tokens=1,
            entropy=bad,
            price=1.0,
        )
    with pytest.raises(ValueError, match="cost"):
        Weights(cost=bad)


def test_kind_and_inputs_must_agree() -> None:
    posted = json.loads(encode(every_event()[0]))
    posted["kind"] = "search"
    with pytest.raises(EventDecodeError, match="inputs are for a coding task"):
        decode(json.dumps(posted))


def test_a_review_scores_each_bid_once() -> None:
    with pytest.raises(ValueError, match="same bid more than once"):
        ReviewSubmitted(
            producer="j",
            task_id="t",
            juror="j",
            scores=[BidScore(bid_id=BID, score=1), BidScore(bid_id=BID, score=2)],
        )


def test_an_award_needs_a_winner_and_no_bids_has_none() -> None:
    with pytest.raises(ValueError, match="needs a winner"):
        AuctionClosed(producer="a", task_id="t", reason="awarded", weights=Weights())
    with pytest.raises(ValueError, match="needs a winner"):
        AuctionClosed(
            producer="a",
            task_id="t",
            reason="no_bids",
            weights=Weights(),
            winner_bid_id=BID,
            winner_agent_id="x",
        )
    assert AuctionClosed(producer="a", task_id="t", reason="no_bids", weights=Weights())


def test_streams_carry_disjoint_event_types() -> None:
    types = [model for models in STREAMS.values() for model in models]
    assert len(types) == len(set(types))


def test_usage_adds_up() -> None:
    total = Usage(requests=1, prompt_tokens=10, completion_tokens=5, cost=0.1) + Usage(
        requests=2, prompt_tokens=1, completion_tokens=2, cost=0.2
    )
    assert (total.requests, total.total_tokens) == (3, 18)
    assert total.cost == pytest.approx(0.3)


ids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,40}", fullmatch=True)
finite = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(
    task_id=ids,
    agent_id=ids,
    plan=st.text(min_size=1, max_size=500),
    plan_tokens=st.integers(0, 10**6),
    entropy=finite,
    price=finite,
    round_=st.sampled_from([0, 1]),
)
def test_any_valid_bid_round_trips(
    task_id: str,
    agent_id: str,
    plan: str,
    plan_tokens: int,
    entropy: float,
    price: float,
    round_: int,
) -> None:
    bid = BidSubmitted(
        producer=agent_id,
        task_id=task_id,
        agent_id=agent_id,
        model="m",
        plan=plan,
        plan_tokens=plan_tokens,
        entropy=entropy,
        price=price,
        round=round_,
    )
    assert decode(encode(bid)) == bid


@given(scores=st.lists(st.one_of(st.none(), st.floats(0, 5)), min_size=1, max_size=8))
def test_any_valid_review_round_trips(scores: list[float | None]) -> None:
    from uuid import uuid4

    review = ReviewSubmitted(
        producer="j",
        task_id="t",
        juror="j",
        scores=[BidScore(bid_id=uuid4(), score=s) for s in scores],
    )
    assert decode(encode(review)) == review


@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_either_decode_or_raise_the_decode_error(raw: bytes) -> None:
    try:
        decode(raw)
    except EventDecodeError as exc:
        assert str(exc)


@given(
    kinds=st.lists(st.sampled_from(["coding", "search"]), min_size=1, max_size=2),
    price=finite,
    status=st.sampled_from(["up", "draining", "left"]),
)
def test_any_heartbeat_round_trips(kinds: list[str], price: float, status: str) -> None:
    beat = AgentHeartbeat(
        producer="a", agent_id="a", model="m", price=price, kinds=kinds, status=status
    )
    assert decode(encode(beat)) == beat


def test_a_task_needs_a_prompt() -> None:
    posted = json.loads(encode(every_event()[0]))
    posted["prompt"] = ""
    with pytest.raises(EventDecodeError, match=r"TaskPosted\.prompt: String should have at least"):
        decode(json.dumps(posted))
    assert isinstance(decode(encode(every_event()[0])), TaskPosted)


def test_events_from_before_the_lean_auction_still_decode_as_the_papers() -> None:
    bid = json.loads(_bid_json())
    for new in ("examples_pass", "failure"):
        bid.pop(new)
    old_bid = decode(json.dumps(bid))
    assert old_bid.examples_pass is None and not old_bid.is_draft
    closed = json.loads(encode(next(e for e in every_event() if isinstance(e, AuctionClosed))))
    for new in ("mechanism", "lean"):
        closed.pop(new)
    old_close = decode(json.dumps(closed))
    assert old_close.mechanism == "paper" and old_close.lean is None


def test_a_lean_close_carries_its_terms_and_a_paper_close_none() -> None:
    with pytest.raises(ValueError, match="`lean` holds the terms"):
        AuctionClosed(producer="a", task_id="t", reason="no_bids", mechanism="lean")
    lean_close = next(e for e in every_event() if isinstance(e, AuctionClosed) and e.lean)
    with pytest.raises(ValueError, match="`lean` holds the terms"):
        AuctionClosed.model_validate({**lean_close.model_dump(), "mechanism": "paper"})


def test_a_call_for_a_draft_names_a_positive_call_number() -> None:
    call = json.loads(encode(next(e for e in every_event() if e.type == "BidRequested")))
    call["call"] = 0
    with pytest.raises(EventDecodeError, match=r"BidRequested\.call: Input should be greater"):
        decode(json.dumps(call))


def test_a_general_task_and_its_answered_outcome_round_trip() -> None:
    from schemas.events import GeneralChecks, GeneralInputs, TaskChecks, TaskOutcome

    task = TaskPosted(
        producer="client", task_id="a1", kind="general", prompt="Hi?", inputs=GeneralInputs()
    )
    checks = TaskChecks(producer="client", task_id="a1", checks=GeneralChecks())
    answered = TaskOutcome(producer="verifier", task_id="a1", passed=None, score=None)
    for event in (task, checks, answered):
        assert decode(encode(event)) == event
    assert answered.answered
    with pytest.raises(ValueError, match="passed and score are both None"):
        TaskOutcome(producer="verifier", task_id="a1", passed=None, score=0.0)
    with pytest.raises(ValueError, match="inputs are for a general task, but kind is coding"):
        TaskPosted(producer="c", task_id="a1", kind="coding", prompt="Hi?", inputs=GeneralInputs())
