"""`sale bench executors`: which executor to use, measured on the development split.

Every method — SALE, the routers, always-largest — is only as good as the executions it buys, so
the executor is chosen first, on MBPP 100–199 (never on HumanEval, never on MBPP 200 and above).
Each agent runs each prompt shape once on every task with up to one fix round; the first call is
the executor with no fix, both calls together the executor with one. With `--with-plan` the
agent first writes its plan (the paper's round-0 bid) and the executor gets it as a hint; the
plan's tokens are part of that executor's cost. Graded by the hidden tests,
priced per direction, timed in CPU-seconds. Every call goes through the completion cache, so the
table is printed again from cached work, and two processes (one model each) can share the work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from agents import prompts
from agents.agent import LLMAgent
from agents.coding import Attempt, execute
from agents.llm import LLM
from agents.searching import Corpora
from marketplace.core.measures import priced
from marketplace.evaluation.task_sets import parse_task_sets
from marketplace.services.verifier import verify
from marketplace.shared.config import (
    AgentConfig,
    Config,
    ConfigError,
    ExecutorStyle,
    SearcherStyle,
)
from marketplace.shared.posting import Posting
from schemas.events import Price, TaskResult, Usage

STYLES: tuple[ExecutorStyle, ...] = ("chat", "complete", "continue")
HEADER = """# The executor, chosen on the development split

Every agent wrote every task of MBPP 100–199 in each prompt shape (greedy, at most 512 tokens a
call), with no fix (1 call) and with one write-run-fix round when the visible examples failed
(2 calls); the hidden tests decide pass@1. Shapes: "chat" (the first executor: "Write the Python
function `f`", a plan slot), "complete" ("Complete the following Python function", the task as a
fenced block), "continue" ("complete" with the answer begun: an open fence and the task's own
signature and docstring, so the model writes only the body). "+ own plan": the agent first wrote
its plan (the paper's bid) and the executor had it as a hint; the plan's tokens are in the cost.
"examples pass": the visible examples pass; "of those, pass hidden": how often that check is
right. Tokens, cost (at the agents' input/output prices) and CPU-seconds are means per task.
Each agent uses the shape with the most pass@1 per CPU-second (its `executor` in sale.toml).
"""
MAX_TOKENS = 512


@dataclass(frozen=True)
class Trial:
    """One agent's execution of one task in one shape: the draft, and the fix if one was made."""

    task_id: str
    agent_id: str
    style: ExecutorStyle
    planned: bool  # the agent first wrote a plan (its round-0 bid) and executed it as a hint
    draft: Attempt
    draft_passed: bool
    fixed: Attempt | None
    fixed_passed: bool

    plan_usage: Usage = field(default_factory=Usage)

    def usage(self, rounds: int) -> Usage:
        fix = self.fixed.usage if rounds > 1 and self.fixed else Usage()
        return self.plan_usage + self.draft.usage + fix

    def passed(self, rounds: int) -> bool:
        return self.fixed_passed if rounds > 1 and self.fixed else self.draft_passed


async def grade(posting: Posting, attempt: Attempt, agent_id: str) -> bool:
    """Whether `attempt`'s program passes the task's hidden tests."""
    assert posting.checks is not None
    result = TaskResult(
        producer=agent_id,
        task_id=posting.task.task_id,
        agent_id=agent_id,
        bid_id=posting.task.event_id,
        output=attempt.source,
    )
    return (await verify(posting.checks, result, producer=agent_id)).passed


async def trial(
    llm: LLM,
    posting: Posting,
    settings: AgentConfig,
    style: ExecutorStyle,
    planned: bool,
) -> Trial:
    plan, plan_usage = "", Usage()
    if planned:
        bid = await llm.complete(prompts.bid(posting.task), max_tokens=settings.max_plan_tokens)
        plan, plan_usage = bid.text.strip(), bid.usage(settings.price)
    done = await execute(
        llm, posting.task, plan, settings.price, style=style, max_rounds=2, max_tokens=MAX_TOKENS
    )
    draft, fixed = done.attempts[0], (done.attempts[1] if done.rounds > 1 else None)
    draft_passed = await grade(posting, draft, settings.id)
    fixed_passed = await grade(posting, fixed, settings.id) if fixed else draft_passed
    task_id = posting.task.task_id
    return Trial(
        task_id, settings.id, style, planned, draft, draft_passed, fixed, fixed_passed, plan_usage
    )


async def run_agent(
    config: Config,
    agent_id: str,
    postings: Sequence[Posting],
    styles: Sequence[ExecutorStyle],
    planned: bool = False,
) -> list[Trial]:
    """Every task in every shape for one agent, with a progress line and the time left."""
    from agents.backends import build
    from agents.cache import CachedLLM

    settings = config.agent(agent_id)
    llm = CachedLLM(build(settings), config.database.url)
    trials: list[Trial] = []
    total, started = len(postings) * len(styles), time.monotonic()
    try:
        for posting in postings:
            for style in styles:
                trials.append(await trial(llm, posting, settings, style, planned))
                print(
                    progress(agent_id, len(trials), total, time.monotonic() - started), flush=True
                )
    finally:
        await llm.close()
    return trials


def progress(agent_id: str, done: int, total: int, elapsed_s: float) -> str:
    left_min = (total - done) * elapsed_s / done / 60 if done else float("nan")
    return f"  {agent_id}: {done}/{total} executions, about {left_min:.0f} min left"


@dataclass(frozen=True)
class Row:
    agent_id: str
    style: ExecutorStyle
    planned: bool
    rounds: int
    tasks: int
    pass_at_1: float
    examples_pass: float  # the visible examples pass
    examples_right: float  # of those, the hidden tests pass too
    prompt_tokens: float  # mean per task
    completion_tokens: float
    truncated: int  # drafts cut off at the token cap
    cost: float  # mean per task at the agent's prices
    seconds: float  # mean CPU-seconds per task

    @property
    def pass_per_cpu_s(self) -> float:
        return self.pass_at_1 / self.seconds if self.seconds else 0.0


def summarize(trials: Sequence[Trial], prices: dict[str, Price]) -> list[Row]:
    rows = []
    keys = sorted(
        {(t.agent_id, t.style, t.planned) for t in trials},
        key=lambda k: (k[0], STYLES.index(k[1]), k[2]),
    )
    for agent_id, style, planned in keys:
        mine = [t for t in trials if (t.agent_id, t.style, t.planned) == (agent_id, style, planned)]
        for rounds in (1, 2):
            usage = [t.usage(rounds) for t in mine]
            final = [t.fixed if rounds > 1 and t.fixed else t.draft for t in mine]
            ok = [a.error is None for a in final]
            right = [t.passed(rounds) for t, good in zip(mine, ok, strict=True) if good]
            rows.append(
                Row(
                    agent_id=agent_id,
                    style=style,
                    planned=planned,
                    rounds=rounds,
                    tasks=len(mine),
                    pass_at_1=fmean(t.passed(rounds) for t in mine),
                    examples_pass=fmean(ok),
                    examples_right=fmean(right) if right else 0.0,
                    prompt_tokens=fmean(u.prompt_tokens for u in usage),
                    completion_tokens=fmean(u.completion_tokens for u in usage),
                    truncated=sum(t.draft.usage.completion_tokens >= MAX_TOKENS for t in mine),
                    cost=fmean(
                        prices[agent_id].cost(u.prompt_tokens, u.completion_tokens) for u in usage
                    ),
                    seconds=fmean(u.seconds for u in usage),
                )
            )
    return rows


def markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| agent | prompt shape | calls | tasks | pass@1 | examples pass | of those, pass hidden "
        "| prompt tok | generated tok | cut at cap | cost | CPU-s | pass@1 per CPU-s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.agent_id} | {r.style}{' + own plan' if r.planned else ''} | {r.rounds} "
            f"| {r.tasks} | {r.pass_at_1:.1%} "
            f"| {r.examples_pass:.1%} | {r.examples_right:.1%} | {r.prompt_tokens:.0f} "
            f"| {r.completion_tokens:.0f} | {r.truncated} | {r.cost:.2f} | {r.seconds:.2f} "
            f"| {r.pass_per_cpu_s:.3f} |"
        )
    return "\n".join(lines)


def best(rows: Sequence[Row]) -> str:
    """Each agent's executor with the most pass@1 per CPU-second: the rule the choice follows."""
    lines = []
    for agent_id in sorted({r.agent_id for r in rows}):
        mine = [r for r in rows if r.agent_id == agent_id and r.pass_at_1 > 0]
        if not mine:
            lines.append(f"- {agent_id}: passes nothing in any shape")
            continue
        top = max(mine, key=lambda r: r.pass_per_cpu_s)
        plan = " + own plan" if top.planned else ""
        lines.append(
            f"- {agent_id}: {top.style}{plan}, {top.rounds} call(s): pass@1 {top.pass_at_1:.1%} "
            f"at {top.seconds:.2f} CPU-s a task"
        )
    return "\n".join(lines)


# --- the search executor: the tool loop's system prompt ----------------------------------------

SEARCHER_STYLES: tuple[SearcherStyle, ...] = ("plain", "short", "example")
SEARCH_HEADER = """# The search executor, chosen on the development split

A search task's executor is the tool loop (`agents/searching.py`,
[deep-search.md](deep-search.md#search-agents-the-tool-loop)); what is chosen here is its
system prompt (`agents.prompts.SEARCHERS`, an agent's
`searcher` setting), on the FanOutQA development split only (`fanoutqa-dev`: never on
`fanoutqa-eval`). Variants: "plain" (the first version: the three actions, one per line),
"short" (plain, and the answer asked for as the article's own words, with no sentence around
them: the grade is an exact match), "example" (plain, and one worked example of the format).
Each agent ran each variant once on every task (greedy, its own budgets); the verifier grades
the answer: "exact match" is pass@1, "F1" the mean token F1 with the best gold answer,
"answered" how often the loop ended with an answer. Tokens, cost (at the agent's prices: a
prompt token llama.cpp still held is free) and CPU-seconds are means per task.

Rule, stated before measuring: every agent uses the variant with the most exact matches per
unit of cost, M and L pooled (their exact matches over the dev tasks divided by what their
loops cost together); a variant that matches nothing is never chosen; ties go to the earlier
variant (plain, short, example). S is not measured (it rarely follows the action format).
"""


@dataclass(frozen=True)
class SearchTrial:
    """One agent's tool loop on one search task with one system prompt, and its grade."""

    task_id: str
    agent_id: str
    style: SearcherStyle
    exact: bool
    f1: float
    answered: bool
    usage: Usage


async def search_trial(agent: LLMAgent, posting: Posting) -> SearchTrial:
    """`agent`'s draft of the search task (its configured `searcher`), graded."""
    assert posting.checks is not None
    result = await agent.draft(posting.task)
    outcome = await verify(posting.checks, result, producer=agent.agent_id)
    return SearchTrial(
        posting.task.task_id,
        agent.agent_id,
        agent.config.searcher,
        bool(outcome.passed),
        outcome.score or 0.0,
        result.error is None,
        result.usage,
    )


async def run_searcher(
    config: Config, agent_id: str, postings: Sequence[Posting], styles: Sequence[SearcherStyle]
) -> list[SearchTrial]:
    """Every search task with every variant for one agent, through the completion cache (so the
    matrix of the chosen variant reuses these calls), with a progress line."""
    from agents.backends import build
    from agents.cache import CachedLLM

    settings = config.agent(agent_id)
    llm = CachedLLM(build(settings), config.database.url)
    corpora = Corpora(config.corpora)
    trials: list[SearchTrial] = []
    total, started = len(postings) * len(styles), time.monotonic()
    try:
        for style in styles:
            agent = LLMAgent(settings.model_copy(update={"searcher": style}), llm, tools=corpora)
            for posting in postings:
                trials.append(await search_trial(agent, posting))
                print(
                    progress(agent_id, len(trials), total, time.monotonic() - started), flush=True
                )
    finally:
        await llm.close()
    return trials


@dataclass(frozen=True)
class SearchRow:
    agent_id: str
    style: SearcherStyle
    tasks: int
    exact: float
    f1: float
    answered: float
    prompt_tokens: float  # means per task
    completion_tokens: float
    cost: float
    seconds: float


def summarize_search(trials: Sequence[SearchTrial], prices: dict[str, Price]) -> list[SearchRow]:
    rows = []
    keys = sorted({(t.agent_id, t.style) for t in trials}, key=lambda k: (k[0], _style_rank(k[1])))
    for agent_id, style in keys:
        mine = [t for t in trials if (t.agent_id, t.style) == (agent_id, style)]
        rows.append(
            SearchRow(
                agent_id=agent_id,
                style=style,
                tasks=len(mine),
                exact=fmean(t.exact for t in mine),
                f1=fmean(t.f1 for t in mine),
                answered=fmean(t.answered for t in mine),
                prompt_tokens=fmean(t.usage.prompt_tokens for t in mine),
                completion_tokens=fmean(t.usage.completion_tokens for t in mine),
                cost=fmean(priced(t.usage, prices[agent_id]) for t in mine),
                seconds=fmean(t.usage.seconds for t in mine),
            )
        )
    return rows


def _style_rank(style: str) -> int:
    return SEARCHER_STYLES.index(style) if style in SEARCHER_STYLES else len(SEARCHER_STYLES)


def search_markdown(rows: Sequence[SearchRow]) -> str:
    lines = [
        "| agent | searcher | tasks | exact match | F1 | answered | prompt tok | generated tok "
        "| cost | CPU-s | exact match per 1,000 cost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per = 1000 * r.exact / r.cost if r.cost else 0.0
        lines.append(
            f"| {r.agent_id} | {r.style} | {r.tasks} | {r.exact:.1%} | {r.f1:.3f} "
            f"| {r.answered:.1%} | {r.prompt_tokens:.0f} | {r.completion_tokens:.0f} "
            f"| {r.cost:.2f} | {r.seconds:.2f} | {per:.2f} |"
        )
    return "\n".join(lines)


def best_searcher(rows: Sequence[SearchRow]) -> tuple[SearcherStyle | None, str]:
    """The rule of SEARCH_HEADER: the variant with the most exact matches per unit of cost, the
    measured agents pooled; None if no variant matches anything. With the reason, as a line."""
    pooled = {}
    for style in sorted({r.style for r in rows}, key=_style_rank):
        mine = [r for r in rows if r.style == style]
        matches = sum(r.exact * r.tasks for r in mine)
        spent = sum(r.cost * r.tasks for r in mine)
        if matches > 0 and spent > 0:
            pooled[style] = (matches / spent, matches, spent)
    if not pooled:
        return None, "no variant matches anything: none is chosen"
    top = max(pooled, key=lambda s: pooled[s][0])  # the first of equals: the earlier variant
    lines = [
        f"- {s}: {m:.0f} exact matches for {c:,.1f} cost, {1000 * p:.3f} per 1,000"
        for s, (p, m, c) in pooled.items()
    ]
    return top, "\n".join([*lines, f"\nChosen: {top}"])


# --- the comparison `sale bench executors` prints, and the page it writes ----------------------


@dataclass(frozen=True)
class Comparison:
    """The table of one `sale bench executors` run, with the page it goes on and the command
    that printed it (the page names it, so its figures can be printed again)."""

    header: str
    command: str
    table: str

    def write(self, path: Path) -> None:
        path.write_text(f"{self.header}\nCommand: `{self.command}`\n\n{self.table}\n")


async def compare(
    config: Config,
    tasks: Sequence[str],
    agents: Sequence[str] | None,
    styles: Sequence[str] | None,
    with_plan: bool,
) -> Comparison:
    """Every agent (default: all) in every shape (default: all of the tasks' kind) on the task
    sets `tasks`; search tasks compare the tool loop's system prompts instead."""
    postings = parse_task_sets(tasks)
    agents = list(agents or [a.id for a in config.agents])
    if postings and all(p.task.kind == "search" for p in postings):
        return await _compare_searchers(config, tasks, postings, agents, styles)
    shapes = list(styles or STYLES)
    if bad := [s for s in shapes if s not in STYLES]:
        raise ConfigError(f"--styles {' '.join(bad)}: a coding shape is one of {STYLES}")
    trials = []
    for agent_id in agents:
        trials += await run_agent(config, agent_id, postings, shapes)
        if with_plan:  # the plan as a hint, on the agent's configured shape
            shape = [config.agent(agent_id).executor]
            trials += await run_agent(config, agent_id, postings, shape, planned=True)
    rows = summarize(trials, {a: config.agent(a).price for a in agents})
    table = f"{markdown(rows)}\n\nMost pass@1 per CPU-second:\n\n{best(rows)}"
    flags = " --with-plan" if with_plan else ""
    return Comparison(HEADER, f"sale bench executors --tasks {' '.join(tasks)}{flags}", table)


async def _compare_searchers(
    config: Config,
    tasks: Sequence[str],
    postings: Sequence[Posting],
    agents: list[str],
    styles: Sequence[str] | None,
) -> Comparison:
    """`compare` on search tasks: the tool loop's system prompts compared."""
    variants = list(styles or SEARCHER_STYLES)
    if bad := [s for s in variants if s not in SEARCHER_STYLES]:
        known = SEARCHER_STYLES
        raise ConfigError(f"--styles {' '.join(bad)}: a searcher prompt is one of {known}")
    trials = []
    for agent_id in agents:
        trials += await run_searcher(config, agent_id, postings, variants)
    rows = summarize_search(trials, {a: config.agent(a).price for a in agents})
    _, choice = best_searcher(rows)
    table = f"{search_markdown(rows)}\n\nExact matches per unit of cost:\n\n{choice}"
    command = (
        f"sale bench executors --tasks {' '.join(tasks)} --agents {' '.join(agents)} "
        f"--styles {' '.join(variants)}"
    )
    return Comparison(SEARCH_HEADER, command, table)
