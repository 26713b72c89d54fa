"""A search task's tool loop, driven step by step by the scripted backend's canned replies over
a fake search tool; its prompts (pure); and the agents that answer search tasks with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from pydantic import ValidationError

from agents import prompts, searching
from agents.agent import LLMAgent
from agents.backends.scripted import ScriptedLLM, canned
from agents.llm import LLMError, Message
from agents.scripted_agent import ScriptedAgent
from agents.searching import Budget, NotAnAction, parse
from marketplace.shared.config import AgentConfig, ConfigError, parse_config
from schemas.codec import decode, encode
from schemas.events import (
    MAX_TOOL_STEPS,
    AuctionClosed,
    BidRequested,
    BidSubmitted,
    LeanClose,
    Price,
    SearchInputs,
    TaskPosted,
    TaskResult,
    ToolStep,
)
from tests.samples import LATER

ARTICLES = {
    "Dune (novel)": "Dune is a 1965 science fiction novel by American author Frank Herbert.",
    "Frank Herbert": "Franklin Patrick Herbert Jr. was an American science fiction author, "
    "born in Tacoma, Washington in 1920.",
    "Tacoma, Washington": "Tacoma is a mid-sized urban port city in Pierce County.",
}
TASK = TaskPosted(
    producer="client",
    task_id="dune",
    kind="search",
    prompt="Where was the author of Dune born?",
    inputs=SearchInputs(corpus="tiny"),
)
PRICE = Price(input=1.0, output=2.0)


@dataclass(frozen=True)
class FakeHit:
    title: str
    passage: str
    score: float


class FakeTool:
    """Articles containing every word of the query, in a fixed order; open by exact title."""

    def __init__(self, articles: dict[str, str] = ARTICLES) -> None:
        self.articles = articles
        self.queries: list[str] = []

    def search(self, query: str, k: int = 5) -> list[FakeHit]:
        self.queries.append(query)
        words = query.lower().split()
        found = [
            FakeHit(title, text, 1.0)
            for title, text in self.articles.items()
            if words and all(w in f"{title} {text}".lower() for w in words)
        ]
        return found[:k]

    def open(self, title: str) -> str | None:
        return self.articles.get(title)


async def loop(replies: Sequence[str], budget: Budget | None = None, plan: str = ""):
    llm = ScriptedLLM(reply=canned(replies))
    done = await searching.run(llm, FakeTool(), TASK, plan, PRICE, budget or Budget())
    return done, llm


# --- the loop ---------------------------------------------------------------------------------


async def test_the_loop_searches_reads_and_answers_and_every_call_is_paid_for() -> None:
    done, llm = await loop(["search: Dune", "open: Dune (novel)", "answer: Tacoma, Washington"])
    assert done.answer == "Tacoma, Washington" and done.error is None
    assert [(s.action, s.text) for s in done.steps] == [
        ("search", "Dune"),
        ("open", "Dune (novel)"),
        ("answer", "Tacoma, Washington"),
    ]
    assert done.steps[0].titles == ["Dune (novel)"] and done.steps[1].titles == ["Dune (novel)"]
    assert len(llm.calls) == 3 and done.usage.requests == 3
    assert done.usage.completion_tokens == 2 + 3 + 3  # the scripted backend counts words
    assert done.usage.cost == pytest.approx(PRICE.cost(done.usage.prompt_tokens, 8))
    # each call appends to the one before (a backend reuses the evaluated prefix); the first
    # action is begun for the model
    first, second, third = llm.calls
    assert first[-1] == {"role": "assistant", "content": "search:"}
    assert second[:2] == first[:2] and third[: len(second)] == second
    assert "[1] Dune (novel): Dune is a 1965" in second[-1]["content"]
    assert third[-1]["content"].startswith('Article "Dune (novel)":\nDune is a 1965')


async def test_at_the_step_budget_the_last_call_is_asked_to_answer_with_what_it_has() -> None:
    done, llm = await loop(
        ["search: Dune", "search: Herbert", " Tacoma"], Budget(max_steps=3, token_budget=10**6)
    )
    assert done.answer == "Tacoma" and done.error is None
    assert [s.action for s in done.steps] == ["search", "search", "answer"]
    assert done.steps[-1].note == "the budget is spent"
    assert llm.calls[-1][-2:] == prompts.answer_now()  # the answer begun for the model
    assert len(llm.calls) == 3


async def test_the_client_s_cap_bounds_the_forced_answer_and_not_the_searches() -> None:
    """`answer_tokens` (a task's `max_tokens`) caps the call that writes the answer; the
    search actions before it keep their own limit (a cut query finds nothing)."""
    replies = ["search: Dune novel author", "Tacoma Washington USA"]
    done, _ = await loop(replies, Budget(max_steps=2, token_budget=10**6, answer_tokens=2))
    assert done.steps[0].text == "Dune novel author"  # the action, uncut
    assert done.answer == "Tacoma Washington"  # the answer, cut at 2 tokens (words, scripted)


async def test_a_forced_answer_that_is_empty_is_no_answer() -> None:
    done, _ = await loop(["search: Dune", ""], Budget(max_steps=2))
    assert done.answer == "" and done.error.startswith("no answer: the model gave an empty one")


async def test_when_the_next_call_would_overrun_the_tokens_it_answers_instead() -> None:
    # The first call spends 73 tokens (71 words of prompt, 2 of reply): a second at least as
    # long would pass 140.
    done, llm = await loop(["search: Dune", "answer: Tacoma"], Budget(token_budget=140))
    assert done.answer == "Tacoma" and len(llm.calls) == 2
    assert llm.calls[1][-2:] == prompts.answer_now()


async def test_tokens_spent_before_any_answer_end_the_loop_with_none() -> None:
    done, llm = await loop(["search: Dune", "answer: Tacoma"], Budget(token_budget=20))
    assert len(llm.calls) == 1 and done.answer == ""
    assert done.error == "no answer: the token budget (20) was spent"
    assert [s.action for s in done.steps] == ["search"] and done.usage.requests == 1


async def test_the_first_action_is_begun_and_the_conversation_keeps_actions_plain() -> None:
    done, llm = await loop([" Dune novel\nObservation: imagined", "answer: Tacoma"])
    assert done.steps[0] == ToolStep(action="search", text="Dune novel", titles=["Dune (novel)"])
    assert llm.calls[1][2] == {"role": "assistant", "content": "search: Dune novel"}


async def test_a_malformed_action_is_a_step_answered_with_why() -> None:
    done, llm = await loop(["search: Dune", "I think it is Tacoma.", "search:", "answer: Tacoma"])
    assert done.answer == "Tacoma"
    invalid = [s for s in done.steps if s.action == "invalid"]
    assert [(s.text, s.note) for s in invalid] == [
        ("I think it is Tacoma.", "no line starts with search:, open: or answer:"),
        ("search:", "`search:` needs a query"),
    ]
    assert llm.calls[2][-1]["content"].startswith("That was not an action (no line starts")
    assert (
        "search: <keywords>, open: <title> or answer: <short answer>" in llm.calls[3][-1]["content"]
    )


async def test_a_search_made_again_is_said_so() -> None:
    done, llm = await loop(["search: Dune", "search: dune", "answer: Tacoma"])
    assert done.steps[1].note == "searched before"
    assert "You made this search before: open a result or answer." in llm.calls[2][-1]["content"]


async def test_empty_search_results_are_said_so() -> None:
    done, llm = await loop(["search: zebra migration", "answer: unknown"])
    assert done.steps[0] == ToolStep(action="search", text="zebra migration", note="no results")
    assert llm.calls[1][-1]["content"].startswith('No results for "zebra migration".')


async def test_an_unknown_article_is_said_so_and_a_result_number_opens_that_result() -> None:
    done, llm = await loop(["open: Arrakis", "search: Herbert", "open: 1", "answer: Tacoma"])
    assert done.steps[0] == ToolStep(action="open", text="Arrakis", note="no such article")
    assert llm.calls[1][-1]["content"].startswith('There is no article titled "Arrakis".')
    assert done.steps[2] == ToolStep(action="open", text="Dune (novel)", titles=["Dune (novel)"])


@pytest.mark.parametrize(
    "written",
    [
        "frank herbert",
        "Frank Herbert: Franklin Patrick Herbert Jr. was",
        "Frank Herbert birthplace",
    ],
)
async def test_a_title_written_loosely_opens_the_title_shown(written: str) -> None:
    done, _ = await loop(["search: Herbert", f"open: {written}", "answer: Tacoma"])
    assert done.steps[1].titles == ["Frank Herbert"]


async def test_a_model_failure_ends_the_loop_keeping_what_was_spent() -> None:
    replies = iter(["search: Dune"])

    def reply(messages: Sequence[Message]) -> str:
        if (text := next(replies, None)) is None:
            raise LLMError("the server went away")
        return text

    done = await searching.run(ScriptedLLM(reply=reply), FakeTool(), TASK, "", PRICE)
    assert done.error == "model failed: the server went away" and done.usage.requests == 1


async def test_the_plan_that_won_is_in_the_first_prompt() -> None:
    _, llm = await loop(["answer: Tacoma"], plan="1. search: Dune author")
    assert "A plan you may follow:\n1. search: Dune author" in llm.calls[0][1]["content"]
    assert llm.calls[0][0]["content"] == prompts.SEARCHERS["short"]  # the chosen default


async def test_each_searcher_variant_is_the_plain_rules_and_its_own_addition() -> None:
    for style, text in prompts.SEARCHERS.items():
        assert text.startswith(prompts.SEARCHER)
        messages = prompts.search(TASK, "", style)
        assert messages[0]["content"] == text and messages[1]["content"].startswith("Question:")
    assert len(set(prompts.SEARCHERS.values())) == len(prompts.SEARCHERS)


@pytest.mark.parametrize(
    ("reply", "verb", "argument"),
    [
        ("search: who wrote Dune", "search", "who wrote Dune"),
        ("Search[Frank Herbert]", "search", "Frank Herbert"),
        ('open("Dune (novel)")', "open", "Dune (novel)"),
        ("open: Dune (novel)", "open", "Dune (novel)"),
        ("**Action 1:** search: Dune author", "search", "Dune author"),
        ('Thought: first the author.\nsearch: "Dune author"', "search", "Dune author"),
        ("Final Answer: Frank Herbert", "answer", "Frank Herbert"),
        ("- read: Frank Herbert", "open", "Frank Herbert"),
        ("ANSWER - 1965", "answer", "1965"),
        ("search: [Dune]\nsearch: ignored", "search", "Dune"),
    ],
)
def test_actions_are_read_leniently(reply: str, verb: str, argument: str) -> None:
    assert parse(reply) == searching.Action(verb, argument)


@pytest.mark.parametrize(
    ("reply", "why"),
    [("", "empty"), ("The answer is Tacoma.", "no line starts"), ("answer:  ", "needs text")],
)
def test_what_is_not_an_action_says_why(reply: str, why: str) -> None:
    with pytest.raises(NotAnAction, match=why):
        parse(reply)


# --- the prompts (pure) -----------------------------------------------------------------------


def test_search_bids_juries_and_refinements_ask_about_queries_not_code() -> None:
    bid = prompts.bid(TASK)
    assert bid[0]["content"] == prompts.SEARCH_PLANNER
    assert "search query" in bid[1]["content"] and "code" not in bid[1]["content"]
    assert "searching the `tiny` corpus" in bid[1]["content"]
    assert prompts.judge(TASK, "1. search x")[0]["content"] == prompts.SEARCH_JUROR
    assert prompts.judge_all(TASK, ["a", "b"])[0]["content"].startswith("You review plans for")
    refine = prompts.refine(TASK, "1. search x", [])
    assert refine[0]["content"] == prompts.SEARCH_PLANNER
    assert (
        "Write the improved plan, at most 3 short numbered steps, each a sub-question"
        in (refine[1]["content"])
    )


def test_observations_are_cut_to_their_caps_at_a_word() -> None:
    hits = [FakeHit("A", "one two three four five", 1.0)]
    assert prompts.results("q", hits, passage_chars=10) == (
        'Results for "q":\n[1] A: one two …' + prompts.NEXT
    )
    assert prompts.article("A", "x " * 50, article_chars=5).startswith('Article "A":\nx x …')
    assert prompts.results("q", [], 10).startswith('No results for "q"')


# --- agents that search -----------------------------------------------------------------------

CONFIG = AgentConfig(
    id="s",
    backend="scripted",
    model="scripted",
    input_price=1.0,
    output_price=2.0,
    kinds=["search"],
    search_max_steps=4,
)


def search_agent(replies: Sequence[str], mechanism: str = "lean") -> tuple[LLMAgent, FakeTool]:
    tool = FakeTool()
    corpora: list[str] = []

    def tools(corpus: str) -> FakeTool:
        corpora.append(corpus)
        return tool

    agent = LLMAgent(CONFIG, ScriptedLLM(reply=canned(replies)), mechanism, tools=tools)
    tool.corpora = corpora
    return agent, tool


def call() -> BidRequested:
    return BidRequested(
        producer="auctioneer",
        task_id=TASK.task_id,
        call=1,
        agent_id="s",
        estimates=[],
        value=1.0,
        why="first",
        deadline=LATER,
        checkable=False,
    )


def lean_close(bid: BidSubmitted) -> AuctionClosed:
    return AuctionClosed(
        producer="auctioneer",
        task_id=TASK.task_id,
        reason="awarded",
        winner_bid_id=bid.bid_id,
        winner_agent_id="s",
        winning_plan=bid.plan,
        mechanism="lean",
        lean=LeanClose(estimates=[], value=1.0, why="unchecked"),
    )


async def test_a_lean_search_draft_is_the_answer_and_its_delivery_tells_the_steps() -> None:
    agent, tool = search_agent(["search: Herbert", "open: Frank Herbert", "answer: Tacoma"])
    assert await agent.respond(TASK) == []  # lean: remembered, no plan
    [draft] = await agent.respond(call())
    assert draft.plan == "Tacoma" and draft.examples_pass is True and draft.failure is None
    assert draft.usage.requests == 3 and draft.usage.cost > 0
    assert tool.queries == ["Herbert"] and tool.corpora == ["tiny"]
    [result] = await agent.respond(lean_close(draft))
    assert result.output == "Tacoma" and result.cost == 0 and result.error is None
    assert [s.action for s in result.steps] == ["search", "open", "answer"]


async def test_a_search_draft_with_no_answer_fails_and_says_why() -> None:
    agent, _ = search_agent(["search: Dune"] * 3 + [""])
    await agent.respond(TASK)
    [draft] = await agent.respond(call())
    assert draft.plan == "(no answer)" and draft.examples_pass is False
    assert draft.failure.startswith("no answer")


async def test_paper_search_bids_a_search_plan_and_executes_it_with_the_tool() -> None:
    agent, tool = search_agent(
        ["1. Who wrote Dune? search: Dune author", "search: Dune", "answer: Tacoma"], "paper"
    )
    [bid] = await agent.respond(TASK)
    assert bid.plan.startswith("1. Who wrote Dune?") and bid.examples_pass is None
    assert agent.llm.calls[0][0]["content"] == prompts.SEARCH_PLANNER
    closed = AuctionClosed(
        producer="auctioneer",
        task_id=TASK.task_id,
        reason="awarded",
        winner_bid_id=bid.bid_id,
        winner_agent_id="s",
        winning_plan=bid.plan,
    )
    [result] = await agent.respond(closed)
    assert isinstance(result, TaskResult) and result.bid_id == bid.bid_id
    assert result.output == "Tacoma" and result.usage.requests == 2
    assert result.cost == pytest.approx(result.usage.cost) and result.cost > 0
    assert [s.action for s in result.steps] == ["search", "answer"] and tool.queries == ["Dune"]
    assert "A plan you may follow:\n1. Who wrote Dune?" in agent.llm.calls[1][1]["content"]


async def test_a_corpus_that_cannot_be_searched_is_an_error_not_a_crash() -> None:
    def tools(corpus: str) -> FakeTool:
        raise searching.ToolUnavailable(f"corpus {corpus!r}: no index")

    agent = LLMAgent(CONFIG, ScriptedLLM(), "paper", tools=tools)
    await agent.respond(TASK)
    result = await agent.execute(TASK.task_id, uuid4(), "plan")
    assert result.output == "" and result.error == "no search tool: corpus 'tiny': no index"


async def test_the_default_scripted_llm_searches_once_and_answers() -> None:
    agent = LLMAgent(CONFIG, ScriptedLLM(), "paper", tools=lambda corpus: FakeTool())
    await agent.respond(TASK)
    result = await agent.execute(TASK.task_id, uuid4(), "")
    assert result.output == "scripted answer" and len(result.steps) == 2


async def test_a_scripted_agent_answers_a_search_task_with_its_configured_answer() -> None:
    scripted = ScriptedAgent("a", price=1.0, mechanism="lean", search_answer="Tacoma")
    await scripted.respond(TASK)
    [draft] = await scripted.respond(call().model_copy(update={"agent_id": "a"}))
    assert draft.plan == "Tacoma"
    closed = lean_close(draft).model_copy(update={"winner_agent_id": "a"})
    [result] = await scripted.respond(closed)
    assert result.output == "Tacoma"
    assert [s.action for s in result.steps] == ["search", "open", "answer"]


def test_model_agents_take_search_tasks_and_bad_budgets_fail_naming_the_field() -> None:
    settings = {**CONFIG.model_dump(), "backend": "openai", "endpoint": "http://x"}
    assert AgentConfig(**settings).kinds == ["search"]
    for field, value in [("search_max_steps", 0), ("search_max_steps", MAX_TOOL_STEPS + 1)]:
        agent = {"id": "a", "backend": "scripted", "model": "m", "input_price": 1}
        agent |= {"output_price": 1, field: value}
        with pytest.raises(ConfigError, match=rf"agents\[0\]\.{field}: Input should be"):
            parse_config({"agents": [agent]}, env={})
    agent = {"id": "a", "backend": "scripted", "model": "m", "input_price": 1, "output_price": 1}
    with pytest.raises(ConfigError, match=r"agents\[0\]\.search_token_budget: Input should be"):
        parse_config({"agents": [{**agent, "search_token_budget": 10}]}, env={})


def test_a_result_tells_its_steps_within_the_contract_s_caps() -> None:
    step = ToolStep(action="search", text="Dune author", titles=["Dune (novel)", "Frank Herbert"])
    result = TaskResult(
        producer="s", task_id="dune", agent_id="s", bid_id=uuid4(), output="Tacoma", steps=[step]
    )
    assert decode(encode(result)) == result
    with pytest.raises(ValidationError, match="at most 40 items"):
        result.model_validate({**result.model_dump(), "steps": [step] * (MAX_TOOL_STEPS + 1)})
    with pytest.raises(ValidationError, match="at most 300 characters"):
        ToolStep(action="answer", text="x" * 301)


def test_corpora_load_the_real_tool_of_each_configured_corpus_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_search_tool import CORPUS

    monkeypatch.setenv("SALE_CORPUS_DIR", str(tmp_path / "cache"))
    corpora = searching.Corpora({"wiki": "wiki", "tiny": CORPUS, "gone": tmp_path / "missing"})
    tool = corpora("tiny")
    assert corpora("tiny") is tool and tool.search("Bernoulli numbers", 1)[0].title == (
        "Ada Lovelace"
    )
    with pytest.raises(searching.ToolUnavailable, match=r"no corpus 'notes' in \[corpora\] "):
        corpora("notes")
    with pytest.raises(searching.ToolUnavailable, match=r"corpus 'gone' \(.*missing\): "):
        corpora("gone")
