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

A batch is measured in work, not in wallboxes (:func:`stop_work`): a close handshake is
one unit, every message the stop still sends (a StopTransaction and the StatusNotifications
after it, the outbox's backlog) is :data:`MESSAGE_WORK` units.  A fixed 32 wallboxes a
turn paced an idle fleet like a charging one: 40,000 idle wallboxes on 4 workers took
26.6 s to close where asking all at once had taken 16.5 s.  :data:`STOP_BUDGET` keeps the
32 charging wallboxes a turn that drained in time and asks 13 times as many idle ones a
turn: on 2 cores, one after the other, the same idle stop took 22.7 s with 32 a turn and
12.7 s with the budget (bench/distributed.py --chargers 40000 --workers 4).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from emulator.transport.driver import WallboxDriver

__all__ = [
    "CHARGING_STOP_WORK",
    "MESSAGE_WORK",
    "STOP_BATCH",
    "STOP_BUDGET",
    "STOP_CAP",
    "STOP_STALL",
    "StopPacer",
    "StopProgress",
    "Stoppable",
    "stop_work",
]

# The work of a stop, in close handshakes: a message the stop sends costs about as much
# CPU as four closes (built, checked, sent, its answer read and matched, besides the frames).
MESSAGE_WORK = 4
# A charging wallbox's stop: StopTransaction, StatusNotification Finishing and Available,
# its close.
CHARGING_STOP_WORK = 3 * MESSAGE_WORK + 1

# Charging wallboxes asked to stop per loop turn: ~2 ms of CPU each (StopTransaction,
# StatusNotifications, close) makes a turn of ~60 ms on a saturated core.
STOP_BATCH = 32
# The work asked for per loop turn: STOP_BATCH charging wallboxes, or 13 times as many idle.
STOP_BUDGET = STOP_BATCH * CHARGING_STOP_WORK

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


S = TypeVar("S", bound=Stoppable)


def stop_work(driver: WallboxDriver) -> int:
    """The work stopping ``driver`` makes, in close handshakes (see above; at least 1).

    Read at the moment it is asked to stop: its close (or, without a connection, only
    its task's end), :data:`MESSAGE_WORK` for each message still queued or in flight,
    and for each running transaction it stops (``shutdown_transactions = "stop"``) a
    StopTransaction and two StatusNotifications."""
    if driver.ws is None:
        return 1
    wallbox = driver.wallbox
    outbox = wallbox.outbox
    messages = outbox.depth + (outbox.in_flight is not None)
    if driver.settings.stop_transactions_on_shutdown:
        messages += 3 * sum(1 for c in wallbox.connectors if c.transaction is not None)
    return 1 + MESSAGE_WORK * messages


def _one(driver: Stoppable) -> int:
    return 1


class StopPacer(Generic[S]):
    """Asks queued wallboxes to stop, ``budget`` work per turn of the event loop (see
    above): each turn asks wallboxes in the order queued until their ``work`` reaches the
    budget (a turn asks at least one, however much work it has).

    :meth:`run` is a task of the fleet; :meth:`close` lets it end once the queue is empty.
    A wallbox queued twice, or already stopping, is skipped without using up the budget.
    ``work`` defaults to 1 a wallbox: then ``budget`` wallboxes a turn.
    """

    def __init__(self, budget: int = STOP_BUDGET, *, work: Callable[[S], int] = _one) -> None:
        if budget < 1:
            raise ValueError("the budget must be at least 1")
        self.budget = budget
        self.work = work
        self.turns = 0  # loop turns that asked some wallboxes to stop
        self.asked = 0  # wallboxes asked to stop
        self._queue: deque[S] = deque()
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    def stop(self, driver: S) -> None:
        self._queue.append(driver)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        queue, budget, work = self._queue, self.budget, self.work
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                asked = spent = 0
                while queue and spent < budget:
                    driver = queue.popleft()
                    if not driver.stopping:
                        spent += work(driver)  # before stop(): what it still has to do
                        driver.stop()
                        asked += 1
                if asked:
                    self.turns += 1
                    self.asked += asked
                    await asyncio.sleep(0)  # one turn: what those stops made ready runs
            if self._closed:
                return
