"""Case-insensitive idTags, LocalAuthorizeOffline in the reference mode, what a Pending
charger answers and sends, ChangeAvailability of the charge point, the bounds of the
composite schedule, configuration values in ASCII only, and CSMS timestamps with leap
seconds (docs/reference-charger.md, Behaviour and Smart Charging)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from fastjsonschema.draft04 import CodeGeneratorDraft04
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.core.authorization import AuthorizationStatus, IdTagInfo
from emulator.core.configuration import (
    KEY_SPECS,
    Configuration,
    ConfigurationStatus,
    KeyType,
)
from emulator.core.firmware import FtpDownload
from emulator.core.outbox import Message, Outbox
from emulator.core.smart_charging import (
    Capabilities,
    ConnectorState,
    RateUnit,
    Site,
    SmartCharging,
)
from emulator.core.status import Status
from emulator.core.transaction import Transaction
from emulator.protocol.timefmt import format_timestamp, parse_timestamp

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]

DAY = 86400
HOUR = 3600
A, P, C, F, U = "Available", "Preparing", "Charging", "Finishing", "Unavailable"


class CaseInsensitiveTags(dict[str, Any]):
    """The idTag table of a CSMS that compares idTags case-insensitively (it upper-cases
    them, like the reference CSMS); the fake CSMS's own table is case-sensitive."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.upper(), default)


def case_insensitive(csms: FakeCsms) -> FakeCsms:
    csms.id_tags = CaseInsensitiveTags(csms.id_tags)
    return csms


def started(csms: FakeCsms) -> list[str]:
    return [s.payload["idTag"] for s in csms.sent_of("StartTransaction")]


def send_list(
    csms: FakeCsms, version: int, entries: list[dict[str, Any]], kind: str = "Full"
) -> str:
    payload = {"listVersion": version, "updateType": kind, "localAuthorizationList": entries}
    status: str = csms.call("SendLocalList", payload)["status"]
    return status


def accepted(id_tag: str, **info: Any) -> dict[str, Any]:
    return {"idTag": id_tag, "idTagInfo": {"status": "Accepted", **info}}


# ---------------------------------------------------------------- idTags are CiString20


def test_a_card_stops_its_transaction_in_any_case_and_is_sent_as_presented(
    csms: FakeCsms,
) -> None:
    case_insensitive(csms)
    tx = csms.start_charging("ALICE")
    csms.present("alice")
    assert tx.stop_reason is not None and tx.stop_reason.value == "Local"
    csms.advance(1)
    (stop,) = csms.payloads("StopTransaction")
    assert stop["idTag"] == "alice"  # as presented, not as the transaction has it


def test_a_card_of_the_same_parent_in_another_case_stops_the_transaction(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(
        id_tags={
            "ALICE": {"status": "Accepted", "parentIdTag": "FLEET-1"},
            "BOB": {"status": "Accepted", "parentIdTag": "fleet-1"},
        }
    )
    csms.start_charging("BOB")
    csms.unplug()
    csms.advance(5)
    tx = csms.start_charging("ALICE")
    csms.present("BOB")  # known (cached) with parent "fleet-1"
    assert tx.stop_reason is not None and tx.stop_reason.value == "Local"


def test_the_cache_finds_a_card_in_any_case(csms: FakeCsms) -> None:
    case_insensitive(csms)
    csms.start_charging("ALICE")  # ALICE is cached Accepted
    csms.unplug()
    csms.advance(5)
    csms.plug_in()
    csms.present("Alice")  # LocalPreAuthorize: starts at once, nothing asked
    assert [s.payload["idTag"] for s in csms.sent_of("Authorize")] == ["ALICE"]
    assert started(csms) == ["ALICE", "Alice"]


def test_the_local_list_finds_a_card_in_any_case_offline(csms: FakeCsms) -> None:
    case_insensitive(csms).id_tags["CAROL"] = "Accepted"
    assert send_list(csms, 1, [accepted("CAROL")]) == "Accepted"
    csms.disconnect()
    csms.plug_in()
    csms.present("carol")
    assert csms.status is Status.CHARGING
    csms.connect()
    csms.advance(1)
    assert started(csms) == ["carol"]
    assert csms.status is Status.CHARGING


def test_send_local_list_takes_a_tag_in_two_cases_as_the_same_tag(csms: FakeCsms) -> None:
    assert send_list(csms, 1, [accepted("CAROL"), accepted("carol")]) == "Failed"
    assert send_list(csms, 1, [accepted("CAROL"), accepted("DAVE")]) == "Accepted"
    assert send_list(csms, 2, [{"idTag": "Carol"}], kind="Differential") == "Accepted"
    assert list(csms.wb.auth.local_list) == ["DAVE"]
    assert send_list(csms, 3, [accepted("dave", parentIdTag="X")], kind="Differential") == (
        "Accepted"
    )
    assert len(csms.wb.auth.local_list) == 1
    assert csms.wb.auth.local_list["DAVE"].parent_id_tag == "X"


def test_a_parent_in_another_case_is_no_local_list_conflict(make_csms: MakeCsms) -> None:
    csms = make_csms(id_tags={"CAROL": {"status": "Accepted", "parentIdTag": "fleet"}})
    csms.change_configuration("LocalPreAuthorize", "false")
    send_list(csms, 1, [accepted("CAROL", parentIdTag="FLEET")])
    csms.start_charging("CAROL")
    csms.advance(1)
    assert {p["errorCode"] for p in csms.payloads("StatusNotification")} == {"NoError"}


def test_a_reservation_admits_its_tag_and_its_parent_in_any_case(make_csms: MakeCsms) -> None:
    csms = make_csms(
        id_tags={"ALICE": "Accepted", "BOB": {"status": "Accepted", "parentIdTag": "family"}}
    )
    case_insensitive(csms)
    payload = {
        "connectorId": 1,
        "expiryDate": format_timestamp(csms.now + 600),
        "idTag": "ALICE",
        "parentIdTag": "FAMILY",
        "reservationId": 7,
    }
    assert csms.call("ReserveNow", payload) == {"status": "Accepted"}
    csms.plug_in()
    csms.present("alice")
    assert csms.status is Status.CHARGING
    csms.advance(1)
    assert csms.payloads("StartTransaction")[-1]["reservationId"] == 7
    csms.call("RemoteStopTransaction", {"transactionId": 1001})
    csms.unplug()
    payload["reservationId"] = 8
    payload["expiryDate"] = format_timestamp(csms.now + 600)
    assert csms.call("ReserveNow", payload) == {"status": "Accepted"}
    csms.plug_in()
    csms.present("BOB")  # parent "family" matches the reservation's "FAMILY"
    assert csms.status is Status.CHARGING
    csms.advance(1)
    assert csms.payloads("StartTransaction")[-1]["reservationId"] == 8


def test_a_remote_start_profile_joins_a_transaction_whose_tag_differs_in_case() -> None:
    smart = SmartCharging()
    caps = Capabilities(
        max_stack_level=1,
        max_periods=14,
        max_installed=1,
        units=frozenset({RateUnit.A, RateUnit.W}),
        connectors=1,
    )
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}],
        },
    }
    assert smart.remote_start(1, "ALICE", profile, now=0.0, caps=caps, expires_at=100.0)
    tx = Transaction(local_id=1, connector_id=1, id_tag="alice", meter_start=0, started_at=5.0)
    smart.sync_transaction(1, tx, 5.0, caps)
    assert [i.profile.id for i in smart.installed] == [1]


# ---------------------------------------------------------------- LocalAuthorizeOffline


@pytest.mark.parametrize(("local_authorize_offline", "starts"), [("true", True), ("false", False)])
def test_local_authorize_offline_decides_whether_a_listed_card_starts_offline(
    csms: FakeCsms, local_authorize_offline: str, starts: bool
) -> None:
    """The reference mode (offline_local_list_only): only list entries, and only with
    LocalAuthorizeOffline."""
    assert csms.model.offline_local_list_only
    send_list(csms, 1, [accepted("CAROL")])
    csms.change_configuration("LocalAuthorizeOffline", local_authorize_offline)
    csms.change_configuration("AllowOfflineTxForUnknownId", "true")  # admits nobody here
    csms.disconnect()
    csms.plug_in()
    for card in ("DAVE", "CAROL"):
        csms.present(card)
    assert (csms.status is Status.CHARGING) is starts
    assert [tx.id_tag for tx in csms.wb.transactions] == (["CAROL"] if starts else [])


def test_without_local_authorize_offline_an_unanswered_authorize_starts_nothing(
    csms: FakeCsms,
) -> None:
    send_list(csms, 1, [accepted("CAROL")])
    csms.change_configuration("LocalPreAuthorize", "false")
    csms.change_configuration("LocalAuthorizeOffline", "false")
    csms.answer("Authorize", csms.SILENT)
    csms.plug_in()
    csms.present("CAROL")
    csms.advance(31)
    assert csms.wb.timeouts == 1
    assert csms.wb.transactions == []


# ---------------------------------------------------------------- registration Pending


def test_while_pending_a_remote_start_is_rejected_and_nothing_starts(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(boot_status="Pending", boot_interval=300)
    csms.wb.auth.local_list["CAROL"] = IdTagInfo(AuthorizationStatus.ACCEPTED)
    csms.plug_in()
    for tag in ("ALICE", "CAROL"):
        answer = csms.call("RemoteStartTransaction", {"idTag": tag, "connectorId": 1})
        assert answer == {"status": "Rejected"}
    assert csms.wb.transactions == []
    csms.boot_status = "Accepted"
    csms.advance(300)
    assert csms.wb.accepted
    assert csms.sent_of("StartTransaction") == []
    assert csms.status is Status.PREPARING  # the cable is in, nobody started


def test_while_pending_a_remote_stop_is_rejected(make_csms: MakeCsms) -> None:
    csms = make_csms(wallbox_options={"boot_on_reconnect": True})
    tx = csms.start_charging()
    csms.advance(5)
    csms.disconnect()
    csms.boot_status = "Pending"
    csms.boot_interval = 300
    csms.connect()
    assert not csms.wb.accepted
    answer = csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    assert answer == {"status": "Rejected"}
    assert csms.status is Status.CHARGING


TRIGGERED = {
    "BootNotification": ["BootNotification"],
    "DiagnosticsStatusNotification": ["DiagnosticsStatusNotification"],
    "FirmwareStatusNotification": ["FirmwareStatusNotification"],
    "Heartbeat": ["Heartbeat"],
    "MeterValues": ["MeterValues"],
    "StatusNotification": ["StatusNotification", "StatusNotification"],
}


@pytest.mark.parametrize("requested", TRIGGERED)
def test_while_pending_a_triggered_message_is_sent_and_nothing_else(
    make_csms: MakeCsms, requested: str
) -> None:
    csms = make_csms(boot_status="Pending", boot_interval=300)
    csms.plug_in()  # a status change: waits for the registration
    csms.advance(10)
    before = len(csms.sent)
    answer = csms.call("TriggerMessage", {"requestedMessage": requested})
    assert answer == {"status": "Accepted"}
    assert csms.actions()[before:] == TRIGGERED[requested]
    csms.advance(200)
    assert csms.actions()[before:] == TRIGGERED[requested], "nothing else while Pending"
    if requested == "StatusNotification":
        sent = csms.payloads("StatusNotification")
        assert [(p["connectorId"], p["status"]) for p in sent] == [(0, A), (1, P)]


def test_the_outbox_lets_only_boot_and_triggered_messages_through_while_pending() -> None:
    outbox = Outbox(config=Configuration(profiles=("Core",)))
    outbox.enqueue(Message(action="StatusNotification", payload={"connectorId": 1}))
    outbox.enqueue(Message(action="Heartbeat", payload={}, triggered=True))
    outbox.enqueue(Message(action="StatusNotification", payload={"n": 2}, triggered=True))
    assert outbox.next_ready_at(boot_only=True) == 0.0
    sent = []
    while (call := outbox.pop_ready(1.0, boot_only=True)) is not None:
        sent.append(call.action)
        message = outbox.take_in_flight(call.unique_id)
        assert message is not None
        outbox.acknowledged(message, {}, 1.0)
    assert sent == ["Heartbeat", "StatusNotification"]
    assert outbox.next_ready_at(boot_only=True) is None  # the untriggered one waits
    call = outbox.pop_ready(2.0, boot_only=False)
    assert call is not None and call.payload == {"connectorId": 1}


# ---------------------------------------------------------------- ChangeAvailability


def change_availability(csms: FakeCsms, connector_id: int, operative: bool) -> str:
    kind = "Operative" if operative else "Inoperative"
    status: str = csms.call("ChangeAvailability", {"connectorId": connector_id, "type": kind})[
        "status"
    ]
    return status


def test_charge_point_inoperative_during_a_transaction_is_unavailable_only_when_it_applies(
    csms: FakeCsms,
) -> None:
    tx = csms.start_charging()
    assert change_availability(csms, 0, operative=False) == "Scheduled"
    csms.advance(120)
    assert (csms.wb.status(0), csms.wb.status(1)) == (Status.AVAILABLE, Status.CHARGING)
    assert csms.statuses(0) == [A]
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    csms.advance(1)
    assert (csms.wb.status(0), csms.wb.status(1)) == (Status.UNAVAILABLE, Status.UNAVAILABLE)
    assert (csms.statuses(0), csms.statuses(1)) == ([A, U], [A, P, C, U])
    statuses = [(p["connectorId"], p["status"]) for p in csms.payloads("StatusNotification")]
    assert statuses[-2:] == [(1, U), (0, U)]  # the charge point after its connector


def test_charge_point_operative_again_cancels_its_scheduled_change(csms: FakeCsms) -> None:
    tx = csms.start_charging()
    assert change_availability(csms, 0, operative=False) == "Scheduled"
    assert change_availability(csms, 0, operative=True) == "Accepted"
    csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
    csms.advance(1)
    assert (csms.wb.status(0), csms.wb.status(1)) == (Status.AVAILABLE, Status.FINISHING)


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "charging"])
def test_a_connector_cannot_be_operative_while_the_charge_point_is_inoperative(
    csms: FakeCsms, busy: bool
) -> None:
    tx = csms.start_charging() if busy else None
    assert change_availability(csms, 0, operative=False) == ("Scheduled" if busy else "Accepted")
    assert change_availability(csms, 1, operative=True) == "Rejected"
    if tx is not None:
        csms.call("RemoteStopTransaction", {"transactionId": tx.transaction_id})
        csms.unplug()
    assert (csms.wb.status(0), csms.wb.status(1)) == (Status.UNAVAILABLE, Status.UNAVAILABLE)
    assert change_availability(csms, 1, operative=True) == "Rejected"
    csms.plug_in()
    csms.present("ALICE")
    answer = csms.call("RemoteStartTransaction", {"idTag": "BOB", "connectorId": 1})
    assert answer == {"status": "Rejected"}
    assert len(csms.wb.transactions) == (1 if busy else 0)
    assert csms.wb.status(1) is Status.UNAVAILABLE
    assert change_availability(csms, 0, operative=True) == "Accepted"
    assert csms.wb.status(1) is Status.PREPARING  # the cable is in (H2)


# ---------------------------------------------------------------- GetCompositeSchedule


def daily_profile(periods: list[tuple[int, float]], start: float) -> dict[str, Any]:
    return {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Recurring",
        "recurrencyKind": "Daily",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": format_timestamp(start),
            "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods],
        },
    }


def test_the_longest_composite_schedule_is_bounded_and_exact(csms: FakeCsms) -> None:
    """2^31 - 1 s asked, 14 periods and one day answered.  A walk over the duration asked
    for would not end within the suite's timeout; what the answer costs, next to a one-day
    request, is printed by bench/composite_schedule.py."""
    periods = [(k * 6000, 6.0 + k) for k in range(14)]  # 14 periods, every 100 min
    profile = daily_profile(periods, csms.now - DAY)
    assert csms.call("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile}) == {
        "status": "Accepted"
    }
    request = {"connectorId": 1, "duration": 2147483647}
    answer = csms.dispatch("GetCompositeSchedule", request)
    csms.schemas.validate_response("GetCompositeSchedule", answer)
    schedule = answer["chargingSchedule"]
    got = [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]
    assert got == periods  # ChargingScheduleMaxPeriods: the 15th would start tomorrow
    assert schedule["duration"] == DAY


def test_a_composite_schedule_covers_at_most_seven_days(csms: FakeCsms) -> None:
    profile = daily_profile([(0, 10.0), (8 * HOUR, 16.0)], csms.now)
    csms.call("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile})
    answer = csms.call("GetCompositeSchedule", {"connectorId": 1, "duration": 30 * DAY})
    schedule = answer["chargingSchedule"]
    assert schedule["duration"] == 7 * DAY
    got = [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]
    assert got == [(d * DAY + s, lim) for d in range(7) for s, lim in ((0, 10.0), (8 * HOUR, 16.0))]


def test_a_flat_composite_schedule_of_any_duration_is_one_period() -> None:
    """Its cost is printed by bench/composite_schedule.py, as the one above."""
    smart = SmartCharging()
    idle = ConnectorState(transaction=None, phases=3)
    schedule = smart.composite(
        1,
        now=0.0,
        duration=2147483647,
        unit=RateUnit.A,
        site=Site(max_current=32.0, voltage=230.0),
        connectors={0: idle, 1: idle},
        max_periods=14,
    )
    assert [(p.start, p.limit) for p in schedule.periods] == [(0, 32.0)]
    assert schedule.duration == 7 * DAY


# ---------------------------------------------------------------- configuration values

NON_ASCII_INTEGERS = ["²", "1²", "+²", "٣٠", "３０", "\u00a030", "30\u2003", "𝟑𝟎"]


@pytest.mark.parametrize("value", NON_ASCII_INTEGERS)
@pytest.mark.parametrize(
    "key", ["HeartbeatInterval", "ConnectionTimeOut", "MeterValueSampleInterval"]
)
def test_an_integer_in_other_digits_is_rejected(csms: FakeCsms, key: str, value: str) -> None:
    before = csms.get_configuration(key)[key]["value"]
    assert csms.change_configuration(key, value) == "Rejected"
    assert csms.get_configuration(key)[key]["value"] == before


@pytest.mark.parametrize("value", ["².RST", "٠.RST", "0.RST,¹.RST", "+1.RST", "9999999999.RST"])
def test_a_phase_rotation_with_another_connector_digit_is_rejected(
    csms: FakeCsms, value: str
) -> None:
    assert csms.change_configuration("ConnectorPhaseRotation", value) == "Rejected"


def test_a_security_profile_in_other_digits_is_rejected(make_csms: MakeCsms) -> None:
    csms = make_csms(security_profile=1, fleet_password=True, fleet_ca=True)  # may raise to 2
    assert csms.change_configuration("SecurityProfile", "²") == "Rejected"
    assert csms.change_configuration("SecurityProfile", " 2 ") == "Accepted"


@pytest.mark.parametrize("value", ["\u00a0true", "ｔｒｕｅ", "true\u200b"])
def test_a_boolean_in_other_characters_is_rejected(csms: FakeCsms, value: str) -> None:
    assert csms.change_configuration("LocalPreAuthorize", value) == "Rejected"


WRITABLE = [
    spec.name
    for spec in KEY_SPECS
    if not spec.readonly and spec.profile not in ("Security", "SecurityExtension")
]
_INT = re.compile(r"[ \t\r\n]*[+-]?[0-9]+[ \t\r\n]*")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(WRITABLE),
    value=st.one_of(
        st.text(max_size=12),
        st.text(alphabet="0123456789²³¹٣３+-., \t", max_size=8),
        st.from_regex(r"[0-9²٣]\.(RST|TSR)(,[0-9²]\.RST)?", fullmatch=True),
    ),
)
def test_any_value_is_answered_and_an_accepted_integer_is_ascii(key: str, value: str) -> None:
    config = Configuration(profiles=("Core", "LocalAuthListManagement", "SmartCharging"))
    status = config.change(key, value)  # never raises: Accepted or Rejected
    assert status in (ConfigurationStatus.ACCEPTED, ConfigurationStatus.REJECTED)
    if status is ConfigurationStatus.ACCEPTED:
        stored = config.get(key)
        assert stored.isascii()
        if next(s for s in KEY_SPECS if s.name == key).type is KeyType.INTEGER:
            assert _INT.fullmatch(value)
            assert str(config.get_int(key)) == stored


# ---------------------------------------------------------------- timestamps

LEAP = "2025-12-31T23:59:60Z"  # the second before T0 (2026-01-01T00:00:00Z) ends at T0


def test_a_leap_second_is_the_next_second() -> None:
    assert parse_timestamp("2016-12-31T23:59:60Z") == parse_timestamp("2017-01-01T00:00:00Z")
    assert parse_timestamp("2016-12-31T23:59:60.250Z") == pytest.approx(
        parse_timestamp("2017-01-01T00:00:00.250Z")
    )
    assert parse_timestamp("2017-01-01T00:59:60+01:00") == parse_timestamp("2017-01-01T00:00:00Z")
    assert parse_timestamp("9999-12-31T23:59:60Z") == 253402300800.0  # past datetime's range


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2026-01-01t08:00:00z", "2026-01-01T08:00:00+00:00"),
        ("2026-01-01T09:00:00+0100", "2026-01-01T08:00:00+00:00"),
        ("2026-01-01T08:00:00.123456789Z", "2026-01-01T08:00:00.123457+00:00"),
        ("2026-01-01T08:00:00", "2026-01-01T08:00:00+00:00"),
        ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00+00:00"),
        ("٢٠٢٦-01-01T08:00:00Z", "2026-01-01T08:00:00+00:00"),  # the schema's \d takes these
    ],
)
def test_every_rfc3339_form_parses(text: str, iso: str) -> None:
    from datetime import datetime

    assert parse_timestamp(text) == pytest.approx(datetime.fromisoformat(iso).timestamp(), abs=1e-5)


def test_the_edges_of_the_calendar_parse() -> None:
    assert parse_timestamp("0000-01-01T00:00:00Z") == -62167219200.0
    assert parse_timestamp("0001-01-01T00:00:00+01:00") == -62135600400.0


@pytest.mark.parametrize(
    "text", ["2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z", "soon", ""]
)
def test_what_is_no_date_time_raises_value_error_only(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(
        r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[tT]([01][0-9]|2[0-3]):[0-5][0-9]:"
        r"([0-5][0-9]|60)(\.[0-9]{1,12})?([zZ]|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])",
        fullmatch=True,
    )
)
def test_every_schema_valid_date_time_parses(text: str) -> None:
    value = parse_timestamp(text)
    if text[17:19] == "60":
        assert value == pytest.approx(parse_timestamp(text[:17] + "59" + text[19:]) + 1, abs=1e-4)
    elif not text.startswith("0000"):
        iso = text.upper().replace("Z", "+00:00")
        iso = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", iso)
        iso = re.sub(r"(\.\d{6})\d+", r"\1", iso)
        from datetime import datetime

        try:
            expected = datetime.fromisoformat(iso).timestamp()
        except OverflowError:
            return
        assert value == pytest.approx(expected, abs=1e-4)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(CodeGeneratorDraft04.FORMAT_REGEXS["date-time"]))
def test_whatever_the_schema_takes_for_a_date_time_parses(text: str) -> None:
    """The schema's own ``date-time`` pattern (fastjsonschema, as the transport uses it)."""
    assert isinstance(parse_timestamp(text), float)


def test_a_reservation_until_a_leap_second_is_accepted(csms: FakeCsms) -> None:
    payload = {
        "connectorId": 1,
        "expiryDate": "2026-01-01T23:59:60Z",
        "idTag": "ALICE",
        "reservationId": 7,
    }
    assert csms.call("ReserveNow", payload) == {"status": "Accepted"}
    reservation = csms.wb.reservations.get(7)
    assert reservation is not None and reservation.expiry == csms.T0 + DAY


def test_an_update_retrieved_at_a_leap_second_downloads(csms: FakeCsms) -> None:
    payload = {"location": "ftp://fw.example/AC22-3P-1.10.0.bin", "retrieveDate": LEAP}
    assert csms.call("UpdateFirmware", payload) == {}
    assert any(isinstance(t, FtpDownload) for t in csms.transfers)  # T0 has come: at once


def test_an_authorize_answer_expiring_at_a_leap_second_is_decided(make_csms: MakeCsms) -> None:
    expiry = "2026-01-01T23:59:60Z"
    csms = make_csms(id_tags={"ALICE": {"status": "Accepted", "expiryDate": expiry}})
    csms.start_charging("ALICE")
    assert csms.status is Status.CHARGING
    assert csms.wb.auth.cache["ALICE"].expiry == csms.T0 + DAY


def test_a_time_the_charger_cannot_read_never_raises_into_a_handler(csms: FakeCsms) -> None:
    """Without the schema's format check (the core is called directly)."""
    wb = csms.wb
    reserve = {"connectorId": 1, "expiryDate": "soon", "idTag": "ALICE", "reservationId": 7}
    assert csms.dispatch("ReserveNow", reserve) == {"status": "Rejected"}
    update = {"location": "ftp://fw.example/x.bin", "retrieveDate": "soon"}
    assert csms.dispatch("UpdateFirmware", update) == {}
    assert wb.firmware.update is None
    csms.advance(5)
    diagnostics = {"location": "ftp://logs.example/", "startTime": "yesterday"}
    assert "fileName" in csms.dispatch("GetDiagnostics", diagnostics)
    info = IdTagInfo.from_answer({"status": "Accepted", "expiryDate": "soon"})
    assert info.valid_at(csms.now) is AuthorizationStatus.EXPIRED
    with pytest.raises(ValueError):
        IdTagInfo.from_json({"status": "Accepted", "expiryDate": "soon"})
    csms.advance(1)
