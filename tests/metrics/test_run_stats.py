from __future__ import annotations

import pytest

from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
from emulator.metrics import MultiReporter, NullReporter, Reporter, RunStats
from emulator.metrics.stats import Direction, outcome_keys


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_run_stats_null_and_multi_reporters_are_reporters() -> None:
    for reporter in (RunStats(), NullReporter(), MultiReporter(reporters=[])):
        assert isinstance(reporter, Reporter)


def test_round_trips_are_kept_per_action_and_outcome() -> None:
    stats = RunStats()
    stats.round_trip("Heartbeat", 0.010, OK)
    stats.round_trip("Heartbeat", 0.020, OK)
    stats.round_trip("Heartbeat", 0.005, Outcome.callerror("InternalError"))
    stats.round_trip("Heartbeat", 30.0, TIMEOUT)
    stats.round_trip("Heartbeat", 2.0, DISCONNECTED)
    stats.round_trip("MeterValues", 0.004, Outcome.schema("FormationViolation"))
    heartbeat = stats.actions[Direction.CP_TO_CSMS, "Heartbeat"]
    assert heartbeat.count == 5
    assert heartbeat.errors == 3
    assert outcome_keys(heartbeat.outcomes) == {
        "ok": 2,
        "callerror:InternalError": 1,
        "timeout": 1,
        "disconnected": 1,
    }
    # A timed-out or cut-off call's duration is only how long we waited: not a latency.
    assert heartbeat.latency.count == 3
    assert heartbeat.latency.max == 0.020
    meter_values = stats.actions[Direction.CP_TO_CSMS, "MeterValues"]
    assert outcome_keys(meter_values.outcomes) == {"schema:FormationViolation": 1}
    assert meter_values.latency.count == 1


def test_csms_calls_are_kept_apart_from_charger_calls_of_the_same_name() -> None:
    stats = RunStats()
    stats.csms_call("DataTransfer", 0.001, None)
    stats.csms_call("DataTransfer", 0.002, "NotImplemented")
    stats.round_trip("DataTransfer", 0.05, OK)
    handled = stats.actions[Direction.CSMS_TO_CP, "DataTransfer"]
    assert outcome_keys(handled.outcomes) == {"ok": 1, "callerror:NotImplemented": 1}
    assert handled.latency.count == 2
    assert stats.actions[Direction.CP_TO_CSMS, "DataTransfer"].count == 1


def test_a_connect_after_a_disconnect_is_a_reconnect() -> None:
    stats = RunStats()
    stats.connected(0.01)
    stats.connected(0.01)
    stats.disconnected("close 1006")
    stats.connect_failed("refused")
    stats.connect_failed("refused")
    stats.connected(0.02)
    stats.disconnected("stopped")
    assert (stats.connects, stats.reconnects, stats.open_connections) == (3, 1, 1)
    assert stats.connect_failures == {"refused": 2}
    assert stats.disconnects == {"close 1006": 1, "stopped": 1}
    assert stats.connect_latency.count == 3


def test_messages_pings_and_counters_are_counted() -> None:
    stats = RunStats()
    for _ in range(3):
        stats.message_sent()
    stats.message_received()
    stats.ping_rtt(0.001)
    stats.increment("sessions started")
    stats.increment("sessions started", 2)
    assert (stats.messages_sent, stats.messages_received) == (3, 1)
    assert stats.ping_rtt_latency.count == 1
    assert stats.counters == {"sessions started": 3}


def test_elapsed_runs_until_stop() -> None:
    clock = FakeClock()
    stats = RunStats(clock=clock)
    clock.now += 5
    assert stats.elapsed == 5
    stats.stop()
    clock.now += 5
    assert stats.elapsed == 5


def test_merging_run_stats_adds_everything_up() -> None:
    clock = FakeClock()
    a, b = RunStats(clock=clock), RunStats(clock=clock)
    a.round_trip("Heartbeat", 0.01, OK)
    b.round_trip("Heartbeat", 0.02, TIMEOUT)
    b.csms_call("Reset", 0.001, None)
    a.connected(0.1)
    b.disconnected("reset")
    b.connected(0.1)
    b.connect_failed("timeout")
    a.message_sent()
    b.message_sent()
    b.ping_rtt(0.003)
    b.increment("x")
    clock.now += 10
    a.stop()
    a.merge(b)
    assert outcome_keys(a.actions[Direction.CP_TO_CSMS, "Heartbeat"].outcomes) == {
        "ok": 1,
        "timeout": 1,
    }
    assert a.actions[Direction.CSMS_TO_CP, "Reset"].count == 1
    assert (a.connects, a.reconnects, a.messages_sent) == (2, 1, 2)
    assert a.connect_failures == {"timeout": 1}
    assert a.ping_rtt_latency.count == 1
    assert a.counters == {"x": 1}
    assert a.elapsed == pytest.approx(10)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def round_trip(self, action: str, seconds: float, outcome: Outcome) -> None:
        self.calls.append(("round_trip", action, seconds, outcome))

    def csms_call(self, action: str, seconds: float, error: str | None) -> None:
        self.calls.append(("csms_call", action, seconds, error))

    def connected(self, seconds: float) -> None:
        self.calls.append(("connected", seconds))

    def connect_failed(self, reason: str) -> None:
        self.calls.append(("connect_failed", reason))

    def disconnected(self, reason: str) -> None:
        self.calls.append(("disconnected", reason))

    def ping_rtt(self, seconds: float) -> None:
        self.calls.append(("ping_rtt", seconds))

    def message_sent(self) -> None:
        self.calls.append(("message_sent",))

    def message_received(self) -> None:
        self.calls.append(("message_received",))


def test_multi_reporter_passes_every_event_to_each_reporter() -> None:
    first, second = Recorder(), Recorder()
    multi = MultiReporter(reporters=[first, second, NullReporter()])
    multi.round_trip("Authorize", 0.1, OK)
    multi.csms_call("Reset", 0.2, "NotSupported")
    multi.connected(0.3)
    multi.connect_failed("refused")
    multi.disconnected("close 1000")
    multi.ping_rtt(0.4)
    multi.message_sent()
    multi.message_received()
    expected = [
        ("round_trip", "Authorize", 0.1, OK),
        ("csms_call", "Reset", 0.2, "NotSupported"),
        ("connected", 0.3),
        ("connect_failed", "refused"),
        ("disconnected", "close 1000"),
        ("ping_rtt", 0.4),
        ("message_sent",),
        ("message_received",),
    ]
    assert first.calls == expected
    assert second.calls == expected
