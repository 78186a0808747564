"""CSMS-initiated calls: answers, refusals (CALLERROR codes) and what they trigger."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from emulator.core.handlers.core import VENDOR_ID
from emulator.core.model import Variant
from emulator.core.status import Status
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.schemas import CSMS_SECURITY_EXTENSION

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]


def refusal(csms: FakeCsms, action: str, payload: dict[str, Any] | None = None) -> ErrorCode:
    """The CALLERROR code the charger answers ``action`` with (no schema check first)."""
    with pytest.raises(RemoteProtocolError) as refused:
        csms.dispatch(action, payload or {})
    return refused.value.code


# ---------------------------------------------------------------- UnlockConnector

# (variant, connector, charging, answer, transaction stopped)
UNLOCKS = [
    (Variant.SOCKET, 1, False, "Unlocked", False),
    (Variant.SOCKET, 1, True, "Unlocked", True),
    (Variant.CABLE, 1, False, "NotSupported", False),
    (Variant.CABLE, 1, True, "NotSupported", False),  # "the charger will do nothing"
    (Variant.SOCKET, 0, False, "NotSupported", False),
    (Variant.SOCKET, 2, False, "NotSupported", False),
]


@pytest.mark.parametrize(("variant", "connector", "charging", "answer", "stops"), UNLOCKS)
def test_unlock_connector_unlocks_sockets_and_does_nothing_on_cable_variants(
    make_csms: MakeCsms,
    variant: Variant,
    connector: int,
    charging: bool,
    answer: str,
    stops: bool,
) -> None:
    csms = make_csms(variant=variant)
    tx = csms.start_charging() if charging else None
    assert csms.call("UnlockConnector", {"connectorId": connector}) == {"status": answer}
    if tx is not None:
        assert (tx.stop_reason is not None) is stops
        assert csms.status is (Status.FINISHING if stops else Status.CHARGING)


def test_only_the_socket_variant_locks_the_cable(make_csms: MakeCsms) -> None:
    socket, cable = make_csms(variant=Variant.SOCKET), make_csms(variant=Variant.CABLE)
    for csms in (socket, cable):
        csms.start_charging()
    assert (socket.wb.connectors[1].locked, cable.wb.connectors[1].locked) == (True, False)


# ---------------------------------------------------------------- DataTransfer

DATA_TRANSFERS = [
    ({"vendorId": "com.example"}, {"status": "UnknownVendorId"}),
    ({"vendorId": VENDOR_ID, "messageId": "other"}, {"status": "UnknownMessageId"}),
    (
        {"vendorId": VENDOR_ID, "messageId": "echo", "data": "ping"},
        {"status": "Accepted", "data": "ping"},
    ),
    ({"vendorId": VENDOR_ID, "messageId": "echo"}, {"status": "Accepted"}),
]


@pytest.mark.parametrize(("request_", "answer"), DATA_TRANSFERS)
def test_data_transfer_answers_by_vendor_and_message(
    csms: FakeCsms, request_: dict[str, Any], answer: dict[str, Any]
) -> None:
    assert csms.call("DataTransfer", request_) == answer


# ---------------------------------------------------------------- TriggerMessage

TRIGGERS = [
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
]


@pytest.mark.parametrize("requested", TRIGGERS)
def test_trigger_message_sends_the_requested_message(csms: FakeCsms, requested: str) -> None:
    csms.advance(5)
    triggered_at = csms.now
    assert csms.call("TriggerMessage", {"requestedMessage": requested}) == {"status": "Accepted"}
    assert csms.actions(since=triggered_at)[0] == requested


def test_a_triggered_status_notification_reports_every_connector_or_the_one_asked_for(
    csms: FakeCsms,
) -> None:
    csms.call("TriggerMessage", {"requestedMessage": "StatusNotification"})
    csms.call("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1})
    notes = csms.payloads("StatusNotification")[2:]
    assert [(n["connectorId"], n["status"]) for n in notes] == [
        (0, "Available"),
        (1, "Available"),
        (1, "Available"),
    ]


def test_a_triggered_meter_values_during_a_transaction_belongs_to_it(csms: FakeCsms) -> None:
    tx = csms.start_charging()
    csms.advance(10)
    csms.call("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1})
    csms.advance(1)
    (values,) = csms.payloads("MeterValues")
    assert values["transactionId"] == tx.transaction_id
    assert {v["context"] for v in values["meterValue"][0]["sampledValue"]} == {"Trigger"}


def test_trigger_message_for_a_connector_that_does_not_exist_is_rejected(csms: FakeCsms) -> None:
    answer = csms.call(
        "TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 2}
    )
    assert answer == {"status": "Rejected"}


# ---------------------------------------------------------------- refusals


def test_an_unknown_action_is_not_implemented(csms: FakeCsms) -> None:
    assert refusal(csms, "MakeCoffee") is ErrorCode.NOT_IMPLEMENTED


@pytest.mark.parametrize("action", sorted(CSMS_SECURITY_EXTENSION))
def test_a_security_extension_action_is_not_supported(csms: FakeCsms, action: str) -> None:
    assert refusal(csms, action) is ErrorCode.NOT_SUPPORTED


@pytest.mark.parametrize(
    "action",
    ["TriggerMessage", "SetChargingProfile", "ReserveNow", "SendLocalList", "UpdateFirmware"],
)
def test_an_action_of_a_switched_off_profile_is_not_supported(
    make_csms: MakeCsms, action: str
) -> None:
    csms = make_csms(profiles=("Core",))
    assert refusal(csms, action) is ErrorCode.NOT_SUPPORTED


def test_the_csms_is_answered_before_a_reset_restarts_the_charger(csms: FakeCsms) -> None:
    answer = csms.dispatch("Reset", {"type": "Hard"})
    assert answer == {"status": "Accepted"}
    assert csms.wb.online and csms.wb.take_effects() == []  # the restart waits for tick
    csms.advance(0)
    assert len(csms.reboots) == 1
