"""The LLM agent's four jobs with the scripted backend (deterministic, no model)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from uuid import uuid4

import pytest

from agents import prompts
from agents.agent import LLMAgent
from agents.backends.scripted import ScriptedLLM, default_reply
from agents.coding import extract_code, program
from agents.llm import (
    Completion,
    GeneratedToken,
    LLMError,
    Message,
    TokenChoice,
    read_score,
    read_scores,
    top_k_entropy,
)
from marketplace.shared.config import AgentConfig
from schemas.events import (
    AuctionClosed,
    BidRequested,
    BidSubmitted,
    CodingInputs,
    FailedDraft,
    GeneralInputs,
    JuryCalled,
    LeanClose,
    LeanDraft,
    LeanEstimate,
    MemoryExample,
    RefinementCalled,
    RefinementInvite,
    ReviewSubmitted,
    TaskPosted,
    TaskResult,
    Usage,
    Weights,
)
from tests.samples import LATER

PROMPT = (
    'def add(a: int, b: int) -> int:\n    """Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n'
)
TASK = TaskPosted(
    producer="client",
    task_id="add",
    kind="coding",
    prompt=PROMPT,
    inputs=CodingInputs(entry_point="add", examples=["assert add(1, 2) == 3"]),
)
CONFIG = AgentConfig(
    id="s",
    backend="scripted",
    model="scripted",
    input_price=2.0,
    output_price=2.0,
    executor="chat",  # the coder below answers the chat executor's prompt
    execute_rounds=3,
)


def agent(reply=default_reply, mechanism: str = "paper") -> LLMAgent:
    return LLMAgent(CONFIG, ScriptedLLM(reply=reply), mechanism=mechanism)


def other_bid(plan: str = "other plan") -> BidSubmitted:
    return BidSubmitted(
        producer="o",
        task_id="add",
        agent_id="o",
        model="m",
        plan=plan,
        plan_tokens=3,
        entropy=0.1,
        price=1.0,
    )


async def test_a_bid_is_a_plan_with_tokens_entropy_price_and_usage() -> None:
    [bid] = await agent().respond(TASK)
    assert isinstance(bid, BidSubmitted) and bid.round == 0 and bid.agent_id == "s"
    assert bid.plan.startswith("1.") and bid.plan_tokens == len(bid.plan.split(" "))
    assert 0 < bid.entropy < math.log(2) + 1e-9
    assert bid.usage.completion_tokens == bid.plan_tokens
    assert bid.usage.cost == pytest.approx(2.0 * bid.usage.total_tokens / 1e6)


async def test_a_task_of_another_kind_gets_no_bid() -> None:
    search = TaskPosted(
        producer="c", task_id="q", kind="search", prompt="Who?", inputs={"kind": "search"}
    )
    assert await agent().respond(search) == []


async def test_the_jury_scores_every_bid_once_in_one_review() -> None:
    a = agent()
    [own] = await a.respond(TASK)
    jury = JuryCalled(
        producer="auctioneer",
        task_id="add",
        round=0,
        bids=[own, other_bid()],
        jurors=["s", "o"],
        deadline=LATER,
    )
    [review] = await a.respond(jury)
    assert isinstance(review, ReviewSubmitted) and review.juror == "s"
    assert [s.bid_id for s in review.scores] == [own.bid_id, jury.bids[1].bid_id]
    assert all(s.score is not None and 0 <= s.score <= 5 for s in review.scores)
    assert review.usage.requests == 2


async def test_a_juror_not_called_or_without_the_task_stays_silent() -> None:
    jury = JuryCalled(
        producer="auctioneer",
        task_id="add",
        round=0,
        bids=[other_bid()],
        jurors=["s"],
        deadline=LATER,
    )
    assert await agent().respond(jury) == []  # never saw the task
    a = agent()
    await a.respond(TASK)
    assert await a.respond(jury.model_copy(update={"jurors": ["o"]})) == []


def completion(*tokens: GeneratedToken, text: str = "") -> Completion:
    return Completion(text or "".join(t.token for t in tokens), tokens, 10, len(tokens))


def test_the_score_is_the_expectation_over_the_digit_probabilities() -> None:
    top = (
        TokenChoice("5", math.log(0.6)),
        TokenChoice("3", math.log(0.2)),
        TokenChoice("x", math.log(0.2)),
    )
    assert read_score(completion(GeneratedToken("5", math.log(0.6), top))) == pytest.approx(4.5)
    assert read_score(completion(GeneratedToken("I", -0.1), text="I give it 2 points")) == 2.0
    assert read_score(completion(GeneratedToken("no", -0.1), text="no idea")) is None


def test_top_k_entropy_counts_the_remainder_as_one_outcome() -> None:
    assert top_k_entropy([math.log(0.5), math.log(0.5)]) == pytest.approx(math.log(2))
    assert top_k_entropy([math.log(0.5)]) == pytest.approx(math.log(2))
    assert top_k_entropy([0.0]) == 0.0


async def test_refinement_answers_only_an_invitation_and_cites_its_examples() -> None:
    a = agent()
    await a.respond(TASK)
    example = MemoryExample(
        task_id="past",
        prompt="def sub(a, b)",
        similarity=0.9,
        losing_agent="s",
        losing_plan="guess",
        winning_agent="o",
        winning_plan="1. subtract",
        passed=True,
    )
    call = RefinementCalled(
        producer="auctioneer",
        task_id="add",
        provisional_bid_id=uuid4(),
        provisional_agent_id="o",
        provisional_score=-2.0,
        invites=[RefinementInvite(agent_id="s", examples=[example])],
        deadline=LATER,
        scored=[],
    )
    [bid] = await a.respond(call)
    assert bid.round == 1 and bid.memory_refs == ["past"]
    assert "A plan that lost:\nguess" in a.llm.calls[-1][1]["content"]
    uninvited = call.model_copy(update={"invites": [RefinementInvite(agent_id="o")]})
    assert await a.respond(uninvited) == []


def coder(*answers: str):
    """A scripted reply that hands out code answers in turn and plans otherwise."""
    queue = list(answers)

    def reply(messages: Sequence[Message]) -> str:
        if messages[0]["content"] == prompts.CODER:
            return queue.pop(0) if len(queue) > 1 else queue[0]
        return default_reply(messages)

    return reply


def closed(winner: str = "s") -> AuctionClosed:
    return AuctionClosed(
        producer="auctioneer",
        task_id="add",
        reason="awarded",
        winner_bid_id=uuid4(),
        winner_agent_id=winner,
        winning_plan="1. add",
        weights=Weights(),
    )


async def test_execution_writes_runs_reads_the_failure_and_fixes() -> None:
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    a = agent(coder(wrong, right))
    await a.respond(TASK)
    [result] = await a.respond(closed())
    assert isinstance(result, TaskResult) and result.error is None
    assert "return a + b" in result.output
    fix_prompt = a.llm.calls[-1][-1]["content"]
    assert "AssertionError" in fix_prompt
    assert result.usage.requests == 2 and result.cost == result.usage.cost > 0


async def test_execution_that_never_passes_reports_the_last_failure() -> None:
    a = agent(coder("```python\ndef add(a, b):\n    return 0\n```"))
    await a.respond(TASK)
    [result] = await a.respond(closed())
    assert result.error and "AssertionError" in result.error
    assert result.usage.requests == CONFIG.execute_rounds


async def test_only_the_winner_executes() -> None:
    a = agent()
    await a.respond(TASK)
    assert await a.respond(closed(winner="o")) == []


async def test_a_failing_model_means_no_answer_not_a_crash() -> None:
    def broken(messages: Sequence[Message]) -> str:
        raise LLMError("the server is down")

    assert await agent(broken).respond(TASK) == []


def test_code_is_taken_from_the_fence_and_completed_from_the_prompt() -> None:
    assert extract_code("Here:\n```python\nx = 1\n```\nbye") == "x = 1"
    assert extract_code("```\ny = 2") == "y = 2"
    whole = program(TASK, "from math import fsum\ndef add(a, b):\n    return a + b")
    assert whole.startswith("from math import fsum")
    body = program(TASK, "    return a + b\n")
    assert body.startswith(PROMPT) and body.endswith("return a + b\n")


def test_a_score_is_read_from_the_alternatives_when_a_word_comes_first() -> None:
    top = (
        TokenChoice("The", math.log(0.7)),
        TokenChoice("4", math.log(0.2)),
        TokenChoice("2", math.log(0.1)),
    )
    word = GeneratedToken("The", math.log(0.7), top)
    assert read_score(completion(word, text="The plan")) == pytest.approx((4 * 0.2 + 2 * 0.1) / 0.3)


def test_scores_for_all_plans_are_read_after_each_colon() -> None:
    def digit(d: str) -> GeneratedToken:
        return GeneratedToken(d, 0.0, (TokenChoice(d, 0.0),))

    text = [GeneratedToken(t, 0.0) for t in ("Plan", " 1", ":")]
    tokens = (
        *text,
        digit("4"),
        GeneratedToken("\n", 0.0),
        *text[:2],
        GeneratedToken(":", 0.0),
        digit("2"),
    )
    assert read_scores(completion(*tokens), 3) == [4.0, 2.0, None]


async def test_an_unreachable_endpoint_fails_with_a_clear_error_after_retries() -> None:
    from agents.backends.openai_http import OpenAIBackend
    from marketplace.shared.local_broker import free_port

    backend = OpenAIBackend(
        "m", f"http://127.0.0.1:{free_port()}/v1", "k", timeout_s=2, backoff_s=0.01
    )
    with pytest.raises(LLMError, match=r"127\.0\.0\.1.*APIConnectionError after 5 attempts"):
        await backend.complete([{"role": "user", "content": "hi"}], max_tokens=1)


async def test_runaway_code_is_stopped_and_reported_and_the_agent_keeps_serving() -> None:
    loop = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
    settings = CONFIG.model_copy(update={"execute_rounds": 1})
    a = LLMAgent(settings, ScriptedLLM(reply=coder(loop)))
    await a.respond(TASK)
    [result] = await a.respond(closed())
    assert result.error and "time limit" in result.error
    [bid] = await a.respond(TASK.model_copy(update={"task_id": "next"}))
    assert bid.task_id == "next"


# --- the lean auction: drafts when called, the draft delivered when won -----------------------

RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"


def call(agent_id: str = "s", feedback: FailedDraft | None = None) -> BidRequested:
    estimate = LeanEstimate(
        agent_id=agent_id,
        examples_pass=0.5,
        right_if_pass=0.9,
        right_if_fail=0.0,
        cost=0.01,
        reservation=0.88,
        price=2.0,
    )
    return BidRequested(
        producer="auctioneer",
        task_id="add",
        call=1,
        agent_id=agent_id,
        estimates=[estimate],
        value=1.0,
        why="first",
        feedback=feedback,
        deadline=LATER,
    )


def lean_closed(draft: BidSubmitted) -> AuctionClosed:
    held = LeanDraft(
        agent_id=draft.agent_id,
        bid_id=draft.bid_id,
        examples_pass=bool(draft.examples_pass),
        worth=0.9,
    )
    return AuctionClosed(
        producer="auctioneer",
        task_id="add",
        reason="awarded",
        winner_bid_id=draft.bid_id,
        winner_agent_id=draft.agent_id,
        winning_plan=draft.plan,
        mechanism="lean",
        lean=LeanClose(estimates=call().estimates, value=1.0, drafts=[held], why="done"),
    )


async def test_under_lean_a_task_is_remembered_and_a_call_gets_a_draft_bid() -> None:
    a = agent(coder(RIGHT), mechanism="lean")
    assert await a.respond(TASK) == []  # no plan: the auction calls for drafts
    assert a.llm.calls == []
    [bid] = await a.respond(call())
    assert isinstance(bid, BidSubmitted) and bid.is_draft and bid.examples_pass
    assert "return a + b" in bid.plan and bid.failure is None
    assert bid.price == CONFIG.output_price and bid.plan_tokens == bid.usage.completion_tokens
    assert bid.usage.requests == 1 and bid.usage.cost > 0
    assert await a.respond(call(agent_id="o")) == []  # another agent's call


async def test_a_call_that_comes_before_its_task_is_answered_when_the_task_arrives() -> None:
    a = agent(coder(RIGHT), mechanism="lean")
    assert await a.respond(call()) == []  # the task is still on its way (another topic)
    [bid] = await a.respond(TASK)
    assert bid.is_draft and bid.examples_pass and bid.task_id == "add"
    assert await a.respond(TASK) == []  # answered once


async def test_a_failing_draft_says_why_and_a_call_with_feedback_fixes_that_draft() -> None:
    settings = CONFIG.model_copy(update={"execute_rounds": 1})
    a = LLMAgent(settings, ScriptedLLM(reply=coder(WRONG)), mechanism="lean")
    await a.respond(TASK)
    [failing] = await a.respond(call())
    assert failing.examples_pass is False and "AssertionError" in failing.failure
    fixer = agent(coder(RIGHT), mechanism="lean")
    await fixer.respond(TASK)
    shown = FailedDraft(agent_id="o", source=failing.plan, error=failing.failure)
    [fixed] = await fixer.respond(call(feedback=shown))
    assert fixed.examples_pass
    prompt = fixer.llm.calls[0]
    assert "return a - b" in prompt[-2]["content"] and "AssertionError" in prompt[-1]["content"]


async def test_a_won_draft_is_delivered_as_it_is_without_a_model_call() -> None:
    settings = CONFIG.model_copy(update={"execute_rounds": 1})
    a = LLMAgent(settings, ScriptedLLM(reply=coder(WRONG)), mechanism="lean")
    await a.respond(TASK)
    [draft] = await a.respond(call())
    calls = len(a.llm.calls)
    [result] = await a.respond(lean_closed(draft))
    assert isinstance(result, TaskResult) and len(a.llm.calls) == calls
    assert (result.bid_id, result.output) == (draft.bid_id, draft.plan)
    assert result.usage == Usage() and result.cost == 0 and result.error == draft.failure
    other = lean_closed(draft).model_copy(update={"winner_agent_id": "o"})
    assert await a.respond(other) == []


async def test_an_agent_restarted_recalls_the_task_and_its_plan_for_what_comes_after() -> None:
    """What a restarted agent re-reads (`recall`) answers nothing but lets it execute an award
    and refine its plan; without it the award is "the task is unknown to this agent"."""
    before = agent()
    [bid] = await before.respond(TASK)
    jury = JuryCalled(
        producer="auctioneer", task_id="add", round=0, bids=[bid], jurors=["s"], deadline=LATER
    )
    after = agent()
    for event in (TASK, jury):
        after.recall(event)
    assert after.llm.calls == []  # recalled, not answered
    invite = RefinementInvite(agent_id="s", examples=[])
    refine = RefinementCalled(
        producer="auctioneer",
        task_id="add",
        provisional_bid_id=uuid4(),
        provisional_agent_id="o",
        provisional_score=-2.0,
        invites=[invite],
        deadline=LATER,
        scored=[],
    )
    [refined] = await after.respond(refine)
    assert refined.round == 1 and bid.plan in after.llm.calls[0][-1]["content"]
    award = closed().model_copy(update={"winner_bid_id": refined.bid_id})
    [result] = await after.respond(award)
    assert result.error != "the task is unknown to this agent" and result.output


# --- general tasks: the prompt answered as text ---------------------------------------------

ASK = TaskPosted(
    producer="client",
    task_id="add",  # the calls above are for task "add"
    kind="general",
    prompt="What is the capital of France?",
    inputs=GeneralInputs(),
)


def replying(text: str):
    def reply(messages: Sequence[Message]) -> str:
        return text if messages[0]["content"] == prompts.ASSISTANT else default_reply(messages)

    return reply


async def test_a_general_task_is_answered_as_text_and_the_answer_is_the_draft() -> None:
    a = agent(replying("Paris."), mechanism="lean")
    assert await a.respond(ASK) == []
    [bid] = await a.respond(call())
    assert (bid.plan, bid.examples_pass, bid.failure) == ("Paris.", True, None)
    [sent] = a.llm.calls
    assert sent[0]["content"] == prompts.ASSISTANT and sent[-1]["content"] == ASK.prompt
    [result] = await a.respond(lean_closed(bid))
    assert (result.output, result.error) == ("Paris.", None)


async def test_an_empty_answer_is_a_failing_draft_and_the_paper_winner_answers_its_plan() -> None:
    silent = agent(replying(""), mechanism="lean")
    await silent.respond(ASK)
    [bid] = await silent.respond(call())
    assert (bid.plan, bid.examples_pass) == ("(no answer)", False)
    assert bid.failure == "no answer: the model returned nothing"
    paper = agent(replying("Paris."))
    [plan] = await paper.respond(ASK)
    assert plan.plan.startswith("1.")  # a plan first, as for any task
    [result] = await paper.respond(closed())
    assert result.output == "Paris." and result.usage.requests == 1
    assert "A plan you may follow" in paper.llm.calls[-1][-1]["content"]


def test_model_agents_take_coding_and_general_tasks_by_default() -> None:
    assert CONFIG.kinds == ["coding", "general"]  # search is asked for (tests/unit/test_searching)


class Recording(ScriptedLLM):
    """The scripted model, keeping each call's token limit."""

    def __init__(self, reply=default_reply) -> None:
        super().__init__(reply=reply)
        self.limits: list[int] = []

    async def complete(self, messages, *, max_tokens: int, top_logprobs: int = 5) -> Completion:
        self.limits.append(max_tokens)
        return await super().complete(messages, max_tokens=max_tokens, top_logprobs=top_logprobs)


async def test_a_client_s_cap_bounds_every_call_that_writes_the_answer() -> None:
    """`TaskPosted.max_tokens` (OpenAI's max_tokens): a general answer and each round of a
    coding draft are capped at min(the agent's own limit, the cap); no cap, its own."""
    llm = Recording(replying("Paris is the capital of France."))
    a = LLMAgent(CONFIG, llm, mechanism="lean")
    await a.respond(ASK.model_copy(update={"max_tokens": 2}))
    [bid] = await a.respond(call())
    assert (bid.plan, bid.plan_tokens) == ("Paris is", 2)
    coder_llm = Recording(coder(WRONG))
    b = LLMAgent(CONFIG, coder_llm, mechanism="lean")
    await b.respond(TASK.model_copy(update={"max_tokens": 7}))
    await b.respond(call())
    assert coder_llm.limits == [7] * CONFIG.execute_rounds  # every round writes the program
    roomy = Recording(coder(RIGHT))
    c = LLMAgent(CONFIG, roomy, mechanism="lean")
    await c.respond(TASK.model_copy(update={"max_tokens": 10_000}))
    await c.respond(call())
    assert roomy.limits == [CONFIG.execute_max_tokens]  # the agent's own limit is lower
