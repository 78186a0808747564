"""A tiny pure timeline: actions due at times, run in order by ``run_due(now)``."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

Action = Callable[[float], None]


@dataclass(order=True, slots=True)
class _Scheduled:
    at: float
    seq: int  # ties run in the order they were scheduled
    action: Action = field(compare=False)


class Timeline:
    __slots__ = ("_queue", "_seq")

    def __init__(self) -> None:
        self._queue: list[_Scheduled] = []
        self._seq = 0

    def __bool__(self) -> bool:
        return bool(self._queue)

    def at(self, when: float, action: Action) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Scheduled(when, self._seq, action))

    def next_deadline(self) -> float | None:
        return self._queue[0].at if self._queue else None

    def run_due(self, now: float) -> None:
        while self._queue and self._queue[0].at <= now:
            heapq.heappop(self._queue).action(now)

    def clear(self) -> None:
        self._queue.clear()
