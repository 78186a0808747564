"""When the load generator, not the CSMS, is the limit: spawning and handshakes.

Pure (no Locust, no gevent): tested on its own.

A spawn rate higher than a worker can connect wallboxes at makes its event loop lag by
seconds (every connect, TLS handshake and BootNotification of the burst is work on that
one loop).  The CSMS is not slower meanwhile, but a handshake that needs several turns
of a loop lagging by seconds can run past the scenario's ``fleet.handshake_timeout``:
the wallbox abandons it and retries.  Counted as ``connect failed: timeout`` that would
blame the CSMS, and make the run fail.  So:

* :class:`LagHistory` keeps the fleet's recent loop lag (the generator-health windows of
  :mod:`emulator.fleet.health`, sampled from the fleet snapshots); a handshake that timed
  out while the loop lagged by a tenth of the handshake timeout or more
  (:func:`LagHistory.blames_generator`) is counted as :data:`GENERATOR_TIMEOUT` instead.
  A window is published only after it closed, so a timeout is judged :data:`DEFER`
  seconds after it happened, when the windows of its attempt are known;
* :func:`spawn_rate_warning` names the spawn rate when a worker's generator turns
  overloaded while (or just after) spawning, :func:`timeout_warning` when its first
  handshakes time out that way, and :func:`limit_lines` says at the end of the run what
  the generator limited;
* :func:`generator_failures_only`: when those timeouts are the run's only failures, the
  exit code is not 1 (the CSMS failed nothing).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFER",
    "GENERATOR_TIMEOUT",
    "LAG_SHARE",
    "LagHistory",
    "SpawnOverload",
    "generator_failures_only",
    "limit_lines",
    "spawn_rate_warning",
    "timeout_warning",
]

# The failure texts of a WebSocket "connect" request (emulator.loadtest.bridge).
CONNECT_TIMEOUT = "connect failed: timeout"
GENERATOR_TIMEOUT = "connect failed: timeout while the load generator lagged"
# A loop lag of this share of the handshake timeout, or more, during the attempt: the
# handshake needs several turns of the loop, each delayed that much.
LAG_SHARE = 0.1
# How long after a moment its loop lag is sampled at the latest: the health window that
# closes after it (5 s), the snapshot that publishes it (every 2 s) and the sampling of
# the snapshots (every 1 s).
MARGIN = 8.0
# How long a connect timeout waits to be judged: until its attempt's windows are in.
DEFER = MARGIN + 1.0


class LagHistory:
    """The fleet's loop lag over the last ``keep`` seconds: one sample (the worst loop lag
    of the last closed health window) per :meth:`record`."""

    __slots__ = ("_samples", "keep")

    def __init__(self, *, keep: float = 600.0) -> None:
        self.keep = keep
        self._samples: deque[tuple[float, float]] = deque()

    def record(self, now: float, health: Mapping[str, Any]) -> None:
        """``health``: a fleet snapshot's ``health`` (seconds); ``now``: a monotonic time."""
        lag = max(float(health.get("loop_lag_max", 0.0)), float(health.get("loop_lag_p99", 0.0)))
        self._samples.append((now, lag))
        while self._samples and self._samples[0][0] < now - self.keep:
            self._samples.popleft()

    def worst(self, since: float, until: float = math.inf) -> float:
        """The worst loop lag recorded from ``since`` to ``until`` (0 when none)."""
        return max((lag for at, lag in self._samples if since <= at <= until), default=0.0)

    def blames_generator(self, at: float, handshake_timeout: float) -> bool:
        """Did the loop lag enough to explain a handshake that timed out at ``at``?  (The
        samples of its attempt arrive until ``MARGIN`` seconds after it: ask then.)"""
        worst = self.worst(at - handshake_timeout, at + MARGIN)
        return worst >= handshake_timeout * LAG_SHARE


@dataclass(slots=True)
class SpawnOverload:
    """A test's spawn that overloaded the generator: the rate, the workers, the worst lag."""

    spawn_rate: float
    workers: set[int] = field(default_factory=set)
    worst_lag: float = 0.0

    def add(self, worker: int, health: Mapping[str, Any]) -> None:
        self.workers.add(worker)
        self.worst_lag = max(
            self.worst_lag,
            float(health.get("loop_lag_max", 0.0)),
            float(health.get("loop_lag_p99", 0.0)),
        )


def spawn_rate_warning(
    *, spawn_rate: float, workers: int, where: str, health: Mapping[str, Any]
) -> str:
    """The console warning when spawning at ``spawn_rate`` users/s (over ``workers``
    workers) overloads the generator of ``where`` ("worker 2", "this process")."""
    per = f" ({spawn_rate / workers:g}/s per worker)" if workers > 1 else ""
    lag_p99 = float(health.get("loop_lag_p99", 0.0))
    lag_max = float(health.get("loop_lag_max", 0.0))
    limit = float(health.get("lag_limit", 0.1))
    return (
        f"The spawn rate is the load generator's limit: spawning {spawn_rate:g} users/s{per}, "
        f"the event loop of {where} lags (p99 {lag_p99 * 1000:.0f} ms, max {lag_max:.1f} s; "
        f"limit {limit * 1000:.0f} ms). Wallboxes connect as fast as the generator manages, "
        'not the CSMS; handshakes that time out meanwhile count as "timeout while the load '
        'generator lagged", not against the CSMS. Lower the spawn rate (-r) or add workers.'
    )


def timeout_warning(*, spawn_rate: float | None, where: str, health: Mapping[str, Any]) -> str:
    """The console warning when ``where``'s first handshakes time out while its loop lags."""
    rate = f" at a spawn rate of {spawn_rate:g} users/s" if spawn_rate else ""
    return (
        f"Handshakes time out while the event loop of {where} lags (p99 "
        f"{float(health.get('loop_lag_p99', 0.0)) * 1000:.0f} ms, max "
        f"{float(health.get('loop_lag_max', 0.0)):.1f} s): the load generator is the limit"
        f'{rate}, not the CSMS. They are retried and counted as "timeout while the load '
        'generator lagged". Lower the spawn rate (-r) or add workers.'
    )


def limit_lines(
    spawn: SpawnOverload | None, generator_timeouts: int, spawn_rate: float | None = None
) -> list[str]:
    """The end-of-run lines on what the generator limited (none when it limited nothing);
    ``spawn_rate``: the test's, named with the timeouts."""
    lines = []
    if spawn is not None:
        where = ", ".join(str(w) for w in sorted(spawn.workers))
        lines.append(
            f"  LIMIT: spawning {spawn.spawn_rate:g} users/s overloaded the load generator "
            f"(worker {where}; worst loop lag {spawn.worst_lag:.1f} s): that spawn rate is the "
            "generator's limit, not the CSMS's. Lower it (-r) or add workers."
        )
    if generator_timeouts:
        rate = f", spawning {spawn_rate:g} users/s" if spawn_rate else ""
        lines.append(
            f"  {generator_timeouts} connection attempts timed out while the load generator's "
            f"loop lagged{rate}: retried, and counted as the generator's, not as CSMS connect "
            "failures. Lower the spawn rate (-r) or add workers."
        )
    return lines


def generator_failures_only(errors: Iterable[tuple[str, str, int]]) -> int:
    """``errors``: (request type, failure text, occurrences) of a run's failures.  The
    number of :data:`GENERATOR_TIMEOUT` failures when they are the only ones, else 0."""
    counted = 0
    for request_type, text, occurrences in errors:
        if request_type != "WebSocket" or GENERATOR_TIMEOUT not in text:
            return 0
        counted += occurrences
    return counted
