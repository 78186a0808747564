"""Transactions: meter readings, the reasons they end, and what a reset does to them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from emulator.core.status import Status
from emulator.core.transaction import StopReason, Transaction

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]


def registers(csms: FakeCsms) -> list[int]:
    """Every energy register reading the CSMS received, in the order it got them."""
    readings: list[int] = []
    for sent in csms.sent:
        if sent.action == "StartTransaction":
            readings.append(sent.payload["meterStart"])
        elif sent.action == "StopTransaction":
            readings.append(sent.payload["meterStop"])
        elif sent.action == "MeterValues":
            readings += [
                int(value["value"])
                for value in sent.payload["meterValue"][0]["sampledValue"]
                if value["measurand"] == "Energy.Active.Import.Register"
            ]
    return readings


def test_meter_stop_minus_meter_start_is_the_energy_the_ev_received(csms: FakeCsms) -> None:
    ev = csms.ev(energy_wh=7_500)
    tx = csms.start_charging(ev=ev)
    csms.advance(3 * 3600)  # long enough to fill the EV
    csms.present("ALICE")
    csms.advance(1)
    (start,) = csms.payloads("StartTransaction")
    (stop,) = csms.payloads("StopTransaction")
    assert isinstance(start["meterStart"], int) and isinstance(stop["meterStop"], int)
    assert stop["meterStop"] - start["meterStart"] == tx.energy_wh
    assert ev.delivered_wh == pytest.approx(7_500, abs=1e-3)
    assert abs(tx.energy_wh - ev.delivered_wh) < 1  # the register counts whole Wh


def test_a_transaction_stopped_while_charging_reports_the_energy_delivered_so_far(
    csms: FakeCsms,
) -> None:
    ev = csms.ev(energy_wh=50_000)
    tx = csms.start_charging(ev=ev)
    csms.advance(1234)
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    assert tx.energy_wh is not None
    assert abs(tx.energy_wh - ev.delivered_wh) < 1
    # 16 A x 3 phases x about 230 V x PF 0.99 for 1234 s: about 3.7 kWh
    assert 3_600 < tx.energy_wh < 3_900


def test_the_energy_register_never_goes_back_across_transactions(csms: FakeCsms) -> None:
    first = csms.start_charging(ev=csms.ev(4_000))
    csms.advance(1800)
    csms.unplug()
    csms.advance(3600)
    second = csms.start_charging("BOB", csms.ev(2_000))
    csms.advance(1800)
    csms.unplug()
    csms.advance(1)
    readings = registers(csms)
    assert readings == sorted(readings)
    assert len(readings) > 4
    assert first.meter_stop is not None
    assert second.meter_start == first.meter_stop  # nothing flows between sessions


def stop_by_card(csms: FakeCsms, tx: Transaction) -> None:
    csms.present(tx.id_tag)


def stop_remotely(csms: FakeCsms, tx: Transaction) -> None:
    assert csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id}) == {
        "status": "Accepted"
    }


def stop_by_unplugging(csms: FakeCsms, tx: Transaction) -> None:
    csms.unplug()


def stop_by_soft_reset(csms: FakeCsms, tx: Transaction) -> None:
    assert csms.call("Reset", {"type": "Soft"}) == {"status": "Accepted"}


def stop_by_unlocking(csms: FakeCsms, tx: Transaction) -> None:
    assert csms.call("UnlockConnector", {"connectorId": 1}) == {"status": "Unlocked"}


def stop_by_fault(csms: FakeCsms, tx: Transaction) -> None:
    csms.set_fault("GroundFailure")


def deauthorized_at_start(csms: FakeCsms, tx: Transaction) -> None:
    """Nothing to do: StartTransaction.conf said Blocked (StopTransactionOnInvalidId true)."""


STOPS: dict[StopReason, Callable[[FakeCsms, Transaction], None]] = {
    StopReason.LOCAL: stop_by_card,
    StopReason.REMOTE: stop_remotely,
    StopReason.EV_DISCONNECTED: stop_by_unplugging,
    StopReason.SOFT_RESET: stop_by_soft_reset,
    StopReason.UNLOCK_COMMAND: stop_by_unlocking,
    StopReason.OTHER: stop_by_fault,
    StopReason.DE_AUTHORIZED: deauthorized_at_start,
}


def blocked_start(payload: dict[str, Any]) -> dict[str, Any]:
    return {"transactionId": 4242, "idTagInfo": {"status": "Blocked"}}


@pytest.mark.parametrize("reason", STOPS)
def test_each_way_of_ending_a_transaction_sends_its_reason(
    csms: FakeCsms, reason: StopReason
) -> None:
    if reason is StopReason.DE_AUTHORIZED:
        csms.answer("StartTransaction", blocked_start)
    tx = csms.start_charging()
    if tx.stop_reason is None:
        csms.advance(300)
    STOPS[reason](csms, tx)
    csms.advance(1)
    (stop,) = csms.payloads("StopTransaction")
    assert (stop["reason"], stop["transactionId"]) == (reason.value, tx.transaction_id)
    assert tx.stop_reason is reason
    assert stop["meterStop"] == tx.meter_stop >= tx.meter_start


def test_a_stop_by_card_names_the_card_and_a_remote_stop_does_not(csms: FakeCsms) -> None:
    csms.start_charging()
    csms.present("ALICE")
    csms.unplug()
    csms.advance(1)  # transaction messages are paced by drain_interval
    tx = csms.start_charging("BOB")
    csms.advance(1)
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    csms.advance(1)
    by_card, remote = csms.payloads("StopTransaction")
    assert by_card["idTag"] == "ALICE"
    assert "idTag" not in remote


def test_another_drivers_card_does_not_stop_the_transaction(csms: FakeCsms) -> None:
    tx = csms.start_charging()
    csms.present("BOB")
    csms.advance(60)
    assert tx.stop_reason is None
    assert csms.status is Status.CHARGING
    assert csms.sent_of("Authorize")[-1].payload == {"idTag": "ALICE"}


def test_remote_stop_of_an_unknown_transaction_is_rejected(csms: FakeCsms) -> None:
    tx = csms.start_charging()
    assert tx.transaction_id is not None
    answer = csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id + 1})
    assert answer == {"status": "Rejected"}
    assert tx.stop_reason is None


def test_a_soft_reset_stops_the_transaction_before_the_charger_restarts(csms: FakeCsms) -> None:
    csms.start_charging()
    csms.advance(100)
    reset_at = csms.now
    csms.call("Reset", {"type": "Soft"})
    csms.advance(120)
    after = csms.actions(since=reset_at)
    assert after.index("StopTransaction") < after.index("BootNotification")
    assert len(csms.reboots) == 1
    assert csms.wb.accepted


def test_a_soft_reset_restarts_as_soon_as_the_stop_transaction_is_acknowledged(
    csms: FakeCsms,
) -> None:
    csms.start_charging()
    csms.advance(100)
    csms.call("Reset", {"type": "Soft"})
    csms.advance(60)
    (stop,) = csms.sent_of("StopTransaction")
    assert [t - stop.at for t in csms.reboots] == [0]


def test_a_soft_reset_without_a_transaction_restarts_at_once(csms: FakeCsms) -> None:
    csms.advance(10)
    csms.call("Reset", {"type": "Soft"})
    assert [t - csms.T0 for t in csms.reboots] == [10]


def test_a_soft_reset_waits_at_most_thirty_seconds_for_an_unanswered_stop(
    csms: FakeCsms,
) -> None:
    csms.start_charging()
    csms.answer("StopTransaction", csms.SILENT)
    csms.advance(100)
    csms.call("Reset", {"type": "Soft"})
    csms.answer_normally("StopTransaction")
    csms.advance(120)
    assert [t - csms.T0 for t in csms.reboots] == [130]
    # The unanswered StopTransaction survived the restart and went out again.
    assert [s.answer for s in csms.sent_of("StopTransaction")][-1] == {}


def test_a_hard_reset_loses_the_running_transaction(csms: FakeCsms) -> None:
    csms.change_configuration("MeterValueSampleInterval", "4")
    csms.answer_next("StartTransaction", csms.error("InternalError"))  # retried after 10 s
    tx = csms.start_charging()
    csms.advance(5)  # a sample is queued behind the StartTransaction that waits to be retried
    csms.call("Reset", {"type": "Hard"})
    csms.advance(600)
    assert [t - csms.T0 for t in csms.reboots] == [5]
    assert csms.wb.lost_transactions == [tx]
    assert tx.stop_reason is StopReason.HARD_RESET
    assert csms.actions().count("StartTransaction") == 1
    assert csms.sent_of("StopTransaction") == csms.sent_of("MeterValues") == []
    dropped = csms.wb.outbox.ledger.dropped
    assert (
        dropped["StartTransaction: hard reset loses the running transaction (reference §3.1)"] == 1
    )
    assert dropped["MeterValues: hard reset loses the running transaction (reference §3.1)"] == 1
    assert csms.status is Status.PREPARING  # the cable is still in


def test_after_a_hard_reset_no_stop_transaction_is_ever_sent(csms: FakeCsms) -> None:
    tx = csms.start_charging()
    csms.advance(600)
    csms.call("Reset", {"type": "Hard"})
    csms.advance(600)
    csms.unplug()
    csms.advance(600)
    assert csms.sent_of("StopTransaction") == []
    assert tx.meter_stop is None
    assert csms.wb.connectors[1].transaction is None


def test_a_hard_reset_also_loses_a_start_transaction_awaiting_its_answer(csms: FakeCsms) -> None:
    csms.answer_next("StartTransaction", csms.SILENT)
    tx = csms.start_charging()
    csms.advance(5)
    csms.call("Reset", {"type": "Hard"})
    csms.advance(600)
    assert len(csms.sent_of("StartTransaction")) == 1  # not sent again after the restart
    assert csms.wb.lost_transactions == [tx]
    assert csms.wb.outbox.ledger.resent_after_disconnect["StartTransaction"] == 0


def test_the_ev_keeps_the_energy_it_got_before_a_hard_reset(csms: FakeCsms) -> None:
    ev = csms.ev(energy_wh=5_000)
    first = csms.start_charging(ev=ev)
    csms.advance(630)  # the last sample was at 600 s
    csms.call("Reset", {"type": "Hard"})
    csms.advance(60)
    csms.present("ALICE")  # a new session for the same car, still plugged in
    csms.advance(3 * 3600)
    register = csms.wb.connectors[1].meter.register_wh()
    assert abs(register - first.meter_start - 5_000) <= 1  # not a Wh more than it wanted
    assert ev.delivered_wh == pytest.approx(5_000, abs=0.1)


def test_without_stop_on_ev_side_disconnect_unplugging_suspends_the_transaction(
    csms: FakeCsms,
) -> None:
    csms.change_configuration("StopTransactionOnEVSideDisconnect", "false")
    tx = csms.start_charging()
    csms.advance(60)
    csms.unplug()
    register = csms.wb.connectors[1].meter.register_wh()
    csms.advance(600)
    assert (csms.status, tx.stop_reason) == (Status.SUSPENDED_EV, None)
    assert csms.wb.connectors[1].meter.register_wh() == register
    csms.plug_in()
    csms.advance(60)
    assert csms.status is Status.CHARGING
    csms.present("ALICE")
    csms.advance(1)
    assert csms.statuses() == [
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEV",
        "Charging",
        "Finishing",
    ]
    assert [s["reason"] for s in csms.payloads("StopTransaction")] == ["Local"]


@pytest.mark.parametrize("stop_on_disconnect", ["true", "false"])
@pytest.mark.parametrize("unlock_on_disconnect", ["true", "false"])
def test_unlock_connector_on_ev_side_disconnect_decides_whether_the_socket_is_released(
    csms: FakeCsms, stop_on_disconnect: str, unlock_on_disconnect: str
) -> None:
    csms.change_configuration("StopTransactionOnEVSideDisconnect", stop_on_disconnect)
    csms.change_configuration("UnlockConnectorOnEVSideDisconnect", unlock_on_disconnect)
    csms.start_charging()
    assert csms.wb.connectors[1].locked
    csms.unplug()
    assert csms.wb.connectors[1].locked is (unlock_on_disconnect == "false")


def test_a_stopped_transaction_unlocks_the_socket(csms: FakeCsms) -> None:
    tx = csms.start_charging()
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    assert not csms.wb.connectors[1].locked
    assert csms.status is Status.FINISHING


def test_a_card_of_the_same_group_stops_the_transaction(csms: FakeCsms) -> None:
    for card in ("ALICE", "BOB"):
        csms.id_tags[card] = {"status": "Accepted", "parentIdTag": "FAMILY"}
    csms.start_charging("BOB")  # BOB and his group are now cached
    csms.unplug()
    csms.advance(1)
    tx = csms.start_charging("ALICE")
    csms.present("BOB")
    assert tx.stop_reason is StopReason.LOCAL
    csms.advance(1)
    assert csms.payloads("StopTransaction")[-1]["idTag"] == "BOB"
