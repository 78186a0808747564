"""Reservation: ReserveNow and CancelReservation (OCPP 1.6 §5.13, §5.1) on connector 1 and
connector 0, who may start on a reserved connector, and Reserved in the derived status."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import pytest

from emulator.core.connector import Connector
from emulator.core.effects import EventKind
from emulator.core.metering import Meter
from emulator.core.model import ALL_PROFILES
from emulator.core.reservation import Admission, Reservation, Reservations, ReservationStatus
from emulator.core.status import Status
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.timefmt import format_timestamp

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]

TAGS: dict[str, str | dict[str, Any]] = {
    "ALICE": "Accepted",
    "BOB": "Accepted",
    "FLEET": "Accepted",
    "DRIVER1": {"status": "Accepted", "parentIdTag": "FLEET"},
    "DRIVER2": {"status": "Accepted", "parentIdTag": "OTHER-FLEET"},
    "BOSS-CARD": {"status": "Accepted", "parentIdTag": "BOSS"},
}


@pytest.fixture
def csms(make_csms: MakeCsms) -> FakeCsms:
    return make_csms(id_tags=TAGS)


def reserve(
    csms: FakeCsms,
    id_tag: str = "ALICE",
    *,
    connector: int = 1,
    reservation: int = 7,
    minutes: float = 10,
    parent: str | None = None,
) -> str:
    payload: dict[str, Any] = {
        "connectorId": connector,
        "expiryDate": format_timestamp(csms.now + minutes * 60),
        "idTag": id_tag,
        "reservationId": reservation,
    }
    if parent is not None:
        payload["parentIdTag"] = parent
    status: str = csms.call("ReserveNow", payload)["status"]
    return status


def cancel(csms: FakeCsms, reservation: int = 7) -> str:
    status: str = csms.call("CancelReservation", {"reservationId": reservation})["status"]
    return status


def starts(csms: FakeCsms) -> list[tuple[str, int | None]]:
    return [(p["idTag"], p.get("reservationId")) for p in csms.payloads("StartTransaction")]


# ---------------------------------------------------------------- Reserved and back


def test_a_reservation_makes_the_connector_reserved_and_expiry_makes_it_available(
    csms: FakeCsms,
) -> None:
    assert reserve(csms, minutes=10) == "Accepted"
    assert csms.status is Status.RESERVED
    assert csms.statuses(1)[-1] == "Reserved"
    csms.advance(10 * 60 - 1)
    assert csms.status is Status.RESERVED
    csms.advance(1)
    assert csms.status is Status.AVAILABLE
    assert csms.statuses(1)[-2:] == ["Reserved", "Available"]
    assert csms.wb.reservations.ended == [(7, "expired")]


def test_cancel_reservation_frees_the_connector(csms: FakeCsms) -> None:
    reserve(csms)
    assert cancel(csms) == "Accepted"
    assert csms.status is Status.AVAILABLE
    assert csms.statuses(1)[-2:] == ["Reserved", "Available"]


def test_cancel_reservation_of_an_unknown_id_is_rejected(csms: FakeCsms) -> None:
    assert cancel(csms, 99) == "Rejected"
    reserve(csms, reservation=1)
    assert cancel(csms, 2) == "Rejected"
    assert csms.status is Status.RESERVED
    assert cancel(csms, 1) == "Accepted"
    assert cancel(csms, 1) == "Rejected"  # gone already


def test_a_reservation_id_already_held_is_replaced(csms: FakeCsms) -> None:
    reserve(csms, "ALICE", minutes=5)
    assert reserve(csms, "BOB", minutes=30) == "Accepted"
    assert csms.statuses(1).count("Reserved") == 1  # still Reserved, not notified again
    csms.advance(6 * 60)
    assert csms.status is Status.RESERVED  # the new expiry holds
    csms.plug_in()
    csms.present("ALICE")
    assert csms.wb.transactions == []
    csms.present("BOB")
    assert starts(csms) == [("BOB", 7)]


def test_an_expiry_date_in_the_past_is_rejected(csms: FakeCsms) -> None:
    assert reserve(csms, minutes=-1) == "Rejected"
    assert csms.status is Status.AVAILABLE


# ---------------------------------------------------------------- who may start


def test_only_the_reserved_tag_starts_and_its_reservation_id_goes_into_start_transaction(
    csms: FakeCsms,
) -> None:
    reserve(csms, "ALICE")
    csms.present("BOB")
    assert csms.status is Status.RESERVED
    assert EventKind.AUTHORIZATION_REJECTED in csms.event_kinds()
    csms.present("ALICE")
    assert csms.status is Status.PREPARING  # §4.9 G2: the reservation's identity
    csms.plug_in()
    assert csms.status is Status.CHARGING
    assert starts(csms) == [("ALICE", 7)]
    assert csms.wb.transactions[0].reservation_id == 7
    assert csms.wb.reservations.ended == [(7, "used")]
    assert cancel(csms) == "Rejected"  # the transaction consumed it


def test_a_refused_card_does_not_even_ask_the_csms_when_its_parent_is_known(
    csms: FakeCsms,
) -> None:
    csms.start_charging("BOB")  # BOB (no parent) is in the cache now
    csms.present("BOB")
    csms.unplug()
    authorizes = len(csms.sent_of("Authorize"))
    reserve(csms, "ALICE")
    csms.present("BOB")
    assert len(csms.sent_of("Authorize")) == authorizes
    assert csms.status is Status.RESERVED


def test_a_cable_plugged_in_by_someone_else_leaves_the_connector_reserved(
    csms: FakeCsms,
) -> None:
    reserve(csms, "ALICE")
    csms.plug_in()
    assert csms.status is Status.RESERVED
    csms.present("BOB")
    assert csms.status is Status.RESERVED and csms.wb.transactions == []
    csms.present("ALICE")  # Reserved -> Preparing -> Charging, never Reserved -> Charging
    assert csms.statuses(1)[-3:] == ["Reserved", "Preparing", "Charging"]
    assert starts(csms) == [("ALICE", 7)]


@pytest.mark.parametrize(
    ("reserved", "reserved_parent", "card", "admitted"),
    [
        ("ALICE", "FLEET", "DRIVER1", True),  # the card's parent is the reservation's parent
        ("FLEET", None, "DRIVER1", True),  # the card's parent is the reserved idTag
        ("ALICE", "FLEET", "DRIVER2", False),  # another fleet
        ("ALICE", "FLEET", "FLEET", True),  # the parent tag itself
        ("BOSS", None, "BOSS-CARD", True),
        ("ALICE", None, "DRIVER1", False),
    ],
)
def test_a_card_whose_parent_matches_the_reservation_starts(
    csms: FakeCsms, reserved: str, reserved_parent: str | None, card: str, admitted: bool
) -> None:
    """§5.13: "except when the incoming idTag or the parent idTag match the idTag or
    parent idTag of the reservation".  The card's parent comes with Authorize.conf; the
    connector stays Reserved while it is asked for."""
    reserve(csms, reserved, parent=reserved_parent)
    csms.plug_in()
    csms.present(card)
    assert csms.payloads("Authorize")[-1] == {"idTag": card}
    if admitted:
        assert starts(csms) == [(card, 7)]
        assert csms.status is Status.CHARGING
    else:
        assert starts(csms) == []
        assert csms.status is Status.RESERVED
        assert "Preparing" not in csms.statuses(1)


def test_a_listed_child_card_is_admitted_without_asking(csms: FakeCsms) -> None:
    csms.call(
        "SendLocalList",
        {
            "listVersion": 1,
            "updateType": "Full",
            "localAuthorizationList": [
                {"idTag": "DRIVER1", "idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET"}}
            ],
        },
    )
    reserve(csms, "ALICE", parent="FLEET")
    csms.plug_in()
    csms.present("DRIVER1")
    assert csms.sent_of("Authorize") == []
    assert starts(csms) == [("DRIVER1", 7)]


def test_remote_start_for_another_known_tag_is_rejected_for_the_reserved_one_accepted(
    csms: FakeCsms,
) -> None:
    csms.start_charging("BOB")  # BOB, without a parent, is in the cache now
    csms.present("BOB")
    csms.unplug()
    csms.advance(1)
    assert reserve(csms, "ALICE") == "Accepted"
    assert csms.call("RemoteStartTransaction", {"idTag": "BOB", "connectorId": 1}) == {
        "status": "Rejected"
    }
    answer = csms.call("RemoteStartTransaction", {"idTag": "ALICE", "connectorId": 1})
    assert answer == {"status": "Accepted"}
    csms.plug_in()
    csms.advance(1)
    assert starts(csms)[-1] == ("ALICE", 7)


def test_remote_start_of_an_unknown_tag_is_accepted_and_refused_after_authorize(
    csms: FakeCsms,
) -> None:
    """The answer cannot wait for Authorize.conf, which tells whether the tag's parent
    matches; a tag that turns out not to match starts nothing."""
    reserve(csms, "ALICE")
    answer = csms.call("RemoteStartTransaction", {"idTag": "BOB", "connectorId": 1})
    assert answer == {"status": "Accepted"}
    assert csms.payloads("Authorize") == [{"idTag": "BOB"}]
    assert csms.status is Status.RESERVED and starts(csms) == []
    assert EventKind.AUTHORIZATION_REJECTED in csms.event_kinds()


def test_remote_start_of_a_tag_with_an_unknown_parent_needs_authorize_remote_requests(
    csms: FakeCsms,
) -> None:
    reserve(csms, "ALICE", parent="FLEET")
    csms.change_configuration("AuthorizeRemoteTxRequests", "false")
    remote = {"idTag": "DRIVER1", "connectorId": 1}
    assert csms.call("RemoteStartTransaction", remote) == {"status": "Rejected"}
    csms.change_configuration("AuthorizeRemoteTxRequests", "true")
    assert csms.call("RemoteStartTransaction", remote) == {"status": "Accepted"}
    csms.plug_in()
    assert starts(csms) == [("DRIVER1", 7)]


def test_a_claimed_reservation_that_never_sees_a_cable_ends_available(csms: FakeCsms) -> None:
    """§4.9 has no Preparing -> Reserved: after ConnectionTimeOut the reservation is gone."""
    reserve(csms, "ALICE", minutes=30)
    csms.present("ALICE")
    assert csms.status is Status.PREPARING
    csms.advance(61)  # ConnectionTimeOut 60 s
    assert csms.status is Status.AVAILABLE
    assert csms.statuses(1)[-3:] == ["Reserved", "Preparing", "Available"]
    assert csms.wb.reservations.ended == [(7, "its session ended without a transaction")]
    csms.present("BOB")
    csms.plug_in()
    assert starts(csms) == [("BOB", None)]


def test_a_reservation_cancelled_while_its_driver_plugs_in_starts_without_its_id(
    csms: FakeCsms,
) -> None:
    reserve(csms, "ALICE")
    csms.present("ALICE")
    assert cancel(csms) == "Accepted"  # it is still the charger's until the transaction
    assert csms.status is Status.PREPARING  # ALICE's authorized session goes on
    csms.plug_in()
    assert starts(csms) == [("ALICE", None)]


def test_a_reservation_that_expires_while_its_driver_plugs_in_starts_without_its_id(
    csms: FakeCsms,
) -> None:
    reserve(csms, "ALICE", minutes=0.5)
    csms.present("ALICE")
    csms.advance(40)
    csms.plug_in()
    assert starts(csms) == [("ALICE", None)]


# ---------------------------------------------------------------- ReserveNow answers


def test_a_charging_connector_is_occupied(csms: FakeCsms) -> None:
    csms.start_charging("BOB")
    assert reserve(csms) == "Occupied"
    csms.present("BOB")
    assert csms.status is Status.FINISHING
    assert reserve(csms) == "Occupied"
    csms.unplug()
    assert reserve(csms) == "Accepted"


def test_a_preparing_connector_is_occupied(csms: FakeCsms) -> None:
    csms.plug_in()
    assert csms.status is Status.PREPARING
    assert reserve(csms) == "Occupied"


def test_a_connector_reserved_by_another_reservation_is_occupied(csms: FakeCsms) -> None:
    reserve(csms, "ALICE", reservation=1)
    assert reserve(csms, "BOB", reservation=2) == "Occupied"
    assert reserve(csms, "BOB", connector=0, reservation=3) == "Occupied"


def test_a_faulted_connector_answers_faulted_and_a_fault_ends_the_reservation(
    csms: FakeCsms,
) -> None:
    reserve(csms)
    csms.set_fault("GroundFailure")
    assert csms.status is Status.FAULTED
    assert reserve(csms, reservation=8) == "Faulted"
    csms.clear_fault()
    assert csms.status is Status.AVAILABLE  # the reservation ended with the fault
    assert csms.wb.reservations.ended == [(7, "connector faulted or unavailable")]


def test_an_unavailable_connector_answers_unavailable_and_ends_the_reservation(
    csms: FakeCsms,
) -> None:
    reserve(csms)
    assert csms.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}) == {
        "status": "Accepted"
    }
    assert csms.status is Status.UNAVAILABLE
    assert reserve(csms, reservation=8) == "Unavailable"
    assert reserve(csms, connector=0, reservation=9) == "Unavailable"
    csms.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"})
    assert csms.status is Status.AVAILABLE
    assert cancel(csms) == "Rejected"


def test_the_charge_point_unavailable_answers_unavailable(csms: FakeCsms) -> None:
    csms.call("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert reserve(csms) == "Unavailable"
    assert reserve(csms, connector=0) == "Unavailable"


def test_a_connector_that_does_not_exist_is_rejected(csms: FakeCsms) -> None:
    assert reserve(csms, connector=2) == "Rejected"
    assert reserve(csms, connector=-1) == "Rejected"


def test_a_reservation_survives_a_restart(csms: FakeCsms) -> None:
    reserve(csms, minutes=30)
    csms.call("Reset", {"type": "Soft"})
    csms.advance(10)
    assert len(csms.reboots) == 1 and csms.wb.accepted
    assert csms.status is Status.RESERVED
    assert csms.statuses(1)[-1] == "Reserved"  # reported again after the boot


# ---------------------------------------------------------------- connector 0


def test_a_connector_zero_reservation_holds_the_only_connector(csms: FakeCsms) -> None:
    assert csms.get_configuration("ReserveConnectorZeroSupported")[
        "ReserveConnectorZeroSupported"
    ] == {"key": "ReserveConnectorZeroSupported", "readonly": True, "value": "true"}
    assert reserve(csms, "ALICE", connector=0) == "Accepted"
    assert csms.status is Status.RESERVED
    assert csms.wb.status(0) is Status.AVAILABLE  # connector 0 is never Reserved (§4.9)
    csms.plug_in()
    csms.present("BOB")
    assert csms.wb.transactions == []
    csms.present("ALICE")
    assert starts(csms) == [("ALICE", 7)]


def test_a_connector_zero_reservation_expires_and_can_be_cancelled(csms: FakeCsms) -> None:
    reserve(csms, connector=0, reservation=1, minutes=1)
    csms.advance(60)
    assert csms.status is Status.AVAILABLE
    reserve(csms, connector=0, reservation=2)
    assert cancel(csms, 2) == "Accepted"
    assert csms.status is Status.AVAILABLE


def test_connector_zero_is_rejected_without_reserve_connector_zero_supported(
    csms: FakeCsms,
) -> None:
    csms.wb.config.change("ReserveConnectorZeroSupported", "false", allow_readonly=True)
    assert reserve(csms, connector=0) == "Rejected"
    assert reserve(csms, connector=1) == "Accepted"


def test_a_busy_charge_point_is_occupied_for_connector_zero(csms: FakeCsms) -> None:
    csms.start_charging("BOB")
    assert reserve(csms, connector=0) == "Occupied"


# ---------------------------------------------------------------- profile off


def test_with_the_profile_switched_off_the_actions_are_not_supported_and_the_key_unknown(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(profiles=tuple(p for p in ALL_PROFILES if p != "Reservation"))
    for action, payload in (
        (
            "ReserveNow",
            {
                "connectorId": 1,
                "expiryDate": format_timestamp(csms.now + 60),
                "idTag": "ALICE",
                "reservationId": 1,
            },
        ),
        ("CancelReservation", {"reservationId": 1}),
    ):
        with pytest.raises(RemoteProtocolError) as refused:
            csms.call(action, payload)
        assert refused.value.code is ErrorCode.NOT_SUPPORTED
    result = csms.call("GetConfiguration", {"key": ["ReserveConnectorZeroSupported"]})
    assert result["unknownKey"] == ["ReserveConnectorZeroSupported"]


# ---------------------------------------------------------------- more connectors


def connectors(count: int) -> list[Connector]:
    """Bare connectors: reservation.py reads their facts, never their meters."""
    return [Connector(id=i, meter=cast(Meter, None)) for i in range(count + 1)]


def booking(rid: int, connector: int, id_tag: str = "ALICE") -> Reservation:
    return Reservation(
        reservation_id=rid, connector_id=connector, id_tag=id_tag, parent_id_tag=None, expiry=1e12
    )


def test_connector_zero_holds_nothing_while_more_connectors_are_free_than_reserved() -> None:
    """§5.13: "one connector remains available for the reserved idTag" — and no more."""
    cs = connectors(2)
    book = Reservations()
    assert book.reserve(booking(1, 0), cs, zero_supported=True) is ReservationStatus.ACCEPTED
    assert book.assign(cs) == []
    assert [c.reserved_for for c in cs[1:]] == [None, None]
    assert book.admission(1, "BOB", "") is Admission.YES
    cs[1].plugged = True  # BOB takes connector 1: connector 2 is the last free one
    assert book.assign(cs) == [2]
    assert cs[2].reserved_for == "ALICE"
    assert book.admission(2, "BOB", "") is Admission.NO
    assert book.reserve(booking(2, 0), cs, zero_supported=True) is ReservationStatus.OCCUPIED
    assert book.reserve(booking(3, 2, "BOB"), cs, zero_supported=True) is (
        ReservationStatus.OCCUPIED
    )
    cs[1].plugged = False
    assert book.assign(cs) == [2]  # two free again: nothing held
    assert cs[2].reserved_for is None


def test_a_connector_zero_reservation_is_claimed_on_any_connector_by_its_identity() -> None:
    cs = connectors(2)
    book = Reservations()
    book.reserve(booking(1, 0), cs, zero_supported=True)
    book.assign(cs)
    claimed = book.claim(2, "ALICE", "")
    assert claimed is not None and claimed.reservation_id == 1
    assert book.consume(1) == 1 and len(book) == 0


def test_a_specific_reservation_leaves_the_other_connector_to_connector_zero() -> None:
    cs = connectors(2)
    book = Reservations()
    book.reserve(booking(1, 1, "BOB"), cs, zero_supported=True)
    book.reserve(booking(2, 0, "ALICE"), cs, zero_supported=True)
    assert book.assign(cs) == [1, 2]
    assert [c.reserved_for for c in cs[1:]] == ["BOB", "ALICE"]
    assert book.reserve(booking(3, 0), cs, zero_supported=True) is ReservationStatus.OCCUPIED


def test_all_connectors_faulted_answers_faulted_for_connector_zero() -> None:
    cs = connectors(2)
    for c in cs[1:]:
        c.fault = "GroundFailure"
    assert Reservations().reserve(booking(1, 0), cs, zero_supported=True) is (
        ReservationStatus.FAULTED
    )
