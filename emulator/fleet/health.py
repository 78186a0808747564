"""Is the generator keeping its own schedule?  Event-loop lag and send lateness.

A load generator that cannot keep up makes the CSMS look slow: a MeterValues due at
12:00:00.000 that goes out at 12:00:00.400 was late before the CSMS ever saw it, and
every round trip measured meanwhile includes the generator's own queueing.  The fleet
engine therefore measures itself, in the same loop that drives the wallboxes:

* **loop lag**: :class:`~emulator.metrics.looplag.LoopLagMonitor` sleeps
  ``sample_interval`` seconds and records how much later than asked it woke up (the
  time other callbacks held the loop);
* **send lateness**: every wallbox deadline (heartbeat, meter sample, ping, session
  step, retry) that fires records how late it ran compared with when it was due
  (:meth:`GeneratorHealth.late`, called by the wallbox drivers).

Both go into fixed windows (``window`` seconds).  A window is *over the limit* when its
p99 lateness exceeds ``lateness_limit`` or its p99 loop lag exceeds ``lag_limit``; the
generator is *overloaded* once ``sustain`` consecutive windows are over the limit (a
single GC pause or a connection burst is not a verdict), and recovers after one window
within the limits.  Standalone runs and the Locust bridge both read :meth:`snapshot`
and print a warning when :attr:`HealthSnapshot.overloaded` turns true.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from emulator.metrics.looplag import LoopLagMonitor
from emulator.metrics.stats import Histogram

__all__ = ["GeneratorHealth", "HealthSnapshot"]

LATENESS_LIMIT = 0.25  # s, p99 of scheduled sends
LAG_LIMIT = 0.1  # s, p99 of the loop-lag probe


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSnapshot:
    """The generator's state, in seconds; ``*_p99``/``*_max`` of the last closed window."""

    loop_lag_p99: float
    loop_lag_max: float
    lateness_p99: float
    lateness_max: float
    deadlines: int  # deadlines that fired in the last window
    overloaded: bool  # sustained over the limits right now
    overloaded_seconds: float  # total time judged overloaded in this run
    worst_lateness_p99: float  # worst window of the run
    worst_loop_lag_p99: float
    lateness_limit: float
    lag_limit: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for consoles and summaries."""
        return (
            f"p99 send lateness {self.lateness_p99 * 1000:.0f} ms "
            f"(limit {self.lateness_limit * 1000:.0f}), p99 loop lag "
            f"{self.loop_lag_p99 * 1000:.0f} ms (limit {self.lag_limit * 1000:.0f})"
        )


def _p99(histogram: Histogram) -> float:
    return 0.0 if histogram.count == 0 else histogram.percentile(99)


class GeneratorHealth:
    """Measures loop lag and lateness of one event loop's wallboxes; judges overload.

    :meth:`late` is on the hot path (one call per fired deadline): one histogram record.
    :meth:`monitor` is the probe task; it runs until cancelled.  ``on_change`` is
    called with the new snapshot whenever the overloaded verdict flips.
    """

    def __init__(
        self,
        *,
        lateness_limit: float = LATENESS_LIMIT,
        lag_limit: float = LAG_LIMIT,
        window: float = 5.0,
        sustain: int = 3,
        sample_interval: float = 0.1,
        on_change: Callable[[HealthSnapshot], None] | None = None,
    ) -> None:
        if sustain < 1:
            raise ValueError(f"sustain must be >= 1, got {sustain}")
        self.lateness_limit = lateness_limit
        self.lag_limit = lag_limit
        self.window = window
        self.sustain = sustain
        self.sample_interval = sample_interval
        self.on_change = on_change
        # Whole-run histograms (reset() clears them, e.g. after a warm-up).
        self.lateness = Histogram()
        self.loop_lag = Histogram()
        self._window_lateness = Histogram()
        self._window_lag = Histogram()
        self._over_streak = 0
        self.overloaded = False
        self.overloaded_seconds = 0.0
        self._worst_lateness = 0.0
        self._worst_lag = 0.0
        self._last = self._closed(Histogram(), Histogram())

    # ------------------------------------------------------------------ recording

    def late(self, seconds: float) -> None:
        """A deadline that was due ``seconds`` ago fired now (negative: early, ignored)."""
        if seconds >= 0.0:
            self._window_lateness.record(seconds)

    def lagged(self, seconds: float) -> None:
        """The loop-lag probe woke ``seconds`` late."""
        self._window_lag.record(max(0.0, seconds))

    def close_window(self) -> HealthSnapshot:
        """End the current window: judge it, fold it into the run totals, start a new one."""
        lateness, lag = self._window_lateness, self._window_lag
        self._window_lateness, self._window_lag = Histogram(), Histogram()
        self.lateness.merge(lateness)
        self.loop_lag.merge(lag)
        late_p99, lag_p99 = _p99(lateness), _p99(lag)
        self._worst_lateness = max(self._worst_lateness, late_p99)
        self._worst_lag = max(self._worst_lag, lag_p99)
        over = late_p99 > self.lateness_limit or lag_p99 > self.lag_limit
        self._over_streak = self._over_streak + 1 if over else 0
        was = self.overloaded
        if over and self._over_streak >= self.sustain:
            if not was:
                # The streak that proved it counts too.
                self.overloaded_seconds += self.window * (self.sustain - 1)
            self.overloaded = True
        elif not over:
            self.overloaded = False
        if self.overloaded:
            self.overloaded_seconds += self.window
        self._last = self._closed(lateness, lag)
        if self.overloaded != was and self.on_change is not None:
            self.on_change(self._last)
        return self._last

    def _closed(self, lateness: Histogram, lag: Histogram) -> HealthSnapshot:
        return HealthSnapshot(
            loop_lag_p99=_p99(lag),
            loop_lag_max=max(0.0, lag.max) if lag.count else 0.0,
            lateness_p99=_p99(lateness),
            lateness_max=max(0.0, lateness.max) if lateness.count else 0.0,
            deadlines=lateness.count,
            overloaded=self.overloaded,
            overloaded_seconds=self.overloaded_seconds,
            worst_lateness_p99=self._worst_lateness,
            worst_loop_lag_p99=self._worst_lag,
            lateness_limit=self.lateness_limit,
            lag_limit=self.lag_limit,
        )

    def snapshot(self) -> HealthSnapshot:
        """The verdict and figures of the last closed window."""
        return self._last

    def reset(self) -> None:
        """Forget what was measured so far (not the verdict): e.g. after a warm-up."""
        self.lateness = Histogram()
        self.loop_lag = Histogram()
        self._window_lateness = Histogram()
        self._window_lag = Histogram()
        self.overloaded_seconds = 0.0
        self._worst_lateness = self._worst_lag = 0.0

    def report(self) -> dict[str, Any]:
        """The whole run's figures for summaries and ``--json`` (seconds, camelCase)."""
        figures = self.percentiles()
        return {
            "latenessP50": figures["lateness_p50"],
            "latenessP99": figures["lateness_p99"],
            "latenessMax": figures["lateness_max"],
            "loopLagP99": figures["loop_lag_p99"],
            "loopLagMax": figures["loop_lag_max"],
            "worstLatenessP99": self._worst_lateness,
            "worstLoopLagP99": self._worst_lag,
            "overloadedSeconds": self.overloaded_seconds,
            "latenessLimit": self.lateness_limit,
            "lagLimit": self.lag_limit,
        }

    def percentiles(self) -> dict[str, float]:
        """Whole-run figures in seconds (NaN when nothing was measured)."""
        late_p50, late_p99 = (
            self.lateness.percentiles((50, 99)) if self.lateness.count else (math.nan,) * 2
        )
        lag_p50, lag_p99 = (
            self.loop_lag.percentiles((50, 99)) if self.loop_lag.count else (math.nan,) * 2
        )
        return {
            "lateness_p50": late_p50,
            "lateness_p99": late_p99,
            "lateness_max": self.lateness.max if self.lateness.count else math.nan,
            "loop_lag_p50": lag_p50,
            "loop_lag_p99": lag_p99,
            "loop_lag_max": self.loop_lag.max if self.loop_lag.count else math.nan,
        }

    # ------------------------------------------------------------------ the probe

    async def monitor(self) -> None:
        """Probe the loop every ``sample_interval`` (with the shared
        :class:`~emulator.metrics.looplag.LoopLagMonitor`) and close a window every
        ``window`` seconds.  Runs until cancelled; the fleet runs it beside its wallboxes.
        """
        loop = asyncio.get_running_loop()
        window_end = loop.time() + self.window

        def sample(lag: float) -> None:
            nonlocal window_end
            self.lagged(lag)
            now = loop.time()
            if now >= window_end:
                self.close_window()
                window_end += self.window * max(1, math.ceil((now - window_end) / self.window))

        async with LoopLagMonitor(record=sample, interval=self.sample_interval):
            await asyncio.Future()  # until cancelled
