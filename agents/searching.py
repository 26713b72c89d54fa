"""Executing a search task as an agent: a bounded tool loop of search, read, answer.

Each step the model writes one action, one line of text (`search: <keywords>`, `open: <title>`,
`answer: <short answer>`), read leniently (`agents.searching.parse`); the tool's answer is
appended to the conversation as the next user message, so every call reuses the evaluated
prefix of the one before. The loop stops at an answer; a reply that holds no action is a step
spent, answered with a line saying why. Two budgets bound it (an agent's `search_max_steps` and
`search_token_budget`): the last allowed step, or the step after which the tokens would likely
run out, is asked to answer with what it has (the answer begun for the model); a loop whose
tokens are spent before that ends with no answer. The first action is begun for the model,
`search:` (a small model then follows the format it sees in its own first turn). Every call's
usage, at the agent's prices, is the execution's cost, whatever the outcome.

The search tool is anything with `search(query, k)` and `open(title)` (`Tool`): the corpus's
BM25 index in the market (`agents.tools.search`, built by `Corpora`), a fake in tests.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from agents import prompts
from agents.llm import LLM, LLMError, Message
from marketplace.shared.config import DEFAULT_SEARCHER, SearcherStyle
from schemas.events import MAX_STEP_TEXT, MAX_STEP_TITLES, Price, TaskPosted, ToolStep, Usage

HITS = 4  # results per search shown to the model
PASSAGE_CHARS = 300  # of each hit's passage
ARTICLE_CHARS = 1_500  # of an opened article
ACTION_TOKENS = 48  # per call: one action line, or a short thought and then one
ANSWER_CHARS = 200  # an answer is a short string


class Hit(Protocol):
    title: str
    passage: str


class Tool(Protocol):
    """What the loop needs of a search tool; `agents.tools.search.SearchTool` is one."""

    def search(self, query: str, k: int = 5) -> Sequence[Hit]: ...

    def open(self, title: str) -> str | None: ...


Tools = Callable[[str], Tool]  # a corpus id (`SearchInputs.corpus`) → its search tool


class ToolUnavailable(Exception):
    """The corpus a task names cannot be searched here; the message says which and why."""


class Corpora:
    """The search tools of the corpora an agent may be asked about (`[corpora]` in sale.toml:
    corpus id → "wiki" or a folder), each loaded on first use (or by `load`, at start) and
    kept. The real tool (`agents.tools.search`) is imported there, so an agent that takes no
    search task never loads an index nor needs the `search` extra."""

    def __init__(self, sources: Mapping[str, str | Path] | None = None) -> None:
        self.sources = dict(sources or {"wiki": "wiki"})
        self.loaded: dict[str, Tool] = {}

    def __call__(self, corpus: str) -> Tool:
        if corpus not in self.loaded:
            if corpus not in self.sources:
                known = ", ".join(self.sources) or "none"
                raise ToolUnavailable(f"no corpus {corpus!r} in [corpora] (known: {known})")
            self.loaded[corpus] = self.load(corpus)
        return self.loaded[corpus]

    def load(self, corpus: str, progress: Callable[[str], None] = lambda line: None) -> Tool:
        """The tool of `corpus`, its index built if there is none yet; `ToolUnavailable` says
        why it cannot be (no such folder, the wiki file not fetched, the extra missing)."""
        source = self.sources[corpus]
        try:
            from agents.tools.search import load_tool  # the one place the real tool is built

            tool = load_tool(source, progress=progress)
        except (ImportError, OSError, ValueError, RuntimeError) as exc:
            raise ToolUnavailable(f"corpus {corpus!r} ({source}): {exc}") from exc
        self.loaded[corpus] = tool
        return tool


# --- actions --------------------------------------------------------------------------------

Verb = Literal["search", "open", "answer"]
VERBS: dict[str, Verb] = {
    "search": "search",
    "query": "search",
    "lookup": "search",
    "open": "open",
    "read": "open",
    "answer": "answer",
    "final answer": "answer",
    "finish": "answer",
}
# One action on a line: any markup before it ("Action 2:", "**", "- "), the verb, then its
# argument after ":" or "=" or inside brackets — `search: x`, `Search[x]`, `open("x")`.
ACTION = re.compile(
    r"^[\s>*_#`\-\d.)]*(?:action\s*\d*\s*[:.][\s*_`]*)?"
    r"(?P<verb>final answer|search|query|lookup|open|read|answer|finish)[*_`]*"
    r"\s*(?:[:=\-]\s*|\[|\()(?P<argument>.*)$",
    re.I,
)
QUOTES = "\"'`*“”‘’ \t"


class NotAnAction(ValueError):
    """A reply that holds no action; the message, for the model, says why."""


@dataclass(frozen=True)
class Action:
    verb: Verb
    argument: str


def parse(reply: str) -> Action:
    """The first action in a model's reply, read leniently: case, markup, brackets and quotes
    around the argument do not matter; a line that is not an action (a thought) is skipped."""
    for line in reply.splitlines():
        match = ACTION.match(line)
        if match is None:
            continue
        verb = VERBS[" ".join(match["verb"].lower().split())]
        argument = _unwrap(match["argument"])
        if not argument:
            raise NotAnAction(f"`{verb}:` needs {'a query' if verb == 'search' else 'text'}")
        return Action(verb, argument)
    if not reply.strip():
        raise NotAnAction("the reply was empty")
    raise NotAnAction("no line starts with search:, open: or answer:")


def _unwrap(argument: str) -> str:
    text = argument.strip()
    for opener, closer in (("[", "]"), ("(", ")")):
        if text.endswith(closer) and text.count(closer) > text.count(opener):
            text = text[:-1]  # the bracket that opened the argument: `search[x]`
        elif text.startswith(opener) and text.endswith(closer):
            text = text[1:-1]  # an argument bracketed whole: `search: [x]`
    return text.strip(QUOTES).strip()


def begun(asked: Sequence[Message], text: str) -> str:
    """The whole reply to `asked`: what the model wrote after the action begun for it (the
    in-process backend continues it), or alone if it starts with an action of its own (a
    server that answered anew)."""
    text = text.strip()
    start = asked[-1]["content"] if asked[-1]["role"] == "assistant" else ""
    if not start or ACTION.match(text.split("\n", 1)[0]):
        return text
    return f"{start} {text}"


def forced_answer(reply: str) -> str:
    """The answer in a reply to "answer now" (whose answer was begun for the model): the
    reply's first line, less an `answer:` the model wrote again."""
    try:
        action = parse(reply)
    except NotAnAction:
        action = None
    if action is not None and action.verb == "answer":
        return action.argument
    first = next((line for line in reply.splitlines() if line.strip()), "")
    return _unwrap(first)


# --- the loop -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    max_steps: int = 6
    token_budget: int = 16_000
    hits: int = HITS
    passage_chars: int = PASSAGE_CHARS
    article_chars: int = ARTICLE_CHARS
    action_tokens: int = ACTION_TOKENS
    answer_tokens: int | None = None  # the client's cap on the answer: the forced answer's call


@dataclass
class Search:
    """A finished loop: the answer ("" when none), its steps, what its calls spent, and why it
    stopped without an answer, if it did."""

    answer: str = ""
    steps: list[ToolStep] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    error: str | None = None


async def run(
    llm: LLM,
    tool: Tool,
    task: TaskPosted,
    plan: str,
    price: Price,
    budget: Budget | None = None,
    style: SearcherStyle = DEFAULT_SEARCHER,
) -> Search:
    """The question answered with `tool`, following `plan` (the paper's winning plan) if any,
    with the `style` variant of the system prompt (`prompts.SEARCHERS`)."""
    budget = budget or Budget()
    messages = prompts.search(task, plan, style)
    done = Search()
    last_call = 0  # tokens of the latest call: the next one is at least as long
    for step in range(1, budget.max_steps + 1):
        spent = done.usage.total_tokens
        if spent >= budget.token_budget:
            done.error = f"no answer: the token budget ({budget.token_budget}) was spent"
            return done
        forced = step == budget.max_steps or spent + last_call > budget.token_budget
        if forced:
            asked = [*messages, *prompts.answer_now()]
        else:  # the first action is begun for the model: a search
            asked = [*messages, *prompts.search_first()] if step == 1 else messages
        limit = budget.action_tokens
        if forced and budget.answer_tokens is not None:
            limit = min(limit, budget.answer_tokens)
        try:
            completion = await llm.complete(asked, max_tokens=limit, top_logprobs=0)
        except LLMError as exc:
            done.error = f"model failed: {exc}"
            return done
        usage = completion.usage(price)
        done.usage += usage
        last_call = usage.total_tokens
        if forced:
            return _answered(done, forced_answer(completion.text), "the budget is spent")
        reply = begun(asked, completion.text)
        try:
            action = parse(reply)
        except NotAnAction as exc:
            done.steps.append(ToolStep(action="invalid", text=_short(reply), note=_short(str(exc))))
            said, observation = _short(reply), prompts.not_an_action(str(exc))
        else:
            if action.verb == "answer":
                return _answered(done, action.argument)
            # The conversation keeps the action alone, in its plain form: what the model wrote
            # after it (often an imagined result) would only cost tokens and mislead.
            said, observation = (
                f"{action.verb}: {action.argument}",
                await _act(tool, action, done, budget),
            )
        messages = [
            *messages,
            {"role": "assistant", "content": said},
            {"role": "user", "content": observation},
        ]
    raise AssertionError("unreachable: the last step always answers")  # pragma: no cover


def _answered(done: Search, answer: str, note: str = "") -> Search:
    done.answer = answer[:ANSWER_CHARS].strip()
    done.steps.append(ToolStep(action="answer", text=_short(done.answer), note=note))
    if not done.answer:
        done.error = f"no answer: the model gave an empty one{f' ({note})' if note else ''}"
    return done


async def _act(tool: Tool, action: Action, done: Search, budget: Budget) -> str:
    """Runs a search or an open with the tool (off the event loop: an index is CPU work),
    records the step and returns what the model is shown."""
    if action.verb == "search":
        query = action.argument
        again = any(
            s.action == "search" and s.text.casefold() == query.casefold() for s in done.steps
        )
        hits = list(await asyncio.to_thread(tool.search, query, budget.hits))
        titles = [_short(hit.title) for hit in hits[:MAX_STEP_TITLES]]
        note = "searched before" if again else "" if hits else "no results"
        done.steps.append(ToolStep(action="search", text=_short(query), titles=titles, note=note))
        shown = prompts.results(query, hits, budget.passage_chars)
        return prompts.searched_again(shown) if again and hits else shown
    title = _seen_title(action.argument, done.steps)
    text = await asyncio.to_thread(tool.open, title)
    if text is None:
        done.steps.append(ToolStep(action="open", text=_short(title), note="no such article"))
        return prompts.no_article(title)
    done.steps.append(ToolStep(action="open", text=_short(title), titles=[_short(title)]))
    return prompts.article(title, text, budget.article_chars)


def _seen_title(argument: str, steps: list[ToolStep]) -> str:
    """The title the model means: a result's number ("2", "[2]") in the latest search; a title
    it was shown, in any case; the longest title shown that its argument begins with (a model
    copies a result's "Title: passage" line, or writes the title and then its query); else the
    argument as it is."""
    shown = next((s.titles for s in reversed(steps) if s.action == "search"), [])
    number = argument.strip("[]# ")
    if number.isdigit() and 1 <= int(number) <= len(shown):
        return shown[int(number) - 1]
    seen = {t.casefold(): t for s in steps if s.action == "search" for t in s.titles}
    wanted = argument.casefold()
    if wanted in seen:
        return seen[wanted]
    begun = [t for folded, t in seen.items() if wanted.startswith(folded)]
    return max(begun, key=len) if begun else argument


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_STEP_TEXT else flat[: MAX_STEP_TEXT - 1] + "…"
