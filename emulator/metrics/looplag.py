"""How late the event loop wakes up: the generator's own health, not the CSMS's.

A fleet process that cannot keep up (too many wallboxes per core, a blocking call,
a long garbage collection) delays every timer on its loop: heartbeats, meter samples
and the measurement of round trips themselves.  :class:`LoopLagMonitor` makes that
visible with one tiny task: it sleeps for ``interval`` and records how much later
than asked it woke up.  On an idle loop the lag is well under a millisecond; a lag of
tens of milliseconds means latencies measured by this process include the
generator's own queueing, and the fleet should be split over more processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    """Samples event-loop lag every ``interval`` seconds and hands it to ``record``.

    Use as ``async with LoopLagMonitor(record=reporter.loop_lag):`` around the work
    to watch; the sampling task is cancelled and awaited on exit (no orphan task).
    :attr:`last` and :attr:`max` keep the latest and the largest sample for
    progress displays.
    """

    def __init__(self, *, record: Callable[[float], None], interval: float = 0.25) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.record = record
        self.interval = interval
        self.last = 0.0
        self.max = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Sample until cancelled."""
        loop = asyncio.get_running_loop()
        interval = self.interval
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - started - interval)
            self.last = lag
            if lag > self.max:
                self.max = lag
            self.samples += 1
            self.record(lag)

    async def __aenter__(self) -> LoopLagMonitor:
        if self._task is not None:
            raise RuntimeError("LoopLagMonitor is already running")
        self._task = asyncio.create_task(self.run(), name="loop-lag-monitor")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled too: do not swallow that
