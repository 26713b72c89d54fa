"""Bounded records: every record has a size cap, every dead letter fits in one, and no record
can stop a consumer (issue 13: a 1 MB record's dead letter could not be sent and crash-looped
the auctioneer and the recorder)."""

from __future__ import annotations

import hashlib
import logging

import pytest
from aiokafka.errors import KafkaTimeoutError
from pydantic import ValidationError

from marketplace.shared.bus import Bus, Source
from marketplace.shared.config import MIN_RECORD_BYTES, BrokerConfig
from schemas.codec import EventDecodeError, RecordTooLarge, decode, encode
from schemas.events import MAX_EXCERPT, MAX_KEY_EXCERPT, MAX_REASON, DeadLetter, Event
from tests.samples import BIG_GARBAGE, huge_task

SOURCE = Source("t.tasks", 0, 7, b"task-1")


def letter_of(body: bytes) -> DeadLetter:
    return DeadLetter.of(
        body, b"k", "bad", excerpt=4096, producer="p", source_topic="t", partition=0, offset=0
    )


# --- dead letters -------------------------------------------------------------------------------


def test_a_dead_letter_keeps_an_excerpt_the_size_and_the_digest_never_the_whole() -> None:
    letter = letter_of(BIG_GARBAGE)
    assert letter.raw_value == BIG_GARBAGE[:4096]
    assert letter.raw_size == len(BIG_GARBAGE) and letter.truncated
    assert letter.raw_sha256 == hashlib.sha256(BIG_GARBAGE).hexdigest()
    assert len(encode(letter)) < 10_000
    assert decode(encode(letter)) == letter
    small = letter_of(b"{oops")
    assert (small.raw_value, small.raw_size, small.truncated) == (b"{oops", 5, False)


def test_the_largest_dead_letter_fits_under_the_smallest_record_cap() -> None:
    """The worst case of every bounded part: if this fits, any dead letter can be sent."""
    worst = DeadLetter.of(
        bytes(range(256)) * (2 * MAX_EXCERPT // 256),
        b"\xff" * (2 * MAX_KEY_EXCERPT),
        "\x00" * (2 * MAX_REASON),  # escaped as \u0000: six bytes a character
        excerpt=MAX_EXCERPT,
        producer="p" * 128,
        source_topic="t" * 255,
        partition=2**31,
        offset=2**62,
        consumer_group="g" * 255,
    )
    assert len(worst.raw_value) == MAX_EXCERPT and len(worst.raw_key) == MAX_KEY_EXCERPT
    assert len(encode(worst, MIN_RECORD_BYTES)) <= MIN_RECORD_BYTES


def test_the_schema_refuses_a_dead_letter_that_carries_the_whole_of_a_big_record() -> None:
    fields = letter_of(b"abc").model_dump()
    whole = {"raw_value": BIG_GARBAGE, "raw_size": len(BIG_GARBAGE)}
    with pytest.raises(ValidationError, match="raw_value\n  Data should have at most 65536 bytes"):
        DeadLetter.model_validate({**fields, **whole})
    with pytest.raises(ValidationError, match="longer than raw_size"):
        DeadLetter.model_validate({**fields, "raw_size": 2})


# --- the record cap -----------------------------------------------------------------------------


def test_an_event_over_the_cap_is_refused_before_sending_naming_its_largest_field() -> None:
    task = huge_task()
    with pytest.raises(RecordTooLarge, match=r"TaskPosted: 2,0\d\d,\d\d\d bytes, over") as exc:
        encode(task, 1_000_000)
    assert "(broker.max_record_bytes)" in str(exc.value)
    assert "the largest field is inputs.examples" in str(exc.value)
    assert decode(encode(task)) == task  # no cap: as before


def test_a_record_over_the_cap_is_refused_by_its_size_before_it_is_parsed() -> None:
    raw = encode(huge_task())
    with pytest.raises(EventDecodeError, match=r"\(record\): 2,0\d\d,\d\d\d bytes, over the"):
        decode(raw, 1_000_000)
    with pytest.raises(EventDecodeError, match="over the record cap of 1,000 bytes"):
        decode(b"[" * 5_000, 1_000)  # deep nesting never reaches the parser


async def test_the_bus_refuses_to_publish_an_event_over_the_cap() -> None:
    bus = Bus(BrokerConfig(bootstrap="127.0.0.1:1"), producer="client")
    with pytest.raises(RecordTooLarge, match=r"inputs\.examples"):
        await bus.publish(huge_task())  # refused before the (unstarted) producer is reached


# --- no record stops a consumer -----------------------------------------------------------------


class Sent:
    """Stands in for the producer: keeps what the bus publishes, or fails like a broker."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.events: list[Event] = []
        self.fail = fail

    async def __call__(self, event: Event) -> None:
        if self.fail is not None:
            raise self.fail
        self.events.append(event)


def bus_sending_to(sent: Sent) -> Bus:
    bus = Bus(BrokerConfig(bootstrap="127.0.0.1:1", topic_prefix="t."), producer="auctioneer")
    bus.publish = sent  # type: ignore[method-assign]
    return bus


async def test_a_big_malformed_record_is_dead_lettered_as_an_excerpt() -> None:
    sent = Sent()
    assert await bus_sending_to(sent).receive(BIG_GARBAGE, SOURCE, "t.g") is None
    [letter] = sent.events
    assert isinstance(letter, DeadLetter)
    assert letter.raw_value == BIG_GARBAGE[:4096] and letter.raw_key == b"task-1"
    assert letter.raw_size == len(BIG_GARBAGE)
    assert (letter.source_topic, letter.offset, letter.consumer_group) == ("t.tasks", 7, "t.g")
    assert "Invalid JSON" in letter.error


async def test_a_dead_letter_that_cannot_be_published_is_logged_and_receive_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = bus_sending_to(Sent(fail=KafkaTimeoutError("broker away")))
    with caplog.at_level(logging.ERROR, logger="marketplace.shared.bus"):
        assert await bus.receive(BIG_GARBAGE, SOURCE, "t.g") is None
    ours = [r for r in caplog.records if r.name.startswith("marketplace.shared.bus")]
    [record] = [r for r in ours if r.levelno == logging.ERROR]
    digest = hashlib.sha256(BIG_GARBAGE).hexdigest()
    assert "t.tasks[0]@7" in record.getMessage() and digest in record.getMessage()
    assert "not published; skipped" in record.getMessage()


async def test_whatever_fails_in_reading_a_record_becomes_its_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = Sent()
    bus = bus_sending_to(sent)

    def broken(body: bytes, topic: str) -> Event:
        raise RuntimeError("a bug in a check the record reached")

    monkeypatch.setattr(bus, "_decode", broken)
    assert await bus.receive(b"{}", SOURCE, "t.g") is None
    assert await bus.receive(None, SOURCE, "t.g") is None  # a tombstone
    assert [letter.error for letter in sent.events] == [
        "could not be read: RuntimeError('a bug in a check the record reached')"
    ] * 2
