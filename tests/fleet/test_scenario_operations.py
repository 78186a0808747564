"""``[[csms.operations]]``: loading, validation messages, targets and relative times."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest

from emulator.csms.operations import (
    CsmsRequest,
    cancel_reservation,
    clear_charging_profile,
    get_composite_schedule,
    get_diagnostics,
    get_local_list_version,
    materialize,
    reserve_now,
    select_targets,
    send_local_list,
    set_charging_profile,
    trigger_message,
    update_firmware,
)
from emulator.fleet.scenario import CsmsOperation, ScenarioError, parse_scenario
from emulator.protocol.schemas import SchemaRegistry
from emulator.protocol.timefmt import format_timestamp

ROOT = Path(__file__).resolve().parents[2]
HEADER = '[scenario]\nname = "x"\n'
SOURCE = "scenarios/ops.toml"
IDS = [f"CP{n:06d}" for n in range(1, 11)]


def operations(text: str) -> tuple[CsmsOperation, ...]:
    return parse_scenario(HEADER + text, source=SOURCE).csms.operations


def error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(HEADER + text, source=SOURCE)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_without_a_csms_table_there_are_no_operations() -> None:
    assert operations("") == ()


def test_an_operation_with_defaults() -> None:
    (op,) = operations('[[csms.operations]]\nat = 5\naction = "GetLocalListVersion"\n')
    assert op == CsmsOperation(at=5.0, action="GetLocalListVersion")
    assert (op.payload, op.target, op.every) == ({}, "all", None)


def test_targets_can_be_all_a_share_or_numbers_and_ids() -> None:
    ops = operations(
        "".join(
            f'[[csms.operations]]\nat = 1\naction = "GetLocalListVersion"\ntarget = {t}\n'
            for t in ('"all"', "0.25", "1", '[1, 2, "CP000009"]')
        )
    )
    assert [op.target for op in ops] == ["all", 0.25, 1.0, (1, 2, "CP000009")]


def test_the_documented_example_loads() -> None:
    docs = (ROOT / "docs" / "scenarios.md").read_text()
    section = docs[docs.index("### `[[csms.operations]]`") :]
    example = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    ops = operations(example.group(1))
    assert [op.action for op in ops] == ["SendLocalList", "ReserveNow", "TriggerMessage"]


# fmt: off
BAD = [
    ('at = 1\naction = "Reserve"', "csms.operations[0].action",
     "expected an action the CSMS sends (OCPP 1.6 §5)", 'did you mean "ReserveNow"?'),
    ('at = 1\naction = "Heartbeat"', "csms.operations[0].action",
     "expected an action the CSMS sends", 'got "Heartbeat"'),
    ('action = "GetLocalListVersion"', "csms.operations[0].at",
     "required key is missing; expected a number >= 0", ""),
    ('at = -1\naction = "GetLocalListVersion"', "csms.operations[0].at",
     "expected a number >= 0", "got -1"),
    ('at = inf\naction = "GetLocalListVersion"', "csms.operations[0].at",
     "expected a finite number", "got inf"),
    ('at = 1\nevery = 0\naction = "GetLocalListVersion"', "csms.operations[0].every",
     "expected a number > 0", "got 0"),
    ('at = 1\naction = "ReserveNow"\npayload = { connectorId = 1 }', "csms.operations[0].payload",
     "expiryDate: required field missing", "(the OCPP 1.6 ReserveNow.req schema)"),
    ('at = 1\naction = "TriggerMessage"\npayload = { requestedMessage = "Coffee" }',
     "csms.operations[0].payload", "requestedMessage: must be one of", "TriggerMessage.req"),
    ('at = 1\naction = "ReserveNow"\n'
     'payload = { connectorId = 1, expiryDate = "now+soon", idTag = "A", reservationId = 1 }',
     "csms.operations[0].payload", "expiryDate: expected now, now+SECONDS or now-SECONDS",
     "'now+soon'"),
    ('at = 1\naction = "ReserveNow"\n'
     'payload = { connectorId = 1, expiryDate = "tomorrow", idTag = "A", reservationId = 1 }',
     "csms.operations[0].payload", "expiryDate: must be date-time", ""),
    ('at = 1\naction = "GetLocalListVersion"\ntarget = "some"', "csms.operations[0].target",
     'expected "all", a share from 0 to 1, or an array of charger numbers or ids', 'got "some"'),
    ('at = 1\naction = "GetLocalListVersion"\ntarget = 3', "csms.operations[0].target",
     'expected "all", a share from 0 to 1', "charger numbers go in an array: [3]"),
    ('at = 1\naction = "GetLocalListVersion"\ntarget = 0', "csms.operations[0].target",
     'expected "all", a share from 0 to 1', "got 0.0"),
    ('at = 1\naction = "GetLocalListVersion"\ntarget = []', "csms.operations[0].target",
     'expected "all"', "got []"),
    ('at = 1\naction = "GetLocalListVersion"\ntarget = [0]', "csms.operations[0].target[0]",
     "expected a charger number >= 1 or a charger id", "got 0"),
    ('at = 1\naction = "GetLocalListVersion"\ntarget = [1.5]', "csms.operations[0].target[0]",
     "expected an integer or a string", "got 1.5"),
    ('at = 1\naction = "GetLocalListVersion"\ntarget = true', "csms.operations[0].target",
     "expected a string, a number or an array", "got true"),
    ('at = 1\naction = "GetLocalListVersion"\nwhen = 3', "csms.operations[0].when",
     "unknown key", "[[csms.operations]] takes: at, action, payload, target, every"),
]
# fmt: on


@pytest.mark.parametrize(("snippet", "field", "expected", "got"), BAD, ids=[b[1] for b in BAD])
def test_a_bad_operation_names_the_field_and_what_was_expected(
    snippet: str, field: str, expected: str, got: str
) -> None:
    message = error("[[csms.operations]]\n" + snippet + "\n")
    assert message.startswith(f"{SOURCE}: {field}: {expected}"), message
    assert got in message, message


def test_an_unknown_key_of_the_csms_table_is_refused() -> None:
    assert error("[csms]\nops = 1\n") == (
        f"{SOURCE}: csms.ops: unknown key; [csms] takes: operations"
    )


def test_the_second_operation_is_named_by_its_index() -> None:
    text = '[[csms.operations]]\nat = 1\naction = "GetLocalListVersion"\n'
    text += '[[csms.operations]]\nat = 1\naction = "Nope"\n'
    assert error(text).startswith(f"{SOURCE}: csms.operations[1].action:")


# ----------------------------------------------------------------- relative times


def test_now_offsets_become_rfc3339_times_when_sent() -> None:
    payload = {
        "expiryDate": "now+900",
        "nested": [{"startSchedule": "now-60"}],
        "retrieveDate": "now",
        "idTag": "now",  # not a date-time field: left alone
    }
    assert materialize(payload, 1_767_225_600.0) == {
        "expiryDate": "2026-01-01T00:15:00.000Z",
        "nested": [{"startSchedule": "2025-12-31T23:59:00.000Z"}],
        "retrieveDate": "2026-01-01T00:00:00.000Z",
        "idTag": "now",
    }


def test_toml_date_times_become_rfc3339_strings() -> None:
    moment = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    assert materialize({"validFrom": moment}, 0.0) == {"validFrom": "2026-01-01T12:00:00.000Z"}
    naive = dt.datetime(2026, 1, 1, 12)
    assert materialize({"validFrom": naive}, 0.0) == {"validFrom": "2026-01-01T12:00:00.000Z"}


# ----------------------------------------------------------------- targets


def test_all_is_every_charger_in_order() -> None:
    assert select_targets("all", IDS, np.random.default_rng(0)) == IDS


def test_a_share_is_a_seeded_subset_in_charger_order_and_at_least_one() -> None:
    picked = select_targets(0.3, IDS, np.random.default_rng(1))
    assert len(picked) == 3 and picked == sorted(picked) and set(picked) <= set(IDS)
    assert picked == select_targets(0.3, IDS, np.random.default_rng(1))
    assert len(select_targets(0.01, IDS, np.random.default_rng(1))) == 1
    assert select_targets(1.0, IDS, np.random.default_rng(1)) == IDS
    assert select_targets(0.5, [], np.random.default_rng(1)) == []


def test_a_list_takes_numbers_and_ids_once_and_skips_numbers_beyond_the_fleet() -> None:
    chosen = select_targets([3, 1, "ELSEWHERE", 3, 11], IDS, np.random.default_rng(0))
    assert chosen == ["CP000003", "CP000001", "ELSEWHERE"]


@pytest.mark.parametrize("target", ["some", 0.0, 1.5, True])
def test_an_impossible_target_is_a_value_error(target: str | float) -> None:
    with pytest.raises(ValueError, match="target"):
        select_targets(target, IDS, np.random.default_rng(0))


# ----------------------------------------------------------------- builders


EXPIRY = 1_767_226_500.0


BUILT: list[tuple[CsmsRequest, CsmsRequest]] = [
    (get_local_list_version(), CsmsRequest("GetLocalListVersion", {})),
    (
        send_local_list(3, {"A": "Accepted", "B": {"status": "Blocked", "parentIdTag": "P"}}),
        CsmsRequest(
            "SendLocalList",
            {
                "listVersion": 3,
                "updateType": "Full",
                "localAuthorizationList": [
                    {"idTag": "A", "idTagInfo": {"status": "Accepted"}},
                    {"idTag": "B", "idTagInfo": {"status": "Blocked", "parentIdTag": "P"}},
                ],
            },
        ),
    ),
    (
        send_local_list(4, {"A": None}, update_type="Differential"),
        CsmsRequest(
            "SendLocalList",
            {
                "listVersion": 4,
                "updateType": "Differential",
                "localAuthorizationList": [{"idTag": "A"}],
            },
        ),
    ),
    (send_local_list(5), CsmsRequest("SendLocalList", {"listVersion": 5, "updateType": "Full"})),
    (
        reserve_now(reservation_id=1, id_tag="A", expiry=EXPIRY, parent_id_tag="P"),
        CsmsRequest(
            "ReserveNow",
            {
                "connectorId": 0,
                "expiryDate": format_timestamp(EXPIRY),
                "idTag": "A",
                "reservationId": 1,
                "parentIdTag": "P",
            },
        ),
    ),
    (
        reserve_now(
            reservation_id=2,
            id_tag="A",
            connector_id=1,
            expiry=dt.datetime.fromtimestamp(EXPIRY, tz=dt.UTC),
        ),
        CsmsRequest(
            "ReserveNow",
            {
                "connectorId": 1,
                "expiryDate": format_timestamp(EXPIRY),
                "idTag": "A",
                "reservationId": 2,
            },
        ),
    ),
    (cancel_reservation(1), CsmsRequest("CancelReservation", {"reservationId": 1})),
    (
        trigger_message("Heartbeat"),
        CsmsRequest("TriggerMessage", {"requestedMessage": "Heartbeat"}),
    ),
    (
        trigger_message("MeterValues", 1),
        CsmsRequest("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}),
    ),
    (
        get_diagnostics("ftp://u:p@127.0.0.1/logs/", retries=2, retry_interval=10, start_time=0),
        CsmsRequest(
            "GetDiagnostics",
            {
                "location": "ftp://u:p@127.0.0.1/logs/",
                "retries": 2,
                "retryInterval": 10,
                "startTime": "1970-01-01T00:00:00.000Z",
            },
        ),
    ),
    (
        update_firmware("ftp://127.0.0.1/fw.bin", EXPIRY, retries=1),
        CsmsRequest(
            "UpdateFirmware",
            {
                "location": "ftp://127.0.0.1/fw.bin",
                "retrieveDate": format_timestamp(EXPIRY),
                "retries": 1,
            },
        ),
    ),
    (
        set_charging_profile(
            0,
            {
                "chargingProfileId": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "ChargePointMaxProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                },
            },
        ),
        CsmsRequest(
            "SetChargingProfile",
            {
                "connectorId": 0,
                "csChargingProfiles": {
                    "chargingProfileId": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "ChargePointMaxProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                    },
                },
            },
        ),
    ),
    (
        clear_charging_profile(purpose="TxDefaultProfile", stack_level=0),
        CsmsRequest(
            "ClearChargingProfile", {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0}
        ),
    ),
    (clear_charging_profile(), CsmsRequest("ClearChargingProfile", {})),
    (
        get_composite_schedule(1, 3600, unit="W"),
        CsmsRequest(
            "GetCompositeSchedule", {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"}
        ),
    ),
]


@pytest.mark.parametrize(("built", "expected"), BUILT, ids=[b[1].action for b in BUILT])
def test_builders_make_schema_valid_requests(built: CsmsRequest, expected: CsmsRequest) -> None:
    assert built == expected
    SchemaRegistry().validate_request(*built)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        reserve_now(reservation_id=1, id_tag="A", expiry=dt.datetime(2026, 1, 1))
