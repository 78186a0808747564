"""A reference CSMS of known capacity: one server, a fixed service time, a FIFO queue.

With ``ReferenceCsms(service_time=0.02)`` (``ocpp-fleet csms --service-time 20ms``) the
charger-initiated CALLs of all chargers wait in one queue, in the order they arrived, and
are served one at a time, each for exactly the service time: the CSMS saturates at
1/service-time CALLs per second (50/s at 20 ms), so a capacity search has a right answer
to find. A CALL's answer goes out when its service completes.

Only answering is serialised. Handshakes, reading frames, and the answers to the
CSMS's own calls (CALLRESULT, CALLERROR) go on while CALLs wait. Malformed frames
are rejected at once, because they never reach a handler.

The service times form a deadline chain, with no sleep per call: the k-th CALL completes
at ``max(arrival, completion of the CALL before) + service time``. So a loop that wakes
late delays an answer but never lowers the throughput. :class:`Served` is what the CSMS
counted, from which the offered load and the utilisation follow.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = ["MAX_SERVICE_TIME", "Served", "ServiceQueue", "parse_service_time"]

#: ``--service-time`` must be below this (seconds); above, a load test would take hours.
MAX_SERVICE_TIME: Final = 10.0

_log = logging.getLogger("emulator.csms")

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*", re.IGNORECASE)


def parse_service_time(text: str) -> float:
    """``"20ms"``, ``"20 ms"``, ``"0.02s"`` -> seconds.

    The unit is required, so a bare number is not a guess. A ValueError, which starts
    with the value, is raised unless it is above 0 and below :data:`MAX_SERVICE_TIME` s.
    """
    match = _DURATION.fullmatch(text)
    seconds = 0.0
    if match is not None:
        number, unit = match.groups()
        seconds = float(number) / (1000.0 if unit.lower() == "ms" else 1.0)
    if not 0.0 < seconds < MAX_SERVICE_TIME:
        raise ValueError(f"{text!r}: expected a duration in (0, 10s), like 20ms")
    return seconds


@dataclass(frozen=True, slots=True)
class Served:
    """What the reference CSMS served: a snapshot, or the difference of two (a window).

    ``calls``: charger-initiated CALLs received, per action. A CALL is counted when it
    arrives, whether or not it has been answered yet.
    ``served``: CALLs whose handling is done. With a service time, this is when their
    service completed. The answer may still have been withheld by a misbehaviour hook.
    ``busy``: seconds the server spent serving. This includes the part of the current
    service already done. It is 0 without a service time.
    ``waiting``: CALLs queued or in service at the end of the snapshot or window.
    ``elapsed``: seconds since the CSMS first started, or the window's length.

    The offered load of ``n`` chargers is ``total / elapsed / n`` CALLs per charger per
    second. If the queue was empty at both ends of the window, that is every CALL the
    chargers sent. :attr:`utilisation` is ``busy / elapsed``.
    """

    elapsed: float
    calls: Mapping[str, int]
    served: int
    busy: float
    waiting: int

    @property
    def total(self) -> int:
        """CALLs received, all actions together."""
        return sum(self.calls.values())

    @property
    def utilisation(self) -> float:
        """The server's busy share of the elapsed time (0 to 1); NaN if none elapsed."""
        return self.busy / self.elapsed if self.elapsed > 0 else float("nan")

    @property
    def throughput(self) -> float:
        """CALLs served per second; NaN if no time elapsed."""
        return self.served / self.elapsed if self.elapsed > 0 else float("nan")

    def __sub__(self, earlier: Served) -> Served:
        """The window from ``earlier`` to this snapshot. ``waiting`` is this snapshot's."""
        calls = {
            action: count - earlier.calls.get(action, 0)
            for action, count in self.calls.items()
            if count != earlier.calls.get(action, 0)
        }
        return Served(
            elapsed=self.elapsed - earlier.elapsed,
            calls=calls,
            served=self.served - earlier.served,
            busy=self.busy - earlier.busy,
            waiting=self.waiting,
        )

    def line(self) -> str:
        """One line for a person, e.g. printed by ``ocpp-fleet csms`` when it stops."""
        rate = self.throughput if self.elapsed > 0 else 0.0
        text = f"served {self.served} of {self.total} CALLs in {self.elapsed:.1f} s ({rate:.1f}/s)"
        if self.busy > 0:
            text += f", busy {self.busy:.1f} s ({self.busy / self.elapsed:.0%})"
        if self.waiting:
            text += f", {self.waiting} waiting"
        if self.calls:
            text += ": " + ", ".join(f"{a} {n}" for a, n in sorted(self.calls.items()))
        return text


T = TypeVar("T")


class ServiceQueue(Generic[T]):
    """One server with service time ``service_time``, FIFO, on the running event loop.

    :meth:`arrive` queues an item. ``on_served(item)`` is called, in arrival order, when
    the item's service completes. A single timer handle stands for the whole queue, for
    its head; no task, no thread.
    """

    def __init__(self, service_time: float, on_served: Callable[[T], None]) -> None:
        if not 0.0 < service_time < float("inf"):
            raise ValueError(f"service_time must be a positive number of seconds: {service_time}")
        self.service_time = service_time
        self._on_served = on_served
        self._queue: deque[tuple[float, T]] = deque()  # (completion time, item)
        self._timer: asyncio.TimerHandle | None = None
        self._free_at = float("-inf")  # completion time of the last CALL in the chain
        self._work = 0.0  # seconds of service scheduled so far (a clear keeps the done part)
        self.served = 0

    def __len__(self) -> int:
        """Items queued or in service."""
        return len(self._queue)

    def arrive(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        done = max(loop.time(), self._free_at) + self.service_time
        self._free_at = done
        self._work += self.service_time
        self._queue.append((done, item))
        if self._timer is None:
            self._timer = loop.call_at(done, self._complete)

    def busy(self, now: float) -> float:
        """Seconds served up to ``now`` (a loop time). This is exact because the work
        still to do is contiguous, from now until the chain's last completion."""
        return self._work - max(0.0, self._free_at - now)

    def clear(self, now: float) -> int:
        """Drop every queued item, as a crash would, and return how many there were.

        The part of the current service done up to ``now`` stays counted as busy time."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._work = self.busy(now)
        self._free_at = min(self._free_at, now)
        dropped = len(self._queue)
        self._queue.clear()
        return dropped

    def _complete(self) -> None:
        # The head is due (the timer was for it); so is anything after it whose
        # completion time has passed too, if the loop woke late: serve them all now.
        loop = asyncio.get_running_loop()
        self._timer = None
        now = loop.time()
        queue = self._queue
        while True:
            _, item = queue.popleft()
            self.served += 1
            try:
                self._on_served(item)
            except Exception:  # a bug must not stop the queue: the rest still get served
                _log.exception("! serving %r failed", item)
            if not queue:
                return
            if queue[0][0] > now:
                self._timer = loop.call_at(queue[0][0], self._complete)
                return
