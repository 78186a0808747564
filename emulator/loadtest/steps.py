"""SLO verdicts under Locust from the fleet's own statistics: windows, holds, steps.

No Locust here (the plugin glues this to Locust's events and greenlets), so all of it is
tested in a process that must never be monkey-patched.

**Windows.**  Every fleet process (a local run, a worker) records what its fleet measured
into a :class:`~emulator.metrics.stats.RunStats` (a
:class:`~emulator.loadtest.options.RequestRecorder` on Locust's request events) and cuts
it into windows: :meth:`WindowCutter.cut` returns what was measured since the previous
cut, in the wire form of :meth:`RunStats.to_wire` (only non-empty histogram buckets), with
the generator's send-lateness and loop-lag histograms over the same time.  A worker adds
one window to each of its reports to the master (every 3 s, Locust's report interval); a
local run cuts one every second.

**Spans.**  The judging process (the master, or the local run) feeds the windows into a
:class:`WindowCollector`, which places each on its own clock: a window received at *r* that
lasted *d* covered [*r* − *d*, *r*] (no clock of another host is read; the transport's
delay, milliseconds, is ignored).  A :class:`Span` merges the windows of an interval:

* a *hold* (a step's, or the window after spawning of a plain SLO verdict) takes the
  windows that began when it opened or later and arrived before it closed: nothing from
  before the hold, at the price of up to one report interval at each end, per worker;
* a *row* of the time series takes every window that arrived while it was open, so the
  rows add up to the whole run.

**Steps.**  :class:`StepJudge` follows the ``steps`` shape's schedule: step *i* holds
``sizes[i]`` wallboxes from ``i × hold`` to ``(i + 1) × hold`` seconds into the test.  Its
hold opens when the fleet has the step's size, every wallbox is booted and the boots' burst
has drained (as ``ocpp-fleet capacity`` settles, :func:`emulator.capacity.drained`: at most
one wallbox in 20 with a message queued or unanswered), and at the latest halfway through the
step; it closes at the end of the step.  Each hold is judged by the capacity search's rules
(:meth:`emulator.capacity.Step.judged`) and the verdict (:func:`steps_verdict`) is decided
as the search's (:func:`emulator.capacity.decide`), without bisection: the sizes are the
user's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.capacity import Step, Verdict, decide, drained, violations_text
from emulator.fleet.health import LAG_LIMIT, LATENESS_LIMIT
from emulator.metrics.slo import Slo, evaluate
from emulator.metrics.stats import Histogram, RunStats
from emulator.metrics.timeseries import DEFAULT_INTERVAL, Row, row_from_window

if TYPE_CHECKING:
    from emulator.loadtest.bridge import GeneratorCopies

__all__ = [
    "CEILING",
    "FleetState",
    "RowRecorder",
    "Span",
    "StepJudge",
    "Window",
    "WindowCollector",
    "WindowCutter",
    "decode_window",
    "step_line",
    "steps_verdict",
    "verdict_lines",
]

WIRE_VERSION = 1
# A window that began this much before a hold opened still counts as inside it (the
# cutting and the opening run in different greenlets, milliseconds apart).
_SLACK = 0.25
# A step the test stopped less than this before its end counts as held to the end (the
# shape and the stop run on their own one-second ticks).
_END_TOLERANCE = 1.0
CEILING = "the largest size of the steps shape"
_CUT_SHORT = "the largest step judged (not every step was)"


# --------------------------------------------------------------------------- windows


class WindowCutter:
    """Cuts a fleet process's measurements into windows (see the module's docstring).

    ``stats`` is the process's recording RunStats; ``generator`` returns the bridge's
    latest copies of the generator-health histograms (None before the first)."""

    def __init__(
        self, stats: RunStats, generator: Callable[[], GeneratorCopies | None] = lambda: None
    ) -> None:
        self.stats = stats
        self._generator = generator
        self._last = stats.snapshot()
        self._generation: int | None = None
        self._lateness = Histogram()
        self._loop_lag = Histogram()

    def cut(self) -> dict[str, Any]:
        """What was measured since the previous cut (or since this cutter was made):
        ``{"v": 1, "stats": RunStats wire, "late": Histogram wire, "lag": Histogram wire}``
        (lateness and loop lag in seconds, left out when the fleet publishes none)."""
        now = self.stats.snapshot()
        window = now.since(self._last)
        self._last = now
        data: dict[str, Any] = {"v": WIRE_VERSION, "stats": window.to_wire()}
        copies = self._generator()
        if copies is not None:
            generation, lateness, loop_lag = copies
            if generation != self._generation:  # a new test's fleet: its histograms start at 0
                self._generation = generation
                self._lateness, self._loop_lag = Histogram(), Histogram()
            data["late"] = lateness.since(self._lateness).to_wire()
            data["lag"] = loop_lag.since(self._loop_lag).to_wire()
            self._lateness, self._loop_lag = lateness, loop_lag
        return data


@dataclass(frozen=True, slots=True)
class Window:
    """One fleet process's window, placed on the judging process's clock."""

    worker: int
    began: float
    ended: float
    stats: RunStats
    lateness: Histogram
    loop_lag: Histogram

    @property
    def seconds(self) -> float:
        return self.ended - self.began


def decode_window(worker: int, data: Mapping[str, Any], *, received: float) -> Window:
    """A :meth:`WindowCutter.cut` as received at ``received``; ValueError if it is not one."""
    if not isinstance(data, Mapping) or data.get("v") != WIRE_VERSION:
        raise ValueError(f"not a window of wire version {WIRE_VERSION}")
    try:
        stats = RunStats.from_wire(data["stats"], clock=lambda: received)
        lateness = Histogram.from_wire(data.get("late") or {})
        loop_lag = Histogram.from_wire(data.get("lag") or {})
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a window: {exc!r}") from None
    return Window(
        worker=worker,
        began=stats.started,
        ended=received,
        stats=stats,
        lateness=lateness,
        loop_lag=loop_lag,
    )


class Span:
    """The windows of one interval, merged (see the module's docstring).  ``whole``: every
    window that arrives while the span is open (a time-series row); otherwise only those
    that began at or after :attr:`opened` (a hold)."""

    def __init__(self, opened: float, *, whole: bool = False) -> None:
        self.opened = opened
        self.whole = whole
        self.stats = RunStats()
        self.seconds: dict[int, float] = {}  # per worker: the time its windows cover
        self.lateness: dict[int, Histogram] = {}
        self.loop_lag: dict[int, Histogram] = {}

    def accepts(self, window: Window) -> bool:
        return self.whole or window.began >= self.opened - _SLACK

    def add(self, window: Window) -> None:
        self.stats.merge(window.stats)
        worker = window.worker
        self.seconds[worker] = self.seconds.get(worker, 0.0) + window.seconds
        self.lateness.setdefault(worker, Histogram()).merge(window.lateness)
        self.loop_lag.setdefault(worker, Histogram()).merge(window.loop_lag)

    @property
    def workers(self) -> int:
        return len(self.seconds)

    def measured(self, closed: float) -> RunStats:
        """The merged measurements, ending at ``closed``, lasting the time they cover (the
        mean over the workers that sent windows; the span's own time when none did)."""
        covered = self.seconds.values()
        duration = sum(covered) / len(covered) if covered else max(0.0, closed - self.opened)
        self.stats.stopped = closed
        self.stats.started = closed - duration
        return self.stats

    def interval(self, closed: float) -> RunStats:
        """The merged measurements over [:attr:`opened`, ``closed``] (a row's window)."""
        self.stats.started = self.opened
        self.stats.stopped = closed
        return self.stats

    def worst_generator(self) -> tuple[float, float]:
        """The worst worker's p99 send lateness and p99 loop lag over the span (seconds;
        NaN when no worker measured any)."""
        lateness = [h.percentile(99) for h in self.lateness.values() if h.count]
        lag = [h.percentile(99) for h in self.loop_lag.values() if h.count]
        return (max(lateness) if lateness else math.nan, max(lag) if lag else math.nan)


class WindowCollector:
    """Receives the windows of every fleet process and hands them to the open spans."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._spans: list[Span] = []
        self.windows = 0
        self.workers: set[int] = set()

    def open(self, *, whole: bool = False) -> Span:
        span = Span(self.clock(), whole=whole)
        self._spans.append(span)
        return span

    def close(self, span: Span) -> None:
        if span in self._spans:
            self._spans.remove(span)

    def receive(
        self, worker: int, data: Mapping[str, Any], *, received: float | None = None
    ) -> Window:
        """One window from ``worker``, received now (or at ``received``); ValueError when
        ``data`` is not a window."""
        window = decode_window(
            worker, data, received=self.clock() if received is None else received
        )
        self.windows += 1
        self.workers.add(worker)
        for span in self._spans:
            if span.accepts(window):
                span.add(window)
        return window


# --------------------------------------------------------------------------- the fleet


@dataclass(frozen=True, slots=True)
class FleetState:
    """The fleet as the judging process last heard of it (summed over workers); also what
    a time-series row reads (:class:`emulator.metrics.timeseries.FleetGauges`)."""

    chargers: int = 0
    booted: int = 0
    connected: int = 0
    charging: int = 0
    queue_depth: int = 0
    in_flight: int = 0

    @classmethod
    def of(cls, snapshots: Sequence[Mapping[str, Any]]) -> FleetState:
        """Summed over bridge snapshots (one per worker)."""

        def total(name: str) -> int:
            return sum(int(s.get(name, 0) or 0) for s in snapshots)

        return cls(
            chargers=total("chargers"),
            booted=total("booted"),
            connected=total("connected"),
            charging=total("charging"),
            queue_depth=total("queue_depth"),
            in_flight=total("in_flight"),
        )

    def settled(self, size: int) -> bool:
        """The fleet has ``size`` wallboxes, all booted, and at most one in 20 has a
        message queued or unanswered (``ocpp-fleet capacity``'s settle)."""
        return self.chargers == size and self.booted >= size and drained(self, size)


# --------------------------------------------------------------------------- steps


@dataclass(slots=True)
class _Tracked:
    index: int
    size: int
    begins: float  # seconds into the test
    ends: float
    span: Span | None = None
    booted: int = 0
    note: str = ""


class StepJudge:
    """Judges each step of a ``steps`` shape over its hold (see the module's docstring).

    Call :meth:`poll` often (every half second) with the seconds since the test started
    and the fleet's state, and :meth:`finish` when the test stops.  ``on_step`` gets each
    judged :class:`~emulator.capacity.Step` and its number (1, 2, ...), ``on_phase`` a line
    for the log when a hold opens or a step cannot be judged."""

    def __init__(
        self,
        *,
        sizes: Sequence[int],
        hold: float,
        slos: Sequence[Slo],
        collector: WindowCollector,
        lateness_limit: float = LATENESS_LIMIT,
        lag_limit: float = LAG_LIMIT,
        on_step: Callable[[Step, int], None] | None = None,
        on_phase: Callable[[str], None] | None = None,
    ) -> None:
        self.sizes = tuple(sizes)
        self.hold = hold
        self.slos = list(slos)
        self.collector = collector
        self.lateness_limit = lateness_limit
        self.lag_limit = lag_limit
        self.on_step = on_step
        self.on_phase = on_phase
        self.steps: list[Step] = []
        self.unjudged: list[str] = []
        self._current: _Tracked | None = None
        self._last_index = -1
        self.finished = False

    def _name(self, tracked: _Tracked) -> str:
        return f"step {tracked.index + 1}/{len(self.sizes)} ({tracked.size:,} wallboxes)"

    def poll(self, run_time: float, fleet: FleetState) -> None:
        if self.finished:
            return
        current = self._current
        if current is not None and run_time >= current.ends:
            self._close(current)
            self._current = current = None
        index = int(run_time // self.hold) if self.hold > 0 else len(self.sizes)
        if index >= len(self.sizes):
            return
        if current is None and index > self._last_index:
            for skipped in range(self._last_index + 1, index):
                self._not_judged(skipped, "the test was past it before it could be followed")
            current = self._current = _Tracked(
                index=index,
                size=self.sizes[index],
                begins=index * self.hold,
                ends=(index + 1) * self.hold,
            )
            self._last_index = index
        if current is None or current.span is not None:
            return
        ready = fleet.settled(current.size)
        if ready or run_time >= current.begins + self.hold / 2:
            current.span = self.collector.open()
            current.booted = fleet.booted
            left = max(0.0, current.ends - run_time)
            if not ready:
                if fleet.booted < current.size or fleet.chargers != current.size:
                    current.note = (
                        f"{fleet.booted:,} of {current.size:,} wallboxes booted by the middle "
                        "of the step: judged over its second half"
                    )
                else:
                    current.note = (
                        "the boots' burst had not drained by the middle of the step: judged "
                        "over its second half"
                    )
            self._phase(
                f"{self._name(current)}: {fleet.booted:,} booted, holding {left:.0f} s"
                + (f" ({current.note})" if current.note else "")
            )

    def finish(self, run_time: float, fleet: FleetState) -> None:
        """The test stops: close the step that ended (a step whose hold the stop cut short
        by more than a second is not judged)."""
        if self.finished:
            return
        current = self._current
        if current is not None and run_time >= current.ends - _END_TOLERANCE:
            run_time = max(run_time, current.ends)
        self.poll(run_time, fleet)
        current = self._current
        if current is not None:
            if current.span is not None:
                self.collector.close(current.span)
            self._not_judged(
                current.index,
                f"the test stopped {current.ends - run_time:.0f} s before the end of its hold",
            )
            self._current = None
        self.finished = True

    def _not_judged(self, index: int, why: str) -> None:
        text = f"step {index + 1}/{len(self.sizes)} ({self.sizes[index]:,} wallboxes): not judged, {why}"
        self.unjudged.append(text)
        self._phase(text)

    def _close(self, tracked: _Tracked) -> None:
        span = tracked.span
        if span is None:
            self._not_judged(tracked.index, "its hold never opened")
            return
        self.collector.close(span)
        window = span.measured(self.collector.clock())
        lateness, lag = span.worst_generator()
        step = Step.judged(
            chargers=tracked.size,
            connected=tracked.booted,
            window=window,
            judgements=evaluate(self.slos, window).results,
            lateness_p99=lateness,
            loop_lag_p99=lag,
            lateness_limit=self.lateness_limit,
            lag_limit=self.lag_limit,
            note=tracked.note,
        )
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step, tracked.index + 1)

    def _phase(self, text: str) -> None:
        if self.on_phase is not None:
            self.on_phase(text)

    def verdict(self) -> Verdict | None:
        return steps_verdict(self.steps, ceiling=CEILING if not self.unjudged else _CUT_SHORT)


def steps_verdict(steps: Sequence[Step], *, ceiling: str = CEILING) -> Verdict | None:
    """The verdict over judged steps, in the order they ran, as a search's
    (:func:`emulator.capacity.decide`); None when none was judged."""
    return decide(steps, ceiling=ceiling)


# --------------------------------------------------------------------------- rows


class RowRecorder:
    """The time series of the judging process: one :class:`Row` per ``interval`` from the
    windows that arrived meanwhile, with the fleet's state and the generator's health as
    the judging process last heard of them."""

    def __init__(
        self,
        collector: WindowCollector,
        *,
        interval: float = DEFAULT_INTERVAL,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.collector = collector
        self.interval = interval
        self.wall_clock = wall_clock
        self.origin = collector.clock()
        self.rows: list[Row] = []
        self._span: Span | None = collector.open(whole=True)

    def due(self) -> bool:
        span = self._span
        return span is not None and self.collector.clock() - span.opened >= self.interval

    def sample(
        self,
        fleet: FleetState | None = None,
        generator: Mapping[str, object] | None = None,
        *,
        final: bool = False,
    ) -> Row | None:
        """Close the current row now (and open the next, unless ``final``)."""
        span = self._span
        if span is None:
            return None
        now = self.collector.clock()
        self.collector.close(span)
        self._span = None if final else self.collector.open(whole=True)
        duration = now - span.opened
        if final and not span.seconds:  # no window came since the last row: nothing to add
            return None
        row = row_from_window(
            span.interval(now),
            origin=self.origin,
            wall_time=self.wall_clock(),
            partial=final and duration < self.interval,
            gauges=fleet,
            generator=generator,
        )
        self.rows.append(row)
        return row


# --------------------------------------------------------------------------- text


def step_line(step: Step, number: int, of: int) -> str:
    """``step 2/3, 120 wallboxes (120 booted): FAIL over 9.0 s at 29.8 calls/s:
    *:p95<300ms was 2,340 ms``."""
    mark = "PASS" if step.passed else "FAIL"
    worst = violations_text(step.violations)
    generator = " (generator over its limits)" if step.generator_limited else ""
    return (
        f"step {number}/{of}, {step.chargers:,} wallboxes ({step.connected:,} booted): {mark} "
        f"over {step.window.elapsed:.1f} s at {step.calls_per_second:,.1f} calls/s"
        f"{generator}{': ' + worst if worst else ''}"
    )


def verdict_lines(verdict: Verdict | None, *, unjudged: Sequence[str] = ()) -> list[str]:
    """The end-of-run table of the steps and the verdict sentence."""
    lines = ["Capacity under Locust (the steps of --fleet-shape, SLOs judged over each hold)"]
    header = ("wallboxes", "booted", "hold", "calls/s", "verdict", "SLOs not met")
    rows = [
        (
            f"{s.chargers:,}",
            f"{s.connected:,}",
            f"{s.window.elapsed:.1f} s",
            f"{s.calls_per_second:,.1f}",
            "PASS" if s.passed else ("FAIL*" if s.generator_limited else "FAIL"),
            violations_text(s.violations),
        )
        for s in (verdict.steps if verdict is not None else [])
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        cells = [
            f"{c:>{widths[i]}}" if i < 4 else f"{c:<{widths[i]}}" for i, c in enumerate(row[:5])
        ]
        lines.append(("  ".join(cells) + "  " + row[5]).rstrip())
    if any(s.generator_limited for s in (verdict.steps if verdict else [])):
        lines.append("(* the load generator was over its limits during that hold)")
    lines += list(unjudged)
    if verdict is None:
        lines.append("Capacity verdict: none, no step was judged")
    else:
        lines.append(f"Capacity verdict: {verdict.sentence()}")
    return lines
