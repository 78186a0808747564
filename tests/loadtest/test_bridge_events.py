"""The Locust bridge: a real fleet in the loop thread, events fired on the gevent side.

The fleet runs in a child process that imports Locust (see support.py); the reference
CSMS runs in the bridge's own event loop and misbehaves on purpose.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from tests.loadtest.support import run_python


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    done = run_python("tests.loadtest.bridge_probe", timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def by_name(probe: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e for e in probe["events"] if e["name"] == name]


def test_events_are_fired_on_the_gevent_side_while_the_fleet_runs_in_its_own_thread(
    probe: dict[str, Any],
) -> None:
    assert probe["loop_thread"] != probe["main_thread"]
    assert {e["thread"] for e in probe["events"]} == {probe["main_thread"]}


def test_charger_initiated_calls_are_named_by_action_with_request_type_ocpp(
    probe: dict[str, Any],
) -> None:
    names = Counter((e["request_type"], e["name"]) for e in probe["events"])
    assert names[("OCPP", "BootNotification")] >= 5
    assert names[("OCPP", "StatusNotification")] >= 2
    assert names[("WebSocket", "connect")] == 6  # five wallboxes and one re-added


def test_response_times_are_the_round_trips_in_milliseconds(probe: dict[str, Any]) -> None:
    delay_ms = probe["delay"] * 1000
    delayed = [
        e
        for e in by_name(probe, "BootNotification")
        if e["exception"] is None and e["response_time"] >= delay_ms
    ]
    # In milliseconds: at least the delay (a lower bound, load only adds), and nowhere near
    # microseconds (x1000); the 2 s above it are for a loaded machine.
    assert len(delayed) == 1
    assert delayed[0]["response_time"] < delay_ms + 2000
    # The others were not delayed: their median (robust to a stall or two of a loaded
    # machine) is below the delay; none is zero (measured, not defaulted).
    quick = [e["response_time"] for e in by_name(probe, "StatusNotification")]
    assert len(quick) >= 2 and all(t > 0 for t in quick), quick
    assert statistics.median(quick) < delay_ms, quick


def test_callerrors_schema_violations_and_timeouts_are_failures_with_their_code(
    probe: dict[str, Any],
) -> None:
    failures = {e["exception"]: e for e in by_name(probe, "BootNotification") if e["exception"]}
    assert "CALLERROR InternalError" in failures
    assert any(text.startswith("schema violation") for text in failures)
    timeout = failures["timeout: no answer within response_timeout"]
    # response_timeout = 1 s: never before (a lower bound), in ms (not s nor µs); the
    # 1.5 s above it are for a loaded machine.
    assert 1000 <= timeout["response_time"] < 2500
    assert {e["exception_type"] for e in failures.values()} == {"OcppFailure"}


def test_csms_initiated_calls_have_their_own_names_and_the_handling_time(
    probe: dict[str, Any],
) -> None:
    calls = by_name(probe, "GetConfiguration (CSMS call)")
    assert [e["exception"] for e in calls] == [
        None,
        "answered CALLERROR OccurenceConstraintViolation",
    ]
    assert probe["refused_with"] == "OccurenceConstraintViolation"
    # The handling time: microseconds of work; 1 s bounds it with room for a loaded machine.
    assert all(0 <= e["response_time"] < 1000 for e in calls)


def test_a_stopped_users_wallbox_closes_and_its_charger_id_is_reused(
    probe: dict[str, Any],
) -> None:
    assert probe["numbers"] == [201, 202, 203, 204, 205]  # worker 2, 100 ids per worker
    assert probe["ids"][0] == "PB000201"
    assert probe["again"] == 201
    assert probe["disconnects"]["PB000201"] == 2
    assert probe["boots"]["PB000201"] == 2  # a restarted charger boots again


# -- Prometheus, fed by the bridge (`--metrics-port`) ------------------------------------


def metric(probe: dict[str, Any], when: str, name: str, **labels: str) -> float:
    key = name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
    value: float = probe[when].get(key, 0.0)
    return value


def test_prometheus_is_only_called_on_the_gevent_side(probe: dict[str, Any]) -> None:
    assert probe["prometheus_threads"] == [probe["main_thread"]]


def test_prometheus_counts_every_exchange_locust_counts(probe: dict[str, Any]) -> None:
    ocpp = Counter(e["name"] for e in probe["events"] if e["request_type"] == "OCPP")
    charger_calls = {name: n for name, n in ocpp.items() if not name.endswith("(CSMS call)")}
    assert charger_calls
    for action, count in charger_calls.items():
        answered = sum(
            v
            for k, v in probe["metrics_end"].items()
            if k.startswith("ocpp_fleet_call_duration_seconds_count{") and f"action={action}," in k
        )
        unanswered = sum(
            v
            for k, v in probe["metrics_end"].items()
            if k.startswith("ocpp_fleet_calls_unanswered_total{") and f"action={action}," in k
        )
        assert answered + unanswered == count, action
    end = "metrics_end"
    assert metric(probe, end, "ocpp_fleet_connect_duration_seconds_count") == 6
    assert (
        metric(probe, end, "ocpp_fleet_csms_call_handling_seconds_count", action="GetConfiguration")
        == ocpp["GetConfiguration (CSMS call)"]
    )


def test_prometheus_sees_the_outcomes_as_ocpp_fleet_run_reports_them(
    probe: dict[str, Any],
) -> None:
    end = "metrics_end"
    boot = {"action": "BootNotification"}
    count = "ocpp_fleet_call_duration_seconds_count"
    assert metric(probe, end, count, outcome="callerror", **boot) == 1
    assert metric(probe, end, count, outcome="schema", **boot) == 1
    assert metric(probe, end, "ocpp_fleet_calls_unanswered_total", reason="timeout", **boot) == 1
    assert (
        metric(
            probe, end, "ocpp_fleet_callerrors_total", sender="csms", code="InternalError", **boot
        )
        == 1
    )
    assert (
        metric(
            probe,
            end,
            "ocpp_fleet_callerrors_total",
            sender="charger",
            action="GetConfiguration",
            code="OccurenceConstraintViolation",
        )
        == 1
    )
    # Every connection closed (the removed user's, then the rest at the end).
    disconnects = sum(
        v for k, v in probe[end].items() if k.startswith("ocpp_fleet_disconnects_total{")
    )
    assert disconnects == 6
    # Frame counts are the loop side's counters, handed over by the drain.
    snapshot = probe["snapshot"]
    sent = metric(probe, end, "ocpp_fleet_messages_total", direction="sent")
    received = metric(probe, end, "ocpp_fleet_messages_total", direction="received")
    assert (sent, received) == (snapshot["messages_sent"], snapshot["messages_received"])
    assert sent > 0
    assert metric(probe, end, "ocpp_fleet_loop_lag_seconds_count") > 0
    assert not [k for k in probe[end] if "PB0" in k]  # never a charger id


def test_the_collector_reads_the_running_fleet_and_lets_it_go_when_it_stops(
    probe: dict[str, Any],
) -> None:
    assert metric(probe, "metrics_running", "ocpp_fleet_chargers") == 5
    assert metric(probe, "metrics_running", "ocpp_fleet_chargers_connected") == 5
    assert metric(probe, "metrics_end", "ocpp_fleet_chargers") == 0


def test_the_drain_gives_prometheus_what_a_direct_reporter_gets() -> None:
    """Every Reporter call, through the loop side's tuples and the drain, lands in
    Prometheus exactly as `ocpp-fleet run` (which calls the reporter directly) has it."""
    from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
    from emulator.loadtest.bridge import FleetBridge, MetricsBridgeReporter
    from emulator.metrics.prometheus import PrometheusReporter, new_registry

    direct_registry, bridged_registry = new_registry(process=False), new_registry(process=False)
    direct = PrometheusReporter(registry=direct_registry)
    bridge = FleetBridge(
        fire=lambda **kw: None, prometheus=PrometheusReporter(registry=bridged_registry)
    )
    loop_side = MetricsBridgeReporter(bridge._queue.append)
    for reporter in (direct, loop_side):
        reporter.connected(0.010)
        reporter.round_trip("BootNotification", 0.020, OK)
        reporter.round_trip("Heartbeat", 0.030, Outcome.callerror("InternalError"))
        reporter.round_trip("MeterValues", 0.004, Outcome.schema("FormationViolation"))
        reporter.round_trip("MeterValues", 30.0, TIMEOUT)
        reporter.round_trip("StatusNotification", 1.0, DISCONNECTED)
        reporter.round_trip("MadeUp", 0.001, OK)
        reporter.csms_call("Reset", 0.0002, None)
        reporter.csms_call("GetConfiguration", 0.0003, "OccurenceConstraintViolation")
        reporter.csms_call("(malformed)", 0.0, "FormationViolation")
        reporter.csms_call("(unexpected result)", 0.0, None)
        reporter.ping_rtt(0.002)
        reporter.lateness(0.003)
        reporter.lateness(-0.5)  # early: not late
        reporter.disconnected("closed 1006")
        reporter.connect_failed("refused")
        reporter.connected(0.012)  # a reconnect
        reporter.disconnected("stopped")
    assert bridge.drain() > 0
    assert not bridge._queue

    def sample_values(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for m in registry.collect()
            if m.name != "ocpp_fleet_messages"  # counted apart: see the probe
            for s in m.samples
            if not s.name.endswith("_created")
        }

    expected = sample_values(direct_registry)
    assert sample_values(bridged_registry) == expected
    assert expected[("ocpp_fleet_reconnects_total", ())] == 1


def test_a_removed_wallbox_keeps_what_it_counted_in_the_snapshots() -> None:
    """A stopped user's wallbox leaves the fleet; its transactions stay in the totals."""
    from emulator.core.transaction import Transaction
    from emulator.fleet.scenario import parse_scenario
    from emulator.loadtest.bridge import _LoopSide
    from tests.loadtest.support import scenario_text

    options = SimpleNamespace(
        scenario=parse_scenario(scenario_text(), source="<unit>"),
        csms_url="ws://127.0.0.1:9/ocpp",
        id_prefix=None,
        seed=1,
        source_addresses=(),
    )
    queued: list[Any] = []
    side = _LoopSide(
        options=options,  # type: ignore[arg-type]
        put=queued.append,
        publish=lambda snapshot: None,
        snapshot_interval=1.0,
        detailed=True,
    )
    for number in (1, 2):
        side.fleet.add_wallbox(number, side.models.model_at(number - 1))
    for stopped in (True, True, False):
        tx = Transaction(local_id=1, connector_id=1, id_tag="TAG", meter_start=0, started_at=0.0)
        tx.stopped_at = 1.0 if stopped else None
        side.fleet.drivers[0].wallbox.transactions.append(tx)
    before = side.snapshot()
    side.fleet.remove_wallbox(1)
    after = side.snapshot()
    assert (before.chargers, after.chargers, after.chargers_peak) == (2, 1, 2)
    kept = ("transactions_started", "transactions_stopped", "transaction_backlog")
    assert [after.to_wire()[key] for key in kept] == [before.to_wire()[key] for key in kept]
    assert (after.transactions_started, after.transactions_stopped) == (3, 2)
    assert after.in_flight == 0
    assert after.to_wire()["in_flight"] == 0


def test_every_message_of_the_loop_has_one_handler_and_prometheus_gets_what_it_reports() -> None:
    from typing import get_args

    from emulator.loadtest.bridge import (
        _FEEDS,
        _HANDLERS,
        EngineFailed,
        HealthChanged,
        Message,
        Released,
        Serving,
    )

    kinds = set(get_args(Message))
    assert len(kinds) == 12
    assert set(_HANDLERS) == kinds
    assert set(_FEEDS) == kinds - {Released, Serving, EngineFailed, HealthChanged}


def test_the_snapshot_a_worker_sends_keeps_its_wire_form() -> None:
    """The master reads these dicts from workers (emulator.loadtest.view): same keys, in
    the same order, as before the snapshot was typed."""
    from emulator.loadtest.bridge import FleetSnapshot
    from emulator.loadtest.view import COUNT_FIELDS

    wire = FleetSnapshot(chargers=3, statuses=(("Available", 2), ("Charging", 1))).to_wire()
    assert list(wire) == [
        "chargers",
        "chargers_peak",
        "connected",
        "booted",
        "charging",
        "transactions_running",
        "transactions_started",
        "transactions_stopped",
        "queue_depth",
        "transaction_backlog",
        "statuses",
        "connects",
        "reconnects",
        "messages_sent",
        "messages_received",
        "health",
    ]
    assert set(COUNT_FIELDS) <= set(wire)
    assert wire["statuses"] == {"Available": 2, "Charging": 1}
    assert FleetSnapshot(in_flight=4).to_wire()["in_flight"] == 4
