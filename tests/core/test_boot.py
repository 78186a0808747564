"""BootNotification (OCPP 1.6 §4.2): registration Accepted, Pending, Rejected."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from emulator.protocol.errors import ErrorCode, RemoteProtocolError

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]


def boot_times(csms: FakeCsms) -> list[float]:
    return [s.at - csms.T0 for s in csms.sent_of("BootNotification")]


def test_the_boot_notification_describes_the_charger(make_csms: MakeCsms) -> None:
    csms = make_csms(vendor="ACWallbox", model="AC7-1P", firmware_version="1.09.3")
    (boot,) = csms.payloads("BootNotification")
    assert boot == {
        "chargePointVendor": "ACWallbox",
        "chargePointModel": "AC7-1P",
        "chargePointSerialNumber": "CP-TEST-0001",
        "firmwareVersion": "1.09.3",
    }


@pytest.mark.parametrize("registration", ["Pending", "Rejected"])
def test_until_accepted_nothing_but_boot_notification_is_sent_then_it_is_retried(
    make_csms: MakeCsms, registration: str
) -> None:
    csms = make_csms(boot_status=registration, boot_interval=30)
    csms.plug_in()  # status changes and a card wait for the registration
    csms.present("ALICE")
    csms.advance(29)
    assert csms.actions() == ["BootNotification"]
    csms.advance(1)
    assert boot_times(csms) == [0, 30]
    csms.boot_status = "Accepted"
    csms.advance(30)
    assert boot_times(csms) == [0, 30, 60]
    assert csms.wb.accepted
    assert csms.actions()[3:] == ["StatusNotification", "StatusNotification"]
    assert csms.statuses(1) == ["Preparing"]  # only the status as it is now


def test_a_registration_interval_of_zero_retries_after_sixty_seconds(make_csms: MakeCsms) -> None:
    csms = make_csms(boot_status="Pending", boot_interval=0)
    csms.advance(130)
    assert boot_times(csms) == [0, 60, 120]


@pytest.mark.parametrize(("failure", "boots"), [("error", [0, 60]), ("silence", [0, 90])])
def test_a_failed_boot_notification_is_retried_after_sixty_seconds(
    make_csms: MakeCsms, failure: str, boots: list[float]
) -> None:
    csms = make_csms(connect=False)
    csms.answer_next("BootNotification", csms.error() if failure == "error" else csms.SILENT)
    csms.connect()
    csms.advance(200)
    assert boot_times(csms) == boots  # no answer: the 30 s response timeout comes first
    assert csms.wb.accepted


def test_no_heartbeat_is_sent_before_the_registration_is_accepted(make_csms: MakeCsms) -> None:
    csms = make_csms(boot_status="Pending", boot_interval=600)
    csms.advance(599)
    assert csms.actions() == ["BootNotification"]


CSMS_CALLS: dict[str, dict[str, Any]] = {
    "GetConfiguration": {},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "30"},
    "RemoteStartTransaction": {"idTag": "ALICE"},
    "Reset": {"type": "Soft"},
    "TriggerMessage": {"requestedMessage": "BootNotification"},
    "UnlockConnector": {"connectorId": 1},
}


@pytest.mark.parametrize("action", CSMS_CALLS)
def test_while_rejected_every_csms_call_is_a_security_error(
    make_csms: MakeCsms, action: str
) -> None:
    csms = make_csms(boot_status="Rejected", boot_interval=300)
    with pytest.raises(RemoteProtocolError) as refused:
        csms.call(action, CSMS_CALLS[action])
    assert refused.value.code is ErrorCode.SECURITY_ERROR


def test_while_pending_the_csms_may_configure_the_charger(make_csms: MakeCsms) -> None:
    csms = make_csms(boot_status="Pending", boot_interval=300)
    assert csms.change_configuration("MeterValueSampleInterval", "30") == "Accepted"
    assert csms.actions() == ["BootNotification"]


@pytest.mark.parametrize(("boot_on_reconnect", "boots"), [(False, 1), (True, 2)])
def test_a_reconnect_boots_again_only_when_configured_to(
    make_csms: MakeCsms, boot_on_reconnect: bool, boots: int
) -> None:
    csms = make_csms(wallbox_options={"boot_on_reconnect": boot_on_reconnect})
    csms.disconnect()
    csms.advance(100)
    csms.connect()
    assert len(csms.sent_of("BootNotification")) == boots
    assert csms.wb.accepted


def test_a_charger_disconnected_while_pending_boots_again_on_reconnect(make_csms: MakeCsms) -> None:
    csms = make_csms(boot_status="Pending", boot_interval=300)
    csms.disconnect()
    csms.advance(10)
    csms.boot_status = "Accepted"
    csms.connect()
    assert boot_times(csms) == [0, 10]
    assert csms.wb.accepted


def test_after_a_power_loss_the_charger_is_back_on_the_network_when_the_outage_ends(
    csms: FakeCsms,
) -> None:
    """The restart effect carries the outage: the charger is off the network that long,
    then boots again (the transport reconnects after the Reboot effect's delay)."""
    csms.advance(5)
    lost = csms.now
    csms.wb.power_loss(csms.now, outage=120.0)
    csms.advance(0)
    assert csms.reboots == [lost] and not csms.wb.online
    csms.advance(119.0)
    assert "BootNotification" not in csms.actions(since=lost)
    csms.advance(2.0)
    assert csms.sent_of("BootNotification")[-1].at == lost + 120.0
