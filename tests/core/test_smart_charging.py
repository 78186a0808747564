"""Smart Charging (OCPP 1.6 §3.13, §5.5, §5.7, §5.11, §5.16): profiles, composite, live limit.

Composite schedules are asked of the wallbox with GetCompositeSchedule, whose answer the
fake CSMS checks against the schema (limits with one decimal: ``multipleOf: 0.1``).  The
reference charger's limits: ChargeProfileMaxStackLevel 1, ChargingScheduleMaxPeriods 14,
MaxChargingProfilesInstalled 1 per connector and purpose (docs/reference-charger.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from emulator.core.smart_charging import (
    ConnectorState,
    RateUnit,
    Site,
    SmartCharging,
    capabilities,
)
from emulator.core.status import Status
from emulator.core.transaction import Transaction
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.timefmt import format_timestamp, parse_timestamp

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday (the harness's clock starts here)
HOUR = 3600
DAY = 86400

Period = tuple[int, float] | tuple[int, float, int]


def profile(
    *,
    id: int = 1,
    stack: int = 0,
    purpose: str = "TxDefaultProfile",
    kind: str = "Absolute",
    periods: Sequence[Period] = ((0, 16.0),),
    unit: str = "A",
    start: float | None = T0,
    duration: int | None = None,
    recurrency: str | None = None,
    valid_from: float | None = None,
    valid_to: float | None = None,
    transaction_id: int | None = None,
    min_rate: float | None = None,
) -> dict[str, Any]:
    """A ChargingProfile (§7.8) as the CSMS sends it."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {"startPeriod": p[0], "limit": p[1], **({"numberPhases": p[2]} if len(p) > 2 else {})}
            for p in periods
        ],
    }
    if start is not None and kind != "Relative":
        schedule["startSchedule"] = format_timestamp(start)
    if duration is not None:
        schedule["duration"] = duration
    if min_rate is not None:
        schedule["minChargingRate"] = min_rate
    data: dict[str, Any] = {
        "chargingProfileId": id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    optional = {
        "recurrencyKind": recurrency,
        "validFrom": None if valid_from is None else format_timestamp(valid_from),
        "validTo": None if valid_to is None else format_timestamp(valid_to),
        "transactionId": transaction_id,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    return data


def set_profile(csms: FakeCsms, connector_id: int = 0, **fields: Any) -> str:
    answer = csms.call(
        "SetChargingProfile", {"connectorId": connector_id, "csChargingProfiles": profile(**fields)}
    )
    status: str = answer["status"]
    return status


def clear(csms: FakeCsms, **criteria: Any) -> str:
    status: str = csms.call("ClearChargingProfile", criteria)["status"]
    return status


def composite(
    csms: FakeCsms, connector_id: int = 1, duration: int = DAY, unit: str | None = None
) -> list[tuple[int, float]]:
    """GetCompositeSchedule's periods as (startPeriod, limit); checks the frame around them."""
    request: dict[str, Any] = {"connectorId": connector_id, "duration": duration}
    if unit is not None:
        request["chargingRateUnit"] = unit
    answer = csms.call("GetCompositeSchedule", request)
    assert answer["status"] == "Accepted"
    assert answer["connectorId"] == connector_id
    assert parse_timestamp(answer["scheduleStart"]) == pytest.approx(csms.now, abs=1e-3)
    schedule = answer["chargingSchedule"]
    assert schedule["chargingRateUnit"] == (unit or "A")
    assert schedule["duration"] == duration
    return [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]


def readings(csms: FakeCsms) -> list[tuple[float, float, list[float]]]:
    """Every MeterValues with a transaction: (time, Current.Offered, Current.Import per phase)."""
    found = []
    for payload in csms.payloads("MeterValues"):
        if "transactionId" not in payload:
            continue
        for value in payload["meterValue"]:
            sampled = value["sampledValue"]
            offered = [float(s["value"]) for s in sampled if s["measurand"] == "Current.Offered"]
            imported = [float(s["value"]) for s in sampled if s["measurand"] == "Current.Import"]
            found.append((parse_timestamp(value["timestamp"]), offered[0], imported))
    return found


# ---------------------------------------------------------------- SetChargingProfile: purposes


def test_charge_point_max_profile_is_accepted_on_connector_zero_only(csms: FakeCsms) -> None:
    assert set_profile(csms, 1, purpose="ChargePointMaxProfile") == "Rejected"
    assert set_profile(csms, 0, purpose="ChargePointMaxProfile") == "Accepted"


def test_tx_default_profile_is_accepted_on_connector_zero_and_one_not_on_a_missing_one(
    csms: FakeCsms,
) -> None:
    assert set_profile(csms, 0, id=1) == "Accepted"
    assert set_profile(csms, 1, id=2) == "Accepted"
    assert set_profile(csms, 2, id=3) == "Rejected"


def test_tx_profile_without_a_transaction_is_rejected(csms: FakeCsms) -> None:
    assert set_profile(csms, 1, purpose="TxProfile") == "Rejected"
    csms.plug_in()  # Preparing is not a transaction yet
    assert set_profile(csms, 1, purpose="TxProfile") == "Rejected"


def test_tx_profile_applies_to_the_running_transaction_on_connector_one_only(
    csms: FakeCsms,
) -> None:
    tx = csms.start_charging()
    assert tx.transaction_id is not None
    assert set_profile(csms, 0, purpose="TxProfile") == "Rejected"
    assert set_profile(csms, 1, purpose="TxProfile", transaction_id=tx.transaction_id + 1) == (
        "Rejected"
    )
    assert set_profile(csms, 1, purpose="TxProfile", transaction_id=tx.transaction_id) == (
        "Accepted"
    )
    assert set_profile(csms, 1, id=2, purpose="TxProfile", stack=1) == "Rejected", (
        "MaxChargingProfilesInstalled: one TxProfile per connector"
    )


def test_a_transaction_id_is_only_for_a_tx_profile(csms: FakeCsms) -> None:
    tx = csms.start_charging()
    assert set_profile(csms, 1, transaction_id=tx.transaction_id) == "Rejected"


# ---------------------------------------------------------------- SetChargingProfile: limits


def test_stack_levels_above_charge_profile_max_stack_level_are_rejected(csms: FakeCsms) -> None:
    assert csms.get_configuration("ChargeProfileMaxStackLevel")["ChargeProfileMaxStackLevel"][
        "value"
    ] == ("1")
    assert set_profile(csms, stack=2) == "Rejected"
    assert set_profile(csms, stack=-1) == "Rejected"
    assert set_profile(csms, stack=1) == "Accepted"


def test_more_periods_than_charging_schedule_max_periods_are_rejected(csms: FakeCsms) -> None:
    fifteen = [(i * 60, 16.0) for i in range(15)]
    assert set_profile(csms, periods=fifteen) == "Rejected"
    assert set_profile(csms, periods=fifteen[:14]) == "Accepted"


@pytest.mark.parametrize(
    ("why", "fields"),
    [
        ("first period not at 0 (§5.16)", {"periods": [(60, 16.0)]}),
        ("periods out of order", {"periods": [(0, 16.0), (600, 10.0), (600, 8.0)]}),
        ("negative limit", {"periods": [(0, -1.0)]}),
        ("numberPhases beyond 3", {"periods": [(0, 16.0, 4)]}),
        ("negative duration", {"duration": -1}),
        ("negative minChargingRate", {"min_rate": -6.0}),
        ("Recurring without recurrencyKind", {"kind": "Recurring"}),
        (
            "Recurring without startSchedule",
            {"kind": "Recurring", "recurrency": "Daily", "start": None},
        ),
        ("validTo before validFrom", {"valid_from": T0 + 60, "valid_to": T0}),
    ],
)
def test_malformed_schedules_are_rejected(csms: FakeCsms, why: str, fields: dict[str, Any]) -> None:
    assert set_profile(csms, **fields) == "Rejected", why
    assert composite(csms, duration=60) == [(0, 32.0)], "nothing was installed"


def test_a_unit_outside_charging_schedule_allowed_charging_rate_unit_is_rejected(
    csms: FakeCsms,
) -> None:
    csms.wb.config.change("ChargingScheduleAllowedChargingRateUnit", "Current", allow_readonly=True)
    assert set_profile(csms, unit="W", periods=[(0, 7000.0)]) == "Rejected"
    assert set_profile(csms, unit="A") == "Accepted"
    answer = csms.call(
        "GetCompositeSchedule", {"connectorId": 1, "duration": 60, "chargingRateUnit": "W"}
    )
    assert answer == {"status": "Rejected"}


def test_one_profile_per_connector_and_purpose_max_charging_profiles_installed(
    csms: FakeCsms,
) -> None:
    assert set_profile(csms, 0, id=1, purpose="ChargePointMaxProfile", periods=[(0, 24.0)]) == (
        "Accepted"
    )
    assert set_profile(csms, 0, id=2, stack=0, periods=[(0, 20.0)]) == "Accepted"
    assert set_profile(csms, 0, id=3, stack=1, periods=[(0, 10.0)]) == "Rejected"
    assert set_profile(csms, 1, id=4, stack=1, periods=[(0, 12.0)]) == "Accepted"
    assert composite(csms, duration=60) == [(0, 12.0)]


def test_the_same_id_or_the_same_stack_level_and_purpose_replaces_the_profile(
    csms: FakeCsms,
) -> None:
    assert set_profile(csms, id=7, stack=0, periods=[(0, 20.0)]) == "Accepted"
    assert set_profile(csms, id=7, stack=1, periods=[(0, 18.0)]) == "Accepted"  # same id
    assert composite(csms, duration=60) == [(0, 18.0)]
    assert set_profile(csms, id=8, stack=1, periods=[(0, 14.0)]) == "Accepted"  # same level
    assert composite(csms, duration=60) == [(0, 14.0)]
    assert clear(csms, id=7) == "Unknown", "profile 7 was replaced by 8"


def test_smart_charging_switched_off_answers_not_supported(make_csms: MakeCsms) -> None:
    csms = make_csms(profiles=("Core", "RemoteTrigger"))
    for action, payload in [
        ("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile()}),
        ("ClearChargingProfile", {}),
        ("GetCompositeSchedule", {"connectorId": 1, "duration": 60}),
    ]:
        with pytest.raises(RemoteProtocolError) as error:
            csms.call(action, payload)
        assert error.value.code is ErrorCode.NOT_SUPPORTED
    # §5.11: "a Charge Point without support for Smart Charging ... SHOULD be ignored"
    answer = csms.call(
        "RemoteStartTransaction",
        {"idTag": "ALICE", "connectorId": 1, "chargingProfile": profile(purpose="TxProfile")},
    )
    assert answer == {"status": "Accepted"}


# ---------------------------------------------------------------- ClearChargingProfile


def install_three(csms: FakeCsms) -> None:
    assert set_profile(csms, 0, id=1, purpose="ChargePointMaxProfile", periods=[(0, 24.0)]) == (
        "Accepted"
    )
    assert set_profile(csms, 0, id=2, stack=0, periods=[(0, 20.0)]) == "Accepted"
    assert set_profile(csms, 1, id=3, stack=1, periods=[(0, 10.0)]) == "Accepted"


def test_clear_by_id(csms: FakeCsms) -> None:
    install_three(csms)
    assert clear(csms, id=3) == "Accepted"
    assert clear(csms, id=3) == "Unknown"
    assert composite(csms, duration=60) == [(0, 20.0)]


@pytest.mark.parametrize(
    ("criteria", "left"),
    [
        ({"connectorId": 0}, 10.0),  # the ChargePointMax and connector 0's default
        ({"connectorId": 1}, 20.0),
        ({"chargingProfilePurpose": "TxDefaultProfile"}, 24.0),
        ({"chargingProfilePurpose": "ChargePointMaxProfile"}, 10.0),
        ({"stackLevel": 1}, 20.0),
        ({"connectorId": 0, "chargingProfilePurpose": "TxDefaultProfile"}, 10.0),
        ({}, 32.0),  # no criteria: every profile
    ],
)
def test_clear_by_connector_purpose_and_stack_level(
    csms: FakeCsms, criteria: dict[str, Any], left: float
) -> None:
    install_three(csms)
    assert clear(csms, **criteria) == "Accepted"
    assert composite(csms, duration=60) == [(0, left)]


def test_clear_answers_unknown_when_nothing_matches(csms: FakeCsms) -> None:
    assert clear(csms) == "Unknown"
    install_three(csms)
    assert clear(csms, id=99) == "Unknown"
    assert clear(csms, chargingProfilePurpose="TxProfile") == "Unknown"
    assert clear(csms, connectorId=1, stackLevel=0) == "Unknown"
    assert composite(csms, duration=60) == [(0, 10.0)], "nothing was removed"


# ---------------------------------------------------------------- GetCompositeSchedule


def test_composite_is_rejected_for_a_connector_that_does_not_exist(csms: FakeCsms) -> None:
    assert csms.call("GetCompositeSchedule", {"connectorId": 2, "duration": 60}) == {
        "status": "Rejected"
    }


def test_without_profiles_the_composite_is_the_chargers_own_maximum(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(max_current=16.0)
    assert composite(csms) == [(0, 16.0)]
    assert composite(csms, unit="W") == [(0, 11040.0)]  # 16 A x 230 V x 3 phases


def test_the_ocpp_example_daily_default_profile_limits_to_6_kw_from_8_to_20(
    csms: FakeCsms,
) -> None:
    """§3.13.7: a Recurring Daily TxDefaultProfile in W from 2013-01-01."""
    assert (
        set_profile(
            csms,
            id=100,
            kind="Recurring",
            recurrency="Daily",
            start=parse_timestamp("2013-01-01T00:00Z"),
            duration=DAY,
            unit="W",
            periods=[(0, 11000.0, 3), (28800, 6000.0, 3), (72000, 11000.0, 3)],
        )
        == "Accepted"
    )
    assert composite(csms, unit="W") == [(0, 11000.0), (28800, 6000.0), (72000, 11000.0)]
    # In A per phase (§7.11): W / (230 V x 3 phases), rounded down to 0.1 A.
    assert composite(csms, unit="A") == [(0, 15.9), (28800, 8.6), (72000, 15.9)]


def test_a_daily_profile_repeats_across_midnight_with_periods_merged(csms: FakeCsms) -> None:
    set_profile(
        csms,
        kind="Recurring",
        recurrency="Daily",
        start=parse_timestamp("2025-12-31T22:00Z"),
        periods=[(0, 10.0), (8 * HOUR, 16.0)],  # 22:00-06:00 at 10 A, then 16 A
    )
    csms.advance(20 * HOUR)  # 2026-01-01T20:00Z
    assert composite(csms, duration=12 * HOUR) == [(0, 16.0), (2 * HOUR, 10.0), (10 * HOUR, 16.0)]


def test_a_weekly_profile_allows_full_current_at_the_weekend(csms: FakeCsms) -> None:
    set_profile(
        csms,
        kind="Recurring",
        recurrency="Weekly",
        start=parse_timestamp("2025-12-29T00:00Z"),  # a Monday
        periods=[(0, 16.0), (5 * DAY, 32.0)],
    )
    # Thursday 00:00: Saturday starts in 2 days, Monday in 4.
    assert composite(csms, duration=5 * DAY) == [(0, 16.0), (2 * DAY, 32.0), (4 * DAY, 16.0)]


def test_a_recurring_schedule_longer_than_its_recurrence_is_cut(csms: FakeCsms) -> None:
    """§5.16: periods beyond the recurrence period are not executed."""
    set_profile(
        csms,
        kind="Recurring",
        recurrency="Daily",
        start=T0,
        periods=[(0, 10.0), (DAY + HOUR, 6.0)],
    )
    assert composite(csms, duration=2 * DAY) == [(0, 10.0)]


def test_a_higher_stack_level_leads_while_its_schedule_runs(csms: FakeCsms) -> None:
    """§3.13.2 / §5.16: after its duration, the lower stack level applies again."""
    set_profile(csms, 0, id=1, stack=0, periods=[(0, 16.0)])
    set_profile(csms, 1, id=2, stack=1, start=T0 + 1800, duration=HOUR, periods=[(0, 8.0)])
    assert composite(csms, duration=2 * HOUR) == [(0, 16.0), (1800, 8.0), (5400, 16.0)]


def test_a_profile_counts_only_between_valid_from_and_valid_to(csms: FakeCsms) -> None:
    set_profile(csms, valid_from=T0 + 600, valid_to=T0 + 1200, periods=[(0, 10.0)])
    assert composite(csms, duration=HOUR) == [(0, 32.0), (600, 10.0), (1200, 32.0)]


def test_the_composite_is_the_minimum_of_charge_point_max_and_tx_default(
    csms: FakeCsms,
) -> None:
    """§3.13.3: for every interval the lowest of the purposes' limits."""
    set_profile(
        csms,
        0,
        id=1,
        purpose="ChargePointMaxProfile",
        periods=[(0, 20.0), (2 * HOUR, 12.0)],
    )
    set_profile(csms, 1, id=2, periods=[(0, 32.0), (HOUR, 10.0), (3 * HOUR, 16.0)])
    assert composite(csms, duration=4 * HOUR) == [
        (0, 20.0),
        (HOUR, 10.0),
        (3 * HOUR, 12.0),
    ]
    assert composite(csms, connector_id=0, duration=4 * HOUR) == composite(
        csms, duration=4 * HOUR
    ), "connector 0: what the one connector may draw"


def test_the_charger_maximum_caps_every_profile(make_csms: MakeCsms) -> None:
    csms = make_csms(max_current=16.0)
    set_profile(csms, periods=[(0, 32.0), (HOUR, 10.0)])
    assert composite(csms, duration=2 * HOUR) == [(0, 16.0), (HOUR, 10.0)]


def test_a_tx_profile_overrules_the_tx_default_profile_even_when_higher(
    csms: FakeCsms,
) -> None:
    set_profile(csms, 0, id=1, periods=[(0, 10.0)])
    set_profile(csms, 0, id=2, purpose="ChargePointMaxProfile", periods=[(0, 24.0)])
    csms.start_charging()
    assert set_profile(csms, 1, id=3, purpose="TxProfile", periods=[(0, 20.0), (600, 30.0)]) == (
        "Accepted"
    )
    assert composite(csms, duration=HOUR) == [(0, 20.0), (600, 24.0)]


def test_a_tx_profile_ending_before_the_transaction_falls_back_to_the_default(
    csms: FakeCsms,
) -> None:
    set_profile(csms, 0, id=1, periods=[(0, 10.0)])
    csms.start_charging()
    set_profile(csms, 1, id=2, purpose="TxProfile", duration=600, periods=[(0, 20.0)])
    assert composite(csms, duration=HOUR) == [(0, 20.0), (600, 10.0)]


def test_a_relative_profile_starts_with_the_transaction(csms: FakeCsms) -> None:
    set_profile(csms, kind="Relative", start=None, periods=[(0, 6.0), (600, 16.0)])
    # No transaction: what one starting now would get.
    assert composite(csms, duration=HOUR) == [(0, 6.0), (600, 16.0)]
    csms.advance(100)
    csms.start_charging()
    csms.advance(300)  # 300 s into the transaction
    assert composite(csms, duration=HOUR) == [(0, 6.0), (300, 16.0)]


def test_an_absolute_profile_without_start_schedule_runs_from_its_installation(
    csms: FakeCsms,
) -> None:
    csms.advance(1000)
    set_profile(csms, start=None, periods=[(0, 10.0), (600, 16.0)])
    csms.advance(100)
    assert composite(csms, duration=HOUR) == [(0, 10.0), (500, 16.0)]


@pytest.mark.parametrize(
    ("ev_phases", "unit", "limit", "expected"),
    [
        (3, "A", 16.0, [(0, 11040.0)]),  # 16 A x 230 V x 3
        (1, "A", 16.0, [(0, 3680.0)]),  # the EV charges on one phase
        (3, "W", 7360.0, [(0, 10.6)]),  # 7360 / 690 = 10.67 A, rounded down
        (1, "W", 7360.0, [(0, 32.0)]),  # 7360 / 230 = 32 A on the one phase
        (3, "W", 2277.0, [(0, 3.3)]),  # 2277 / 690 = 3.3000000000000003 as a float
    ],
)
def test_limits_convert_between_a_and_w_with_the_phases_in_use(
    csms: FakeCsms, ev_phases: int, unit: str, limit: float, expected: list[tuple[int, float]]
) -> None:
    set_profile(csms, unit=unit, periods=[(0, limit)])
    csms.start_charging(ev=csms.ev(phases=ev_phases))
    other = "W" if unit == "A" else "A"
    assert composite(csms, duration=60, unit=other) == expected


def test_below_min_charging_rate_the_charger_offers_nothing(csms: FakeCsms) -> None:
    set_profile(csms, periods=[(0, 16.0), (600, 4.0), (1200, 8.0)], min_rate=6.0)
    answer = csms.call("GetCompositeSchedule", {"connectorId": 1, "duration": 1800})
    schedule = answer["chargingSchedule"]
    assert schedule["minChargingRate"] == 6.0
    periods = [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]
    assert periods == [(0, 16.0), (600, 0.0), (1200, 8.0)]


def test_equal_consecutive_limits_are_merged(csms: FakeCsms) -> None:
    set_profile(csms, 0, id=1, purpose="ChargePointMaxProfile", periods=[(0, 10.0)])
    set_profile(csms, 0, id=2, periods=[(0, 16.0), (600, 12.0), (1200, 8.0)])
    assert composite(csms, duration=HOUR) == [(0, 10.0), (1200, 8.0)]


# ---------------------------------------------------------------- transactions and resets


def test_a_tx_profile_is_removed_when_its_transaction_ends(csms: FakeCsms) -> None:
    set_profile(csms, 0, id=1, periods=[(0, 10.0)])
    csms.start_charging()
    set_profile(csms, 1, id=2, purpose="TxProfile", periods=[(0, 20.0)])
    csms.present("ALICE")  # stop
    assert composite(csms, duration=60) == [(0, 10.0)]
    assert clear(csms, chargingProfilePurpose="TxProfile") == "Unknown"
    csms.unplug()
    csms.start_charging()
    assert composite(csms, duration=60) == [(0, 10.0)], "not applied to the next transaction"


def test_remote_start_applies_its_tx_profile_to_the_transaction_it_starts(
    csms: FakeCsms,
) -> None:
    answer = csms.call(
        "RemoteStartTransaction",
        {
            "idTag": "ALICE",
            "connectorId": 1,
            "chargingProfile": profile(
                purpose="TxProfile", kind="Relative", periods=[(0, 8.0), (600, 12.0)]
            ),
        },
    )
    assert answer == {"status": "Accepted"}
    csms.advance(30)
    csms.plug_in()
    assert csms.status is Status.CHARGING
    assert csms.wb.connectors[1].meter.current_a == 8.0
    assert composite(csms, duration=HOUR) == [(0, 8.0), (600, 12.0)]
    # §5.16.2: a SetChargingProfile for this transaction at the same stackLevel replaces it.
    tid = csms.wb.connectors[1].transaction.transaction_id  # type: ignore[union-attr]
    assert set_profile(csms, 1, id=5, purpose="TxProfile", transaction_id=tid) == "Accepted"
    assert composite(csms, duration=HOUR) == [(0, 16.0)]
    csms.present("ALICE")
    assert composite(csms, duration=60) == [(0, 32.0)]


@pytest.mark.parametrize(
    "bad",
    [
        profile(purpose="TxDefaultProfile"),  # §5.11: must be a TxProfile
        profile(purpose="TxProfile", transaction_id=5),  # §5.16.2: no transactionId
        profile(purpose="TxProfile", stack=2),  # ChargeProfileMaxStackLevel
    ],
)
def test_remote_start_with_an_unusable_profile_is_rejected(
    csms: FakeCsms, bad: dict[str, Any]
) -> None:
    answer = csms.call(
        "RemoteStartTransaction", {"idTag": "ALICE", "connectorId": 1, "chargingProfile": bad}
    )
    assert answer == {"status": "Rejected"}
    csms.plug_in()
    assert not csms.wb.transactions


def test_a_remote_start_profile_does_not_go_to_someone_elses_transaction(
    csms: FakeCsms,
) -> None:
    csms.call(
        "RemoteStartTransaction",
        {"idTag": "ALICE", "connectorId": 1, "chargingProfile": profile(purpose="TxProfile")},
    )
    csms.advance(120)  # ConnectionTimeOut (60 s): ALICE never plugged in
    csms.start_charging("BOB")
    assert composite(csms, duration=60) == [(0, 32.0)]


@pytest.mark.parametrize("kind", ["Soft", "Hard"])
def test_installed_profiles_survive_a_reset_but_the_tx_profile_ends_with_its_transaction(
    csms: FakeCsms, kind: str
) -> None:
    set_profile(csms, 0, id=1, purpose="ChargePointMaxProfile", periods=[(0, 24.0)])
    set_profile(csms, 1, id=2, periods=[(0, 20.0)])
    csms.start_charging()
    set_profile(csms, 1, id=3, purpose="TxProfile", periods=[(0, 10.0)])
    assert csms.call("Reset", {"type": kind}) == {"status": "Accepted"}
    csms.advance(60)
    assert csms.wb.accepted, "rebooted and booted again"
    assert composite(csms, duration=60) == [(0, 20.0)]
    assert clear(csms, chargingProfilePurpose="TxProfile") == "Unknown"


# ---------------------------------------------------------------- the live limit


def test_a_limit_set_while_charging_applies_at_once(csms: FakeCsms) -> None:
    csms.start_charging(ev=csms.ev(max_current=16.0))
    assert csms.wb.connectors[1].meter.current_a == 16.0
    set_profile(csms, 0, periods=[(0, 10.0)])
    assert csms.wb.connectors[1].offered_a == 10.0
    assert csms.wb.connectors[1].meter.current_a == 10.0
    csms.advance(60)
    _, offered, imported = readings(csms)[-1]
    assert offered == 10.0
    assert imported == [10.0, 10.0, 10.0]


def test_a_lowered_limit_takes_effect_exactly_at_the_period_boundary(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(config={"ClockAlignedDataInterval": "0", "MeterValueSampleInterval": "900"})
    set_profile(csms, 0, periods=[(0, 16.0), (1000, 8.0)])
    csms.start_charging(ev=csms.ev(max_current=32.0))
    csms.run_until(T0 + 999)
    assert csms.wb.connectors[1].meter.current_a == 16.0
    assert csms.wb.next_deadline() == T0 + 1000, "the boundary is the next thing to do"
    csms.run_until(T0 + 1000)
    assert csms.wb.connectors[1].meter.current_a == 8.0
    assert csms.wb.connectors[1].offered_a == 8.0
    csms.advance(900)
    at, offered, imported = readings(csms)[-1]
    assert at == T0 + 1800 and offered == 8.0 and max(imported) == 8.0


def test_meter_values_never_exceed_the_limit_in_force(csms: FakeCsms) -> None:
    steps = [(0, 16.0), (300, 10.0), (700, 13.0), (1400, 7.5), (2000, 32.0)]
    set_profile(csms, 0, kind="Absolute", start=T0, periods=steps)
    set_profile(csms, 0, id=2, purpose="ChargePointMaxProfile", periods=[(0, 20.0), (2400, 12.0)])
    csms.start_charging(ev=csms.ev(energy_wh=60_000.0, max_current=32.0))
    csms.advance(HOUR)

    def limit_at(t: float) -> float:
        tx_limit = [lim for start, lim in steps if T0 + start <= t][-1]
        return min(tx_limit, 20.0 if t < T0 + 2400 else 12.0)

    found = readings(csms)
    assert len(found) == 60
    for at, offered, imported in found:
        assert offered == limit_at(at)
        assert all(amps <= offered for amps in imported)


def test_below_the_ev_minimum_the_connector_is_suspended_evse_and_comes_back(
    csms: FakeCsms,
) -> None:
    set_profile(csms, 0, periods=[(0, 16.0), (600, 3.0), (1200, 16.0)])
    csms.start_charging()
    csms.run_until(T0 + 600)
    assert csms.status is Status.SUSPENDED_EVSE
    assert csms.wb.connectors[1].meter.current_a == 0.0
    assert csms.wb.connectors[1].offered_a == 3.0
    csms.run_until(T0 + 1200)
    assert csms.status is Status.CHARGING
    assert csms.statuses()[-3:] == ["Charging", "SuspendedEVSE", "Charging"]


def test_clearing_the_limit_lets_the_ev_draw_its_maximum_again(csms: FakeCsms) -> None:
    set_profile(csms, 0, periods=[(0, 0.0)])
    csms.start_charging()
    assert csms.status is Status.SUSPENDED_EVSE
    assert clear(csms) == "Accepted"
    assert csms.status is Status.CHARGING
    assert csms.wb.connectors[1].meter.current_a == 16.0
    assert csms.wb.smart_charging.next_change_at is None


def test_a_daily_profile_wakes_the_wallbox_at_every_boundary_only(make_csms: MakeCsms) -> None:
    csms = make_csms(config={"ClockAlignedDataInterval": "0", "MeterValueSampleInterval": "0"})
    set_profile(csms, kind="Recurring", recurrency="Daily", periods=[(0, 10.0), (HOUR, 16.0)])
    assert csms.wb.smart_charging.next_change_at == T0 + HOUR
    csms.run_until(T0 + HOUR)
    assert csms.wb.smart_charging.next_change_at == T0 + DAY


# ---------------------------------------------------------------- the pure module


CAPS = capabilities(
    max_stack_level=3,
    max_periods=14,
    max_installed=3,
    allowed_units=["Current", "Power"],
    connectors=1,
)
SITE = Site(max_current=32.0, voltage=230.0)
IDLE = ConnectorState(transaction=None, phases=3)


def test_stacking_within_one_purpose_on_one_connector() -> None:
    """§3.13.2 with a charger that installs several profiles per purpose: the highest level
    that is valid and covers the instant leads."""
    smart = SmartCharging()
    for data in [
        profile(id=1, stack=0, periods=[(0, 16.0)]),
        profile(id=2, stack=1, start=T0 + HOUR, duration=2 * HOUR, periods=[(0, 10.0)]),
        profile(
            id=3, stack=2, valid_from=T0 + 2 * HOUR, valid_to=T0 + 4 * HOUR, periods=[(0, 6.0)]
        ),
    ]:
        assert smart.set_profile(1, data, now=T0, caps=CAPS, transaction=None), smart.last_rejection
    schedule = smart.composite(
        1, now=T0, duration=5 * HOUR, unit=RateUnit.A, site=SITE, connectors={0: IDLE, 1: IDLE}
    )
    assert [(p.start, p.limit) for p in schedule.periods] == [
        (0, 16.0),
        (HOUR, 10.0),
        (2 * HOUR, 6.0),
        (4 * HOUR, 16.0),
    ]


def test_the_live_limit_and_its_next_change_follow_a_relative_schedule() -> None:
    smart = SmartCharging()
    data = profile(kind="Relative", start=None, periods=[(0, 6.0), (600, 16.0)])
    assert smart.set_profile(0, data, now=T0, caps=CAPS, transaction=None)
    tx = Transaction(local_id=1, connector_id=1, id_tag="ALICE", meter_start=0, started_at=T0)
    charging = ConnectorState(transaction=tx, phases=3)
    assert smart.offered(1, T0 + 599, state=charging, site=SITE) == 6.0
    assert smart.offered(1, T0 + 600, state=charging, site=SITE) == 16.0
    assert smart.next_change(1, T0 + 10, state=charging) == T0 + 600
    # Idle, a Relative schedule never moves on: no deadline for it.
    assert smart.offered(1, T0 + 5000, state=IDLE, site=SITE) == 6.0
    assert smart.next_change(1, T0 + 10, state=IDLE) is None
