"""In-process run statistics: bounded-memory latency histograms and per-action counts.

Everything here is called once per OCPP message, so recording is O(1) plain Python (no
numpy scalar boxing, no locks: one asyncio loop owns a :class:`RunStats`).

Windows travel between processes (a Locust worker sends its windows to the master) in a
compact *wire* form, :meth:`RunStats.to_wire` and :meth:`Histogram.to_wire`: plain dicts,
lists, strings and numbers (JSON and msgpack alike), with only the non-empty histogram
buckets.  :meth:`RunStats.from_wire` and :meth:`Histogram.from_wire` read them back.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from emulator.core.outcome import OK, Outcome

__all__ = ["ActionStats", "Direction", "Histogram", "RunStats", "outcome_keys"]


# Bucket layout (module constants: read in the hot path without attribute lookups).
_SUB_BUCKETS = 64
_MIN_EXPONENT = -19  # frexp exponent of [2**-20, 2**-19): the first octave
_OCTAVES = 30  # up to 2**10 s
_BUCKETS = _SUB_BUCKETS * _OCTAVES
_BOTTOM = math.ldexp(0.5, _MIN_EXPONENT)  # 2**-20 s, 0.95 µs
_TOP = math.ldexp(0.5, _MIN_EXPONENT + _OCTAVES)  # 2**10 s
_SUB_SCALE = 2 * _SUB_BUCKETS
_FIRST_INDEX = -_MIN_EXPONENT * _SUB_BUCKETS - _SUB_BUCKETS  # cancels mantissa's 0.5


class Histogram:
    """Log-linear latency histogram in seconds, < 0.8 % relative error, fixed memory.

    Like HdrHistogram: each power-of-two range ("octave") is split into 64 equal
    buckets, and ``math.frexp`` finds both without a logarithm.  The octaves span
    2**-20 s (0.95 µs) to 2**10 s (1024 s); values beyond land in the first or last
    bucket, while count, sum, min and max stay exact.  A percentile is the middle of its
    bucket (clamped to [min, max]), within 1/128 of every value in that bucket.
    Memory: 1920 buckets, ~15 KiB.
    """

    SUB_BUCKETS = _SUB_BUCKETS
    BUCKETS = _BUCKETS

    def __init__(self) -> None:
        self._buckets = [0] * _BUCKETS
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def record(self, seconds: float) -> None:
        if _BOTTOM < seconds < _TOP:
            mantissa, exponent = math.frexp(seconds)  # seconds = mantissa * 2**exponent
            # octave * 64 + sub-bucket, with octave = exponent - _MIN_EXPONENT and
            # sub-bucket = (mantissa - 0.5) * 128, folded into one multiply-add.
            index = exponent * _SUB_BUCKETS + int(mantissa * _SUB_SCALE) + _FIRST_INDEX
        elif seconds >= _TOP:
            index = _BUCKETS - 1
        elif seconds <= _BOTTOM:
            index = 0
            seconds = max(seconds, 0.0)
        else:  # NaN: no meaningful latency
            return
        self._buckets[index] += 1
        self.count += 1
        self.sum += seconds
        if seconds < self.min:
            self.min = seconds
        if seconds > self.max:
            self.max = seconds

    @property
    def mean(self) -> float:
        """Arithmetic mean (exact); NaN when empty."""
        return self.sum / self.count if self.count else math.nan

    def percentile(self, q: float) -> float:
        """The q-th percentile (0 <= q <= 100, like ``numpy.percentile``); NaN when empty."""
        return self.percentiles((q,))[0]

    def percentiles(self, qs: Iterable[float]) -> list[float]:
        """Several percentiles in one pass over the buckets."""
        wanted = list(qs)
        for q in wanted:
            if not 0.0 <= q <= 100.0:
                raise ValueError(f"percentile must be in [0, 100], got {q}")
        if self.count == 0:
            return [math.nan] * len(wanted)
        # Rank of the q-th percentile among the sorted values, 0-based, as numpy's
        # default "linear" method places it; we return the bucket holding that rank.
        order = sorted(range(len(wanted)), key=lambda i: wanted[i])
        results = [math.nan] * len(wanted)
        seen = 0
        index = 0
        for i in order:
            rank = math.floor(wanted[i] / 100.0 * (self.count - 1))
            while seen + self._buckets[index] <= rank:
                seen += self._buckets[index]
                index += 1
            if rank == 0:
                results[i] = self.min
            elif rank == self.count - 1:
                results[i] = self.max
            else:
                results[i] = min(max(self._midpoint(index), self.min), self.max)
        return results

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s values to this histogram."""
        self._buckets = [a + b for a, b in zip(self._buckets, other._buckets, strict=True)]
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def copy(self) -> Histogram:
        clone = Histogram()
        clone.merge(self)
        return clone

    def to_wire(self) -> dict[str, Any]:
        """The histogram in a compact, JSON- and msgpack-able form: ``{}`` when empty, else
        ``{"s": sum, "lo": min, "hi": max, "b": [gap, n, gap, n, ...]}`` with one pair per
        non-empty bucket in index order, ``gap`` being its index minus the previous
        non-empty one's (the first: its index), so the numbers stay small.  The count is
        the sum of the ``n``."""
        if not self.count:
            return {}
        pairs: list[int] = []
        previous = 0
        for index, n in enumerate(self._buckets):
            if n:
                pairs += (index - previous, n)
                previous = index
        return {"s": self.sum, "lo": self.min, "hi": self.max, "b": pairs}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Histogram:
        """The histogram of :meth:`to_wire`; ValueError when ``data`` is not one."""
        try:
            return cls._from_wire(data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a histogram: {exc!r}") from None

    @classmethod
    def _from_wire(cls, data: Mapping[str, Any]) -> Histogram:
        histogram = cls()
        pairs = data.get("b") or ()
        if len(pairs) % 2:
            raise ValueError("histogram buckets: expected (gap, count) pairs")
        index = 0
        count = 0
        buckets = histogram._buckets
        for i in range(0, len(pairs), 2):
            gap, n = int(pairs[i]), int(pairs[i + 1])
            index += gap
            if gap < 0 or n < 0 or index >= _BUCKETS:
                raise ValueError(f"histogram bucket out of range: {index} (count {n})")
            buckets[index] += n
            count += n
        if count:
            histogram.count = count
            histogram.sum = float(data["s"])
            histogram.min = float(data["lo"])
            histogram.max = float(data["hi"])
        return histogram

    def since(self, earlier: Histogram) -> Histogram:
        """The values recorded after ``earlier``, a :meth:`copy` of this histogram taken
        before: a window of a cumulative histogram, without any cost per value.

        Count, sum and buckets are exact; min and max are exact when the window holds a
        new extreme, else the edges of its lowest and highest non-empty buckets."""
        window = Histogram()
        buckets = [a - b for a, b in zip(self._buckets, earlier._buckets, strict=True)]
        window._buckets = buckets
        window.count = self.count - earlier.count
        window.sum = self.sum - earlier.sum
        if window.count:
            low = next(i for i, n in enumerate(buckets) if n)
            high = next(i for i in range(_BUCKETS - 1, -1, -1) if buckets[i])
            window.min = self.min if self.min < earlier.min else self._edge(low)
            window.max = self.max if self.max > earlier.max else self._edge(high + 1)
        return window

    @staticmethod
    def _edge(index: int) -> float:
        """The lower edge of bucket ``index`` (the upper edge of ``index - 1``)."""
        octave, sub = divmod(index, _SUB_BUCKETS)
        return math.ldexp(0.5 + sub / _SUB_SCALE, octave + _MIN_EXPONENT)

    @staticmethod
    def _midpoint(index: int) -> float:
        octave, sub = divmod(index, _SUB_BUCKETS)
        # Bucket [low, low + width) with low = (0.5 + sub/128) * 2**e, width = 2**e / 128.
        return math.ldexp(0.5 + (sub + 0.5) / _SUB_SCALE, octave + _MIN_EXPONENT)

    def __repr__(self) -> str:
        if not self.count:
            return "Histogram(count=0)"
        p50, p99 = self.percentiles((50, 99))
        return f"Histogram(count={self.count}, p50={p50:.6g}, p99={p99:.6g}, max={self.max:.6g})"


class Direction(StrEnum):
    """Who sent the CALL."""

    CP_TO_CSMS = "cp_to_csms"
    CSMS_TO_CP = "csms_to_cp"

    @property
    def arrow(self) -> str:
        return "CP→CSMS" if self is Direction.CP_TO_CSMS else "CSMS→CP"


@dataclass(slots=True, kw_only=True)
class ActionStats:
    """One OCPP action in one direction.

    ``outcomes`` counts every call by :class:`~emulator.core.outcome.Outcome`.
    ``latency`` holds the calls that got an answer (:attr:`Outcome.answered`): for
    CP→CSMS the round trip, for CSMS→CP the charger's handling time.  A timed-out or
    disconnected call's duration is only how long we waited, so it is counted but not
    timed.
    """

    direction: Direction
    action: str
    latency: Histogram = field(default_factory=Histogram)
    outcomes: Counter[Outcome] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return self.outcomes.total()

    @property
    def errors(self) -> int:
        return self.count - self.outcomes[OK]

    def merge(self, other: ActionStats) -> None:
        self.latency.merge(other.latency)
        self.outcomes.update(other.outcomes)

    def copy(self) -> ActionStats:
        return ActionStats(
            direction=self.direction,
            action=self.action,
            latency=self.latency.copy(),
            outcomes=self.outcomes.copy(),
        )

    def since(self, earlier: ActionStats | None) -> ActionStats:
        """What happened after ``earlier`` (a :meth:`copy` taken before, or None)."""
        if earlier is None:
            return self.copy()
        return ActionStats(
            direction=self.direction,
            action=self.action,
            latency=self.latency.since(earlier.latency),
            outcomes=+(self.outcomes - earlier.outcomes),
        )


class RunStats:
    """Everything a run measured, for the summary; implements ``emulator.metrics.Reporter``.

    Connections carry no charger identity (labels stay bounded), so a *reconnect* is
    counted as a connect that follows an unmatched disconnect: exact in total whenever
    a disconnected charger reconnects, whichever charger connects first.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.stopped: float | None = None
        self.actions: dict[tuple[Direction, str], ActionStats] = {}
        self.connect_latency = Histogram()
        self.ping_rtt_latency = Histogram()
        self.send_lateness = Histogram()  # how late scheduled deadlines fired
        self.connects = 0
        self.reconnects = 0
        self.connect_failures: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.messages_sent = 0
        self.messages_received = 0
        self.counters: Counter[str] = Counter()
        self._awaiting_reconnect = 0

    # -- Reporter --------------------------------------------------------------------

    def round_trip(self, action: str, seconds: float, outcome: Outcome) -> None:
        self._record(Direction.CP_TO_CSMS, action, seconds, outcome)

    def csms_call(self, action: str, seconds: float, error: str | None) -> None:
        outcome = OK if error is None else Outcome.callerror(error)
        self._record(Direction.CSMS_TO_CP, action, seconds, outcome)

    def connected(self, seconds: float) -> None:
        self.connects += 1
        self.connect_latency.record(seconds)
        if self._awaiting_reconnect:
            self._awaiting_reconnect -= 1
            self.reconnects += 1

    def connect_failed(self, reason: str) -> None:
        self.connect_failures[reason] += 1

    def disconnected(self, reason: str) -> None:
        self.disconnects[reason] += 1
        self._awaiting_reconnect += 1

    def ping_rtt(self, seconds: float) -> None:
        self.ping_rtt_latency.record(seconds)

    def message_sent(self) -> None:
        self.messages_sent += 1

    def message_received(self) -> None:
        self.messages_received += 1

    def lateness(self, seconds: float) -> None:
        self.send_lateness.record(seconds)

    # -- the rest ----------------------------------------------------------------------

    def increment(self, name: str, n: int = 1) -> None:
        """A free-form counter (sessions started, ...), shown in the summary."""
        self.counters[name] += n

    def stop(self) -> None:
        """Freeze :attr:`elapsed` at now (the end of the run)."""
        if self.stopped is None:
            self.stopped = self._clock()

    @property
    def elapsed(self) -> float:
        """Seconds from construction to :meth:`stop`, or to now while running."""
        end = self.stopped if self.stopped is not None else self._clock()
        return end - self.started

    @property
    def open_connections(self) -> int:
        return self.connects - self.disconnects.total()

    def snapshot(self) -> RunStats:
        """A frozen copy of everything measured so far (its :attr:`elapsed` ends now).

        Snapshots cost nothing per message: windows of a run (a step's hold, the time
        after the ramp, 10-second rows of a time series) are differences of snapshots,
        :meth:`since`."""
        copy = RunStats(clock=self._clock)
        copy.started = self.started
        copy.stopped = self.stopped if self.stopped is not None else self._clock()
        copy.merge(self)
        copy.started = self.started
        return copy

    def since(self, earlier: RunStats) -> RunStats:
        """The measurements between ``earlier`` (a :meth:`snapshot`) and this one (a
        snapshot too, or the live stats: the window then ends now)."""
        window = RunStats(clock=self._clock)
        window.started = earlier.stopped if earlier.stopped is not None else earlier.started
        window.stopped = self.stopped if self.stopped is not None else self._clock()
        for key, mine in self.actions.items():
            delta = mine.since(earlier.actions.get(key))
            if delta.count:
                window.actions[key] = delta
        window.connect_latency = self.connect_latency.since(earlier.connect_latency)
        window.ping_rtt_latency = self.ping_rtt_latency.since(earlier.ping_rtt_latency)
        window.send_lateness = self.send_lateness.since(earlier.send_lateness)
        window.connects = self.connects - earlier.connects
        window.reconnects = self.reconnects - earlier.reconnects
        window.connect_failures = +(self.connect_failures - earlier.connect_failures)
        window.disconnects = +(self.disconnects - earlier.disconnects)
        window.messages_sent = self.messages_sent - earlier.messages_sent
        window.messages_received = self.messages_received - earlier.messages_received
        window.counters = +(self.counters - earlier.counters)
        return window

    def to_wire(self) -> dict[str, Any]:
        """This window (a :meth:`since` or :meth:`snapshot`) in a compact, JSON- and
        msgpack-able form, for another process to merge (see :meth:`from_wire`)::

            {"t": seconds,                                 # elapsed
             "a": [[d, action, {outcome key: n}, histogram]],  # d: 0 CP->CSMS, 1 CSMS->CP
             "cl": histogram, "pl": histogram, "sl": histogram,  # connect, ping, lateness
             "c": connects, "r": reconnects, "cf": {reason: n}, "d": {reason: n},
             "ms": sent, "mr": received, "k": {counter: n}}

        Histograms as :meth:`Histogram.to_wire`; empty histograms, zero counts and empty
        counters are left out; an outcome is its :attr:`Outcome.key`.  Not carried: the start and stop times (the receiver
        places the window on its own clock) and the pending-reconnect bookkeeping."""
        data: dict[str, Any] = {"t": self.elapsed}
        actions = [
            [_DIRECTION_CODES[d], action, outcome_keys(stats.outcomes), stats.latency.to_wire()]
            for (d, action), stats in self.actions.items()
            if stats.count
        ]
        if actions:
            data["a"] = actions
        for key, histogram in (
            ("cl", self.connect_latency),
            ("pl", self.ping_rtt_latency),
            ("sl", self.send_lateness),
        ):
            if histogram.count:
                data[key] = histogram.to_wire()
        for key, number in (
            ("c", self.connects),
            ("r", self.reconnects),
            ("ms", self.messages_sent),
            ("mr", self.messages_received),
        ):
            if number:
                data[key] = number
        for key, counter in (
            ("cf", self.connect_failures),
            ("d", self.disconnects),
            ("k", self.counters),
        ):
            if counter:
                data[key] = dict(counter)
        return data

    @classmethod
    def from_wire(
        cls, data: Mapping[str, Any], *, clock: Callable[[], float] = time.monotonic
    ) -> RunStats:
        """The window of :meth:`to_wire`, placed on this process's ``clock``: it ends now
        and lasted what it lasted where it was measured.  ValueError when ``data`` is not
        one (a KeyError or TypeError from a malformed part is turned into one)."""
        try:
            return cls._from_wire(data, clock)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"not a RunStats window: {exc!r}") from None

    @classmethod
    def _from_wire(cls, data: Mapping[str, Any], clock: Callable[[], float]) -> RunStats:
        stats = cls(clock=clock)
        stats.stopped = clock()
        stats.started = stats.stopped - float(data["t"])
        for code, action, outcomes, latency in data.get("a") or ():
            direction = _DIRECTIONS_BY_CODE[int(code)]
            stats.actions[direction, str(action)] = ActionStats(
                direction=direction,
                action=str(action),
                latency=Histogram.from_wire(latency),
                outcomes=Counter(
                    {Outcome.parse(str(k)): int(n) for k, n in dict(outcomes).items()}
                ),
            )
        stats.connect_latency = Histogram.from_wire(data.get("cl") or {})
        stats.ping_rtt_latency = Histogram.from_wire(data.get("pl") or {})
        stats.send_lateness = Histogram.from_wire(data.get("sl") or {})
        stats.connects = int(data.get("c", 0))
        stats.reconnects = int(data.get("r", 0))
        stats.messages_sent = int(data.get("ms", 0))
        stats.messages_received = int(data.get("mr", 0))
        stats.connect_failures = _counter(data.get("cf"))
        stats.disconnects = _counter(data.get("d"))
        stats.counters = _counter(data.get("k"))
        return stats

    def merge(self, other: RunStats) -> None:
        """Add ``other``'s measurements (e.g. from another worker) to these."""
        for key, theirs in other.actions.items():
            mine = self.actions.get(key)
            if mine is None:
                mine = self.actions[key] = ActionStats(direction=key[0], action=key[1])
            mine.merge(theirs)
        self.connect_latency.merge(other.connect_latency)
        self.ping_rtt_latency.merge(other.ping_rtt_latency)
        self.send_lateness.merge(other.send_lateness)
        self.connects += other.connects
        self.reconnects += other.reconnects
        self.connect_failures.update(other.connect_failures)
        self.disconnects.update(other.disconnects)
        self.messages_sent += other.messages_sent
        self.messages_received += other.messages_received
        self.counters.update(other.counters)
        self._awaiting_reconnect += other._awaiting_reconnect
        # Workers run side by side: the merged run lasted as long as the longest one.
        self.started -= max(0.0, other.elapsed - self.elapsed)

    def _record(self, direction: Direction, action: str, seconds: float, outcome: Outcome) -> None:
        stats = self.actions.get((direction, action))
        if stats is None:
            stats = self.actions[direction, action] = ActionStats(
                direction=direction, action=action
            )
        stats.outcomes[outcome] += 1
        if outcome.answered:
            stats.latency.record(seconds)


_DIRECTION_CODES = {Direction.CP_TO_CSMS: 0, Direction.CSMS_TO_CP: 1}
_DIRECTIONS_BY_CODE = {code: direction for direction, code in _DIRECTION_CODES.items()}


def outcome_keys(outcomes: Mapping[Outcome, int]) -> dict[str, int]:
    """Counts by outcome in their serialized form: ``{Outcome.key: n}``, in the order given."""
    return {outcome.key: n for outcome, n in outcomes.items()}


def _counter(data: Any) -> Counter[str]:
    return Counter({str(k): int(n) for k, n in dict(data or {}).items() if int(n)})
