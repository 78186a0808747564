"""The wire form of histograms and RunStats windows: what a Locust worker sends its master.

A window must read back to the same measurements (buckets, counts, sums, extremes,
outcomes, counters), through JSON and through msgpack (Locust's transport), in a few
kilobytes; a malformed one is a ValueError, never a wrong number.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import numpy as np
import pytest

from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
from emulator.metrics.stats import Direction, Histogram, RunStats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def through(data: dict[str, Any], codec: str) -> Any:
    if codec == "json":
        return json.loads(json.dumps(data))
    return msgpack.loads(msgpack.dumps(data), raw=False, strict_map_key=False)


def same_histogram(a: Histogram, b: Histogram) -> None:
    assert a._buckets == b._buckets
    assert (a.count, a.sum, a.min, a.max) == (b.count, b.sum, b.min, b.max)


def a_window(clock: Clock) -> RunStats:
    """A 3-second window of a busy worker, cut out of a longer run."""
    rng = np.random.default_rng(11)
    run = RunStats(clock=clock)
    for v in rng.lognormal(np.log(0.02), 0.4, 500):
        run.round_trip("MeterValues", float(v), OK)
    before = run.snapshot()
    clock.now += 3.0
    for v in rng.lognormal(np.log(0.05), 0.6, 400):
        run.round_trip("MeterValues", float(v), OK)
    for v in rng.lognormal(np.log(0.08), 0.3, 60):
        run.round_trip("StartTransaction", float(v), OK)
    run.round_trip("StartTransaction", 0.3, Outcome.callerror("InternalError"))
    run.round_trip("StartTransaction", 30.0, TIMEOUT)
    run.round_trip("Heartbeat", 0.004, Outcome.schema("FormationViolation"))
    run.round_trip("StatusNotification", 1.0, DISCONNECTED)
    run.csms_call("RemoteStartTransaction", 0.0004, None)
    run.csms_call("GetConfiguration", 0.0002, "NotSupported")
    run.connected(0.012)
    run.disconnected("1006")
    run.connected(0.015)
    run.connect_failed("refused")
    run.ping_rtt(0.003)
    run.lateness(0.0015)
    run.message_sent()
    run.message_received()
    run.increment("sessions_started", 3)
    return run.snapshot().since(before)


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_a_window_reads_back_to_the_same_measurements(codec: str) -> None:
    clock = Clock()
    window = a_window(clock)
    receiver = Clock()
    receiver.now = 55.0
    back = RunStats.from_wire(through(window.to_wire(), codec), clock=receiver)
    assert set(back.actions) == set(window.actions)
    for key, stats in window.actions.items():
        assert back.actions[key].outcomes == stats.outcomes, key
        same_histogram(back.actions[key].latency, stats.latency)
        assert back.actions[key].latency.percentiles((50, 99)) == stats.latency.percentiles(
            (50, 99)
        )
    same_histogram(back.connect_latency, window.connect_latency)
    same_histogram(back.ping_rtt_latency, window.ping_rtt_latency)
    same_histogram(back.send_lateness, window.send_lateness)
    assert (back.connects, back.reconnects) == (window.connects, window.reconnects) == (2, 1)
    assert back.connect_failures == window.connect_failures == {"refused": 1}
    assert back.disconnects == window.disconnects
    assert (back.messages_sent, back.messages_received) == (1, 1)
    assert back.counters == {"sessions_started": 3}
    # Placed on the receiver's clock: it ends now and lasted what it lasted.
    assert back.stopped == 55.0
    assert back.elapsed == pytest.approx(window.elapsed) == pytest.approx(3.0)


def test_the_wire_form_is_sparse_and_small() -> None:
    window = a_window(Clock())
    data = window.to_wire()
    meter = next(a for a in data["a"] if a[1] == "MeterValues")
    buckets = meter[3]["b"]
    latency = window.actions[Direction.CP_TO_CSMS, "MeterValues"].latency
    occupied = sum(1 for n in latency._buckets if n)
    # One (gap, count) pair per non-empty bucket, not 1920 counts; gaps keep numbers small.
    assert len(buckets) == 2 * occupied
    assert occupied < Histogram.BUCKETS / 4
    assert max(buckets[2::2]) < 64
    # ~470 calls of six actions in 3 s: well under 4 KB, whatever the codec (the size
    # grows with the spread of the latencies, not with the number of calls).
    assert len(json.dumps(data)) < 4000
    assert len(msgpack.dumps(data)) < 2500
    # Nothing for what did not happen.
    assert RunStats().snapshot().to_wire().keys() == {"t"}
    assert Histogram().to_wire() == {}


def test_decoded_windows_merge_like_the_originals() -> None:
    """The master merges the workers' windows: the same as merging the originals."""
    clock = Clock()
    first, second = a_window(clock), a_window(clock)
    direct = RunStats(clock=clock)
    direct.merge(first)
    direct.merge(second)
    merged = RunStats(clock=clock)
    for window in (first, second):
        merged.merge(RunStats.from_wire(through(window.to_wire(), "msgpack"), clock=clock))
    for key, stats in direct.actions.items():
        assert merged.actions[key].outcomes == stats.outcomes
        same_histogram(merged.actions[key].latency, stats.latency)
    assert merged.connects == direct.connects == 4


def test_histogram_extremes_and_out_of_range_values_survive() -> None:
    histogram = Histogram()
    for v in (0.0, 1e-9, 0.5, 5000.0):  # below the first bucket, above the last
        histogram.record(v)
    back = Histogram.from_wire(through(histogram.to_wire(), "json"))
    same_histogram(back, histogram)
    assert back.percentile(0) == 0.0 and back.percentile(100) == 5000.0
    assert Histogram.from_wire({}).count == 0 and math.isinf(Histogram.from_wire({}).min)


@pytest.mark.parametrize(
    "data",
    [
        {"s": 1.0, "lo": 0.1, "hi": 0.2, "b": [3]},  # not pairs
        {"s": 1.0, "lo": 0.1, "hi": 0.2, "b": [1920, 1]},  # past the last bucket
        {"s": 1.0, "lo": 0.1, "hi": 0.2, "b": [5, 1, -2, 1]},  # going backwards
        {"b": [5, 1]},  # no sum, min or max
    ],
)
def test_a_malformed_histogram_is_a_value_error(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Histogram.from_wire(data)


@pytest.mark.parametrize(
    "data",
    [
        {},  # no duration
        {"t": 3.0, "a": [[7, "Heartbeat", {"ok": 1}, {}]]},  # no such direction
        {"t": 3.0, "a": [[0, "Heartbeat"]]},  # too short
        {"t": 3.0, "cf": ["refused"]},  # not a mapping
    ],
)
def test_a_malformed_window_is_a_value_error(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RunStats.from_wire(data)
