"""Local Auth List Management: GetLocalListVersion and SendLocalList (OCPP 1.6 §5.10, §5.15)
within the reference limits (§3.1: 5 idTags per message, 20 in total, 20 characters each),
and the list at work for pre-authorization and offline, with the cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from emulator.core.effects import EventKind
from emulator.core.model import ALL_PROFILES
from emulator.core.status import Status
from emulator.protocol.codec import CallError, CallResult
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.timefmt import format_timestamp

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]


def entry(id_tag: str, status: str | None = "Accepted", **info: Any) -> dict[str, Any]:
    """An AuthorizationData; ``status=None`` is a removal (Differential)."""
    if status is None:
        return {"idTag": id_tag}
    return {"idTag": id_tag, "idTagInfo": {"status": status, **info}}


def send(csms: FakeCsms, version: int, entries: list[dict[str, Any]], kind: str = "Full") -> str:
    payload: dict[str, Any] = {"listVersion": version, "updateType": kind}
    payload["localAuthorizationList"] = entries
    status: str = csms.call("SendLocalList", payload)["status"]
    return status


def version(csms: FakeCsms) -> int:
    result: int = csms.call("GetLocalListVersion", {})["listVersion"]
    return result


def tags(csms: FakeCsms) -> dict[str, str]:
    return {tag: info.status.value for tag, info in csms.wb.auth.local_list.items()}


# ---------------------------------------------------------------- versions


def test_an_empty_list_has_version_zero(csms: FakeCsms) -> None:
    assert version(csms) == 0


def test_a_full_update_replaces_the_list_and_sets_its_version(csms: FakeCsms) -> None:
    assert send(csms, 3, [entry("A"), entry("B", "Blocked")]) == "Accepted"
    assert version(csms) == 3
    assert send(csms, 1, [entry("C")]) == "Accepted"  # a Full update may go back in version
    assert tags(csms) == {"C": "Accepted"}
    assert version(csms) == 1


def test_a_full_update_without_entries_empties_the_list_and_reports_version_zero(
    csms: FakeCsms,
) -> None:
    send(csms, 4, [entry("A")])
    assert csms.call("SendLocalList", {"listVersion": 5, "updateType": "Full"}) == {
        "status": "Accepted"
    }
    assert tags(csms) == {}
    assert version(csms) == 0  # §5.10: "0 ... SHALL be used to indicate ... empty"


def test_a_differential_update_adds_replaces_and_removes_entries(csms: FakeCsms) -> None:
    send(csms, 1, [entry("A"), entry("B"), entry("C")])
    diff = [entry("A", None), entry("B", "Blocked"), entry("D"), entry("NOT-THERE", None)]
    assert send(csms, 2, diff, "Differential") == "Accepted"
    assert tags(csms) == {"B": "Blocked", "C": "Accepted", "D": "Accepted"}
    assert version(csms) == 2


@pytest.mark.parametrize("new_version", [1, 2])
def test_a_differential_update_not_above_the_current_version_is_a_version_mismatch(
    csms: FakeCsms, new_version: int
) -> None:
    send(csms, 2, [entry("A")])
    assert send(csms, new_version, [entry("B")], "Differential") == "VersionMismatch"
    assert tags(csms) == {"A": "Accepted"} and version(csms) == 2


def test_a_differential_update_to_an_empty_list_needs_a_version_above_zero(
    csms: FakeCsms,
) -> None:
    assert send(csms, 0, [entry("A")], "Differential") == "VersionMismatch"
    assert send(csms, 1, [entry("A")], "Differential") == "Accepted"


@pytest.mark.parametrize("bad_version", [0, -1])
def test_a_non_empty_list_cannot_take_a_version_reserved_for_empty_or_unsupported(
    csms: FakeCsms, bad_version: int
) -> None:
    assert send(csms, bad_version, [entry("A")]) == "Failed"
    assert version(csms) == 0 and tags(csms) == {}


# ---------------------------------------------------------------- reference limits


def test_six_idtags_in_one_message_fail_five_pass(csms: FakeCsms) -> None:
    assert send(csms, 1, [entry(f"T{i}") for i in range(6)]) == "Failed"
    assert tags(csms) == {}
    assert "SendLocalListMaxLength is 5" in csms.wb.auth.last_list_failure
    assert send(csms, 1, [entry(f"T{i}") for i in range(5)]) == "Accepted"


def test_the_list_holds_at_most_twenty_idtags_and_a_failed_update_changes_nothing(
    csms: FakeCsms,
) -> None:
    send(csms, 1, [entry(f"T{i:02d}") for i in range(5)])
    for v, start in ((2, 5), (3, 10), (4, 15)):
        batch = [entry(f"T{i:02d}") for i in range(start, start + 5)]
        assert send(csms, v, batch, "Differential") == "Accepted"
    assert len(tags(csms)) == 20 and version(csms) == 4
    assert send(csms, 5, [entry("ONE-TOO-MANY")], "Differential") == "Failed"
    assert "LocalAuthListMaxLength is 20" in csms.wb.auth.last_list_failure
    assert len(tags(csms)) == 20 and version(csms) == 4
    # Replacing and removing in the same message keeps it within the limit.
    swap = [entry("T00", None), entry("NEW"), entry("T01", "Blocked")]
    assert send(csms, 5, swap, "Differential") == "Accepted"
    assert len(tags(csms)) == 20 and "NEW" in tags(csms) and "T00" not in tags(csms)


def test_the_limits_are_the_configuration_keys_the_charger_reports(csms: FakeCsms) -> None:
    keys = csms.get_configuration("SendLocalListMaxLength", "LocalAuthListMaxLength")
    assert keys["SendLocalListMaxLength"] == {
        "key": "SendLocalListMaxLength",
        "readonly": True,
        "value": "5",
    }
    assert keys["LocalAuthListMaxLength"]["value"] == "20"
    assert keys["LocalAuthListMaxLength"]["readonly"] is True
    assert csms.change_configuration("SendLocalListMaxLength", "10") == "Rejected"


def test_an_idtag_twice_in_one_message_fails(csms: FakeCsms) -> None:
    assert send(csms, 1, [entry("A"), entry("A", "Blocked")]) == "Failed"


def test_a_full_entry_without_idtaginfo_fails(csms: FakeCsms) -> None:
    assert send(csms, 1, [entry("A"), entry("B", None)]) == "Failed"
    assert tags(csms) == {}


def test_an_idtag_of_twenty_characters_is_kept(csms: FakeCsms) -> None:
    assert send(csms, 1, [entry("X" * 20, parentIdTag="P" * 20)]) == "Accepted"


@pytest.mark.parametrize("field", ["idTag", "parentIdTag"])
def test_an_idtag_over_twenty_characters_is_answered_failed_not_with_a_callerror(
    csms: FakeCsms, field: str
) -> None:
    """OCPP's IdToken is CiString20, so the schema refuses 21 characters; the reference
    charger lists "max 20 characters" among its list limits, answered Failed (§3.1)."""
    long_entry = entry("X" * 21) if field == "idTag" else entry("X", parentIdTag="P" * 21)
    payload = {"listVersion": 1, "updateType": "Full", "localAuthorizationList": [long_entry]}
    with pytest.raises(RemoteProtocolError) as refused:
        csms.schemas.validate_request("SendLocalList", payload)
    assert refused.value.code is ErrorCode.TYPE_CONSTRAINT_VIOLATION
    answer = csms.send_call("SendLocalList", payload)  # as text: the link checks the schema
    assert isinstance(answer, CallResult) and answer.payload == {"status": "Failed"}
    assert tags(csms) == {}


def test_other_schema_violations_stay_callerrors(csms: FakeCsms) -> None:
    payload = {"listVersion": 1, "updateType": "Sideways"}
    with pytest.raises(RemoteProtocolError) as refused:
        csms.schemas.validate_request("SendLocalList", payload)
    answer = csms.send_call("SendLocalList", payload)
    assert isinstance(answer, CallError) and answer.code == refused.value.code


def test_an_idtag_over_twenty_characters_that_gets_past_the_schema_is_failed(
    csms: FakeCsms,
) -> None:
    """Without the schema check (the core alone) the charger's own limit still holds."""
    payload = {"listVersion": 1, "updateType": "Full", "localAuthorizationList": [entry("X" * 21)]}
    assert csms.dispatch("SendLocalList", payload) == {"status": "Failed"}


# ---------------------------------------------------------------- LocalAuthListEnabled


def test_with_the_list_disabled_updates_are_not_supported_and_the_version_is_minus_one(
    csms: FakeCsms,
) -> None:
    send(csms, 7, [entry("A")])
    assert csms.change_configuration("LocalAuthListEnabled", "false") == "Accepted"
    assert send(csms, 8, [entry("B")]) == "NotSupported"
    assert version(csms) == -1
    assert csms.change_configuration("LocalAuthListEnabled", "true") == "Accepted"
    assert version(csms) == 7 and tags(csms) == {"A": "Accepted"}  # kept, unused meanwhile


def test_with_the_profile_switched_off_the_actions_are_not_supported_and_keys_unknown(
    make_csms: MakeCsms,
) -> None:
    profiles = tuple(p for p in ALL_PROFILES if p != "LocalAuthListManagement")
    csms = make_csms(profiles=profiles)
    for action, payload in (
        ("GetLocalListVersion", {}),
        ("SendLocalList", {"listVersion": 1, "updateType": "Full"}),
    ):
        with pytest.raises(RemoteProtocolError) as refused:
            csms.call(action, payload)
        assert refused.value.code is ErrorCode.NOT_SUPPORTED
    keys = ["LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength"]
    result = csms.call("GetConfiguration", {"key": keys})
    assert result.get("configurationKey") == [] and result["unknownKey"] == keys
    supported = csms.get_configuration("SupportedFeatureProfiles")["SupportedFeatureProfiles"]
    assert "LocalAuthListManagement" not in supported["value"].split(",")
    assert csms.change_configuration("LocalAuthListEnabled", "true") == "NotSupported"


# ---------------------------------------------------------------- the list at work


def test_a_listed_tag_starts_at_once_online_without_an_authorize(csms: FakeCsms) -> None:
    send(csms, 1, [entry("BOB")])
    csms.plug_in()
    csms.present("BOB")
    assert csms.status is Status.CHARGING
    assert csms.sent_of("Authorize") == []
    assert csms.payloads("StartTransaction")[0]["idTag"] == "BOB"


def test_without_local_pre_authorize_a_listed_tag_is_still_asked_for(csms: FakeCsms) -> None:
    send(csms, 1, [entry("ALICE")])
    csms.change_configuration("LocalPreAuthorize", "false")
    csms.plug_in()
    csms.present("ALICE")
    assert csms.payloads("Authorize") == [{"idTag": "ALICE"}]
    assert csms.status is Status.CHARGING


def test_a_blocked_list_entry_is_asked_for_online_and_refused_offline(csms: FakeCsms) -> None:
    send(csms, 1, [entry("MALLORY", "Blocked")])
    csms.plug_in()
    csms.present("MALLORY")
    assert csms.payloads("Authorize") == [{"idTag": "MALLORY"}]  # CSMS says Blocked too
    assert csms.wb.transactions == []
    csms.disconnect()
    csms.present("MALLORY")
    assert csms.wb.transactions == []


def test_offline_only_listed_tags_start_cached_ones_do_not(csms: FakeCsms) -> None:
    """Reference §3.2.1 AllowOfflineTxForUnknownId: "the charger will not allow any ID
    except in local authentication list while it is offline"."""
    tx = csms.start_charging("ALICE")  # ALICE is now in the cache
    csms.present("ALICE")
    csms.unplug()
    send(csms, 1, [entry("LISTED")])
    csms.disconnect()
    csms.plug_in()
    csms.present("ALICE")
    assert csms.wb.transactions == [tx]
    csms.present("LISTED")
    assert csms.status is Status.CHARGING
    assert csms.wb.transactions[-1].id_tag == "LISTED"


def test_with_plain_ocpp_offline_rules_the_cache_works_beside_the_list(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(offline_local_list_only=False)
    csms.start_charging("ALICE")
    csms.present("ALICE")
    csms.unplug()
    send(csms, 1, [entry("LISTED")])
    csms.disconnect()
    csms.plug_in()
    csms.present("ALICE")  # from the cache
    assert csms.status is Status.CHARGING
    csms.present("ALICE")
    csms.unplug()
    csms.plug_in()
    csms.present("LISTED")  # from the list
    assert [t.id_tag for t in csms.wb.transactions] == ["ALICE", "ALICE", "LISTED"]


def test_an_expired_list_entry_is_refused_offline(csms: FakeCsms) -> None:
    until = format_timestamp(csms.now + 60)
    send(csms, 1, [entry("SOON", expiryDate=until)])
    csms.disconnect()
    csms.advance(61)
    csms.plug_in()
    csms.present("SOON")
    assert csms.wb.transactions == []
    assert EventKind.AUTHORIZATION_REJECTED in csms.event_kinds()


def test_a_listed_tag_is_not_put_in_the_cache(csms: FakeCsms) -> None:
    send(csms, 1, [entry("ALICE")])
    csms.change_configuration("LocalPreAuthorize", "false")
    csms.start_charging("ALICE")
    assert "ALICE" not in csms.wb.auth.cache


def test_the_list_and_its_version_survive_resets(csms: FakeCsms) -> None:
    send(csms, 9, [entry("A"), entry("B")])
    for kind in ("Soft", "Hard"):
        csms.call("Reset", {"type": kind})
        csms.advance(60)
        assert len(csms.reboots) == (1 if kind == "Soft" else 2)
        assert csms.wb.accepted
        assert version(csms) == 9 and tags(csms) == {"A": "Accepted", "B": "Accepted"}


def test_clear_cache_leaves_the_list_alone(csms: FakeCsms) -> None:
    send(csms, 1, [entry("A")])
    csms.call("ClearCache", {})
    assert tags(csms) == {"A": "Accepted"}


# ---------------------------------------------------------------- LocalListConflict


def test_a_csms_answer_that_contradicts_the_list_is_reported_as_a_local_list_conflict(
    csms: FakeCsms,
) -> None:
    """OCPP 1.6 §3.5.2: StatusNotification for connector 0 with errorCode LocalListConflict."""
    send(csms, 1, [entry("MALLORY")])  # the list says Accepted, the CSMS says Blocked
    csms.advance(7.0)  # so that the conflict's time is not the boot's
    csms.plug_in()
    noticed = csms.now
    csms.present("MALLORY")  # starts from the list; StartTransaction.conf says Blocked
    conflicts = [p for p in csms.payloads("StatusNotification") if p["errorCode"] != "NoError"]
    assert conflicts == [
        {
            "connectorId": 0,
            "errorCode": "LocalListConflict",
            "status": "Available",
            "timestamp": format_timestamp(noticed),  # when the answer contradicted the list
        }
    ]


def test_an_answer_that_agrees_with_the_list_is_no_conflict(csms: FakeCsms) -> None:
    send(csms, 1, [entry("ALICE")])
    csms.start_charging("ALICE")
    assert {p["errorCode"] for p in csms.payloads("StatusNotification")} == {"NoError"}
