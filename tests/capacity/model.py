"""A CSMS of known capacity and the fleet in front of it, as a model, under a clock that
advances at once: a whole capacity search runs in milliseconds and its sizes are exact.

The model is a :class:`emulator.capacity.SearchFleet` and :class:`InstantClock` a
:class:`emulator.capacity.Clock`; the round trips go into a real
:class:`~emulator.metrics.stats.RunStats` and the generator's figures into a real
:class:`~emulator.fleet.health.GeneratorHealth`, so the search judges its holds with the
real SLO evaluation.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from emulator.core.outcome import OK
from emulator.fleet.health import GeneratorHealth
from emulator.metrics.stats import RunStats

FAST = 0.050  # the CSMS's answer while it keeps up, seconds
SLOW = 1.0  # its answer past its capacity (or the generator's past its own)
LATE = 0.400  # the generator's send lateness past its limit (the limit is 250 ms)
ON_TIME = 0.001


class InstantClock:
    """Time passes only when someone sleeps, and at once; every listener hears how many
    seconds passed.  CPU time is ``cpu_share`` of the time passed."""

    def __init__(self, *, cpu_share: float = 0.2) -> None:
        self.time = 0.0
        self.cpu_share = cpu_share
        self.listeners: list[Callable[[float], None]] = []

    def now(self) -> float:
        return self.time

    def cpu(self) -> float:
        return self.time * self.cpu_share

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.time += seconds
            for listener in self.listeners:
                listener(seconds)
        await asyncio.sleep(0)  # a sleep lets the loop's other tasks run


@dataclass(frozen=True, slots=True)
class Gauges:
    queue_depth: int
    in_flight: int


class ModelFleet:
    """Wallboxes in front of a CSMS that keeps up with the traffic of ``capacity`` of them.

    * A wallbox added at *t* boots at *t* + ``boot_seconds`` (its BootNotification in
      flight until then; recorded then, and ``burst`` messages queued); the CSMS accepts only the first
      ``accepts`` wallboxes (the others never boot).  A removed one stops sending at once
      and closes ``close_seconds`` later.
    * Every booted wallbox sends ``rate`` MeterValues a second, answered in 50 ms while at
      most ``capacity`` wallboxes send, else in 1 s.
    * The queue: the CSMS works it off at its spare rate (``rate`` x (``capacity`` -
      senders)) and it grows by the excess past its capacity; ``stuck`` messages are never
      answered.
    * The generator is late by 400 ms (its limit is 250 ms) and its round trips take 1 s
      while more than ``generator_limit`` wallboxes send; its health closes a window
      every 5 s, as its monitor does (a hold longer than that sees its figures).
    """

    def __init__(
        self,
        *,
        clock: InstantClock,
        stats: RunStats,
        capacity: int,
        generator_limit: float = math.inf,
        accepts: float = math.inf,
        rate: float = 0.25,
        burst: int = 2,
        stuck: int = 0,
        boot_seconds: float = 0.1,
        close_seconds: float = 0.5,
        ramp_per_second: float = 50.0,
        connect_timeout: float = 30.0,
        drain_seconds: float = 5.0,
    ) -> None:
        self.clock = clock
        self.stats = stats
        self.capacity = capacity
        self.generator_limit = generator_limit
        self.accepts = accepts
        self.rate = rate
        self.burst = burst
        self.stuck = stuck
        self.boot_seconds = boot_seconds
        self.close_seconds = close_seconds
        self.ramp_per_second = ramp_per_second
        self.connect_timeout = connect_timeout
        self.drain_seconds = drain_seconds
        self.health = GeneratorHealth()
        self._window_closed = 0.0
        self.present: set[int] = set()  # added and not yet closed
        self.booted_ones: set[int] = set()
        self.leaving: set[int] = set()
        self._boots: deque[tuple[float, int]] = deque()  # (when, number), in time order
        self._closes: deque[tuple[float, int]] = deque()
        self.queue = 0.0
        self._calls = 0.0  # the fraction of a call carried to the next advance
        self.history: list[tuple[float, int]] = []  # (time, queue depth) after each advance
        self.joined: list[tuple[float, int, int]] = []  # (time, number, queue depth) per add
        self._stopped = asyncio.Event()
        clock.listeners.append(self._advance)

    # ------------------------------------------------------------------ SearchFleet

    def add_wallbox(self, number: int) -> None:
        assert number not in self.present, number
        self.joined.append((self.clock.now(), number, self.gauges().queue_depth))
        self.present.add(number)
        if number <= self.accepts:
            self._boots.append((self.clock.now() + self.boot_seconds, number))

    def remove_wallbox(self, number: int) -> None:
        if number in self.present and number not in self.leaving:
            self.leaving.add(number)
            self._closes.append((self.clock.now() + self.close_seconds, number))

    def wallboxes(self) -> int:
        return len(self.present)

    def booted(self) -> int:
        return len(self.booted_ones)

    def gauges(self) -> Gauges:
        # A wallbox waiting for its boot has its BootNotification in flight.
        return Gauges(queue_depth=math.ceil(self.queue) + self.stuck, in_flight=len(self._boots))

    def starting(self) -> int:
        return 0  # every booted wallbox sends at once

    async def serve(self) -> None:
        await self._stopped.wait()

    def stop(self) -> None:
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # ------------------------------------------------------------------ the world

    def _advance(self, seconds: float) -> None:
        now = self.clock.now()
        while self._closes and self._closes[0][0] <= now:
            _, number = self._closes.popleft()
            self.present.discard(number)
            self.leaving.discard(number)
            self.booted_ones.discard(number)
        while self._boots and self._boots[0][0] <= now:
            _, number = self._boots.popleft()
            if number in self.present and number not in self.leaving:
                self.booted_ones.add(number)
                self.stats.round_trip("BootNotification", FAST, OK)
                self.queue += self.burst
        senders = len(self.booted_ones - self.leaving)
        self.queue = max(0.0, self.queue - self.rate * (self.capacity - senders) * seconds)
        generator_over = senders > self.generator_limit
        latency = SLOW if senders > self.capacity or generator_over else FAST
        self._calls += self.rate * senders * seconds
        calls = int(self._calls)
        self._calls -= calls
        for _ in range(calls):
            self.stats.round_trip("MeterValues", latency, OK)
        self.health.late(LATE if generator_over else ON_TIME)
        self.health.lagged(ON_TIME)
        if now - self._window_closed >= self.health.window:  # as its monitor does
            self.health.close_window()
            self._window_closed = now
        self.history.append((now, self.gauges().queue_depth))
