"""The marketplace's events: the only thing services share.

Every event is a frozen pydantic model with the common envelope. Validation is strict and
unknown fields are refused, so a producer's mistake is caught by the first consumer instead
of silently becoming part of the audit log. Text fields carry size caps: an event is a
Kafka record and a Postgres row, not a file store.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

# Caps on free text, in characters. Generous for LLM output, small enough for one record.
MAX_ID = 128
MAX_PROMPT = 100_000
MAX_PLAN = 20_000
MAX_OUTPUT = 200_000
MAX_REASON = 4_000
# The most answer tokens a client may ask for (OpenAI's `max_tokens`): more than any local
# model's context, so a cap the market cannot honour is refused rather than ignored.
MAX_ANSWER_TOKENS = 32_768
# A search task's tool loop, as its result tells it: at most MAX_TOOL_STEPS steps, each a short
# line of text and a few titles, so the whole story stays a few tens of kilobytes.
MAX_TOOL_STEPS = 40
MAX_STEP_TEXT = 300
MAX_STEP_TITLES = 8
# Caps on what a dead letter keeps of a bad record, in bytes: an excerpt, never the whole
# record, so the dead letter of the largest record still fits in one (a dead letter that
# cannot be sent would leave its record blocking the consumer).
MAX_EXCERPT = 65_536
MAX_KEY_EXCERPT = 1_024
# How far ahead of its reader's clock an event may be dated: further, and it is refused (dead
# letter), since an event dated in the future would stand for "the latest" until then.
MAX_CLOCK_SKEW = timedelta(seconds=5)


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0)]
JuryScore = Annotated[float, Field(ge=0, le=5, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Reason = Annotated[str, Field(max_length=MAX_REASON)]
TaskKind = Literal["coding", "search", "general"]
Round = Literal[0, 1]


class Record(BaseModel):
    """A frozen, strict value: the base of every event and every part of one."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )


class Usage(Record):
    """Tokens spent by LLM calls, what they cost at the caller's price, and the compute they took
    (CPU-seconds for in-process models, wall-clock seconds for remote ones)."""

    requests: Tokens = 0
    prompt_tokens: Tokens = 0
    completion_tokens: Tokens = 0
    cached_tokens: Tokens = Field(default=0, description="of the prompt tokens, already held")
    cost: NonNegative = 0.0
    seconds: NonNegative = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            requests=self.requests + other.requests,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            cost=self.cost + other.cost,
            seconds=self.seconds + other.seconds,
        )


class Price(Record):
    """What an agent charges per million tokens, by direction, as model price lists quote it:
    reading (the prompt) costs less than writing, and a prompt prefix the backend already holds
    (llama.cpp keeps the evaluated prefix) may cost less again."""

    input: NonNegative
    output: NonNegative
    cached_input: NonNegative | None = Field(default=None, description="None: same as input")

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """What a call costs: `cached_tokens` of its `prompt_tokens` at the cached price."""
        cached = self.input if self.cached_input is None else self.cached_input
        fresh = prompt_tokens - cached_tokens
        per_million = self.input * fresh + cached * cached_tokens + self.output * completion_tokens
        return per_million / 1_000_000


class Event(Record):
    """The envelope every event carries."""

    type: str
    event_id: UUID = Field(default_factory=uuid4)
    schema_version: Literal[1] = SCHEMA_VERSION
    producer: Id
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def key(self) -> str:
        """The Kafka record key: what the event is about, so related events share a partition."""
        raise NotImplementedError


class TaskEvent(Event):
    task_id: Id

    @property
    def key(self) -> str:
        return self.task_id


class AgentEvent(Event):
    agent_id: Id

    @property
    def key(self) -> str:
        return self.agent_id


# --- tasks and their hidden checks -------------------------------------------------------


class CodingInputs(Record):
    """What an agent may see of a coding task: the function to write and visible examples."""

    kind: Literal["coding"] = "coding"
    entry_point: Id
    examples: list[Annotated[str, Field(max_length=MAX_PROMPT)]] = Field(default_factory=list)


class SearchInputs(Record):
    """What an agent may see of a search task: which corpus its search tool reads."""

    kind: Literal["search"] = "search"
    corpus: Id = "wiki"


class GeneralInputs(Record):
    """A general request: the prompt is all there is, answered as text (`Client.ask`)."""

    kind: Literal["general"] = "general"


class TaskPosted(TaskEvent):
    type: Literal["TaskPosted"] = "TaskPosted"
    kind: TaskKind
    prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT)]
    inputs: Annotated[CodingInputs | SearchInputs | GeneralInputs, Field(discriminator="kind")]
    budget: NonNegative | None = None
    bid_window_s: Seconds | None = None
    tenant: Id = "default"
    max_tokens: Annotated[int, Field(ge=1, le=MAX_ANSWER_TOKENS)] | None = Field(
        default=None, description="a cap on the tokens of the answer; None: each agent's own"
    )

    @model_validator(mode="after")
    def _inputs_match_kind(self) -> TaskPosted:
        if self.inputs.kind != self.kind:
            raise ValueError(f"inputs are for a {self.inputs.kind} task, but kind is {self.kind}")
        return self


class CodingChecks(Record):
    kind: Literal["coding"] = "coding"
    entry_point: Id
    tests: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT)]


class SearchChecks(Record):
    kind: Literal["search"] = "search"
    answers: list[Annotated[str, Field(min_length=1, max_length=MAX_REASON)]] = Field(min_length=1)


class GeneralChecks(Record):
    """A general task hides nothing: its checks say only that there is nothing to check, so the
    verifier records its answer as answered (`TaskOutcome.passed` None) rather than waiting."""

    kind: Literal["general"] = "general"


class TaskChecks(TaskEvent):
    """The hidden half of a task; only the verifier and the recorder read it."""

    type: Literal["TaskChecks"] = "TaskChecks"
    checks: Annotated[CodingChecks | SearchChecks | GeneralChecks, Field(discriminator="kind")]


# --- bids and reviews --------------------------------------------------------------------


class BidSubmitted(TaskEvent):
    type: Literal["BidSubmitted"] = "BidSubmitted"
    bid_id: UUID = Field(default_factory=uuid4)
    agent_id: Id
    model: Annotated[str, Field(min_length=1, max_length=MAX_ID)]
    round: Round = 0
    plan: Annotated[str, Field(min_length=1, max_length=MAX_PLAN)]
    plan_tokens: Tokens
    entropy: NonNegative
    price: NonNegative = Field(description="the agent's price per million generated tokens")
    usage: Usage = Usage()
    memory_refs: list[Id] = Field(default_factory=list, description="task ids of examples used")
    examples_pass: bool | None = Field(
        default=None,
        description="None: a plan bid (the paper's auction); a bool: a draft bid (the lean "
        "auction), whose `plan` is the draft's program: whether it passes the visible examples",
    )
    failure: Reason | None = Field(default=None, description="why a draft fails the examples")

    @property
    def is_draft(self) -> bool:
        return self.examples_pass is not None


class BidScore(Record):
    """One juror's score of one bid; None when the juror's answer could not be read."""

    bid_id: UUID
    score: JuryScore | None


class ReviewSubmitted(TaskEvent):
    type: Literal["ReviewSubmitted"] = "ReviewSubmitted"
    juror: Id
    round: Round = 0
    scores: list[BidScore] = Field(min_length=1)
    usage: Usage = Usage()

    @model_validator(mode="after")
    def _one_score_per_bid(self) -> ReviewSubmitted:
        ids = [s.bid_id for s in self.scores]
        if len(ids) != len(set(ids)):
            raise ValueError("scores name the same bid more than once")
        return self


# --- the auction -------------------------------------------------------------------------


class Weights(Record):
    """Scoring weights: score = cost·price·tokens − (entropy·H + Σ juror weight·score)."""

    cost: Finite = 1.0
    entropy: Finite = 1.0
    jury: Finite = Field(default=1.0, description="weight of a juror not listed in `jurors`")
    jurors: dict[Id, Finite] = Field(default_factory=dict)


class ScoredBid(Record):
    """Every term of one bid's score, so a replay can recompute the decision from this alone."""

    bid_id: UUID
    agent_id: Id
    round: Round
    price: NonNegative
    plan_tokens: Tokens
    entropy: NonNegative
    jury: dict[Id, JuryScore | None]
    cost: Finite
    value: Finite
    score: Finite
    eligible: bool = True
    ineligible_reason: Reason = ""


Mechanism = Literal["paper", "lean"]


class AuctionOpened(TaskEvent):
    type: Literal["AuctionOpened"] = "AuctionOpened"
    agents: list[Id] = Field(description="live agents expected to bid (lean: that may be asked)")
    bid_deadline: datetime
    mechanism: Mechanism = "paper"


class JuryCalled(TaskEvent):
    """The bids of one round that the auction accepted, sent to every live agent to judge.

    The list is authoritative: after this event no other bid of the round counts.
    """

    type: Literal["JuryCalled"] = "JuryCalled"
    round: Round
    bids: list[BidSubmitted] = Field(min_length=1)
    jurors: list[Id]
    deadline: datetime


class MemoryExample(Record):
    """A past task and the plan that lost and the plan that won it."""

    task_id: Id
    prompt: Annotated[str, Field(max_length=MAX_PROMPT)]
    similarity: float = Field(ge=-1, le=1)
    losing_agent: Id
    losing_plan: Annotated[str, Field(max_length=MAX_PLAN)]
    winning_agent: Id
    winning_plan: Annotated[str, Field(max_length=MAX_PLAN)]
    passed: bool | None = None


class RefinementInvite(Record):
    agent_id: Id
    examples: list[MemoryExample] = Field(default_factory=list)


class RefinementCalled(TaskEvent):
    type: Literal["RefinementCalled"] = "RefinementCalled"
    provisional_bid_id: UUID
    provisional_agent_id: Id
    provisional_score: Finite
    invites: list[RefinementInvite] = Field(min_length=1)
    deadline: datetime
    scored: list[ScoredBid] = Field(description="round 0, final: later reviews of it don't count")


# --- the lean auction: calls for drafts, one agent at a time (marketplace.core.lean_policy) ---


class LeanEstimate(Record):
    """What the auction believed of one agent before asking anyone
    (`marketplace.core.lean_policy.Estimate`), with the agent's output price, which orders agents of
    equal reservation value."""

    agent_id: Id
    examples_pass: Probability
    right_if_pass: Probability
    right_if_fail: Probability
    cost: NonNegative
    reservation: Finite
    price: NonNegative = Field(default=0.0, description="per million generated tokens")


class LeanDraft(Record):
    """A draft in hand when a decision was taken, and what it was worth then."""

    agent_id: Id
    bid_id: UUID
    examples_pass: bool
    worth: Finite


class FailedDraft(Record):
    """A cheaper agent's draft that fails the visible examples, for the next agent to fix."""

    agent_id: Id
    source: Annotated[str, Field(max_length=MAX_PLAN)]
    error: Reason


CHECKABLE = (
    "the task prints examples (a general task: its answer is there), so a draft's check is "
    "evidence (else the reserve alone)"
)


class BidRequested(TaskEvent):
    """The lean auction asks one agent for a draft. Each call repeats everything its decision
    was taken on (the estimates fixed at the first call, the drafts in hand, the agents asked
    who gave none), so it can be checked against `marketplace.core.lean_policy.next_step` alone."""

    type: Literal["BidRequested"] = "BidRequested"
    call: Annotated[int, Field(ge=1)] = Field(description="1 for the first call, then 2, 3…")
    agent_id: Id = Field(description="the agent asked")
    estimates: list[LeanEstimate]
    value: NonNegative = Field(description="what a right answer is worth, in price units")
    why: Reason
    feedback: FailedDraft | None = None
    fixes: bool = Field(
        default=False, description="the auction's setting: dearer agents fix failing drafts"
    )
    deadline: datetime
    drafts: list[LeanDraft] = Field(default_factory=list, description="in hand, in the order come")
    unanswered: list[Id] = Field(default_factory=list, description="asked, and gave no draft")
    checkable: bool = Field(default=True, description=CHECKABLE)


class LeanClose(Record):
    """Why a lean auction stopped calling, with everything that decision was taken on."""

    estimates: list[LeanEstimate]
    value: NonNegative
    drafts: list[LeanDraft] = Field(default_factory=list)
    unanswered: list[Id] = Field(default_factory=list)
    why: Reason
    checkable: bool = Field(default=True, description=CHECKABLE)


class SubmissionRejected(TaskEvent):
    """A bid or review the auction did not count, and why: nothing is dropped silently."""

    type: Literal["SubmissionRejected"] = "SubmissionRejected"
    agent_id: Id
    submission: Literal["bid", "review"]
    rejected_event_id: UUID
    bid_id: UUID | None = None
    reason: Literal[
        "late",
        "duplicate",
        "unknown_agent",
        "dead_agent",
        "unknown_task",
        "not_invited",
        "wrong_round",
    ]
    detail: Reason = ""


class Refusal(Record):
    """Everything a budget refusal was decided on (`marketplace.core.budget`): the tenant's
    budget and what its tasks had spent by then (as the log's `spend` counted it), the task's
    own budget, and the cheapest live agent's expected cost. Replay recomputes the decision
    from these alone."""

    tenant: Id
    tenant_budget: NonNegative | None = Field(default=None, description="None: no limit")
    tenant_spent: NonNegative = 0.0
    task_budget: NonNegative | None = None
    cheapest_agent: Id | None = Field(default=None, description="None: no live agent")
    cheapest_cost: NonNegative | None = None


class AuctionClosed(TaskEvent):
    type: Literal["AuctionClosed"] = "AuctionClosed"
    reason: Literal["awarded", "refined", "no_bids", "no_eligible_bids", "over_budget"]
    winner_bid_id: UUID | None = None
    winner_agent_id: Id | None = None
    winning_plan: Annotated[str, Field(max_length=MAX_PLAN)] = Field(
        default="", description="paper: the winning plan; lean: the winning draft's program"
    )
    weights: Weights = Field(default_factory=Weights, description="paper: the scoring weights")
    bids: list[ScoredBid] = Field(default_factory=list, description="paper: every bid's score")
    mechanism: Mechanism = "paper"
    lean: LeanClose | None = None
    refusal: Refusal | None = Field(
        default=None, description="over_budget: the terms the task was refused on"
    )
    detail: Reason = Field(default="", description="over_budget: why, in words")

    @property
    def refused(self) -> bool:
        """The task was refused before any agent was asked (over its budget)."""
        return self.reason == "over_budget"

    @model_validator(mode="after")
    def _winner_iff_awarded(self) -> AuctionClosed:
        awarded = self.reason in ("awarded", "refined")
        if awarded != (self.winner_bid_id is not None and self.winner_agent_id is not None):
            raise ValueError(f"reason {self.reason!r} needs a winner exactly when awarded")
        return self

    @model_validator(mode="after")
    def _lean_terms_iff_lean(self) -> AuctionClosed:
        if (self.mechanism == "lean" and not self.refused) != (self.lean is not None):
            raise ValueError("`lean` holds the terms of a lean auction's close, and only those")
        return self

    @model_validator(mode="after")
    def _refusal_terms_iff_refused(self) -> AuctionClosed:
        if self.refused != (self.refusal is not None):
            raise ValueError("`refusal` holds the terms of an over_budget close, and only those")
        return self


# --- execution and verification ----------------------------------------------------------


StepText = Annotated[str, Field(max_length=MAX_STEP_TEXT)]


class ToolStep(Record):
    """One step of an agent's tool loop on a search task, in brief: what it did and what it saw.

    `text` is the query searched, the title opened, the answer given, or (invalid) the start
    of a reply that held no action; `titles` are the articles a search found or the one opened;
    `note` says what went wrong, if anything ("no results", "no such article", why a reply was
    not an action). The passages themselves are not kept: the corpus has them."""

    action: Literal["search", "open", "answer", "invalid"]
    text: StepText = ""
    titles: list[StepText] = Field(default_factory=list, max_length=MAX_STEP_TITLES)
    note: StepText = ""


class TaskResult(TaskEvent):
    type: Literal["TaskResult"] = "TaskResult"
    agent_id: Id
    bid_id: UUID
    output: Annotated[str, Field(max_length=MAX_OUTPUT)]
    usage: Usage = Usage()
    cost: NonNegative = 0.0
    duration_s: NonNegative = 0.0
    error: Reason | None = None
    steps: list[ToolStep] = Field(
        default_factory=list,
        max_length=MAX_TOOL_STEPS,
        description="a search task: the tool loop's steps (queries, articles read, answer)",
    )


class TaskOutcome(TaskEvent):
    """The verifier's verdict on a task's result. `passed` and `score` are None for a general
    task's answer: there is nothing to check it against, so it is recorded as answered.
    `result_event_id` names the result graded: the awarded one (the winner's, for the winning
    bid); None when no result was graded (none came) or in a log from before it was kept."""

    type: Literal["TaskOutcome"] = "TaskOutcome"
    passed: bool | None
    score: float | None = Field(ge=0, le=1, allow_inf_nan=False)
    details: Reason = ""
    result_event_id: UUID | None = Field(
        default=None, description="the TaskResult graded: the award's (None: no result graded)"
    )

    @model_validator(mode="after")
    def _scored_iff_judged(self) -> TaskOutcome:
        if (self.passed is None) != (self.score is None):
            raise ValueError("passed and score are both None (an answer, unchecked) or neither")
        return self

    @property
    def answered(self) -> bool:
        """An answer recorded without a verdict (a general task)."""
        return self.passed is None


# --- agents and failures -----------------------------------------------------------------


class AgentHeartbeat(AgentEvent):
    type: Literal["AgentHeartbeat"] = "AgentHeartbeat"
    model: Annotated[str, Field(min_length=1, max_length=MAX_ID)]
    price: NonNegative = Field(description="per million generated tokens")
    input_price: NonNegative | None = Field(
        default=None, description="per million prompt tokens; None: the same as price"
    )
    kinds: list[TaskKind] = Field(min_length=1)
    status: Literal["up", "draining", "left"] = "up"


class DeadLetter(Event):
    """A record a consumer could not use, with the reason: an excerpt of its bytes, and the
    size and sha256 of the whole, to find it on its topic. `of` is the one way to make one."""

    type: Literal["DeadLetter"] = "DeadLetter"
    source_topic: Annotated[str, Field(min_length=1, max_length=255)]
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    consumer_group: Annotated[str, Field(max_length=255)] = ""
    raw_key: Annotated[bytes, Field(max_length=MAX_KEY_EXCERPT)] | None = None
    raw_value: Annotated[bytes, Field(max_length=MAX_EXCERPT)] = Field(
        description="the record's first bytes (all of them when raw_size is no more)"
    )
    raw_size: Annotated[int, Field(ge=0)] = Field(description="the whole record's bytes")
    raw_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    error: Reason

    @classmethod
    def of(
        cls, body: bytes, key: bytes | None, error: str, excerpt: int, **fields: Any
    ) -> DeadLetter:
        """The dead letter of `body`, keeping at most `excerpt` bytes of it; `fields` are the
        rest (producer, source_topic, partition, offset, consumer_group, event_id)."""
        return cls(
            raw_key=None if key is None else key[:MAX_KEY_EXCERPT],
            raw_value=body[: min(excerpt, MAX_EXCERPT)],
            raw_size=len(body),
            raw_sha256=hashlib.sha256(body).hexdigest(),
            error=error[:MAX_REASON],
            **fields,
        )

    @model_validator(mode="after")
    def _excerpt_of_the_whole(self) -> DeadLetter:
        if len(self.raw_value) > self.raw_size:
            raise ValueError("raw_value is longer than raw_size, the whole record's size")
        return self

    @property
    def truncated(self) -> bool:
        return len(self.raw_value) < self.raw_size

    @property
    def key(self) -> str:
        return f"{self.source_topic}:{self.partition}"


AnyEvent = Annotated[
    TaskPosted
    | TaskChecks
    | BidSubmitted
    | ReviewSubmitted
    | AuctionOpened
    | BidRequested
    | JuryCalled
    | RefinementCalled
    | SubmissionRejected
    | AuctionClosed
    | TaskResult
    | TaskOutcome
    | AgentHeartbeat
    | DeadLetter,
    Field(discriminator="type"),
]
