"""The CSMS's deviations: CsmsConformance, its summary and JSON, and its Prometheus series;
Prometheus series of known label values exist (at 0) before their first event."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from emulator.core.metering import Ev
from emulator.core.model import ChargerModel
from emulator.core.outcome import Outcome
from emulator.core.status import Status
from emulator.core.wallbox import Wallbox
from emulator.metrics.conformance import EXAMPLES, CsmsConformance
from emulator.metrics.prometheus import (
    CHARGER_ACTIONS,
    CSMS_ACTIONS,
    KNOWN_CONNECT_FAILURES,
    KNOWN_DISCONNECTS,
    PrometheusReporter,
    new_registry,
)
from emulator.metrics.summary import conformance_dict, render_conformance

NAIVE = 'BootNotification.conf: currentTime: must be date-time (got "2026-12-02T02:16:17")'


@pytest.fixture
def registry() -> CollectorRegistry:
    return new_registry(process=False)


def _violation(conformance: CsmsConformance, charger: str, *, accepted: bool) -> None:
    conformance.schema_violation(
        message="callresult",
        action="BootNotification",
        code="PropertyConstraintViolation",
        description=NAIVE,
        charger_id=charger,
        accepted=accepted,
    )


def test_violations_are_counted_with_their_first_messages_and_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conformance = CsmsConformance()
    with caplog.at_level(logging.DEBUG, logger="emulator.csms_conformance"):
        for n in range(20):
            _violation(conformance, f"CP{n:06d}", accepted=n % 2 == 0)
    [kind] = conformance.sorted_violations()
    assert (kind.where, kind.code, kind.count) == (
        "BootNotification.conf",
        "PropertyConstraintViolation",
        20,
    )
    assert (kind.accepted, kind.refused) == (10, 10)
    assert kind.examples == [f"CP{n:06d}: {NAIVE}" for n in range(EXAMPLES)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "currentTime: must be date-time" in warnings[0].getMessage()
    assert "CP000000" in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 20  # every one at DEBUG


def test_the_summary_and_json_show_violations_statuses_and_never_accepted() -> None:
    conformance = CsmsConformance()
    for n in range(3):
        _violation(conformance, f"CP{n:06d}", accepted=False)
    for status in ["Accepted"] * 43 + ["ConcurrentTx"] * 17:
        conformance.id_tag_status("StartTransaction", status)
    console = Console(record=True, width=200)
    render_conformance(conformance, console=console, chargers=3, never_accepted=3)
    text = console.export_text()
    assert "3 of 3 wallboxes never accepted by the CSMS" in text
    assert "BootNotification.conf PropertyConstraintViolation: 3, 3 refused" in text
    assert f"CP000002: {NAIVE}" in text
    assert "StartTransaction idTagInfo: Accepted 43, ConcurrentTx 17" in text
    data = json.loads(json.dumps(conformance_dict(conformance, chargers=3, never_accepted=3)))
    assert data["neverAccepted"] == 3 and data["chargers"] == 3
    assert data["idTagStatuses"] == {"StartTransaction": {"Accepted": 43, "ConcurrentTx": 17}}
    [violation] = data["schemaViolations"]
    assert violation["count"] == violation["refused"] == 3
    assert violation["examples"][0] == f"CP000000: {NAIVE}"


def test_prometheus_counts_statuses_and_lenient_violations_once(
    registry: CollectorRegistry,
) -> None:
    reporter = PrometheusReporter(registry=registry)
    conformance = CsmsConformance()
    conformance.listeners.append(reporter)
    conformance.id_tag_status("StartTransaction", "ConcurrentTx")
    _violation(conformance, "CP000001", accepted=True)  # used anyway: counted here
    _violation(conformance, "CP000002", accepted=False)  # refused: counted by the outcome
    reporter.round_trip("BootNotification", 0.01, Outcome.schema("PropertyConstraintViolation"))
    statuses = "ocpp_fleet_id_tag_statuses_total"
    assert (
        registry.get_sample_value(
            statuses, {"action": "StartTransaction", "status": "ConcurrentTx"}
        )
        == 1
    )
    violations = registry.get_sample_value(
        "ocpp_fleet_schema_violations_total",
        {
            "message": "callresult",
            "action": "BootNotification",
            "code": "PropertyConstraintViolation",
        },
    )
    assert violations == 2


def test_known_label_values_have_series_at_zero_before_any_event(
    registry: CollectorRegistry,
) -> None:
    PrometheusReporter(registry=registry)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    for action in CHARGER_ACTIONS:
        for reason in ("timeout", "disconnected"):
            assert sample("ocpp_fleet_calls_unanswered_total", action=action, reason=reason) == 0
        assert (
            sample(
                "ocpp_fleet_callerrors_total", sender="csms", action=action, code="InternalError"
            )
            == 0
        )
        assert (
            sample(
                "ocpp_fleet_schema_violations_total",
                message="callresult",
                action=action,
                code="PropertyConstraintViolation",
            )
            == 0
        )
    for action in CSMS_ACTIONS:
        assert sample("ocpp_fleet_csms_call_handling_seconds_count", action=action) == 0
        assert (
            sample(
                "ocpp_fleet_callerrors_total", sender="charger", action=action, code="NotSupported"
            )
            == 0
        )
    for reason in KNOWN_CONNECT_FAILURES:
        assert sample("ocpp_fleet_connect_failures_total", reason=reason) == 0
    for reason in KNOWN_DISCONNECTS:
        assert sample("ocpp_fleet_disconnects_total", reason=reason) == 0
    assert sample("ocpp_fleet_disconnects_total", reason="ping_timeout") == 0
    for status in ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"):
        assert (
            sample("ocpp_fleet_id_tag_statuses_total", action="StartTransaction", status=status)
            == 0
        )
    # Bounded: a fixed set, the same for any fleet (no cross product of everything).
    series = sum(
        1
        for metric in registry.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.labels
    )
    assert series < 600, series


def _lenient_wallbox(conformance: CsmsConformance) -> Wallbox:
    return Wallbox(
        charge_point_id="CP000007",
        model=ChargerModel(),
        rng=np.random.default_rng(7),
        now=0.0,
        transitions=conformance,
    )


def test_a_wallbox_forbidden_change_reaches_the_summary_json_and_prometheus(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = PrometheusReporter(registry=registry)
    conformance = CsmsConformance()
    conformance.listeners.append(reporter)
    wb = _lenient_wallbox(conformance)
    series = "ocpp_fleet_forbidden_transitions_total"
    charging_to_preparing = {"from": "Charging", "to": "Preparing"}
    assert registry.get_sample_value(series, charging_to_preparing) == 0  # exists from the start
    with caplog.at_level(logging.WARNING, logger="emulator.core.status"):
        for n in range(2):
            wb.connectors[1].reported = Status.CHARGING  # as if a transaction had just run
            wb.plug_in(float(n), ev=Ev(energy_wanted_wh=1e4, max_current=16, phases=3))
            wb.unplug(float(n))
    assert wb.status(1) is Status.AVAILABLE
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "CP000007: connector 1 went Charging -> Preparing"
    ]
    assert conformance.sorted_transitions() == [("Charging", "Preparing", 2)]
    console = Console(record=True, width=200)
    render_conformance(conformance, console=console, chargers=1, never_accepted=0)
    text = console.export_text()
    assert "connector status changes OCPP 1.6 does not list, sent anyway" in text
    assert "  Charging -> Preparing: 2" in text
    data = json.loads(json.dumps(conformance_dict(conformance, chargers=1, never_accepted=0)))
    assert data["forbiddenTransitions"] == [{"from": "Charging", "to": "Preparing", "count": 2}]
    assert registry.get_sample_value(series, charging_to_preparing) == 2
    assert registry.get_sample_value(series, {"from": "Finishing", "to": "Charging"}) == 0


def test_a_run_without_forbidden_changes_shows_none() -> None:
    conformance = CsmsConformance()
    console = Console(record=True, width=200)
    render_conformance(conformance, console=console, chargers=1, never_accepted=0)
    assert "does not list" not in console.export_text()
    assert conformance_dict(conformance, chargers=1, never_accepted=0)["forbiddenTransitions"] == []
