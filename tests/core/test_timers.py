"""Every timer of a wallbox is declared once (TIMERS, CONNECTOR_TIMERS) and served.

``next_deadline`` and ``tick`` both read the declared lists (emulator.core.timers).  The
test below loops over them: each timer is armed, the clock runs to its deadline, and
then neither the timer nor the wallbox is still due at that instant, the condition
without which the driver, waiting for the earliest deadline, would spin (the fake
CSMS's ``run_until`` also fails after 1000 ticks at one instant).  A timer added to the
lists without an arming case here fails the first test, so none goes unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from emulator.core.timers import PartTimer, Timer, earliest, serve, serve_parts
from emulator.core.wallbox import CONNECTOR_TIMERS, TIMERS, Wallbox
from emulator.protocol.timefmt import format_timestamp

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]

QUIET = {"ClockAlignedDataInterval": "0"}


def waiting_heartbeat(make: MakeCsms) -> FakeCsms:
    csms = make()
    csms.answer("Heartbeat", csms.SILENT)
    csms.advance(60)  # the Heartbeat is sent and never answered
    return csms


def heartbeat_behind_an_unanswered_call(make: MakeCsms) -> FakeCsms:
    csms = make(wallbox_options={"response_timeout": 300.0})
    csms.answer("Heartbeat", csms.SILENT)
    csms.advance(60)  # the next Heartbeat falls due while this one still waits
    return csms


def queued_call(make: MakeCsms) -> FakeCsms:
    csms = make()
    csms.wb.outbox.add("Heartbeat", {})  # queued, not yet taken by the link
    return csms


def pending_boot(make: MakeCsms) -> FakeCsms:
    return make(boot_status="Pending", boot_interval=30)


def pinging(make: MakeCsms) -> FakeCsms:
    return make(config={**QUIET, "WebSocketPingInterval": "30"})


def schedule_with_two_periods(make: MakeCsms) -> FakeCsms:
    csms = make()
    csms.start_charging()
    schedule = {
        "chargingRateUnit": "A",
        "startSchedule": format_timestamp(csms.now),
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 16},
            {"startPeriod": 600, "limit": 8},
        ],
    }
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
    }
    csms.call("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile})
    return csms


def authorized_without_cable(make: MakeCsms) -> FakeCsms:
    csms = make()
    csms.present("ALICE")  # ConnectionTimeOut runs until the cable comes
    return csms


def charging_on_a_blocked_card(make: MakeCsms) -> FakeCsms:
    csms = make()
    csms.change_configuration("StopTransactionOnInvalidId", "false")
    csms.change_configuration("MaxEnergyOnInvalidId", "500")
    blocked: dict[str, Any] = {"transactionId": 555, "idTagInfo": {"status": "Blocked"}}
    csms.answer("StartTransaction", blocked)
    csms.start_charging(ev=csms.ev(50_000))
    return csms


def charging(make: MakeCsms) -> FakeCsms:
    csms = make(config={**QUIET, "MeterValueSampleInterval": "60"})
    csms.start_charging()
    return csms


def aligned(make: MakeCsms) -> FakeCsms:
    return make(config={"ClockAlignedDataInterval": "900"})


def reserved(make: MakeCsms) -> FakeCsms:
    csms = make()
    payload = {
        "connectorId": 1,
        "expiryDate": format_timestamp(csms.now + 600),
        "idTag": "ALICE",
        "reservationId": 7,
    }
    assert csms.call("ReserveNow", payload)["status"] == "Accepted"
    return csms


def firmware_update_scheduled(make: MakeCsms) -> FakeCsms:
    csms = make()
    payload = {
        "location": "ftp://firmware.example/fw.bin",
        "retrieveDate": format_timestamp(csms.now + 600),
    }
    assert csms.call("UpdateFirmware", payload) == {}
    return csms


def reset_waiting_for_its_stop_transaction(make: MakeCsms) -> FakeCsms:
    csms = make()
    csms.start_charging()
    csms.answer("StopTransaction", csms.SILENT)
    assert csms.call("Reset", {"type": "Soft"}) == {"status": "Accepted"}
    return csms


ARMED_BY: dict[str, Callable[[MakeCsms], FakeCsms]] = {
    "response timeout": waiting_heartbeat,
    "next CALL": queued_call,
    "boot retry": pending_boot,
    "heartbeat": heartbeat_behind_an_unanswered_call,
    "websocket ping": pinging,
    "charging schedule": schedule_with_two_periods,
    "connectors": charging,
    "ConnectionTimeOut": authorized_without_cable,
    "energy cap": charging_on_a_blocked_card,
    "meter sample": charging,
    "clock-aligned data": aligned,
    "reservation expiry": reserved,
    "firmware management": firmware_update_scheduled,
    "reset": reset_waiting_for_its_stop_transaction,
}
"""How to arm each declared timer on a booted reference charger."""


def _connector_due(timer: PartTimer[Wallbox, Any]) -> Callable[[Wallbox], float | None]:
    def due(wb: Wallbox) -> float | None:
        times = [at for c in wb.connectors if (at := timer.due(c)) is not None]
        return min(times) if times else None

    return due


DUE: dict[str, Callable[[Wallbox], float | None]] = {
    **{timer.name: timer.due for timer in TIMERS},
    **{timer.name: _connector_due(timer) for timer in CONNECTOR_TIMERS},
}


def test_every_declared_timer_has_a_case_that_arms_it() -> None:
    declared = [timer.name for timer in TIMERS] + [timer.name for timer in CONNECTOR_TIMERS]
    assert len(set(declared)) == len(declared), "two timers share a name"
    assert set(ARMED_BY) == set(declared)


@pytest.mark.parametrize("name", list(ARMED_BY))
def test_a_timer_served_at_its_deadline_is_no_longer_due_then(
    make_csms: MakeCsms, name: str
) -> None:
    csms = ARMED_BY[name](make_csms)
    due = DUE[name]
    at = due(csms.wb)
    assert at is not None, f"the case did not arm {name}"
    csms.run_until(max(at, csms.now))
    after = due(csms.wb)
    assert after is None or after > csms.now, f"{name} still due at its own deadline"
    deadline = csms.wb.next_deadline()
    assert deadline is None or deadline > csms.now


# ---------------------------------------------------------------- the derivation


class Alarm:
    """A toy owner: each alarm rings once at its time, and records the order."""

    def __init__(self, **times: float) -> None:
        self.times: dict[str, float | None] = dict(times)
        self.rung: list[tuple[str, float]] = []

    def timer(self, name: str) -> Timer[Alarm]:
        def ring(owner: Alarm, now: float) -> None:
            owner.rung.append((name, now))
            owner.times[name] = None

        return Timer(name, lambda owner: owner.times[name], ring)


def test_earliest_is_the_first_armed_deadline_and_none_when_nothing_is_armed() -> None:
    alarm = Alarm(a=5.0, b=None, c=3.0)
    timers = (alarm.timer("a"), alarm.timer("b"), alarm.timer("c"))
    assert earliest(timers, alarm) == 3.0
    assert earliest(timers[1:2], alarm) is None


def test_serve_fires_what_is_due_in_declared_order_and_reads_each_due_at_its_turn() -> None:
    alarm = Alarm(late=2.0, early=1.0, later=9.0)

    def move_later(owner: Alarm, now: float) -> None:
        owner.times["later"] = now  # an earlier timer may make a later one due at once

    timers = (
        alarm.timer("late"),
        alarm.timer("early"),
        Timer("mover", lambda owner: 1.0 if owner.times["later"] == 9.0 else None, move_later),
        Timer("served elsewhere", lambda owner: 0.0, None),
        alarm.timer("later"),
    )
    serve(timers, alarm, 2.0)
    assert alarm.rung == [("late", 2.0), ("early", 2.0), ("later", 2.0)]
    assert earliest(timers, alarm) == 0.0  # the one with no fire is someone else's


def test_serve_parts_goes_part_by_part() -> None:
    fired: list[tuple[str, int]] = []
    timers = (
        PartTimer("x", lambda part: float(part), lambda o, part, now: fired.append(("x", part))),
        PartTimer("y", lambda part: 0.0, lambda o, part, now: fired.append(("y", part))),
    )
    serve_parts(timers, None, [0, 5], now=1.0)
    assert fired == [("x", 0), ("y", 0), ("y", 5)]
