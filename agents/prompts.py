"""Every prompt an agent sends, as pure functions of events: bid, judge, refine, solve, fix,
answer.

Prompts are short on purpose: on these machines a prompt token costs real seconds. Shared
parts come first (system text, then the task) so that a backend that caches the evaluated
prefix (llama.cpp does) pays for them once per task.
"""

from __future__ import annotations

from agents.llm import Message
from marketplace.shared.config import ExecutorStyle
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


def bid(task: TaskPosted) -> list[Message]:
    return [
        {"role": "system", "content": PLANNER},
        {
            "role": "user",
            "content": f"{task_text(task)}\n\nWrite a plan of at most 3 short numbered "
            "steps. Do not write the code.",
        },
    ]


def judge(task: TaskPosted, plan: str) -> list[Message]:
    """One prompt per plan; system text and task come first and are shared by every plan."""
    return [
        {"role": "system", "content": JUROR},
        {"role": "user", "content": f"{task_text(task)}\n\nPlan:\n{plan}\n\nScore (0-5):"},
    ]


def judge_all(task: TaskPosted, plans: list[str]) -> list[Message]:
    """The alternative jury: every plan in one prompt, one `Plan i: d` line back per plan."""
    listed = "\n\n".join(f"Plan {i}:\n{plan}" for i, plan in enumerate(plans, start=1))
    lines = "\n".join(f"Plan {i}: <score>" for i in range(1, len(plans) + 1))
    return [
        {"role": "system", "content": JUROR.replace("Answer with one digit.", "")},
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
    return [
        {"role": "system", "content": PLANNER},
        {
            "role": "user",
            "content": f"{lessons}New task: {task_text(task)}\n\nYour plan:\n"
            f"{own_plan}\n\nWrite the improved plan, at most 3 short numbered "
            "steps. Do not write the code.",
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
