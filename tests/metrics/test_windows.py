"""Windows of a run: ``RunStats.snapshot()``/``since()`` and ``Histogram.since()``.

A window of the cumulative statistics must hold exactly what was recorded between its
two snapshots: counts, outcomes, percentiles, and min/max within a bucket.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from emulator.core.outcome import OK, TIMEOUT, Outcome
from emulator.metrics.stats import Direction, Histogram, RunStats, outcome_keys

# A bucket spans 1/64 of its octave: a value is within 1/64 of its bucket's edges.
BUCKET = 1 / 64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recorded(values: np.ndarray) -> Histogram:
    histogram = Histogram()
    for v in values:
        histogram.record(float(v))
    return histogram


# ------------------------------------------------------------------- histograms


def test_a_histogram_window_has_the_counts_sum_and_percentiles_of_its_values_alone() -> None:
    rng = np.random.default_rng(7)
    before = rng.lognormal(np.log(0.010), 0.3, 5_000)
    after = rng.lognormal(np.log(0.200), 0.5, 3_000)
    run = recorded(before)
    earlier = run.copy()
    for v in after:
        run.record(float(v))
    window = run.since(earlier)
    alone = recorded(after)
    assert window.count == 3_000
    assert window.sum == pytest.approx(float(after.sum()), rel=1e-9)
    assert window.mean == pytest.approx(float(after.mean()), rel=1e-9)
    qs = (1, 10, 50, 90, 95, 99, 99.9)
    for q, got, want in zip(qs, window.percentiles(qs), alone.percentiles(qs), strict=True):
        assert got == pytest.approx(want, rel=1e-12), q
        # The bucket of the value at the percentile's rank, as for any histogram.
        at_rank = float(np.sort(after)[math.floor(q / 100 * (len(after) - 1))])
        assert got == pytest.approx(at_rank, rel=BUCKET / 2), q
    # The earlier snapshot is untouched, and so is the run.
    assert earlier.count == 5_000 and run.count == 8_000


def test_a_window_that_holds_the_runs_new_extremes_has_them_exactly() -> None:
    run = recorded(np.array([0.010, 0.020, 0.030]))
    earlier = run.copy()
    run.record(0.001)
    run.record(0.500)
    run.record(0.015)
    window = run.since(earlier)
    assert (window.min, window.max) == (0.001, 0.500)
    assert window.percentile(0) == 0.001 and window.percentile(100) == 0.500


def test_a_window_inside_the_runs_range_bounds_min_and_max_by_its_buckets() -> None:
    run = recorded(np.array([0.001, 1.0]))
    earlier = run.copy()
    for v in (0.020, 0.030, 0.040):
        run.record(v)
    window = run.since(earlier)
    # Not the run's 0.001 and 1.0: the edges of the window's lowest and highest bucket.
    assert window.min <= 0.020 and window.min == pytest.approx(0.020, rel=BUCKET)
    assert window.max >= 0.040 and window.max == pytest.approx(0.040, rel=BUCKET)
    assert window.percentile(50) == pytest.approx(0.030, rel=BUCKET / 2)


def test_an_empty_window_is_an_empty_histogram() -> None:
    run = recorded(np.array([0.010, 0.020]))
    window = run.since(run.copy())
    assert window.count == 0 and window.sum == 0.0
    assert math.isnan(window.percentile(50)) and math.isnan(window.mean)
    assert window.min == math.inf and window.max == -math.inf
    whole = run.since(Histogram())  # from an empty start: the whole histogram, exactly
    assert (whole.count, whole.min, whole.max) == (2, 0.010, 0.020)


def test_windows_add_up_to_the_run() -> None:
    rng = np.random.default_rng(3)
    run = Histogram()
    snapshots = [run.copy()]
    for part in range(4):
        for v in rng.exponential(0.01 * (part + 1), 500):
            run.record(float(v))
        snapshots.append(run.copy())
    windows = [b.since(a) for a, b in itertools.pairwise(snapshots)]
    total = Histogram()
    for window in windows:
        total.merge(window)
    assert total.count == run.count == 2_000
    assert total.sum == pytest.approx(run.sum, rel=1e-12)
    assert total.percentiles((50, 99)) == run.percentiles((50, 99))


# --------------------------------------------------------------------- run stats


def test_a_snapshot_is_a_frozen_copy_that_ends_when_it_was_taken() -> None:
    clock = Clock()
    stats = RunStats(clock=clock)
    stats.round_trip("Heartbeat", 0.005, OK)
    clock.now += 10
    snap = stats.snapshot()
    stats.round_trip("Heartbeat", 0.005, OK)
    stats.connected(0.01)
    clock.now += 5
    assert snap.elapsed == pytest.approx(10.0)
    assert snap.actions[Direction.CP_TO_CSMS, "Heartbeat"].count == 1
    assert snap.connects == 0
    assert stats.actions[Direction.CP_TO_CSMS, "Heartbeat"].count == 2
    assert stats.elapsed == pytest.approx(15.0)


def test_a_window_holds_the_counts_and_outcomes_between_two_snapshots() -> None:
    clock = Clock()
    stats = RunStats(clock=clock)
    # Before the window: the ramp.
    for _ in range(10):
        stats.connected(0.050)
        stats.round_trip("BootNotification", 0.100, OK)
        stats.message_sent()
    stats.connect_failed("refused")
    stats.round_trip("Heartbeat", 0.002, OK)
    stats.increment("sessions", 3)
    clock.now += 5
    start = stats.snapshot()
    # The window.
    for _ in range(4):
        stats.round_trip("Heartbeat", 0.004, OK)
    stats.round_trip("Heartbeat", 30.0, TIMEOUT)
    stats.round_trip("StartTransaction", 0.020, Outcome.callerror("InternalError"))
    stats.csms_call("Reset", 0.001, None)
    stats.disconnected("reset")
    stats.connect_failed("refused")
    stats.connect_failed("timeout")
    stats.connected(0.040)
    stats.message_sent()
    stats.message_received()
    stats.increment("sessions")
    stats.ping_rtt(0.003)
    stats.lateness(0.001)
    clock.now += 20
    end = stats.snapshot()
    # After the window: the drain.
    stats.round_trip("StopTransaction", 0.050, OK)
    stats.disconnected("stopped")

    window = end.since(start)
    assert window.elapsed == pytest.approx(20.0)
    assert set(window.actions) == {
        (Direction.CP_TO_CSMS, "Heartbeat"),
        (Direction.CP_TO_CSMS, "StartTransaction"),
        (Direction.CSMS_TO_CP, "Reset"),
    }  # BootNotification had no call in the window, StopTransaction came after it
    heartbeat = window.actions[Direction.CP_TO_CSMS, "Heartbeat"]
    assert outcome_keys(heartbeat.outcomes) == {"ok": 4, "timeout": 1}
    assert heartbeat.count == 5 and heartbeat.errors == 1
    assert heartbeat.latency.count == 4  # the timeout is counted, not timed
    assert heartbeat.latency.percentile(50) == pytest.approx(0.004, rel=BUCKET / 2)
    assert outcome_keys(window.actions[Direction.CP_TO_CSMS, "StartTransaction"].outcomes) == {
        "callerror:InternalError": 1
    }
    assert window.connects == 1 and window.reconnects == 1
    assert dict(window.connect_failures) == {"refused": 1, "timeout": 1}
    assert dict(window.disconnects) == {"reset": 1}
    assert (window.messages_sent, window.messages_received) == (1, 1)
    assert dict(window.counters) == {"sessions": 1}
    assert window.connect_latency.count == 1 and window.connect_latency.min == 0.040
    assert window.ping_rtt_latency.count == 1 and window.send_lateness.count == 1


def test_a_window_until_now_reads_the_live_stats() -> None:
    clock = Clock()
    stats = RunStats(clock=clock)
    stats.round_trip("Heartbeat", 0.002, OK)
    start = stats.snapshot()
    clock.now += 3
    stats.round_trip("Heartbeat", 0.004, OK)
    window = stats.since(start)
    assert window.elapsed == pytest.approx(3.0)
    assert window.actions[Direction.CP_TO_CSMS, "Heartbeat"].count == 1
    clock.now += 1
    stats.stop()
    assert stats.since(start).elapsed == pytest.approx(4.0)  # a stopped run ends at its stop


def test_a_window_from_the_first_snapshot_is_the_whole_run() -> None:
    clock = Clock()
    stats = RunStats(clock=clock)
    start = stats.snapshot()
    for outcome in (OK, OK, TIMEOUT, Outcome.schema()):
        stats.round_trip("MeterValues", 0.010, outcome)
    clock.now += 7
    window = stats.snapshot().since(start)
    meter = window.actions[Direction.CP_TO_CSMS, "MeterValues"]
    assert outcome_keys(meter.outcomes) == {"ok": 2, "timeout": 1, "schema": 1}
    assert meter.latency.count == 3
    assert (meter.latency.min, meter.latency.max) == (0.010, 0.010)
    assert window.elapsed == pytest.approx(7.0)


def test_a_snapshot_costs_nothing_per_message_and_changes_nothing() -> None:
    stats = RunStats()
    for _ in range(100):
        stats.round_trip("Heartbeat", 0.002, OK)
    before = stats.actions[Direction.CP_TO_CSMS, "Heartbeat"].latency.percentiles((50, 99))
    snapshots = [stats.snapshot() for _ in range(3)]
    assert stats.actions[Direction.CP_TO_CSMS, "Heartbeat"].latency.percentiles((50, 99)) == before
    assert all(s.actions[Direction.CP_TO_CSMS, "Heartbeat"].count == 100 for s in snapshots)
    assert snapshots[2].since(snapshots[0]).actions == {}
