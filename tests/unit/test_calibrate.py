"""`sale models calibrate` splits measured CPU-seconds into a price per direction."""

from __future__ import annotations

import pytest

from agents.llm import Completion
from marketplace.evaluation.calibrate import split_seconds


def call(fresh: int, held: int, written: int) -> Completion:
    # 2 µs per fresh prompt token, 0.1 µs per held one, 50 µs per generated token
    seconds = 2e-6 * fresh + 1e-7 * held + 5e-5 * written
    return Completion(
        text="",
        tokens=(),
        prompt_tokens=fresh + held,
        completion_tokens=written,
        seconds=seconds,
        cached_tokens=held,
    )


def test_reading_holding_and_writing_are_priced_apart():
    calls = [call(400, 20, 1), call(1, 419, 1), call(300, 20, 200), call(200, 0, 150)]
    prices = split_seconds(calls)
    assert prices["input_price"] == pytest.approx(2e-6)
    assert prices["cached_input_price"] == pytest.approx(1e-7, abs=1e-9)
    assert prices["output_price"] == pytest.approx(5e-5)
