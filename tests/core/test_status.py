"""Connector status: derived from facts, checked against the OCPP 1.6 §4.9 table."""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import product
from typing import TYPE_CHECKING

import pytest

from emulator.core.status import (
    CONNECTOR_ZERO_STATUSES,
    FORBIDDEN,
    TRANSITIONS,
    Status,
    TransitionLog,
    allowed,
    check_transition,
)
from emulator.protocol.errors import LocalProtocolError

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]

A, P, C, SEV, SEVSE, F, U, X = (
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEV",
    "SuspendedEVSE",
    "Finishing",
    "Unavailable",
    "Faulted",
)


@pytest.mark.parametrize(("old", "new"), list(product(Status, Status)))
def test_check_transition_refuses_exactly_the_pairs_outside_the_table(
    old: Status, new: Status
) -> None:
    if old == new or new in TRANSITIONS[old]:
        check_transition(1, old, new)
    else:
        with pytest.raises(LocalProtocolError):
            check_transition(1, old, new)


@pytest.mark.parametrize("status", list(Status))
def test_connector_zero_is_only_available_unavailable_or_faulted(status: Status) -> None:
    if status in CONNECTOR_ZERO_STATUSES:
        check_transition(0, None, status)
    else:
        with pytest.raises(LocalProtocolError):
            check_transition(0, None, status)


def test_a_strict_wallbox_raises_on_a_derived_change_outside_the_table(csms: FakeCsms) -> None:
    csms.wb.connectors[1].reported = Status.CHARGING  # pretend a transaction just ran
    with pytest.raises(LocalProtocolError, match="Charging -> Preparing"):
        csms.wb.plug_in(csms.now, ev=csms.ev())


def test_after_boot_the_charger_reports_connectors_zero_and_one_available(
    csms: FakeCsms,
) -> None:
    notes = csms.payloads("StatusNotification")
    assert [(n["connectorId"], n["status"], n["errorCode"]) for n in notes] == [
        (0, A, "NoError"),
        (1, A, "NoError"),
    ]
    assert csms.actions()[0] == "BootNotification"


def test_a_charging_session_goes_through_the_ocpp_statuses(csms: FakeCsms) -> None:
    csms.plug_in(csms.ev(energy_wh=5_000))
    csms.present("ALICE")
    csms.advance(3600)  # 5 kWh at 16 A x 3 phases takes about 28 minutes
    assert csms.status is Status.SUSPENDED_EV
    csms.present("ALICE")  # stop by card, the cable stays in
    csms.advance(10)
    csms.unplug()
    csms.advance(10)
    assert csms.statuses() == [A, P, C, SEV, F, A]
    assert [(a, b) for c, a, b in csms.transitions if c == 1] == [
        (A, P),
        (P, C),
        (C, SEV),
        (SEV, F),
        (F, A),
    ]


def test_an_ev_pausing_on_its_own_is_suspended_ev_and_resumes_charging(csms: FakeCsms) -> None:
    csms.start_charging()
    csms.advance(60)
    csms.wb.ev_pause(csms.now, paused=True)
    csms.advance(60)
    assert csms.status is Status.SUSPENDED_EV
    assert csms.wb.connectors[1].meter.current_a == 0
    csms.wb.ev_pause(csms.now, paused=False)
    csms.advance(60)
    assert csms.statuses()[-3:] == [C, SEV, C]


def test_an_ev_that_cannot_use_the_offered_current_is_suspended_evse(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(max_current=5.0)  # below the EV's 6 A minimum (IEC 61851)
    csms.start_charging()
    csms.advance(120)
    assert csms.status is Status.SUSPENDED_EVSE
    assert csms.wb.connectors[1].meter.current_a == 0
    assert csms.statuses() == [A, P, SEVSE]


# ---------------------------------------------------------------- ChangeAvailability


def change_availability(csms: FakeCsms, connector_id: int, operative: bool) -> str:
    kind = "Operative" if operative else "Inoperative"
    answer = csms.call("ChangeAvailability", {"connectorId": connector_id, "type": kind})
    status: str = answer["status"]
    return status


def test_an_idle_connector_made_inoperative_is_unavailable_until_made_operative(
    csms: FakeCsms,
) -> None:
    assert change_availability(csms, 1, operative=False) == "Accepted"
    assert csms.status is Status.UNAVAILABLE
    assert change_availability(csms, 1, operative=False) == "Accepted"  # already is
    assert change_availability(csms, 1, operative=True) == "Accepted"
    assert csms.statuses() == [A, U, A]
    assert csms.statuses(0) == [A]


def test_an_unavailable_connector_starts_no_session(csms: FakeCsms) -> None:
    change_availability(csms, 1, operative=False)
    csms.plug_in()
    csms.present("ALICE")
    answer = csms.call("RemoteStartTransaction", {"idTag": "ALICE", "connectorId": 1})
    assert answer == {"status": "Rejected"}
    assert csms.sent_of("Authorize") == csms.sent_of("StartTransaction") == []
    assert csms.status is Status.UNAVAILABLE


def test_inoperative_during_a_transaction_is_scheduled_and_applied_when_it_stops(
    csms: FakeCsms,
) -> None:
    tx = csms.start_charging()
    assert change_availability(csms, 1, operative=False) == "Scheduled"
    csms.advance(120)
    assert csms.status is Status.CHARGING
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    assert csms.status is Status.UNAVAILABLE  # C8: straight to Unavailable, no Finishing
    csms.advance(1)  # the StatusNotification follows the (paced) StopTransaction
    assert csms.statuses() == [A, P, C, U]


def test_operative_again_before_the_transaction_stops_cancels_the_scheduled_change(
    csms: FakeCsms,
) -> None:
    tx = csms.start_charging()
    assert change_availability(csms, 1, operative=False) == "Scheduled"
    assert change_availability(csms, 1, operative=True) == "Accepted"
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    assert csms.status is Status.FINISHING


def test_connector_zero_inoperative_makes_every_connector_unavailable(csms: FakeCsms) -> None:
    assert change_availability(csms, 0, operative=False) == "Accepted"
    assert (csms.wb.status(0), csms.wb.status(1)) == (Status.UNAVAILABLE, Status.UNAVAILABLE)
    assert change_availability(csms, 0, operative=True) == "Accepted"
    assert (csms.statuses(0), csms.statuses(1)) == ([A, U, A], [A, U, A])


def test_connector_zero_inoperative_during_a_transaction_is_scheduled_for_that_connector(
    csms: FakeCsms,
) -> None:
    tx = csms.start_charging()
    assert change_availability(csms, 0, operative=False) == "Scheduled"
    # The charge point too becomes Unavailable when the scheduled change takes effect.
    assert (csms.wb.status(0), csms.wb.status(1)) == (Status.AVAILABLE, Status.CHARGING)
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    assert (csms.wb.status(0), csms.wb.status(1)) == (Status.UNAVAILABLE, Status.UNAVAILABLE)


def test_change_availability_of_a_connector_that_does_not_exist_is_rejected(
    csms: FakeCsms,
) -> None:
    assert change_availability(csms, 2, operative=False) == "Rejected"
    assert csms.status is Status.AVAILABLE


def test_a_finishing_connector_made_unavailable_and_operative_again_is_preparing(
    csms: FakeCsms,
) -> None:
    tx = csms.start_charging()
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    assert csms.status is Status.FINISHING
    change_availability(csms, 1, operative=False)
    change_availability(csms, 1, operative=True)
    # H2 (the cable is still in); Unavailable -> Finishing is not in the table.
    csms.advance(1)  # the StatusNotifications follow the (paced) StopTransaction
    assert csms.statuses()[-3:] == [F, U, P]
    csms.unplug()
    assert csms.status is Status.AVAILABLE


def test_a_scheduled_unavailability_with_the_cable_still_in_returns_to_preparing(
    csms: FakeCsms,
) -> None:
    tx = csms.start_charging()
    change_availability(csms, 1, operative=False)
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    change_availability(csms, 1, operative=True)
    csms.advance(1)  # the StatusNotifications follow the (paced) StopTransaction
    assert csms.statuses()[-3:] == [C, U, P]


# ---------------------------------------------------------------- faults


def test_a_fault_is_reported_with_its_error_code_and_cleared_to_available(
    csms: FakeCsms,
) -> None:
    csms.set_fault("GroundFailure")
    csms.clear_fault()
    notes = [(n["status"], n["errorCode"]) for n in csms.payloads("StatusNotification")][2:]
    assert notes == [(X, "GroundFailure"), (A, "NoError")]


def test_a_fault_during_a_transaction_stops_it_and_returns_to_finishing(csms: FakeCsms) -> None:
    csms.start_charging()
    csms.set_fault("OverCurrentFailure")
    csms.advance(1)
    assert csms.status is Status.FAULTED
    csms.clear_fault()
    assert csms.statuses() == [A, P, C, X, F]


def test_a_fault_of_the_charge_point_is_reported_on_connector_zero(csms: FakeCsms) -> None:
    csms.set_fault("HighTemperature", connector_id=0)
    assert csms.payloads("StatusNotification")[-1] == {
        "connectorId": 0,
        "errorCode": "HighTemperature",
        "status": X,
        "timestamp": csms.payloads("StatusNotification")[-1]["timestamp"],
    }
    csms.clear_fault(connector_id=0)
    assert csms.statuses(0) == [A, X, A]


def test_a_faulted_connector_starts_no_session(csms: FakeCsms) -> None:
    csms.set_fault("ReaderFailure")
    csms.plug_in()
    csms.present("ALICE")
    assert csms.sent_of("StartTransaction") == []
    csms.clear_fault()
    assert csms.status is Status.PREPARING


# ---------------------------------------------------------------- the table, end to end


def test_every_status_change_of_a_busy_day_is_an_ocpp_transition(csms: FakeCsms) -> None:
    """Many sessions and interruptions; the harness checks each change against TRANSITIONS."""
    ev = csms.ev
    tx = csms.start_charging(ev=ev(3_000))
    csms.advance(1800)  # full: SuspendedEV
    csms.unplug()  # EVDisconnected from SuspendedEV
    csms.start_charging("BOB", ev(50_000))
    csms.wb.ev_pause(csms.now, paused=True)
    csms.advance(30)
    csms.set_fault("PowerMeterFailure")  # from SuspendedEV
    csms.clear_fault()
    csms.unplug()
    csms.present("ALICE")  # authorized without a cable: Preparing
    csms.advance(120)  # ConnectionTimeOut: back to Available
    tx = csms.start_charging()
    change_availability(csms, 0, operative=False)
    csms.call("UnlockConnector", {"connectorId": 1})
    csms.unplug()
    change_availability(csms, 0, operative=True)
    tx = csms.start_charging()
    csms.call("Reset", {"type": "Soft"})
    csms.advance(120)
    csms.unplug()
    seen = {(a, b) for c, a, b in csms.transitions if c == 1}
    assert seen <= {(a, b) for a in TRANSITIONS for b in TRANSITIONS[a]}
    assert len(seen) >= 10, seen
    assert tx.stop_reason is not None


# ---------------------------------------------------------------- outside strict mode


def _drive_from_charging_to_preparing(csms: FakeCsms) -> None:
    """A change §4.9 has no cell for (C -> P): the connector last said Charging and the
    facts now derive Preparing (what the strict test above provokes)."""
    csms.wb.connectors[1].reported = Status.CHARGING
    csms.plug_in()
    csms.unplug()


def test_a_lenient_wallbox_sends_a_forbidden_change_counts_it_and_warns_once_per_kind(
    csms: FakeCsms, caplog: pytest.LogCaptureFixture
) -> None:
    csms.wb.strict = False
    with caplog.at_level(logging.WARNING, logger="emulator.core.status"):
        for _ in range(3):
            _drive_from_charging_to_preparing(csms)
        csms.plug_in()  # A -> P, allowed: not counted
        csms.unplug()
    log = csms.wb.transitions
    assert isinstance(log, TransitionLog)
    assert dict(log.counts) == {("Charging", "Preparing"): 3}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "connector 1 went Charging -> Preparing" in warnings[0]
    assert "CP-TEST-0001" in warnings[0]
    assert csms.statuses().count(P) == 4  # sent anyway: the facts are what they are


def test_each_kind_of_forbidden_change_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = TransitionLog()
    kinds = [(C, P), (C, P), (F, C), (C, P), (F, C)]
    with caplog.at_level(logging.WARNING, logger="emulator.core.status"):
        for old, new in kinds:
            log.forbidden_transition(
                charger_id="CP1", connector_id=1, old=Status(old), new=Status(new)
            )
    assert dict(log.counts) == {("Charging", "Preparing"): 3, ("Finishing", "Charging"): 2}
    assert log.total == 5
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "CP1: connector 1 went Charging -> Preparing",
        "CP1: connector 1 went Finishing -> Charging",
    ]


def test_forbidden_lists_exactly_the_changes_outside_the_table() -> None:
    outside = {
        (old, new)
        for old, new in product(Status, Status)
        if old != new and new not in TRANSITIONS[old]
    }
    assert set(FORBIDDEN) == outside and len(FORBIDDEN) == len(outside) == 19
    assert all(not allowed(1, old, new) for old, new in FORBIDDEN)
