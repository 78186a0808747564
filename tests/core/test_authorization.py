"""Authorization: Authorize.req, the cache, the local list, offline rules, invalid ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from emulator.core.authorization import AuthorizationStatus, IdTagInfo
from emulator.core.effects import EventKind
from emulator.core.status import Status
from emulator.protocol.timefmt import format_timestamp

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]


def started(csms: FakeCsms) -> list[str]:
    return [tx.id_tag for tx in csms.wb.transactions]


def test_a_card_is_authorized_before_the_transaction_starts(csms: FakeCsms) -> None:
    csms.plug_in()
    csms.present("ALICE")
    assert csms.actions()[-4:] == [
        "StatusNotification",  # Preparing
        "Authorize",
        "StartTransaction",
        "StatusNotification",  # Charging
    ]
    assert csms.payloads("Authorize") == [{"idTag": "ALICE"}]


def test_a_card_before_the_cable_waits_in_preparing_for_the_cable(csms: FakeCsms) -> None:
    csms.present("ALICE")
    assert csms.status is Status.PREPARING
    assert csms.sent_of("StartTransaction") == []
    csms.advance(20)
    csms.plug_in()
    assert csms.status is Status.CHARGING
    assert started(csms) == ["ALICE"]


@pytest.mark.parametrize("id_tag", ["MALLORY", "OLD-CARD", "NOBODY"])  # Blocked, Expired, Invalid
def test_a_card_the_csms_does_not_accept_starts_nothing(csms: FakeCsms, id_tag: str) -> None:
    csms.plug_in()
    csms.present(id_tag)
    assert started(csms) == []
    assert EventKind.AUTHORIZATION_REJECTED in csms.event_kinds()
    assert csms.status is Status.PREPARING  # the cable is in; another card may come


@pytest.mark.parametrize(("pre_authorize", "authorize_count"), [("true", 1), ("false", 2)])
def test_local_pre_authorize_starts_a_cached_card_without_asking(
    csms: FakeCsms, pre_authorize: str, authorize_count: int
) -> None:
    csms.change_configuration("LocalPreAuthorize", pre_authorize)
    csms.start_charging()
    csms.unplug()
    csms.advance(10)
    csms.start_charging()
    assert len(csms.sent_of("Authorize")) == authorize_count
    assert started(csms) == ["ALICE", "ALICE"]


def test_without_the_authorization_cache_every_card_is_asked_for(csms: FakeCsms) -> None:
    csms.start_charging()
    assert "ALICE" in csms.wb.auth.cache
    csms.change_configuration("AuthorizationCacheEnabled", "false")
    assert csms.wb.auth.cache == {}  # switching the cache off empties it
    csms.unplug()
    csms.advance(10)
    csms.start_charging()
    assert len(csms.sent_of("Authorize")) == 2
    assert csms.wb.auth.cache == {}


def test_clear_cache_makes_the_next_session_ask_again(csms: FakeCsms) -> None:
    csms.start_charging()
    csms.unplug()
    assert csms.call("ClearCache", {}) == {"status": "Accepted"}
    assert csms.wb.auth.cache == {}
    csms.advance(10)
    csms.start_charging()
    assert len(csms.sent_of("Authorize")) == 2


def test_the_cache_learns_from_start_transaction_too(csms: FakeCsms) -> None:
    csms.change_configuration("AuthorizeRemoteTxRequests", "false")
    csms.plug_in()
    csms.call("RemoteStartTransaction", {"idTag": "BOB", "connectorId": 1})
    csms.unplug()
    csms.advance(10)
    csms.start_charging("BOB")
    assert csms.sent_of("Authorize") == []
    assert started(csms) == ["BOB", "BOB"]


def test_an_expired_cache_entry_is_asked_for_again(csms: FakeCsms) -> None:
    csms.id_tags["ALICE"] = {"status": "Accepted", "expiryDate": format_timestamp(csms.T0 + 100)}
    csms.start_charging()
    csms.unplug()
    csms.advance(200)
    csms.id_tags["ALICE"] = {"status": "Accepted", "expiryDate": format_timestamp(csms.T0 + 900)}
    csms.start_charging()
    assert len(csms.sent_of("Authorize")) == 2


# ---------------------------------------------------------------- offline

# Tags as the charger knows them before going offline: ALICE cached Accepted, MALLORY
# cached Blocked, CAROL in the local list, DAVE never seen.
# (offline_local_list_only, AllowOfflineTxForUnknownId, card, transaction starts)
OFFLINE: list[tuple[bool, str, str, bool]] = [
    # The reference firmware: "will not allow any ID except in local authentication list".
    (True, "false", "CAROL", True),
    (True, "false", "ALICE", False),
    (True, "true", "ALICE", False),
    (True, "true", "DAVE", False),
    # OCPP 1.6 §3.5.2: list, then cache, then AllowOfflineTxForUnknownId for unknown ids.
    (False, "false", "CAROL", True),
    (False, "false", "ALICE", True),
    (False, "false", "DAVE", False),
    (False, "true", "DAVE", True),
    (False, "true", "MALLORY", False),
]


def know_some_cards(csms: FakeCsms) -> None:
    csms.start_charging("ALICE")
    csms.unplug()
    csms.plug_in()
    csms.present("MALLORY")
    csms.unplug()
    csms.wb.auth.local_list["CAROL"] = IdTagInfo(AuthorizationStatus.ACCEPTED)
    csms.advance(10)


@pytest.mark.parametrize(("list_only", "allow_unknown", "card", "starts"), OFFLINE)
def test_offline_authorization(
    make_csms: MakeCsms, list_only: bool, allow_unknown: str, card: str, starts: bool
) -> None:
    csms = make_csms(offline_local_list_only=list_only)
    csms.change_configuration("AllowOfflineTxForUnknownId", allow_unknown)
    know_some_cards(csms)
    csms.disconnect()
    csms.plug_in()
    csms.present(card)
    assert (started(csms)[1:] == [card]) is starts
    csms.advance(30)
    csms.connect()
    csms.advance(1)
    after = [s.payload["idTag"] for s in csms.sent_of("StartTransaction") if s.at >= csms.now - 1]
    assert after == ([card] if starts else [])


def test_local_authorize_offline_false_refuses_every_card_offline(make_csms: MakeCsms) -> None:
    csms = make_csms(offline_local_list_only=False)
    csms.change_configuration("LocalAuthorizeOffline", "false")
    csms.change_configuration("AllowOfflineTxForUnknownId", "true")
    know_some_cards(csms)
    csms.disconnect()
    csms.plug_in()
    for card in ("ALICE", "CAROL", "DAVE"):
        csms.present(card)
    assert started(csms) == ["ALICE"]


@pytest.mark.parametrize(
    ("list_only", "starts"), [(True, False), (False, True)], ids=["list-only", "ocpp"]
)
def test_an_unanswered_authorize_is_decided_as_offline(
    make_csms: MakeCsms, list_only: bool, starts: bool
) -> None:
    csms = make_csms(offline_local_list_only=list_only)
    csms.change_configuration("LocalPreAuthorize", "false")
    csms.start_charging()  # ALICE is cached
    csms.unplug()
    csms.answer("Authorize", csms.SILENT)
    csms.plug_in()
    csms.present("ALICE")
    csms.advance(31)  # the response timeout (sent after the paced StopTransaction)
    assert (len(started(csms)) == 2) is starts
    assert csms.wb.timeouts == 1


# ---------------------------------------------------------------- invalid at start


def blocked_start(_payload: dict[str, Any]) -> dict[str, Any]:
    return {"transactionId": 555, "idTagInfo": {"status": "Blocked"}}


def test_stop_transaction_on_invalid_id_stops_a_transaction_started_blocked(
    csms: FakeCsms,
) -> None:
    csms.answer("StartTransaction", blocked_start)
    tx = csms.start_charging()
    csms.advance(1)
    assert [s["reason"] for s in csms.payloads("StopTransaction")] == ["DeAuthorized"]
    assert tx.transaction_id == 555
    assert csms.status is Status.FINISHING
    assert csms.wb.auth.cache["ALICE"].status is AuthorizationStatus.BLOCKED


@pytest.mark.parametrize("max_energy", [0, 500])
def test_without_stop_on_invalid_id_the_charger_suspends_after_max_energy_on_invalid_id(
    csms: FakeCsms, max_energy: int
) -> None:
    csms.change_configuration("StopTransactionOnInvalidId", "false")
    csms.change_configuration("MaxEnergyOnInvalidId", str(max_energy))
    csms.answer("StartTransaction", blocked_start)
    tx = csms.start_charging(ev=csms.ev(50_000))
    csms.advance(3600)
    assert csms.status is Status.SUSPENDED_EVSE
    assert tx.stop_reason is None
    csms.present("ALICE")
    assert tx.energy_wh == max_energy
    csms.advance(1)  # the StatusNotification follows the (paced) StopTransaction
    # Charging is reported even for 0 Wh: the StartTransaction.conf arrives after it.
    assert csms.statuses()[-3:] == ["Charging", "SuspendedEVSE", "Finishing"]


# ---------------------------------------------------------------- remote start


@pytest.mark.parametrize(("authorize_remote", "authorize_count"), [("true", 1), ("false", 0)])
def test_authorize_remote_tx_requests_decides_whether_a_remote_start_is_authorized(
    csms: FakeCsms, authorize_remote: str, authorize_count: int
) -> None:
    csms.change_configuration("AuthorizeRemoteTxRequests", authorize_remote)
    answer = csms.call("RemoteStartTransaction", {"idTag": "BOB", "connectorId": 1})
    assert answer == {"status": "Accepted"}
    assert len(csms.sent_of("Authorize")) == authorize_count
    assert csms.status is Status.PREPARING
    csms.plug_in()
    assert started(csms) == ["BOB"]


def test_a_remote_start_for_a_card_the_csms_refuses_starts_nothing(csms: FakeCsms) -> None:
    assert csms.call("RemoteStartTransaction", {"idTag": "MALLORY"}) == {"status": "Accepted"}
    csms.plug_in()
    assert started(csms) == []


def test_a_remote_start_on_a_busy_connector_is_rejected(csms: FakeCsms) -> None:
    csms.start_charging()
    answer = csms.call("RemoteStartTransaction", {"idTag": "BOB", "connectorId": 1})
    assert answer == {"status": "Rejected"}
    assert csms.call("RemoteStartTransaction", {"idTag": "BOB", "connectorId": 0}) == {
        "status": "Rejected"
    }


# ---------------------------------------------------------------- ConnectionTimeOut


@pytest.mark.parametrize("timeout", [10, 60, 240])
def test_connection_timeout_cancels_an_authorized_session_without_cable(
    csms: FakeCsms, timeout: int
) -> None:
    csms.change_configuration("ConnectionTimeOut", str(timeout))
    csms.present("ALICE")
    csms.advance(timeout - 0.5)
    assert csms.status is Status.PREPARING
    csms.advance(0.5)
    assert csms.status is Status.AVAILABLE
    assert EventKind.CONNECTION_TIMEOUT in csms.event_kinds()
    csms.plug_in()  # too late: a new card is needed
    assert started(csms) == []
    assert csms.status is Status.PREPARING


def test_connection_timeout_cancels_a_remote_start_without_cable(csms: FakeCsms) -> None:
    csms.call("RemoteStartTransaction", {"idTag": "BOB"})
    csms.advance(60)
    assert csms.status is Status.AVAILABLE
    assert csms.statuses() == ["Available", "Preparing", "Available"]
