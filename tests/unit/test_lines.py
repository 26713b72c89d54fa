"""The one renderer of events as lines of text (monitor, job and audit)."""

from __future__ import annotations

from uuid import UUID

import pytest

from marketplace.log.lines import gist, line, step_line, story
from schemas.events import (
    Event,
    SearchInputs,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    ToolStep,
)
from tests.samples import every_event


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_every_event_renders_to_one_line_naming_its_type_and_key(event: Event) -> None:
    text = line(event)
    assert text.startswith(event.type)
    assert f" {event.key}: " in text
    assert "\n" not in text
    assert gist(event), "every event type has something to say"


# --- a search task's story ----------------------------------------------------------------------

SEARCH_STEPS = [
    ToolStep(action="invalid", text="I think", note="no line starts with search:"),
    ToolStep(action="search", text="Dune author", titles=["Dune (novel)", "Frank Herbert"]),
    ToolStep(action="search", text="zebra", note="no results"),
    ToolStep(action="open", text="Arrakis", note="no such article"),
    ToolStep(action="open", text="Frank Herbert", titles=["Frank Herbert"]),
    ToolStep(action="answer", text="Tacoma"),
]
SEARCH_RESULT = TaskResult(
    producer="s",
    task_id="dune",
    agent_id="s",
    bid_id=UUID(int=7),
    output="Tacoma",
    cost=0.002,
    duration_s=3.0,
    steps=SEARCH_STEPS,
)


def test_a_search_result_tells_its_queries_reads_and_answer_a_line_per_step() -> None:
    assert gist(SEARCH_RESULT, {UUID(int=7): "s:draft"}) == (
        "s ran s:draft in 3s: 2 search(es), 1 article(s) read, answer 'Tacoma', cost 0.002"
    )
    first, *steps = story(SEARCH_RESULT).splitlines()
    assert first == line(SEARCH_RESULT)
    assert [s.strip() for s in steps] == [
        "not an action: 'I think' (no line starts with search:)",
        "search 'Dune author' → Dune (novel); Frank Herbert",
        "search 'zebra' (no results)",
        "open 'Arrakis' (no such article)",
        "read 'Frank Herbert'",
        "answer 'Tacoma'",
    ]
    many = ToolStep(action="search", text="q", titles=[f"T{i}" for i in range(6)])
    assert step_line(many) == "search 'q' → T0; T1; T2; T3 and 2 more"


def test_a_result_without_steps_is_one_line_and_a_graded_answer_says_how() -> None:
    coding = SEARCH_RESULT.model_copy(update={"steps": []})
    assert story(coding) == line(coding)
    details = "exact match: no; token F1 0.667 (best: gold answer 1 of 1)"
    graded = TaskOutcome(producer="v", task_id="dune", passed=False, score=0.667, details=details)
    assert gist(graded) == f"failed, score 0.667 ({details})"


def test_the_audit_of_a_search_task_tells_its_tool_loop() -> None:
    from marketplace.log import audit
    from tests.unit.test_replay import stored

    posted = TaskPosted(
        producer="client",
        task_id="dune",
        kind="search",
        prompt="Where was the author of Dune born?",
        inputs=SearchInputs(),
    )
    text = audit.render(stored([posted, SEARCH_RESULT]))
    assert "search: s's tool loop\n  1. not an action: 'I think'" in text
    assert "  5. read 'Frank Herbert'\n  6. answer 'Tacoma'" in text
