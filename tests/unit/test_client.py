"""The client's fire-and-forget `post`, without a broker: what it sends, in which order, and
what it refuses before sending anything. (Waiting for answers runs on the real broker in
tests/integration/test_client.py.)"""

from __future__ import annotations

import pytest

import marketplace
import marketplace.client as client_layer
from marketplace.client import Client, InvalidTask, general_task
from marketplace.shared import signing
from marketplace.shared.config import Config
from schemas.events import CodingChecks, CodingInputs, Event, TaskChecks, TaskPosted


def offline(producer: str = "client") -> tuple[Client, list[Event]]:
    """A client whose bus keeps what it would publish instead of sending it (signing nothing:
    what is checked here is what it sends, not its signatures)."""
    client = Client(Config(), producer=producer, trust=signing.Trust())
    sent: list[Event] = []

    async def publish(event: Event) -> None:
        sent.append(event)

    client.bus.publish = publish
    return client, sent


def coding(task_id: str = "t1") -> TaskPosted:
    return TaskPosted(
        producer="someone",
        task_id=task_id,
        kind="coding",
        prompt="def f(): ...",
        inputs=CodingInputs(entry_point="f"),
    )


async def test_post_sends_the_checks_then_the_task_as_the_client_and_returns_its_id() -> None:
    client, sent = offline(producer="client-7")
    task = coding()
    checks = TaskChecks(
        producer="someone", task_id="t1", checks=CodingChecks(entry_point="f", tests="assert 1")
    )
    assert await client.post(task, checks) == "t1"
    assert [type(e) for e in sent] == [TaskChecks, TaskPosted]
    assert {e.producer for e in sent} == {"client-7"}
    assert [e.event_id for e in sent] == [checks.event_id, task.event_id]


async def test_a_general_task_is_posted_with_its_general_checks() -> None:
    client, sent = offline()
    task = general_task("Name a prime.", tenant="acme", budget=0.5)
    assert await client.post(task) == task.task_id
    checks, posted = sent
    assert (checks.task_id, checks.checks.kind) == (task.task_id, "general")
    assert (posted.tenant, posted.budget, posted.prompt) == ("acme", 0.5, "Name a prime.")


@pytest.mark.parametrize(
    ("checks", "why"),
    [
        (None, "a coding task needs its checks"),
        (
            TaskChecks(
                producer="c", task_id="t2", checks=CodingChecks(entry_point="f", tests="assert 1")
            ),
            "its checks are for task t2",
        ),
    ],
)
async def test_post_refuses_what_cannot_be_posted_and_sends_nothing(
    checks: TaskChecks | None, why: str
) -> None:
    client, sent = offline()
    with pytest.raises(InvalidTask, match=why):
        await client.post(coding(), checks)
    assert sent == []


def test_the_package_s_names_are_the_client_layer_s() -> None:
    for name in marketplace.__all__:
        assert getattr(marketplace, name) is getattr(client_layer, name)
