"""Every prompt an agent sends, as pure functions of events: bid, judge, refine, solve, fix,
answer, and a search task's tool loop (search, its observations, answer now).

Prompts are short on purpose: on these machines a prompt token costs real seconds. Shared
parts come first (system text, then the task) so that a backend that caches the evaluated
prefix (llama.cpp does) pays for them once per task; the tool loop only ever appends, so each
of its calls reuses the whole conversation before it.

The search prompts (SEARCH_PLANNER, SEARCH_JUROR, the SEARCHERS and the observations) were
written by hand; the tool loop's system prompt is chosen among the SEARCHERS variants on the
development split of the FanOutQA derived set only, never on its evaluation split
(docs/search.md: `sale bench executors --tasks fanoutqa-dev:...`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agents.llm import Message
from marketplace.shared.config import DEFAULT_SEARCHER, ExecutorStyle, SearcherStyle
from schemas.events import MemoryExample, TaskPosted

PLANNER = (
    "You are a senior engineer. You write short strategic plans, not solutions: the steps, "
    "the tools or library functions to use, and the pitfalls to avoid."
)
JUROR = (
    "You review plans for programming tasks. Rate how likely the plan leads to a correct "
    "solution, from 0 (useless or wrong) to 5 (complete and correct). Answer with one digit."
)
CODER = (
    "You are an expert Python programmer. Use the plan where it helps; where it disagrees with "
    "the task, the task is right. Answer with the complete function in one ```python code "
    "block, including the imports it needs and nothing else."
)
PROGRAMMER = "You are a careful Python programmer."
ASSISTANT = "You are a helpful assistant. Answer the request directly, clearly and briefly."
COMPLETE = (
    "Complete the following Python function. Reply with the complete function in one "
    "```python block."
)


def task_text(task: TaskPosted) -> str:
    if task.inputs.kind == "coding":
        return f"Write the Python function `{task.inputs.entry_point}`:\n\n{task.prompt}"
    if task.inputs.kind == "general":
        return f"Answer the request:\n\n{task.prompt}"
    corpus = task.inputs.corpus
    return f"Answer the question, searching the `{corpus}` corpus:\n\n{task.prompt}"


CODE_PLAN = "Write a plan of at most 3 short numbered steps. Do not write the code."


def planner(task: TaskPosted) -> str:
    """The system text of a bid or a refinement: a search plan is about queries, not code."""
    return SEARCH_PLANNER if task.kind == "search" else PLANNER


def plan_request(task: TaskPosted) -> str:
    return SEARCH_PLAN if task.kind == "search" else CODE_PLAN


def juror(task: TaskPosted) -> str:
    return SEARCH_JUROR if task.kind == "search" else JUROR


def bid(task: TaskPosted) -> list[Message]:
    return [
        {"role": "system", "content": planner(task)},
        {"role": "user", "content": f"{task_text(task)}\n\n{plan_request(task)}"},
    ]


def judge(task: TaskPosted, plan: str) -> list[Message]:
    """One prompt per plan; system text and task come first and are shared by every plan."""
    return [
        {"role": "system", "content": juror(task)},
        {"role": "user", "content": f"{task_text(task)}\n\nPlan:\n{plan}\n\nScore (0-5):"},
    ]


def judge_all(task: TaskPosted, plans: list[str]) -> list[Message]:
    """The alternative jury: every plan in one prompt, one `Plan i: d` line back per plan."""
    listed = "\n\n".join(f"Plan {i}:\n{plan}" for i, plan in enumerate(plans, start=1))
    lines = "\n".join(f"Plan {i}: <score>" for i in range(1, len(plans) + 1))
    return [
        {"role": "system", "content": juror(task).replace("Answer with one digit.", "")},
        {
            "role": "user",
            "content": f"{task_text(task)}\n\n{listed}\n\nScore each plan from "
            f"0 to 5, one line per plan:\n{lines}",
        },
    ]


def refine(task: TaskPosted, own_plan: str, examples: list[MemoryExample]) -> list[Message]:
    """Contrastive: past tasks where one plan lost and another won, then the agent's own plan."""
    shown = "\n\n".join(
        f"Past task: {e.prompt[:600]}\nA plan that lost:\n{e.losing_plan}\n"
        f"The plan that won{' and passed' if e.passed else ''}:\n{e.winning_plan}"
        for e in examples
    )
    lessons = (
        f"{shown}\n\nFor each past task, think about why the losing plan lost and the winning "
        "plan won. Then improve your plan for the new task.\n\n"
        if examples
        else "Improve your plan: make it more specific and shorter.\n\n"
    )
    request = plan_request(task).replace("Write a plan of", "Write the improved plan,")
    return [
        {"role": "system", "content": planner(task)},
        {
            "role": "user",
            "content": f"{lessons}New task: {task_text(task)}\n\nYour plan:\n"
            f"{own_plan}\n\n{request}",
        },
    ]


def solve(task: TaskPosted, plan: str, style: ExecutorStyle = "continue") -> list[Message]:
    """The executor's first prompt, in one of three shapes (`docs/executors.md` compares them):

    - "chat": "Write the Python function …" with the plan in its own slot (the first executor);
    - "complete": "Complete the following Python function", the task as a fenced block, the
      plan (if any) as a hint after it;
    - "continue": "complete", with the answer begun for the model — an open fence and the task's
      own code — so it writes only the body, not the signature and docstring again.
    """
    if style == "chat":
        return [
            {"role": "system", "content": CODER},
            {"role": "user", "content": f"{task_text(task)}\n\nPlan:\n{plan}"},
        ]
    hint = f"\n\nA plan you may follow:\n{plan}" if plan else ""
    messages: list[Message] = [
        {"role": "system", "content": PROGRAMMER},
        {"role": "user", "content": f"{COMPLETE}\n\n```python\n{task.prompt}```{hint}"},
    ]
    if style == "continue":
        messages.append({"role": "assistant", "content": f"```python\n{task.prompt}"})
    return messages


def fix(
    task: TaskPosted, plan: str, code: str, failure: str, style: ExecutorStyle = "continue"
) -> list[Message]:
    """A failed attempt (the agent's own, or a cheaper agent's it is asked to fix) and why it
    fails. "chat" and "complete" show it as the model's answer and the failure as the user's
    reply; "continue" shows both in the request and begins the answer again, so the model
    writes only the new body."""
    if style == "continue":
        *request, begun = solve(task, plan, "continue")
        shown = (
            f"{request[-1]['content']}\n\nThis attempt fails the examples:\n```python\n{code}\n```"
            f"\n{failure}\n\nWrite a correct version."
        )
        return [*request[:-1], {"role": "user", "content": shown}, begun]
    first = solve(task, plan, style)
    return [
        *first,
        {"role": "assistant", "content": f"```python\n{code}\n```"},
        {
            "role": "user",
            "content": f"Running the examples failed:\n{failure}\n\nFix the "
            "function. Answer with the complete corrected function.",
        },
    ]


def answer(task: TaskPosted, plan: str = "") -> list[Message]:
    """A general task: the request answered as text (following `plan`, the paper's winning
    plan, if there is one)."""
    hint = f"\n\nA plan you may follow:\n{plan}" if plan else ""
    return [
        {"role": "system", "content": ASSISTANT},
        {"role": "user", "content": f"{task.prompt}{hint}"},
    ]


# --- search: the bid, the jury and the tool loop (see the module's note) ----------------------

SEARCH_PLANNER = (
    "You plan how to answer a question with a search engine over an encyclopedia. You write "
    "short plans, not answers: the sub-questions to settle, in order, and a search query for each."
)
SEARCH_PLAN = (
    "Write a plan of at most 3 short numbered steps, each a sub-question and the search query "
    "for it. Do not answer the question."
)
SEARCH_JUROR = (
    "You review plans for answering a question by searching an encyclopedia. Rate how likely "
    "the plan leads to the right answer, from 0 (useless or wrong) to 5 (complete and correct). "
    "Answer with one digit."
)
SEARCHER = (
    "You answer questions by searching an encyclopedia. Each turn, reply with exactly one line, "
    "one of:\n"
    "search: <a few keywords>\n"
    "open: <the title of an article from the results>\n"
    "answer: <the short answer: a name, a number, a date or a few words>\n"
    "Search first; open an article when its passage is not enough; answer as soon as you know."
)
# The variants the tool loop's system prompt is chosen from, on the development split only
# (`sale bench executors --tasks fanoutqa-dev:...`, docs/search.md); an agent's `searcher`.
SEARCHERS: dict[SearcherStyle, str] = {
    "plain": SEARCHER,
    # The grade is an exact match: ask for the answer's words alone, as the article writes them.
    "short": SEARCHER
    + "\nThe answer is checked word for word: give only the words that answer, as the article "
    "writes them (a name, a year, a number), with no sentence around them.",
    # A worked example of the format, for models that follow a demonstration better than rules.
    "example": SEARCHER
    + "\n\nExample:\nQuestion: Who wrote the novel Dune?\nsearch: Dune novel author\n"
    "(results: [1] Dune (novel): Dune is a 1965 science fiction novel by Frank Herbert...)\n"
    "answer: Frank Herbert",
}
ACTIONS = "search: <keywords>, open: <title> or answer: <short answer>"
NEXT = "\n\nYour next action:"
ANSWER_NOW = "No more searching. Reply with one line: answer: <the short answer>"
ANSWER_BEGUN = "answer:"
SEARCH_BEGUN = "search:"


class Passage(Protocol):
    title: str
    passage: str


def search(
    task: TaskPosted, plan: str = "", style: SearcherStyle = DEFAULT_SEARCHER
) -> list[Message]:
    """The tool loop's first prompt (system text of the `style` variant): the question, and the
    plan that won it (paper) if any."""
    hint = f"\n\nA plan you may follow:\n{plan}" if plan else ""
    return [
        {"role": "system", "content": SEARCHERS[style]},
        {"role": "user", "content": f"Question: {task.prompt}{hint}\n\nYour first action:"},
    ]


def results(query: str, hits: Sequence[Passage], passage_chars: int) -> str:
    """What a search shows the model: each hit's title and the start of its passage."""
    if not hits:
        return f'No results for "{query}". Search with other words.{NEXT}'
    shown = "\n".join(
        f"[{i}] {hit.title}: {_cut(hit.passage, passage_chars)}" for i, hit in enumerate(hits, 1)
    )
    return f'Results for "{query}":\n{shown}{NEXT}'


def searched_again(results: str) -> str:
    """A search made before: its results again, and a nudge to read one or to answer."""
    return results.replace(NEXT, f"\n\nYou made this search before: open a result or answer.{NEXT}")


def article(title: str, text: str, article_chars: int) -> str:
    return f'Article "{title}":\n{_cut(text, article_chars)}{NEXT}'


def no_article(title: str) -> str:
    return f'There is no article titled "{title}". Open a title from the results, or search.{NEXT}'


def not_an_action(why: str) -> str:
    return f"That was not an action ({why}). Reply with one line: {ACTIONS}."


def search_first() -> list[Message]:
    """The first action, begun for the model: a search (the question is never answered from
    the model's memory alone, and a small model then sees the format in its own turn)."""
    return [{"role": "assistant", "content": SEARCH_BEGUN}]


def answer_now() -> list[Message]:
    """Appended when the budget is spent: the answer is asked for, and begun for the model."""
    return [
        {"role": "user", "content": ANSWER_NOW},
        {"role": "assistant", "content": ANSWER_BEGUN},
    ]


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, on one line, cut at a word with "…" when cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[:limit].rsplit(" ", 1)[0] + " …"
