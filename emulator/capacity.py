"""Capacity search: how many chargers a CSMS holds within its SLOs (``ocpp-fleet capacity``).

One fleet grows in steps.  Wallboxes that are connected stay connected; new ones join at
most at the scenario's ramp rate and no faster than the CSMS answers them (so their
periodic messages start at independent phases, as a real fleet's do), and with
``warm_start`` they join busy, in the stationary state of the session clock.  Each step
is judged over its *hold* only: once the step's wallboxes are connected and booted, the
SLOs are evaluated on what happened during the next ``hold`` seconds (the ramp and the
boots are excluded).  The search stops at the first failing step and then bisects
between the last passing and the first failing size until they are within
``precision`` (10 %) of each other.

The verdict names the largest passing size and what limited it:

* ``"slo"``: the smallest failing size broke these SLOs (with their values);
* ``"generator"``: at that size the generator itself was over its limits (loop lag,
  send lateness, CPU), so the figure is a lower bound for the CSMS: add workers or
  processes before blaming it;
* ``"max"``: ``--max`` was reached and passed.

Between the boots and the hold the search waits for the boots' burst to drain (at most
two holds, and only while the backlog keeps falling: a CSMS past its capacity is held and
judged at once), so a step is judged on the fleet's steady traffic at that size, not on
the arrival of its newest wallboxes.  After a failing step the search first goes back to
the last passing size until the overload's backlog is worked off (at most ten holds):
each step of the bisection starts from a steady state, not from the queue the failing
step left behind.

**Passed in.**  :class:`CapacitySearch` reads time only through a :class:`Clock` (the
event loop's by default, :class:`LoopClock`), the fleet only through a
:class:`SearchFleet` (a running :class:`~emulator.fleet.runner.Fleet` is seen through
:class:`LiveFleet`) and the measurements only through a :class:`StatsSource`, so a whole
search runs against a model of a CSMS under a clock that advances instantly
(tests/capacity/model.py), as websockets' protocol is tested without a socket.

**The rules, once.**  What makes a step pass (:class:`Step`, :meth:`Step.judged`,
:func:`generator_judgement`), when a fleet has settled (:func:`drained`), which step
decides and what the verdict says (:func:`decide`, :class:`Verdict`) live here; the
Locust ``steps`` shape (:mod:`emulator.loadtest.steps`) judges its steps with them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from emulator.fleet.behaviour import SessionBehaviour
from emulator.fleet.faults import Behaviours
from emulator.fleet.model_mix import ModelSequence
from emulator.fleet.runner import Fleet
from emulator.metrics.slo import (
    SloResult,
)
from emulator.metrics.stats import Direction, RunStats
from emulator.report import run_step
from emulator.report.data import machine, versions

CPU_LIMIT = 0.9  # share of one core: the event loop is one thread
STALL_MIN_SECONDS = 10.0  # the shortest settle without progress that ends it (stall_seconds)
POLL_SECONDS = 0.1  # how often the search looks at the fleet while it waits
HOLD_LOOK_SECONDS = 1.0  # how often a hold looks whether it can end early (_hold)
PACED_HOLDS = 2.0  # how long (in holds) a growth waits for the CSMS's answers (_grow)
# What the largest size was, in the "max" sentence of a search.
SEARCH_CEILING = "the most this search was allowed to try (--max)"


Judge = Callable[[RunStats], Sequence[SloResult]]
"""Judges a step's hold: every SLO over the window (emulator.metrics.slo.evaluate)."""


# --------------------------------------------------------------------------- what is passed in


class Clock(Protocol):
    """The search's time: monotonic seconds, a sleep, this process's CPU seconds."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def cpu(self) -> float: ...


class LoopClock:
    """The running event loop's clock, :func:`asyncio.sleep` and :func:`time.process_time`."""

    __slots__ = ()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def cpu(self) -> float:
        return time.process_time()


LOOP_CLOCK: Final = LoopClock()


class Backlog(Protocol):
    """Messages queued in the wallboxes and CALLs sent but not answered
    (:class:`emulator.metrics.fleetview.FleetGauges`, the steps shape's ``FleetState``)."""

    @property
    def queue_depth(self) -> int: ...

    @property
    def in_flight(self) -> int: ...


class HealthGauges(Protocol):
    """The generator's health since :meth:`reset`
    (:class:`emulator.fleet.health.GeneratorHealth`)."""

    @property
    def lateness_limit(self) -> float: ...

    @property
    def lag_limit(self) -> float: ...

    def reset(self) -> None: ...

    def percentiles(self) -> Mapping[str, float]:
        """Seconds, NaN when nothing was measured: ``lateness_p99`` and ``loop_lag_p99``."""
        ...


class SearchFleet(Protocol):
    """What the search needs of a fleet: wallboxes added and removed by number, how many
    there are and how many are booted, their backlog, the generator's health, the
    scenario's pace (ramp, connect timeout, shutdown drain), and serving until stopped."""

    @property
    def ramp_per_second(self) -> float: ...

    @property
    def connect_timeout(self) -> float: ...

    @property
    def drain_seconds(self) -> float: ...

    @property
    def health(self) -> HealthGauges: ...

    def add_wallbox(self, number: int) -> None: ...

    def remove_wallbox(self, number: int) -> None:
        """Stop wallbox ``number``; it counts in :meth:`wallboxes` until it has closed."""
        ...

    def wallboxes(self) -> int: ...

    def booted(self) -> int:
        """Wallboxes connected and accepted by the CSMS."""
        ...

    def gauges(self) -> Backlog: ...

    def starting(self) -> int:
        """Booted wallboxes whose warm-started visit has not started its transaction yet
        (the card comes within one sample interval of the boot)."""
        ...

    async def serve(self) -> None: ...

    def stop(self) -> None: ...


class StatsSource(Protocol):
    """The run's measurements (:class:`RunStats`): a hold is the difference of two
    snapshots (``after.since(before)``)."""

    def snapshot(self) -> RunStats: ...


class LiveFleet:
    """A :class:`~emulator.fleet.runner.Fleet` (created empty) as a :class:`SearchFleet`:
    wallbox ``n`` gets the ``n``-th model of the scenario's mix (:class:`ModelSequence`,
    so a fleet of any size has the mix the scenario asks for)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._models = ModelSequence(fleet.scenario)

    @property
    def ramp_per_second(self) -> float:
        return self.fleet.scenario.fleet.ramp_per_second

    @property
    def connect_timeout(self) -> float:
        return self.fleet.scenario.fleet.connect_timeout

    @property
    def drain_seconds(self) -> float:
        return self.fleet.scenario.fleet.shutdown_drain_seconds

    @property
    def health(self) -> HealthGauges:
        return self.fleet.health

    def add_wallbox(self, number: int) -> None:
        self.fleet.add_wallbox(number, self._models.model_at(number - 1))

    def remove_wallbox(self, number: int) -> None:
        self.fleet.remove_wallbox(number)

    def wallboxes(self) -> int:
        return len(self.fleet.drivers)

    def booted(self) -> int:
        return sum(1 for d in self.fleet.drivers if d.connected and d.wallbox.accepted)

    def gauges(self) -> Backlog:
        return self.fleet.gauges()

    def starting(self) -> int:
        return sum(
            1
            for d in self.fleet.drivers
            if d.connected and d.wallbox.accepted and _sessions_starting(d.behaviour)
        )

    async def serve(self) -> None:
        await self.fleet.serve()

    def stop(self) -> None:
        self.fleet.stop()


def _sessions_starting(behaviour: object) -> bool:
    parts = behaviour.parts if isinstance(behaviour, Behaviours) else (behaviour,)
    return any(isinstance(p, SessionBehaviour) and p.starting for p in parts)


# --------------------------------------------------------------------------- the rules


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSettings:
    start: int = 100
    max: int | None = None
    growth: float = 1.5
    hold: float = 60.0
    precision: float = 0.10  # stop bisecting when failing <= passing * (1 + precision)

    def check(self) -> None:
        """Raise ValueError naming the option that cannot be used."""
        if self.start < 1:
            raise ValueError(f"--start: expected a positive number of chargers, got {self.start}")
        if self.max is not None and self.max < self.start:
            raise ValueError(f"--max: expected at least --start ({self.start}), got {self.max}")
        if not (math.isfinite(self.growth) and self.growth > 1.0):
            raise ValueError(f"--growth: expected a factor > 1, e.g. 1.5, got {self.growth:g}")
        if not (math.isfinite(self.hold) and self.hold > 0):
            raise ValueError(f"--hold: expected seconds > 0, got {self.hold:g}")


def next_size(size: int, settings: SearchSettings) -> int:
    """The size after a passing step while growing (at least one more charger)."""
    grown = max(size + 1, math.ceil(size * settings.growth))
    return grown if settings.max is None else min(grown, settings.max)


def bisect(passing: int, failing: int, precision: float) -> int | None:
    """The next size between a passing and a failing one, or None when they are close
    enough (within ``precision`` of the passing size, or adjacent)."""
    if failing - passing <= max(1, math.floor(passing * precision)):
        return None
    return (passing + failing) // 2


def stall_seconds(hold: float) -> float:
    """How long a settling fleet's backlog may go without a new low before the search
    takes the CSMS to be past its capacity: a third of the hold, at least
    :data:`STALL_MIN_SECONDS` (a draining backlog falls by some calls every second)."""
    return max(STALL_MIN_SECONDS, hold / 3.0)


class _Trend:
    """A fleet's backlog since a moment: the lowest it has been, and when."""

    __slots__ = ("low_at", "lowest")

    def __init__(self, now: float) -> None:
        self.lowest = math.inf
        self.low_at = now

    def restart(self, now: float) -> None:
        """Count from ``now``: the backlog is at its floor, where it makes no new low."""
        self.low_at = now

    def since_low(self, backlog: Backlog, now: float) -> float:
        """Seconds since the backlog last reached a new low (0 when it does now)."""
        if (value := _backlog(backlog)) < self.lowest:
            self.lowest, self.low_at = value, now
        return now - self.low_at


def _backlog(backlog: Backlog) -> int:
    return backlog.queue_depth + backlog.in_flight


def drained_level(size: int) -> int:
    """The backlog of ``size`` wallboxes that counts as drained: one in 20 of them with a
    message queued or waiting for its answer (at least one)."""
    return max(1, size // 20)


def drained(backlog: Backlog, size: int) -> bool:
    """The boots' burst has drained at ``size`` wallboxes (:func:`drained_level`).  A
    step's hold begins then (the search's settle and recovery, the steps shape's hold)."""
    return _backlog(backlog) <= drained_level(size)


@dataclass(slots=True, kw_only=True)
class Step:
    """One fleet size, held and judged."""

    chargers: int
    connected: int
    window: RunStats
    judgements: Sequence[SloResult]
    generator: dict[str, float]
    generator_limited: bool
    note: str = ""  # how the hold differed from the usual one, for people

    @classmethod
    def judged(
        cls,
        *,
        chargers: int,
        connected: int,
        window: RunStats,
        judgements: Sequence[SloResult],
        lateness_p99: float,
        loop_lag_p99: float,
        lateness_limit: float,
        lag_limit: float,
        cpu_share: float | None = None,
        note: str = "",
    ) -> Step:
        """The step of a hold: its SLO judgements and the generator's figures over it
        (:func:`generator_judgement`: seconds in, NaN for nothing measured)."""
        generator, limited = generator_judgement(
            lateness_p99=lateness_p99,
            loop_lag_p99=loop_lag_p99,
            lateness_limit=lateness_limit,
            lag_limit=lag_limit,
            cpu_share=cpu_share,
        )
        return cls(
            chargers=chargers,
            connected=connected,
            window=window,
            judgements=judgements,
            generator=generator,
            generator_limited=limited,
            note=note,
        )

    @property
    def passed(self) -> bool:
        return all(j.passed for j in self.judgements)

    @property
    def violations(self) -> list[SloResult]:
        return [j for j in self.judgements if not j.passed]

    @property
    def calls_per_second(self) -> float:
        window = self.window
        calls = sum(a.count for a in window.actions.values() if a.direction is Direction.CP_TO_CSMS)
        return calls / window.elapsed if window.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The step in the verdict JSON (the shape of :func:`emulator.report.run_step`,
        failures by code included)."""
        step: dict[str, Any] = dict(
            run_step(
                self.window,
                chargers=self.chargers,
                connected=self.connected,
                slo=[j.to_json() for j in self.judgements],
                generator={**self.generator, "limited": self.generator_limited},
                passed=self.passed,
            )
        )
        if self.note:
            step["note"] = self.note
        return step


@dataclass(slots=True, kw_only=True)
class Verdict:
    capacity: int | None
    limited_by: str  # "slo" | "generator" | "max"
    deciding: Step | None  # the smallest failing step (None when --max passed)
    steps: list[Step] = field(default_factory=list)
    # What the largest size was, in the "max" sentence.
    ceiling: str = SEARCH_CEILING
    # Seconds the search spent per phase (CapacitySearch.spent): where its time went.
    spent: dict[str, float] = field(default_factory=dict)

    @property
    def violations(self) -> list[SloResult]:
        return [] if self.deciding is None else self.deciding.violations

    def sentence(self) -> str:
        """The verdict for people, one sentence."""
        failing = self.deciding
        if self.limited_by == "max":
            return (
                f"Your CSMS held {self.capacity:,} chargers, {self.ceiling}: its capacity "
                "is at least that."
            )
        broken = violations_text(self.violations) or "its SLOs failed"
        at = f"at {failing.chargers:,} chargers" if failing is not None else ""
        if self.limited_by == "generator":
            held = (
                f"The fleet held {self.capacity:,} chargers" if self.capacity else "No step passed"
            )
            return (
                f"{held}; {at} the load generator itself was over its limits "
                f"({_generator_text(failing)}), so this is a lower bound for the CSMS: "
                "add workers or processes and search again."
            )
        if self.capacity is None:
            return f"Your CSMS failed its SLOs already {at}: {broken}."
        return f"Your CSMS held {self.capacity:,} chargers; {at}: {broken}."

    def to_json(self, *, scenario: str, seed: int, start_time: str) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "limited_by": self.limited_by,
            "verdict": self.sentence(),
            "violations": [j.to_json() for j in self.violations],
            "steps": [s.to_json() for s in self.steps],
            "seconds": {phase: round(t, 3) for phase, t in self.spent.items()},
            "scenario": scenario,
            "seed": seed,
            "start_time": start_time,
            "versions": versions(),
            "machine": machine(),
        }


def decide(steps: Sequence[Step], *, ceiling: str = SEARCH_CEILING) -> Verdict | None:
    """The verdict over judged steps, in the order they ran; None when none was judged.

    The smallest failing size decides: the capacity is the largest passing size below it,
    limited by ``"generator"`` when the generator was over its limits during that step,
    else ``"slo"``; ``"max"`` (the capacity: the largest size) when every step passed.  A
    search's passing sizes all lie below its failing ones; a steps shape's sizes are the
    user's, and a pass above the smallest failure is not claimed."""
    if not steps:
        return None
    failing = [s for s in steps if not s.passed]
    if not failing:
        best = max(steps, key=lambda s: s.chargers)
        return Verdict(
            capacity=best.chargers,
            limited_by="max",
            deciding=None,
            steps=list(steps),
            ceiling=ceiling,
        )
    deciding = min(failing, key=lambda s: s.chargers)
    below = [s.chargers for s in steps if s.passed and s.chargers < deciding.chargers]
    return Verdict(
        capacity=max(below) if below else None,
        limited_by="generator" if deciding.generator_limited else "slo",
        deciding=deciding,
        steps=list(steps),
        ceiling=ceiling,
    )


def _violation(result: SloResult) -> str:
    """``StartTransaction:p99<800ms was 1,240 ms``."""
    return f"{result.slo.text} was {result.value_text}"


def violations_text(results: Iterable[SloResult]) -> str:
    """``StartTransaction:p99<800ms was 1,240 ms; errors<1% was 3.20 %`` (empty for none)."""
    return "; ".join(_violation(r) for r in results)


def _generator_text(step: Step | None) -> str:
    if step is None:
        return "no measurement"
    g = step.generator
    text = (
        f"p99 send lateness {g['lateness_p99_ms']:.0f} ms, p99 loop lag "
        f"{g['loop_lag_p99_ms']:.0f} ms"
    )
    if "cpu_share" in g:
        text += f", CPU {g['cpu_share']:.0%} of a core"
    return text


def generator_judgement(
    *,
    lateness_p99: float,
    loop_lag_p99: float,
    lateness_limit: float,
    lag_limit: float,
    cpu_share: float | None = None,
) -> tuple[dict[str, float], bool]:
    """A step's generator figures (seconds in, ms out, as in the verdict JSON) and whether
    the generator was over its limits during the hold: p99 send lateness or p99 loop lag
    over its limit, or (when measured) more than :data:`CPU_LIMIT` of a core.  NaN (nothing
    measured) counts as 0."""
    lateness, lag = _finite(lateness_p99), _finite(loop_lag_p99)
    figures = {
        "lateness_p99_ms": round(lateness * 1000.0, 3),
        "loop_lag_p99_ms": round(lag * 1000.0, 3),
    }
    limited = lateness > lateness_limit or lag > lag_limit
    if cpu_share is not None:
        figures["cpu_share"] = round(cpu_share, 4)
        limited = limited or cpu_share > CPU_LIMIT
    figures["lateness_limit_ms"] = lateness_limit * 1000.0
    figures["loop_lag_limit_ms"] = lag_limit * 1000.0
    if cpu_share is not None:
        figures["cpu_limit"] = CPU_LIMIT
    return figures, limited


def _finite(value: float) -> float:
    return 0.0 if math.isnan(value) else value


# --------------------------------------------------------------------------- the search


PHASES = ("ramping", "shrinking", "settling", "holding", "recovering")


class CapacitySearch:
    """Grows ``fleet`` (created empty, serving) step by step and judges each hold.

    ``fleet``: a :class:`SearchFleet`, or a :class:`~emulator.fleet.runner.Fleet` (seen
    through :class:`LiveFleet`); ``stats``: where the fleet's measurements go; ``clock``:
    the search's time (the running loop's by default)."""

    def __init__(
        self,
        *,
        fleet: Fleet | SearchFleet,
        stats: StatsSource,
        judge: Judge,
        settings: SearchSettings,
        on_step: Callable[[Step], None] | None = None,
        on_phase: Callable[[str], None] | None = None,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        self.fleet: SearchFleet = LiveFleet(fleet) if isinstance(fleet, Fleet) else fleet
        self.stats = stats
        self.judge = judge
        self.settings = settings
        self.on_step = on_step
        self.on_phase = on_phase
        self.clock = clock
        self.size = 0
        self.steps: list[Step] = []
        # Seconds per phase: growing the fleet and waiting for its boots, shrinking it,
        # settling before a hold, holding, recovering after a failing step.
        self.spent: dict[str, float] = dict.fromkeys(PHASES, 0.0)

    async def run(self) -> Verdict:
        settings = self.settings
        size = settings.start
        passing: Step | None = None
        while True:
            step = await self.step(size)
            if not step.passed:
                failing = step
                break
            passing = step
            if settings.max is not None and size >= settings.max:
                return self._verdict()
            size = next_size(size, settings)
        # Bisect between the last passing and the first failing size.
        while passing is not None:
            middle = bisect(passing.chargers, failing.chargers, settings.precision)
            if middle is None:
                break
            if self.steps[-1] is failing:
                await self._recover(passing.chargers)
            step = await self.step(middle)
            if step.passed:
                passing = step
            else:
                failing = step
        return self._verdict()

    def _verdict(self) -> Verdict:
        # Passing sizes only grow and failing ones only shrink: the last of each are the
        # largest passing and the smallest failing size, which decide.
        verdict = decide(self.steps)
        assert verdict is not None  # the search judged a step
        verdict.spent = dict(self.spent)
        return verdict

    def _count(self, phase: str, began: float) -> float:
        """Add the time since ``began`` to ``phase``; returns now."""
        now = self.clock.now()
        self.spent[phase] += now - began
        return now

    async def step(self, size: int) -> Step:
        """Resize to ``size``, wait for the boots, hold, judge."""
        self._phase(f"{size:,} chargers: resizing from {self.size:,}")
        clock = self.clock
        began = clock.now()
        growing = size > self.size
        past_capacity = await self._resize(size)
        connected = await self._wait_booted(size)
        began = self._count("ramping" if growing else "shrinking", began)
        if not past_capacity:  # else the growth has waited for the backlog already
            await self._settle(size)
            began = self._count("settling", began)
        self._phase(f"{size:,} chargers: {connected:,} booted, holding {self.settings.hold:g} s")
        health = self.fleet.health
        health.reset()
        cpu_before = clock.cpu()
        window, note = await self._hold(size)
        self._count("holding", began)
        cpu_share = (clock.cpu() - cpu_before) / max(window.elapsed, 1e-9)
        figures = health.percentiles()
        step = Step.judged(
            chargers=size,
            connected=connected,
            window=window,
            judgements=self.judge(window),
            lateness_p99=figures["lateness_p99"],
            loop_lag_p99=figures["loop_lag_p99"],
            lateness_limit=health.lateness_limit,
            lag_limit=health.lag_limit,
            cpu_share=cpu_share,
            note=note,
        )
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        return step

    async def _recover(self, size: int) -> None:
        """After a failing step, go back to the last passing size until the backlog the
        overload left (messages queued in the wallboxes, calls queued in the CSMS) has been
        worked off, for at most ten holds, so the next step starts from a steady state."""
        clock = self.clock
        waiting = _backlog(self.fleet.gauges())
        self._phase(
            f"{size:,} chargers: recovering from the failing step "
            f"({waiting:,} messages queued or unanswered)"
        )
        began = clock.now()
        await self._resize(size)
        await self._wait_booted(size)
        done = await self._drain(size, 10.0 * self.settings.hold)
        took = clock.now() - began
        left = _backlog(self.fleet.gauges())
        self._phase(
            f"{size:,} chargers: recovered in {took:.0f} s"
            if done
            else f"{size:,} chargers: {left:,} messages still waiting after {took:.0f} s"
        )
        self._count("recovering", began)

    def _phase(self, text: str) -> None:
        if self.on_phase is not None:
            self.on_phase(text)

    async def _resize(self, size: int) -> bool:
        """Grow or shrink the fleet to ``size``; True when a growth found the CSMS past its
        capacity (:meth:`_grow`)."""
        fleet = self.fleet
        past_capacity = False
        if size > self.size:
            past_capacity = await self._grow(size)
        elif size < self.size:
            leaving = range(size + 1, self.size + 1)
            for number in leaving:
                fleet.remove_wallbox(number)
            # Removed wallboxes stop their transactions and close (bounded by the drain).
            await self._until(lambda: fleet.wallboxes() <= size, fleet.drain_seconds + 10.0)
        self.size = size
        return past_capacity

    async def _grow(self, size: int) -> bool:
        """Add wallboxes up to ``size``: at most at the scenario's ramp rate, and no faster
        than the CSMS answers them.  Wallboxes join only while the fleet's backlog is below
        the step's :func:`drained_level`, as many as fit under it (each one's
        BootNotification is in flight at once), and the search looks again every
        :data:`POLL_SECONDS`.  So the joining wallboxes' boots, cards and first
        transactions are answered as they come instead of queueing behind each other.
        Queued together, their answers would leave the CSMS one service time apart, and
        the sample timers they start would stay that close for the rest of the run: a
        train of periodic messages that a real fleet, whose chargers joined over hours,
        never sends.  When the backlog has made no new low for :func:`stall_seconds` (a
        CSMS past its capacity), the rest join at the ramp rate and True is returned: the
        step is held at once, without a settle (it has waited for the backlog already),
        and fails either way.  Near its capacity a CSMS has little time to spare for
        boots, so after :data:`PACED_HOLDS` holds the rest join at the ramp rate too, and
        the settle waits for their burst as it would have for an unpaced one."""
        fleet, clock = self.fleet, self.clock
        interval = 1.0 / fleet.ramp_per_second
        stall, level = stall_seconds(self.settings.hold), drained_level(size)
        began = next_at = clock.now()
        until = began + PACED_HOLDS * self.settings.hold
        trend = _Trend(began)
        room = 0  # wallboxes that may join before the next look at the backlog
        paced, past_capacity = True, False
        for number in range(self.size + 1, size + 1):
            if (delay := next_at - clock.now()) > 0:
                await clock.sleep(delay)
            while paced and room <= 0:
                gauges, now = fleet.gauges(), clock.now()
                room = level - _backlog(gauges)
                rest = f"the other {size - number + 1:,} join at the ramp rate"
                if room > 0:
                    trend = _Trend(now)
                elif past_capacity := trend.since_low(gauges, now) >= stall:
                    paced = False
                    self._phase(
                        f"{size:,} chargers: past the CSMS's capacity (backlog "
                        f"{_backlog(gauges):,}, no fall for {stall:g} s): {rest}"
                    )
                elif now >= until:
                    paced = False
                    self._phase(
                        f"{size:,} chargers: {number - 1 - self.size:,} joined in "
                        f"{now - began:.0f} s at the CSMS's pace; {rest}"
                    )
                else:
                    await clock.sleep(POLL_SECONDS)
            room -= 1
            fleet.add_wallbox(number)
            next_at = clock.now() + interval
        return past_capacity

    async def _settle(self, size: int) -> None:
        """Let the boots' burst (StatusNotifications, the warm-started transactions) drain
        before the hold (:func:`drained`, and every warm-started transaction begun: their
        cards come within one sample interval), for at most twice the hold, and only while the
        drain makes progress: a backlog that has reached no new low for
        :func:`stall_seconds` means a CSMS past its capacity, and the step is held and
        judged at once instead of letting its backlog grow for the rest of the settle (the
        recovery after it would have to work that backlog off)."""
        fleet, clock = self.fleet, self.clock
        deadline = clock.now() + 2.0 * self.settings.hold
        stall = stall_seconds(self.settings.hold)
        trend = _Trend(clock.now())
        while True:
            gauges = fleet.gauges()
            now = clock.now()
            if drained(gauges, size):
                if fleet.starting() == 0:
                    return
                trend.restart(now)  # drained: only the warm starts' cards are awaited
            elif trend.since_low(gauges, now) >= stall:
                self._phase(
                    f"{size:,} chargers: the backlog has not fallen for {stall:g} s "
                    f"({_backlog(gauges):,} messages): past the CSMS's capacity"
                )
                return
            if now >= deadline:
                return
            await clock.sleep(POLL_SECONDS)

    async def _hold(self, size: int) -> tuple[RunStats, str]:
        """Measure for the hold; the window and a note when it ended early.

        A hold ends early when the fleet's backlog has reached no new low for
        :func:`stall_seconds` (a CSMS past its capacity: its queue only grows, and every
        later round trip waits longer) and the SLOs judged over the window so far have
        already failed: the rest of the hold could only fail them further, and would
        leave a larger backlog for the recovery to work off."""
        clock, hold = self.clock, self.settings.hold
        stall = stall_seconds(hold)
        before = self.stats.snapshot()
        start = clock.now()
        end = start + hold
        trend = _Trend(start)
        while (now := clock.now()) < end:
            await clock.sleep(min(HOLD_LOOK_SECONDS, end - now))
            now = clock.now()
            gauges = self.fleet.gauges()
            if drained(gauges, size):
                trend.restart(now)  # nothing waits
                continue
            if now >= end or trend.since_low(gauges, now) < stall:
                continue
            window = self.stats.snapshot().since(before)
            if not all(j.passed for j in self.judge(window)):
                note = (
                    f"hold ended after {now - start:.0f} of {hold:g} s: past the CSMS's "
                    f"capacity (no fall of the backlog for {stall:g} s) and failing"
                )
                self._phase(f"{size:,} chargers: {note}")
                return window, note
        return self.stats.snapshot().since(before), ""

    async def _drain(self, size: int, within: float) -> bool:
        """Wait until the backlog has drained (:func:`drained`), for at most ``within``
        seconds (a CSMS past its capacity never drains)."""
        return await self._until(lambda: drained(self.fleet.gauges(), size), within)

    async def _wait_booted(self, size: int) -> int:
        """Wait until every wallbox is connected and accepted (or the connect timeout)."""
        fleet = self.fleet
        await self._until(lambda: fleet.booted() >= size, fleet.connect_timeout)
        return fleet.booted()

    async def _until(self, predicate: Callable[[], bool], within: float) -> bool:
        return await _until(predicate, within=within, clock=self.clock)


async def _until(
    predicate: Callable[[], bool],
    *,
    within: float,
    clock: Clock = LOOP_CLOCK,
    every: float = POLL_SECONDS,
) -> bool:
    """Poll ``predicate`` until it holds (True) or ``within`` seconds passed (False)."""
    deadline = clock.now() + within
    while not predicate():
        if clock.now() >= deadline:
            return False
        await clock.sleep(every)
    return True


async def run_search(search: CapacitySearch) -> Verdict:
    """Serve the fleet while ``search`` runs; stop it cleanly afterwards."""
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(search.fleet.serve(), name="capacity-fleet")
        try:
            return await search.run()
        finally:
            search.fleet.stop()
            await asyncio.wait((serving,))
