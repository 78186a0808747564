"""Remote Trigger: TriggerMessage (OCPP 1.6 §5.17) for the six MessageTriggers the reference
charger supports (§3.1), with and without connectorId."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from emulator.core.effects import EventKind
from emulator.core.model import ALL_PROFILES
from emulator.core.status import Status
from emulator.protocol.codec import Call, CallResult, decode
from emulator.protocol.errors import ErrorCode, RemoteProtocolError

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]

TRIGGERS = [
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
]


def trigger(csms: FakeCsms, requested: str, connector_id: int | None = None) -> str:
    payload: dict[str, Any] = {"requestedMessage": requested}
    if connector_id is not None:
        payload["connectorId"] = connector_id
    status: str = csms.call("TriggerMessage", payload)["status"]
    return status


@pytest.mark.parametrize("connector_id", [None, 0, 1])
@pytest.mark.parametrize("requested", TRIGGERS)
def test_the_answer_is_accepted_and_then_the_requested_message_is_sent(
    csms: FakeCsms, requested: str, connector_id: int | None
) -> None:
    csms.advance(5)
    payload: dict[str, Any] = {"requestedMessage": requested}
    if connector_id is not None:
        payload["connectorId"] = connector_id
    # The answer goes out first, then the requested message.
    frames = csms.call_frames("TriggerMessage", payload)
    answer, *then = (decode(text) for text in frames)
    assert isinstance(answer, CallResult) and answer.payload == {"status": "Accepted"}
    assert len(then) == 1 and isinstance(then[0], Call) and then[0].action == requested
    csms.exchange(frames[1:])  # answered as the CSMS usually does
    csms.advance(1)


@pytest.mark.parametrize("connector_id", [2, 17, -1])
@pytest.mark.parametrize("requested", TRIGGERS)
def test_a_connector_that_does_not_exist_is_rejected_and_nothing_is_sent(
    csms: FakeCsms, requested: str, connector_id: int
) -> None:
    before = len(csms.sent)
    assert trigger(csms, requested, connector_id) == "Rejected"
    csms.advance(1)
    assert csms.sent[before:] == []


def test_status_notification_without_connector_reports_the_charge_point_and_each_connector(
    csms: FakeCsms,
) -> None:
    csms.start_charging()
    before = len(csms.sent)
    events = len(csms.events)
    assert trigger(csms, "StatusNotification") == "Accepted"
    notes = [s.payload for s in csms.sent[before:]]
    assert [(n["connectorId"], n["status"], n["errorCode"]) for n in notes] == [
        (0, "Available", "NoError"),
        (1, "Charging", "NoError"),
    ]
    # A report of the current status, not a change: the session behaviour hears nothing.
    assert EventKind.STATUS_CHANGED not in [e.kind for _, e in csms.events[events:]]


@pytest.mark.parametrize(("connector_id", "expected"), [(0, [0]), (1, [1])])
def test_status_notification_for_one_connector_reports_that_one(
    csms: FakeCsms, connector_id: int, expected: list[int]
) -> None:
    before = len(csms.sent)
    trigger(csms, "StatusNotification", connector_id)
    assert [s.payload["connectorId"] for s in csms.sent[before:]] == expected


def test_a_faulted_connector_is_reported_with_its_error_code(csms: FakeCsms) -> None:
    csms.set_fault("GroundFailure")
    before = len(csms.sent)
    trigger(csms, "StatusNotification", 1)
    (note,) = [s.payload for s in csms.sent[before:]]
    assert (note["status"], note["errorCode"]) == ("Faulted", "GroundFailure")


def test_a_reserved_connector_is_reported_reserved(csms: FakeCsms) -> None:
    csms.call(
        "ReserveNow",
        {
            "connectorId": 1,
            "expiryDate": "2026-01-01T01:00:00Z",
            "idTag": "ALICE",
            "reservationId": 1,
        },
    )
    before = len(csms.sent)
    trigger(csms, "StatusNotification", 1)
    assert [s.payload["status"] for s in csms.sent[before:]] == ["Reserved"]


@pytest.mark.parametrize("connector_id", [None, 0, 1])
def test_meter_values_carry_the_configured_measurands_and_the_running_transaction(
    csms: FakeCsms, connector_id: int | None
) -> None:
    csms.change_configuration("MeterValuesSampledData", "Energy.Active.Import.Register,Voltage")
    tx = csms.start_charging()
    csms.advance(30)
    before = len(csms.sent)
    trigger(csms, "MeterValues", connector_id)
    csms.advance(1)
    (values,) = [s.payload for s in csms.sent[before:] if s.action == "MeterValues"]
    assert values["connectorId"] == 1
    assert values["transactionId"] == tx.transaction_id
    sampled = values["meterValue"][0]["sampledValue"]
    assert {v["context"] for v in sampled} == {"Trigger"}
    assert {v["measurand"] for v in sampled} == {"Energy.Active.Import.Register", "Voltage"}


def test_meter_values_without_a_transaction_and_without_configured_measurands(
    csms: FakeCsms,
) -> None:
    csms.change_configuration("MeterValuesSampledData", "")
    before = len(csms.sent)
    trigger(csms, "MeterValues")
    (values,) = [s.payload for s in csms.sent[before:]]
    assert "transactionId" not in values
    sampled = values["meterValue"][0]["sampledValue"]
    assert [v["measurand"] for v in sampled] == ["Energy.Active.Import.Register"]


@pytest.mark.parametrize(
    ("requested", "action"),
    [
        ("DiagnosticsStatusNotification", "DiagnosticsStatusNotification"),
        ("FirmwareStatusNotification", "FirmwareStatusNotification"),
    ],
)
def test_idle_firmware_management_reports_idle(csms: FakeCsms, requested: str, action: str) -> None:
    before = len(csms.sent)
    trigger(csms, requested)
    assert [(s.action, s.payload) for s in csms.sent[before:]] == [(action, {"status": "Idle"})]


@pytest.mark.parametrize(
    "requested", ["DiagnosticsStatusNotification", "FirmwareStatusNotification"]
)
def test_without_firmware_management_its_notifications_are_not_implemented(
    make_csms: MakeCsms, requested: str
) -> None:
    csms = make_csms(profiles=tuple(p for p in ALL_PROFILES if p != "FirmwareManagement"))
    before = len(csms.sent)
    assert trigger(csms, requested) == "NotImplemented"
    assert trigger(csms, "Heartbeat") == "Accepted"
    assert [s.action for s in csms.sent[before:]] == ["Heartbeat"]


def test_a_triggered_heartbeat_is_sent_once(csms: FakeCsms) -> None:
    csms.advance(10)
    before = len(csms.sent)
    trigger(csms, "Heartbeat")
    assert [s.action for s in csms.sent[before:]] == ["Heartbeat"]


def test_a_triggered_boot_notification_is_answered_like_any_boot(csms: FakeCsms) -> None:
    csms.start_charging()
    csms.boot_interval = 120
    before = len(csms.sent)
    trigger(csms, "BootNotification")
    sent = csms.sent[before:]
    assert sent[0].action == "BootNotification"
    assert sent[0].payload["firmwareVersion"] == csms.wb.firmware_version
    assert csms.get_configuration("HeartbeatInterval")["HeartbeatInterval"]["value"] == "120"
    assert csms.status is Status.CHARGING  # the transaction goes on


def test_while_pending_every_trigger_is_accepted_and_sent(make_csms: MakeCsms) -> None:
    """OCPP 1.6 §4.2.1: a Pending charger sends what TriggerMessage asks for (and nothing
    else, see test_review_fixes)."""
    csms = make_csms(boot_status="Pending", boot_interval=300)
    for requested in TRIGGERS:
        if requested != "BootNotification":
            before = len(csms.sent)
            assert trigger(csms, requested) == "Accepted"
            assert requested in csms.actions()[before:]
    csms.advance(10)
    csms.boot_status = "Accepted"
    assert trigger(csms, "BootNotification") == "Accepted"
    assert csms.wb.accepted
    csms.advance(600)  # the Pending retry timer is gone: no third boot
    assert len(csms.sent_of("BootNotification")) == 2
    assert trigger(csms, "Heartbeat") == "Accepted"


def test_with_the_profile_switched_off_trigger_message_is_not_supported(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(profiles=tuple(p for p in ALL_PROFILES if p != "RemoteTrigger"))
    with pytest.raises(RemoteProtocolError) as refused:
        trigger(csms, "Heartbeat")
    assert refused.value.code is ErrorCode.NOT_SUPPORTED
