"""Capacity search: how many chargers a CSMS holds within its SLOs (``ocpp-fleet capacity``).

One fleet grows in steps.  Wallboxes that are connected stay connected; new ones join at
the scenario's ramp rate, and with ``warm_start`` they join busy, in the stationary state
of the session clock.  Each step is judged over its *hold* only: once the step's
wallboxes are connected and booted, the SLOs are evaluated on what happened during the
next ``hold`` seconds (the ramp and the boots are excluded).  The search stops at the
first failing step and then bisects between the last passing and the first failing
size until they are within ``precision`` (10 %) of each other.

The verdict names the largest passing size and what limited it:

* ``"slo"``: the smallest failing size broke these SLOs (with their values);
* ``"generator"``: at that size the generator itself was over its limits (loop lag,
  send lateness, CPU), so the figure is a lower bound for the CSMS: add workers or
  processes before blaming it;
* ``"max"``: ``--max`` was reached and passed.

Between the boots and the hold the search waits for the boots' burst to drain (or at
most two holds), so a step is judged on the fleet's steady traffic at that size, not on
the arrival of its newest wallboxes.  After a failing step the search first goes back to
the last passing size until the overload's backlog is worked off (at most ten holds):
each step of the bisection starts from a steady state, not from the queue the failing
step left behind.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator.fleet.model_mix import ModelSequence
from emulator.fleet.runner import Fleet
from emulator.metrics.slo import (
    SloResult,
)
from emulator.metrics.stats import Direction, RunStats
from emulator.report import run_step
from emulator.report.data import machine, versions

CPU_LIMIT = 0.9  # share of one core: the event loop is one thread


Judge = Callable[[RunStats], Sequence[SloResult]]
"""Judges a step's hold: every SLO over the window (emulator.metrics.slo.evaluate)."""


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
    ceiling: str = "the most this search was allowed to try (--max)"

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
        broken = "; ".join(_violation(r) for r in self.violations) or "its SLOs failed"
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
            "scenario": scenario,
            "seed": seed,
            "start_time": start_time,
            "versions": versions(),
            "machine": machine(),
        }


def _violation(result: SloResult) -> str:
    """``StartTransaction:p99<800ms was 1,240 ms``."""
    return f"{result.slo.text} was {result.value_text}"


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


class CapacitySearch:
    """Grows ``fleet`` (created empty, serving) step by step and judges each hold."""

    def __init__(
        self,
        *,
        fleet: Fleet,
        stats: RunStats,
        judge: Judge,
        settings: SearchSettings,
        on_step: Callable[[Step], None] | None = None,
        on_phase: Callable[[str], None] | None = None,
    ) -> None:
        self.fleet = fleet
        self.stats = stats
        self.judge = judge
        self.settings = settings
        self.on_step = on_step
        self.on_phase = on_phase
        self.models = ModelSequence(fleet.scenario)
        self.size = 0
        self.steps: list[Step] = []

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
                return Verdict(capacity=size, limited_by="max", deciding=None, steps=self.steps)
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
        limited_by = "generator" if failing.generator_limited else "slo"
        return Verdict(
            capacity=None if passing is None else passing.chargers,
            limited_by=limited_by,
            deciding=failing,
            steps=self.steps,
        )

    async def step(self, size: int) -> Step:
        """Resize to ``size``, wait for the boots, hold, judge."""
        self._phase(f"{size:,} chargers: resizing from {self.size:,}")
        await self._resize(size)
        connected = await self._wait_booted(size)
        await self._settle(size)
        self._phase(f"{size:,} chargers: {connected:,} booted, holding {self.settings.hold:g} s")
        health = self.fleet.health
        health.reset()
        cpu_before = time.process_time()
        before = self.stats.snapshot()
        await asyncio.sleep(self.settings.hold)
        window = self.stats.snapshot().since(before)
        cpu_share = (time.process_time() - cpu_before) / max(window.elapsed, 1e-9)
        figures = health.percentiles()
        generator, limited = generator_judgement(
            lateness_p99=figures["lateness_p99"],
            loop_lag_p99=figures["loop_lag_p99"],
            lateness_limit=health.lateness_limit,
            lag_limit=health.lag_limit,
            cpu_share=cpu_share,
        )
        step = Step(
            chargers=size,
            connected=connected,
            window=window,
            judgements=self.judge(window),
            generator=generator,
            generator_limited=limited,
        )
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        return step

    async def _recover(self, size: int) -> None:
        """After a failing step, go back to the last passing size until the backlog the
        overload left (messages queued in the wallboxes, calls queued in the CSMS) has been
        worked off, for at most ten holds, so the next step starts from a steady state."""
        self._phase(f"{size:,} chargers: recovering from the failing step")
        await self._resize(size)
        await self._wait_booted(size)
        await _until(lambda: self._drained(size), within=10.0 * self.settings.hold)

    def _drained(self, size: int) -> bool:
        """At most one wallbox in 20 has a message queued or waiting for its answer."""
        gauges = self.fleet.gauges()
        return gauges.queue_depth + gauges.in_flight <= max(1, size // 20)

    def _phase(self, text: str) -> None:
        if self.on_phase is not None:
            self.on_phase(text)

    async def _resize(self, size: int) -> None:
        fleet = self.fleet
        if size > self.size:
            loop = asyncio.get_running_loop()
            ramp = fleet.scenario.fleet.ramp_per_second
            began = loop.time()
            for i, number in enumerate(range(self.size + 1, size + 1)):
                delay = began + i / ramp - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                fleet.add_wallbox(number, self.models.model_at(number - 1))
        elif size < self.size:
            leaving = range(size + 1, self.size + 1)
            for number in leaving:
                fleet.remove_wallbox(number)
            # Removed wallboxes stop their transactions and close (bounded by the drain).
            await _until(
                lambda: len(fleet.drivers) <= size,
                within=fleet.scenario.fleet.shutdown_drain_seconds + 10.0,
            )
        self.size = size

    async def _settle(self, size: int) -> None:
        """Let the boots' burst (StatusNotifications, the warm-started transactions) drain
        before the hold: until at most one wallbox in 20 has a message queued or waiting
        for its answer, or for at most twice the hold (a CSMS past its capacity never
        drains)."""
        await _until(lambda: self._drained(size), within=2.0 * self.settings.hold)

    async def _wait_booted(self, size: int) -> int:
        """Wait until every wallbox is connected and accepted (or the connect timeout)."""
        fleet = self.fleet

        def booted() -> int:
            return sum(1 for d in fleet.drivers if d.connected and d.wallbox.accepted)

        await _until(lambda: booted() >= size, within=fleet.scenario.fleet.connect_timeout)
        return booted()


def _finite(value: float) -> float:
    return 0.0 if math.isnan(value) else value


async def _until(predicate: Callable[[], bool], *, within: float, every: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds (True) or ``within`` seconds passed (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(every)
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
