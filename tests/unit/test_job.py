"""The main job's progress line: the time left follows the recent pace."""

from __future__ import annotations

import pytest

from marketplace.app.job import seconds_per_task


def test_the_pace_is_the_mean_of_the_recent_gaps() -> None:
    assert seconds_per_task([0.0, 10.0, 30.0]) == pytest.approx(15.0)
    assert seconds_per_task([0.0]) == 0.0


def test_a_fast_start_from_cached_work_is_forgotten() -> None:
    cached = [float(i) for i in range(20)]  # twenty tasks, a second each
    slow = [cached[-1] + 300.0 * i for i in range(1, 11)]  # then five minutes each
    assert seconds_per_task(cached + slow, window=10) == pytest.approx(300.0)
