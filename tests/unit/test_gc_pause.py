"""The collector held off while a batch decodes, and given back as it was."""

from __future__ import annotations

import gc

from marketplace.log.gc_pause import paused_gc


def test_the_collector_is_off_inside_and_as_it_was_after_even_nested() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_a_collector_already_off_stays_off() -> None:
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
