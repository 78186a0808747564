"""Charger-initiated CALLs: one at a time, transaction messages retried, kept and paced."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from emulator.core.status import Status

if TYPE_CHECKING:
    from conftest import Answer, FakeCsms, Sent

    MakeCsms = Callable[..., FakeCsms]

TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


def times(sent: list[Sent], since: float) -> list[float]:
    return [round(s.at - since, 6) for s in sent]


def test_only_one_call_is_outstanding_at_a_time(csms: FakeCsms) -> None:
    csms.answer_next("StatusNotification", csms.SILENT)
    csms.plug_in()  # StatusNotification Preparing, never answered
    csms.present("ALICE")
    csms.advance(29.9)
    assert csms.actions()[-1] == "StatusNotification"
    assert csms.sent_of("Authorize") == []
    csms.advance(0.1)  # the response timeout frees the line
    assert times(csms.sent_of("Authorize"), csms.T0) == [30]
    assert csms.wb.timeouts == 1
    assert csms.wb.outbox.ledger.dropped["StatusNotification: timeout"] == 1


def test_a_heartbeat_due_behind_an_unanswered_call_waits_for_the_line(csms: FakeCsms) -> None:
    csms.change_configuration("HeartbeatInterval", "10")
    csms.answer_next("StatusNotification", csms.SILENT)
    csms.plug_in()
    csms.advance(60)
    # One Heartbeat waits while the StatusNotification is unanswered, then the rhythm resumes.
    assert times(csms.sent_of("Heartbeat"), csms.T0) == [30, 40, 50, 60]


@pytest.mark.parametrize(("attempts", "interval"), [(6, 10), (3, 5), (1, 10)])
def test_a_transaction_message_refused_by_callerror_is_retried_then_dropped(
    csms: FakeCsms, attempts: int, interval: int
) -> None:
    csms.change_configuration("TransactionMessageAttempts", str(attempts))
    csms.change_configuration("TransactionMessageRetryInterval", str(interval))
    csms.change_configuration("MeterValueSampleInterval", "0")
    csms.answer("StartTransaction", csms.error("InternalError"))
    tx = csms.start_charging()
    csms.advance(3600)
    sends = times(csms.sent_of("StartTransaction"), tx.started_at)
    # OCPP 1.6 §4.10: wait RetryInterval x attempts so far before each new attempt.
    waits = [interval * n for n in range(1, attempts)]
    assert sends == [sum(waits[:n]) for n in range(attempts)]
    ledger = csms.wb.outbox.ledger
    assert (
        ledger.dropped[f"StartTransaction: TransactionMessageAttempts ({attempts}) exhausted"] == 1
    )
    assert ledger.retried["StartTransaction"] == attempts - 1
    # The CSMS never learnt the transaction, so its StopTransaction has no id to carry.
    csms.present("ALICE")
    csms.advance(1)
    assert csms.sent_of("StopTransaction") == []
    assert ledger.dropped["StopTransaction: StartTransaction never acknowledged"] == 1


def test_a_transaction_message_without_answer_is_retried_after_timeout_and_interval(
    csms: FakeCsms,
) -> None:
    csms.change_configuration("TransactionMessageAttempts", "3")
    csms.change_configuration("MeterValueSampleInterval", "0")
    csms.answer("StartTransaction", csms.SILENT)
    tx = csms.start_charging()
    csms.advance(3600)
    # Sent at 0; timeout at 30 + 10 -> 40; timeout at 70 + 20 -> 90; timeout at 120: dropped.
    assert times(csms.sent_of("StartTransaction"), tx.started_at) == [0, 40, 90]
    assert csms.wb.timeouts == 3
    assert (
        csms.wb.outbox.ledger.dropped["StartTransaction: TransactionMessageAttempts (3) exhausted"]
        == 1
    )


def test_messages_queued_behind_a_retried_start_carry_its_transaction_id(csms: FakeCsms) -> None:
    csms.change_configuration("MeterValueSampleInterval", "4")
    csms.answer_next("StartTransaction", csms.error(), csms.error())
    tx = csms.start_charging()
    csms.advance(40)
    sends = csms.sent_of("StartTransaction")
    assert times(sends, tx.started_at) == [0, 10, 30]
    samples = csms.payloads("MeterValues")
    assert len(samples) == 10
    assert {s["transactionId"] for s in samples} == {tx.transaction_id} == {1001}
    # Samples taken while the StartTransaction waited went out after it, in order.
    first_sample = csms.sent_of("MeterValues")[0]
    assert first_sample.at > sends[-1].at


def test_a_non_transaction_message_is_not_retried(csms: FakeCsms) -> None:
    csms.answer_next("StatusNotification", csms.error("GenericError"))
    csms.plug_in()
    csms.advance(300)
    assert csms.statuses() == ["Available", "Preparing"]
    assert csms.wb.outbox.ledger.dropped["StatusNotification: CALLERROR GenericError"] == 1


def test_transaction_messages_survive_a_disconnect_and_go_out_in_order_with_pacing(
    csms: FakeCsms,
) -> None:
    tx = csms.start_charging()
    csms.advance(30)
    csms.disconnect()
    csms.advance(370)  # samples at 60 .. 360 are taken offline
    csms.present("ALICE")  # the driver stops with the same card: no authorization needed
    csms.advance(100)
    assert csms.wb.outbox.transaction_backlog == 7
    reconnected = csms.now
    csms.connect()
    csms.advance(5)
    backlog = [s for s in csms.sent if s.at >= reconnected and s.action in TX_ACTIONS]
    assert [s.action for s in backlog] == ["MeterValues"] * 6 + ["StopTransaction"]
    stamps = [
        s.payload["timestamp"]
        if s.action == "StopTransaction"
        else s.payload["meterValue"][0]["timestamp"]
        for s in backlog
    ]
    assert stamps == sorted(stamps)
    assert {s.payload["transactionId"] for s in backlog} == {tx.transaction_id}
    gaps = np.diff([s.at for s in backlog])
    assert np.all(gaps >= csms.wb.outbox.drain_interval - 1e-6)
    assert backlog[-1].at - reconnected < 1.0


def test_a_transaction_message_in_flight_when_the_connection_drops_is_sent_again(
    csms: FakeCsms,
) -> None:
    csms.answer_next("StartTransaction", csms.SILENT)
    tx = csms.start_charging()
    csms.advance(5)
    csms.disconnect()
    csms.advance(60)
    csms.connect()
    csms.advance(1)
    assert len(csms.sent_of("StartTransaction")) == 2
    assert tx.transaction_id is not None
    ledger = csms.wb.outbox.ledger
    assert ledger.resent_after_disconnect["StartTransaction"] == 1
    assert ledger.retried["StartTransaction"] == 0  # a lost connection is not a failed attempt


def test_status_notifications_made_offline_are_coalesced_to_the_newest(csms: FakeCsms) -> None:
    superseded = csms.wb.outbox.ledger.dropped["StatusNotification: superseded by a newer one"]
    csms.disconnect()
    csms.plug_in()
    csms.advance(10)
    csms.unplug()
    csms.advance(10)
    csms.plug_in()
    csms.advance(10)
    reconnected = csms.now
    csms.connect()
    assert [
        s.payload["status"] for s in csms.sent_of("StatusNotification") if s.at >= reconnected
    ] == ["Preparing"]
    assert csms.wb.outbox.ledger.dropped["StatusNotification: superseded by a newer one"] == (
        superseded + 2
    )


def test_heartbeats_are_not_queued_while_offline(csms: FakeCsms) -> None:
    csms.disconnect()
    csms.advance(3600)
    reconnected = csms.now
    csms.connect()
    csms.advance(59)
    assert csms.actions(since=reconnected) == []
    csms.advance(1)
    assert csms.actions(since=reconnected) == ["Heartbeat"]


def test_a_call_lost_with_the_connection_is_accounted_for(csms: FakeCsms) -> None:
    csms.answer_next("Heartbeat", csms.SILENT)
    csms.advance(65)
    csms.disconnect()
    csms.assert_ledger_balanced()
    assert csms.wb.outbox.ledger.dropped["Heartbeat: connection lost"] == 1


def test_an_authorize_waiting_for_the_line_when_it_drops_is_decided_offline(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(offline_local_list_only=False)
    csms.change_configuration("AllowOfflineTxForUnknownId", "true")
    csms.answer_next("StatusNotification", csms.SILENT)
    csms.plug_in()  # its StatusNotification holds the line
    csms.present("DAVE")  # Authorize queued behind it
    csms.advance(5)
    csms.disconnect()
    assert [tx.id_tag for tx in csms.wb.transactions] == ["DAVE"]
    assert csms.status is Status.CHARGING
    csms.advance(60)
    csms.connect()
    csms.advance(1)
    assert csms.sent_of("Authorize") == []


def message_key(sent: Sent) -> tuple[str, str]:
    if sent.action == "MeterValues":
        return sent.action, sent.payload["meterValue"][0]["timestamp"]
    return sent.action, sent.payload["timestamp"]


def test_no_transaction_message_is_lost_or_acknowledged_twice_through_failures(
    csms: FakeCsms,
) -> None:
    rng = np.random.default_rng(42)
    csms.change_configuration("TransactionMessageAttempts", "100")
    csms.change_configuration("MeterValueSampleInterval", "10")

    def flaky(action: str) -> Callable[[dict[str, Any]], Answer]:
        def answer(payload: dict[str, Any]) -> Answer:
            luck = rng.random()
            if luck < 0.3:
                return csms.error("InternalError")
            if luck < 0.4:
                return csms.SILENT
            return csms.usual_answer(action, payload)

        return answer

    for action in TX_ACTIONS:
        csms.answer(action, flaky(action))
    tx = csms.start_charging(ev=csms.ev(5_000))
    for _ in range(6):
        csms.advance(float(rng.uniform(60, 400)))
        csms.disconnect()
        csms.advance(float(rng.uniform(10, 300)))
        csms.connect()
    csms.present("ALICE")
    for action in TX_ACTIONS:
        csms.answer_normally(action)
    csms.advance(3600)

    assert tx.stop_reason is not None and csms.wb.outbox.transaction_backlog == 0
    sent = [s for s in csms.sent if s.action in TX_ACTIONS]
    acknowledged = Counter(message_key(s) for s in sent if isinstance(s.answer, dict))
    received = {message_key(s) for s in sent}
    assert set(acknowledged) == received, "a message was given up"
    assert set(acknowledged.values()) == {1}, "a message was acknowledged twice"
    assert len([k for k in acknowledged if k[0] == "MeterValues"]) == tx.samples_sent
    assert not [k for k in csms.wb.outbox.ledger.dropped if k.startswith(TX_ACTIONS)]
    assert csms.wb.outbox.ledger.retried.total() > 0 and csms.wb.timeouts > 0
