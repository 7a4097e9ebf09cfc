"""``identity_sync.nonblocking``: inside an attempt, whatever would wait gives up instead; outside
one, nothing changes."""

from __future__ import annotations

import time

import pytest

from identity_sync import nonblocking, pacing


def test_outside_an_attempt_nothing_is_refused_and_nothing_expires() -> None:
    assert not nonblocking.active() and not nonblocking.expired()
    nonblocking.refuse("a write")
    nonblocking.checkpoint()
    pacing.pause()


def test_inside_an_attempt_what_would_wait_raises_would_block_naming_it() -> None:
    with nonblocking.attempt(10):
        assert nonblocking.active() and not nonblocking.expired()
        nonblocking.checkpoint()  # before the deadline: goes on
        with pytest.raises(nonblocking.WouldBlock, match="a write"):
            nonblocking.refuse("a write")
    assert not nonblocking.active()  # the attempt ended with its block


def test_past_its_deadline_an_attempt_gives_up_at_the_next_checkpoint_and_yield_point() -> None:
    with nonblocking.attempt(0.001):
        time.sleep(0.005)
        assert nonblocking.expired()
        with pytest.raises(nonblocking.WouldBlock, match="deadline"):
            nonblocking.checkpoint()
        with pytest.raises(nonblocking.WouldBlock):
            pacing.pause()  # each yield point of a long loop is a checkpoint too
