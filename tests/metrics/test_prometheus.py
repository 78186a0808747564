"""PrometheusReporter, FleetCollector, LoopLagMonitor and the metrics server, in process."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
from emulator.core.transaction import Transaction
from emulator.metrics import MultiReporter, NullReporter, Reporter, RunStats
from emulator.metrics.looplag import LoopLagMonitor
from emulator.metrics.prometheus import (
    KNOWN_CONNECT_FAILURES,
    MAX_REASONS,
    STATUSES,
    FleetCollector,
    PrometheusReporter,
    new_registry,
    serve_metrics,
)
from tests.metrics.support import make_fleet

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> CollectorRegistry:
    return new_registry(process=False)


@pytest.fixture
def reporter(registry: CollectorRegistry) -> PrometheusReporter:
    return PrometheusReporter(registry=registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    sample = registry.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


def test_every_reporter_fits_the_protocol(reporter: PrometheusReporter) -> None:
    for candidate in (reporter, RunStats(), NullReporter(), MultiReporter(reporters=[reporter])):
        assert isinstance(candidate, Reporter)


def test_answered_round_trips_are_timed_by_action_and_outcome(
    registry: CollectorRegistry, reporter: PrometheusReporter
) -> None:
    reporter.round_trip("Heartbeat", 0.004, OK)
    reporter.round_trip("Heartbeat", 0.030, OK)
    reporter.round_trip("Heartbeat", 0.002, Outcome.callerror("InternalError"))
    reporter.round_trip("MeterValues", 0.003, Outcome.schema("FormationViolation"))
    count = "ocpp_fleet_call_duration_seconds_count"
    assert value(registry, count, action="Heartbeat", outcome="ok") == 2
    assert value(registry, count, action="Heartbeat", outcome="callerror") == 1
    assert value(registry, count, action="MeterValues", outcome="schema") == 1
    bucket = "ocpp_fleet_call_duration_seconds_bucket"
    assert value(registry, bucket, action="Heartbeat", outcome="ok", le="0.005") == 1
    assert value(registry, bucket, action="Heartbeat", outcome="ok", le="0.05") == 2
    assert (
        value(
            registry,
            "ocpp_fleet_callerrors_total",
            sender="csms",
            action="Heartbeat",
            code="InternalError",
        )
        == 1
    )
    assert (
        value(
            registry,
            "ocpp_fleet_schema_violations_total",
            message="callresult",
            action="MeterValues",
            code="FormationViolation",
        )
        == 1
    )


def test_unanswered_calls_are_counted_not_timed(
    registry: CollectorRegistry, reporter: PrometheusReporter
) -> None:
    reporter.round_trip("StatusNotification", 30.0, TIMEOUT)
    reporter.round_trip("StatusNotification", 2.0, DISCONNECTED)
    unanswered = "ocpp_fleet_calls_unanswered_total"
    assert value(registry, unanswered, action="StatusNotification", reason="timeout") == 1
    assert value(registry, unanswered, action="StatusNotification", reason="disconnected") == 1
    # How long we waited is not a latency of the CSMS.
    assert (
        registry.get_sample_value(
            "ocpp_fleet_call_duration_seconds_count",
            {"action": "StatusNotification", "outcome": "timeout"},
        )
        is None
    )


def test_labels_stay_bounded_whatever_the_csms_sends(
    registry: CollectorRegistry, reporter: PrometheusReporter
) -> None:
    for i in range(50):
        reporter.csms_call(f"MadeUpAction{i}", 0.001, f"MadeUpCode{i}")
        reporter.round_trip("Heartbeat", 0.01, Outcome.callerror(f"Nonsense{i}"))
        reporter.connect_failed(f"os_error_{i}")
        reporter.disconnected(f"closed {4000 + i}")
    errors = "ocpp_fleet_callerrors_total"
    assert value(registry, errors, sender="charger", action="(other)", code="(other)") == 50
    assert value(registry, errors, sender="csms", action="Heartbeat", code="(other)") == 50
    failures = {
        s.labels["reason"]
        for metric in registry.collect()
        if metric.name == "ocpp_fleet_connect_failures"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    # The known reasons exist from the start (at 0) and leave the 32 others their room.
    assert len(failures) == len(KNOWN_CONNECT_FAILURES) + MAX_REASONS + 1
    assert "(other)" in failures
    assert (
        value(registry, "ocpp_fleet_connect_failures_total", reason="(other)") == 50 - MAX_REASONS
    )


def test_csms_calls_are_timed_and_their_refusals_classified(
    registry: CollectorRegistry, reporter: PrometheusReporter
) -> None:
    reporter.csms_call("GetConfiguration", 0.0002, None)
    reporter.csms_call("Reset", 0.0003, "PropertyConstraintViolation")  # failed its schema
    reporter.csms_call("UpdateFirmware", 0.0001, "NotSupported")  # valid, not supported
    reporter.csms_call("GetConfiguration", 0.0001, "OccurenceConstraintViolation")  # > max keys
    reporter.csms_call("(malformed)", 0.0, "FormationViolation")
    reporter.csms_call("(garbage)", 0.0, "FormationViolation")
    reporter.csms_call("(unexpected result)", 0.0, "UnexpectedUniqueId")
    handling = "ocpp_fleet_csms_call_handling_seconds_count"
    assert value(registry, handling, action="GetConfiguration") == 2
    assert value(registry, handling, action="Reset") == 1
    assert registry.get_sample_value(handling, {"action": "(malformed)"}) is None
    violations = "ocpp_fleet_schema_violations_total"
    assert (
        value(
            registry, violations, message="call", action="Reset", code="PropertyConstraintViolation"
        )
        == 1
    )
    assert (
        value(
            registry, violations, message="frame", action="(malformed)", code="FormationViolation"
        )
        == 1
    )
    assert (
        value(registry, violations, message="frame", action="(garbage)", code="FormationViolation")
        == 1
    )
    assert (
        value(
            registry,
            violations,
            message="call",
            action="GetConfiguration",
            code="OccurenceConstraintViolation",
        )
        == 0
    )
    errors = "ocpp_fleet_callerrors_total"
    assert (
        value(registry, errors, sender="charger", action="UpdateFirmware", code="NotSupported") == 1
    )
    assert (
        value(registry, errors, sender="charger", action="(malformed)", code="FormationViolation")
        == 1
    )
    assert (
        value(registry, errors, sender="charger", action="(garbage)", code="FormationViolation")
        == 0
    )
    assert value(registry, "ocpp_fleet_unexpected_answers_total", message="callresult") == 1


def test_connections_pings_messages_and_lateness(
    registry: CollectorRegistry, reporter: PrometheusReporter
) -> None:
    reporter.connected(0.002)
    reporter.disconnected("closed 1006")
    reporter.connect_failed("refused")
    reporter.connected(0.003)  # after a disconnect: a reconnect
    reporter.disconnected("stopped")  # shutting down: no reconnect follows
    reporter.connected(0.003)  # a new wallbox
    reporter.ping_rtt(0.001)
    reporter.message_sent()
    reporter.message_sent()
    reporter.message_received()
    reporter.lateness(0.004)
    reporter.lateness(-0.5)  # served early: not late
    reporter.loop_lag(0.0002)
    assert value(registry, "ocpp_fleet_connect_duration_seconds_count") == 3
    assert value(registry, "ocpp_fleet_reconnects_total") == 1
    assert value(registry, "ocpp_fleet_connect_failures_total", reason="refused") == 1
    assert value(registry, "ocpp_fleet_disconnects_total", reason="closed 1006") == 1
    assert value(registry, "ocpp_fleet_pong_rtt_seconds_count") == 1
    assert value(registry, "ocpp_fleet_messages_total", direction="sent") == 2
    assert value(registry, "ocpp_fleet_messages_total", direction="received") == 1
    assert value(registry, "ocpp_fleet_send_lateness_seconds_count") == 1
    assert value(registry, "ocpp_fleet_send_lateness_seconds_sum") == pytest.approx(0.004)
    assert value(registry, "ocpp_fleet_loop_lag_seconds_count") == 1


def test_label_children_are_bound_once(reporter: PrometheusReporter) -> None:
    reporter.round_trip("Heartbeat", 0.01, OK)
    bound = reporter._round_trips["Heartbeat", OK]
    reporter.round_trip("Heartbeat", 0.02, OK)
    assert reporter._round_trips["Heartbeat", OK] is bound


# -- FleetCollector ------------------------------------------------------------------


def test_fleet_gauges_are_computed_at_scrape_time(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    fleet = make_fleet(3, clock)
    collector = FleetCollector(registry=registry)
    collector.add(fleet)
    assert value(registry, "ocpp_fleet_chargers") == 3
    assert value(registry, "ocpp_fleet_chargers_connected") == 0
    assert value(registry, "ocpp_fleet_chargers_booted") == 0
    statuses = {s: value(registry, "ocpp_fleet_connectors", status=s) for s in STATUSES}
    assert sum(statuses.values()) == 3
    assert statuses["Available"] == 3
    assert value(registry, "ocpp_fleet_transactions_started_total") == 0
    assert value(registry, "ocpp_fleet_energy_delivered_wh_total") == 0
    info = [
        s.labels
        for metric in registry.collect()
        if metric.name == "ocpp_fleet_scenario_info"
        for s in metric.samples
    ]
    assert [labels["scenario"] for labels in info] == ["unit"]


def test_energy_is_projected_without_touching_the_meters(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    fleet = make_fleet(2, clock)
    collector = FleetCollector(registry=registry)
    collector.add(fleet)
    meter = fleet.drivers[0].wallbox.connectors[1].meter
    meter.set_current(clock.now, 10.0)  # 3 phases x 230 V x 10 A x PF 0.99 = 6831 W
    power = meter.power_w()
    assert value(registry, "ocpp_fleet_power_watts") == pytest.approx(power)
    before = meter.energy_wh
    clock.now += 1800
    assert value(registry, "ocpp_fleet_energy_delivered_wh_total") == pytest.approx(power / 2)
    assert meter.energy_wh == before  # a scrape never advances the meter


def test_counters_survive_removing_a_fleet(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    fleet = make_fleet(1, clock)
    collector = FleetCollector(registry=registry)
    collector.add(fleet)
    meter = fleet.drivers[0].wallbox.connectors[1].meter
    meter.set_current(clock.now, 10.0)
    clock.now += 3600
    energy = value(registry, "ocpp_fleet_energy_delivered_wh_total")
    assert energy > 0
    collector.remove(fleet)
    assert value(registry, "ocpp_fleet_chargers") == 0
    assert value(registry, "ocpp_fleet_energy_delivered_wh_total") == pytest.approx(energy)


def test_wallboxes_joining_and_leaving_keep_the_counters_right(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    fleet = make_fleet(2, clock)
    collector = FleetCollector(registry=registry)
    collector.add(fleet)
    model = fleet.scenario.pick_models(1, np.random.default_rng(0))[0]
    # A wallbox added later (a Locust user): its lifetime register is not "delivered".
    late = fleet.add_wallbox(3, model).wallbox
    assert value(registry, "ocpp_fleet_chargers") == 3
    assert value(registry, "ocpp_fleet_energy_delivered_wh_total") == 0
    late.connectors[1].meter.set_current(clock.now, 10.0)
    clock.now += 3600
    delivered = value(registry, "ocpp_fleet_energy_delivered_wh_total")
    assert delivered == pytest.approx(late.connectors[1].meter.power_w())
    late.transactions.append(_stopped_transaction())
    assert value(registry, "ocpp_fleet_transactions_stopped_total") == 1
    fleet.remove_wallbox(3)  # the user stops: what it did stays counted
    assert value(registry, "ocpp_fleet_chargers") == 2
    assert value(registry, "ocpp_fleet_energy_delivered_wh_total") == pytest.approx(delivered)
    assert value(registry, "ocpp_fleet_transactions_started_total") == 1
    assert value(registry, "ocpp_fleet_transactions_stopped_total") == 1


@pytest.fixture
def fleet_loop() -> Any:
    """An asyncio loop running in a thread of its own, as the fleet's loop runs beside
    prometheus_client's server thread in `ocpp-fleet run`."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def on_loop(loop: asyncio.AbstractEventLoop, fn: Any) -> Any:
    """Run ``fn()`` on ``loop`` and return its result (from another thread)."""

    async def call() -> Any:
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), loop).result(10)


class _WatchedSource:
    """A fleet whose wallbox list notes the threads that read it."""

    def __init__(self, fleet: Any) -> None:
        self.fleet = fleet
        self.readers: set[int] = set()

    @property
    def drivers(self) -> Any:
        self.readers.add(threading.get_ident())
        return self.fleet.drivers

    @property
    def scenario(self) -> Any:
        return self.fleet.scenario

    def clock(self) -> float:
        return float(self.fleet.clock())


def test_a_scrape_reads_the_fleet_on_its_loop_never_on_its_own_thread(
    registry: CollectorRegistry, fleet_loop: asyncio.AbstractEventLoop
) -> None:
    source = _WatchedSource(make_fleet(2, FakeClock()))
    collector = FleetCollector(registry=registry)
    collector.add(source, loop=fleet_loop)
    loop_thread = on_loop(fleet_loop, threading.get_ident)
    source.fleet.drivers[0].wallbox.transactions.append(_stopped_transaction())
    assert value(registry, "ocpp_fleet_transactions_stopped_total") == 1  # a fresh reading
    assert value(registry, "ocpp_fleet_chargers") == 2
    assert source.readers == {loop_thread}


def test_a_loop_that_does_not_answer_in_time_serves_its_last_reading(
    registry: CollectorRegistry,
    fleet_loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import emulator.metrics.prometheus as prometheus

    monkeypatch.setattr(prometheus, "READING_WAIT", 0.05)
    fleet = make_fleet(2, FakeClock())
    collector = FleetCollector(registry=registry)
    collector.add(fleet, loop=fleet_loop)
    release = threading.Event()
    fleet_loop.call_soon_threadsafe(release.wait, 10)  # the loop is busy
    try:
        fleet.add_wallbox(3, fleet.drivers[0].wallbox.model)
        assert value(registry, "ocpp_fleet_chargers") == 2  # the reading of before
    finally:
        release.set()
    assert value(registry, "ocpp_fleet_chargers") == 3


def test_scrapes_from_another_thread_while_the_fleet_changes_never_fail(
    registry: CollectorRegistry, fleet_loop: asyncio.AbstractEventLoop
) -> None:
    """`ocpp-fleet run` scrapes in prometheus_client's thread while the loop adds and
    removes wallboxes and their transactions: no scrape fails, counters never drop."""
    fleet = make_fleet(20, FakeClock())
    collector = FleetCollector(registry=registry)
    collector.add(fleet, loop=fleet_loop)
    model = fleet.drivers[0].wallbox.model
    stop = threading.Event()

    async def churn() -> None:
        number = 1000
        while not stop.is_set():
            number += 1
            fleet.add_wallbox(number, model).wallbox.transactions.append(_stopped_transaction())
            for driver in list(fleet.drivers[:3]):
                driver.wallbox.transactions.append(_stopped_transaction())
            if len(fleet.drivers) > 40:
                fleet.remove_wallbox(number - 20)
            await asyncio.sleep(0)

    churning = asyncio.run_coroutine_threadsafe(churn(), fleet_loop)
    try:
        started = [value(registry, "ocpp_fleet_transactions_started_total") for _ in range(50)]
    finally:
        stop.set()
        churning.result(10)
    assert started == sorted(started) and started[-1] > started[0]


def _stopped_transaction() -> Transaction:
    tx = Transaction(local_id=1, connector_id=1, id_tag="TAG", meter_start=0, started_at=0.0)
    tx.stopped_at = 1.0
    return tx


def test_a_registry_can_hold_the_reporter_and_the_collector_with_process_metrics() -> None:
    registry = new_registry()
    PrometheusReporter(registry=registry)
    FleetCollector(registry=registry)
    names = {metric.name for metric in registry.collect()}
    assert {"process_cpu_seconds", "process_open_fds", "ocpp_fleet_chargers"} <= names


# -- docs/metrics.md -----------------------------------------------------------------


def _exercised_registry() -> CollectorRegistry:
    """Every metric with at least one sample, so its labels show."""
    registry = new_registry(process=False)
    reporter = PrometheusReporter(registry=registry)
    reporter.round_trip("Heartbeat", 0.01, OK)
    reporter.round_trip("Heartbeat", 0.01, Outcome.callerror("InternalError"))
    reporter.round_trip("Heartbeat", 0.01, TIMEOUT)
    reporter.csms_call("Reset", 0.001, "TypeConstraintViolation")
    reporter.csms_call("(unexpected error)", 0.0, "UnexpectedUniqueId")
    reporter.connected(0.01)
    reporter.connect_failed("refused")
    reporter.disconnected("closed 1006")
    reporter.ping_rtt(0.001)
    reporter.message_sent()
    reporter.lateness(0.001)
    reporter.loop_lag(0.001)
    FleetCollector(registry=registry).add(make_fleet(1, FakeClock()))
    return registry


def test_docs_list_every_metric_with_its_type_labels_and_help() -> None:
    documented: dict[str, tuple[str, str, str]] = {}
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        row = re.fullmatch(r"\| `(ocpp_fleet_\w+)` \| (\w+) \| ([^|]*) \| (.+) \|", line)
        if row:
            labels = ", ".join(sorted(re.findall(r"`(\w+)`", row.group(3))))
            documented[row.group(1)] = (row.group(2), labels, row.group(4))
    actual: dict[str, tuple[str, str, str]] = {}
    for metric in _exercised_registry().collect():
        name = metric.name + ("_total" if metric.type == "counter" else "")
        labels = {label for s in metric.samples for label in s.labels if label != "le"}
        actual[name] = (metric.type, ", ".join(sorted(labels)), metric.documentation)
    assert documented == actual


# -- LoopLagMonitor and the server -------------------------------------------------------


async def _watch_a_blocked_loop() -> None:
    samples: list[float] = []
    async with LoopLagMonitor(record=samples.append, interval=0.01) as monitor:
        await asyncio.sleep(0.05)
        time.sleep(0.1)  # noqa: ASYNC251 - on purpose: a blocking call holds the loop
        await asyncio.sleep(0.05)
    assert monitor.max >= 0.05
    assert max(samples) == monitor.max
    count = len(samples)
    await asyncio.sleep(0.03)
    assert len(samples) == count  # stopped with the block


def test_loop_lag_monitor_sees_a_blocked_loop() -> None:
    asyncio.run(_watch_a_blocked_loop())


def test_metrics_are_served_on_a_free_loopback_port(registry: CollectorRegistry) -> None:
    reporter = PrometheusReporter(registry=registry)
    reporter.message_sent()
    server = serve_metrics(registry=registry, host="127.0.0.1", port=0)
    try:
        assert server.port > 0
        with urllib.request.urlopen(server.url, timeout=5) as response:
            text = response.read().decode()
        assert 'ocpp_fleet_messages_total{direction="sent"} 1.0' in text
    finally:
        server.close()
