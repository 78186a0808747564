"""The loop thread takes calls from another thread in order, and wakes its loop once per
batch of them, not once per call."""

from __future__ import annotations

import threading
from typing import Any

from emulator.loadtest.bridge import LoopThread


class CountingLoopThread(LoopThread):
    """Counts its wake-ups: how many queued calls each one found."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def _run_calls(self) -> None:
        self.batches.append(len(self._calls))
        super()._run_calls()


def test_calls_made_while_the_loop_is_busy_run_in_order_after_one_wake_up() -> None:
    thread = CountingLoopThread()
    thread.start()
    try:
        busy, release, done = threading.Event(), threading.Event(), threading.Event()
        ran: list[int] = []

        def block() -> None:
            busy.set()
            release.wait(10)

        thread.call(block)
        assert busy.wait(10)
        for i in range(100):  # the loop is busy: these queue behind one wake-up
            thread.call(ran.append, i)
        thread.call(done.set)
        release.set()
        assert done.wait(10)
        assert ran == list(range(100))
        # One wake-up ran all 102 calls: it found `block` and ran the others, which queued
        # while `block` ran, once it returned.  The wake-up the first of them asked for
        # finds none, whenever the loop gets to it (it may not have yet).
        assert thread.batches[0] == 1
        assert thread.batches[1:] in ([], [0])
    finally:
        thread.stop()


def test_a_failing_call_goes_to_the_loops_handler_and_the_rest_still_run() -> None:
    thread = LoopThread()
    thread.start()
    try:
        handled: list[Any] = []
        done = threading.Event()
        assert thread.loop is not None
        thread.call(thread.loop.set_exception_handler, lambda _, ctx: handled.append(ctx))
        thread.call(int, "not a number")
        thread.call(done.set)
        assert done.wait(10)
        assert len(handled) == 1
        assert isinstance(handled[0]["exception"], ValueError)
    finally:
        thread.stop()
