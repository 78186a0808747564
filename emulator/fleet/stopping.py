"""Stopping a fleet: at the pace of the load generator, and waited for while it moves.

A wallbox bounds its own stop (``drain_timeout`` for its transaction messages,
``close_timeout`` for the close handshake), but stopping thousands of them at once is CPU
work the load generator does at its own pace: 10,000 charging wallboxes on a Locust worker
with half a core took 37.6 s, more than twice what their timers allow one.  A fixed wait gives
up on a stop that is going well (the rest close with 1006 when the process exits, and their
StopTransactions go missing from the totals); no wait at all hangs on one that is stuck.
So a waiter watches a progress mark (frames sent and received, websockets closed) and
gives up after ``stall`` seconds without a change, or ``cap`` seconds in all
(:class:`StopProgress`).

Asking every wallbox to stop at once is a storm like a boot storm: 10,000 drains on one
loop lagged it by 11 s, and since each exchange of a drain waits its turn twice (the
answer's read, then the task), one wallbox's StopTransaction, StatusNotifications and close
took longer than its 10 s ``drain_timeout``, and ~1,000 wallboxes closed with an answer
still unread.  :class:`StopPacer` asks a batch of wallboxes to stop per turn of the event
loop instead.  A turn lasts as long as the work that is ready, so the pace is the
generator's own: on an idle loop (a slow CSMS) all 10,000 are asked within milliseconds
and drain together; on a saturated one, turns grow with the batches' work, the drains
already under way keep their turns short, and each one finishes well within its timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Protocol

__all__ = ["STOP_BATCH", "STOP_CAP", "STOP_STALL", "StopPacer", "StopProgress", "Stoppable"]

# Wallboxes asked to stop per loop turn: ~2 ms of CPU each (StopTransaction,
# StatusNotifications, close) makes a turn of ~60 ms on a saturated core.
STOP_BATCH = 32

# A Locust worker's wait for its stopping wallboxes: it gives up after STOP_STALL s without
# progress (a wallbox's own drain_timeout and close_timeout are 10 + 5 s) or STOP_CAP s in all.
STOP_STALL = 20.0
STOP_CAP = 120.0


class StopProgress:
    """Judges a fleet's stop from its progress marks; times are the caller's clock."""

    __slots__ = ("_mark", "_moved", "_started", "cap", "stall")

    def __init__(self, *, stall: float, cap: float, mark: Hashable, now: float) -> None:
        if stall <= 0 or cap <= 0:
            raise ValueError("stall and cap must be positive")
        self.stall = stall
        self.cap = cap
        self._mark = mark
        self._moved = self._started = now

    def give_up(self, mark: Hashable, now: float) -> str:
        """'' while the wait should go on; else why it should end."""
        if mark != self._mark:
            self._mark, self._moved = mark, now
        elif now - self._moved > self.stall:
            return f"nothing moved for {self.stall:g} s"
        if now - self._started > self.cap:
            return f"still stopping after {self.cap:g} s"
        return ""


class Stoppable(Protocol):
    """A wallbox driver, as far as stopping goes."""

    stopping: bool

    def stop(self) -> None: ...


class StopPacer:
    """Asks queued wallboxes to stop, ``batch`` per turn of the event loop (see above).

    :meth:`run` is a task of the fleet; :meth:`close` lets it end once the queue is empty.
    A wallbox queued twice, or already stopping, is skipped without using up the batch.
    """

    def __init__(self, batch: int = STOP_BATCH) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.batch = batch
        self.turns = 0  # loop turns that asked some wallboxes to stop
        self._queue: deque[Stoppable] = deque()
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    def stop(self, driver: Stoppable) -> None:
        self._queue.append(driver)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                asked = 0
                while queue and asked < self.batch:
                    driver = queue.popleft()
                    if not driver.stopping:
                        driver.stop()
                        asked += 1
                if asked:
                    self.turns += 1
                    await asyncio.sleep(0)  # one turn: what those stops made ready runs
            if self._closed:
                return
