"""Reservations (OCPP 1.6 §5.13 Reserve Now, §5.1 Cancel Reservation), sans I/O.

The wallbox keeps its reservations here; this module decides what ReserveNow and
CancelReservation answer, which connectors a reservation holds, who may start on a held
connector, and when reservations end.  The connector status stays *derived*: a held
connector has ``Connector.reserved_for`` set, and ``derive_status`` makes it Reserved.

Rules (OCPP 1.6 §5.13 unless noted):

* ReserveNow answers ``Faulted`` / ``Unavailable`` when the connector (or the charge point,
  connector 0) is so, ``Occupied`` when it is in use (Preparing, Charging, Suspended*,
  Finishing) or reserved by another reservation, ``Rejected`` for a connector that does not
  exist or for connector 0 without ReserveConnectorZeroSupported, else ``Accepted``.  A
  ReserveNow with the reservationId of an existing reservation replaces it.
* Connector 0 reserves no connector in particular, but one connector must stay available
  to the reserved idTag: when no more free connectors are left than connector-0
  reservations, the free ones are held (Reserved).  The reference charger has one
  connector, so a connector-0 reservation holds connector 1.
* On a held connector only the reservation's idTag, or an idTag whose parentIdTag is the
  reservation's idTag or parentIdTag, may start ("the incoming idTag or the parent idTag
  match the idTag or parent idTag of the reservation").
* A reservation ends when a transaction starts for it (its reservationId goes into
  StartTransaction.req), at ``expiryDate``, when its connector (or the charge point) becomes
  Faulted or Unavailable, or by CancelReservation (``Rejected`` for an unknown id).
* §4.9 allows Reserved → Preparing only when the reservation's identity is presented (G2)
  and has no Preparing → Reserved.  So a cable plugged in by someone else, or an
  Authorize.req under way for a tag whose parent is not yet known, leaves the connector
  Reserved; once the reserved identity is authorized the reservation is *claimed*: the
  connector is Preparing, and if that session ends without a transaction (ConnectionTimeOut)
  the claimed reservation ends with it, since the connector cannot go back to Reserved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from emulator.core.authorization import tag_key
from emulator.core.connector import Connector


class ReservationStatus(StrEnum):
    """ReserveNow.conf status (OCPP 1.6 §7.39)."""

    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


class Admission(StrEnum):
    """May an idTag start on a connector, as far as reservations go?"""

    YES = "yes"  # not held, or the tag (or its known parent) matches the reservation
    NO = "no"
    ASK = "ask"  # held, and only the tag's parentIdTag (not known yet) could match


@dataclass(slots=True, kw_only=True)
class Reservation:
    reservation_id: int
    connector_id: int  # as requested: 0 = any connector of the charge point
    id_tag: str
    parent_id_tag: str | None
    expiry: float
    claimed_on: int | None = None  # connector whose session (Preparing) claimed it

    def matches(self, id_tag: str, parent: str | None) -> bool:
        """§5.13: the incoming idTag or its parent matches the idTag or parent of this one
        (case-insensitively: IdToken is a CiString20Type)."""
        mine = {tag_key(self.id_tag)} | (
            {tag_key(self.parent_id_tag)} if self.parent_id_tag else set()
        )
        return tag_key(id_tag) in mine or (parent is not None and tag_key(parent) in mine)


class Reservations:
    """The reservations of one wallbox; survives nothing but what the wallbox keeps."""

    __slots__ = ("_by_id", "_held", "_marked", "ended")

    def __init__(self) -> None:
        self._by_id: dict[int, Reservation] = {}
        self._held: dict[int, int] = {}  # connector id -> reservation id holding it
        self._marked = False  # some connector may still have reserved_for set
        # Why each reservation ended, in order: (reservation id, reason), for tests and logs.
        self.ended: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def active(self) -> bool:
        """Anything to work out on a status refresh (false for almost every wallbox)."""
        return bool(self._by_id) or self._marked

    def get(self, reservation_id: int) -> Reservation | None:
        return self._by_id.get(reservation_id)

    def all(self) -> list[Reservation]:
        return list(self._by_id.values())

    def holding(self, connector_id: int) -> Reservation | None:
        """The reservation that holds ``connector_id`` (makes it Reserved), if any."""
        rid = self._held.get(connector_id)
        return None if rid is None else self._by_id.get(rid)

    # ------------------------------------------------------------------ CSMS calls

    def reserve(
        self,
        request: Reservation,
        connectors: Sequence[Connector],
        *,
        zero_supported: bool,
    ) -> ReservationStatus:
        """ReserveNow.req: the answer; on Accepted the reservation is kept."""
        cid = request.connector_id
        if not 0 <= cid < len(connectors) or (cid == 0 and not zero_supported):
            return ReservationStatus.REJECTED
        old = self._by_id.get(request.reservation_id)
        if old is not None and old.claimed_on is not None:
            return ReservationStatus.OCCUPIED  # its session is already under way
        station = connectors[0]
        if station.fault is not None:
            return ReservationStatus.FAULTED
        if not station.operative:
            return ReservationStatus.UNAVAILABLE
        if cid > 0:
            status = self._state(connectors[cid], replacing=old)
            if status is not ReservationStatus.ACCEPTED:
                return status
        else:
            states = [self._state(c, replacing=old) for c in connectors[1:]]
            free = states.count(ReservationStatus.ACCEPTED)
            zero = sum(
                1
                for r in self._by_id.values()
                if r.connector_id == 0 and r.claimed_on is None and r is not old
            )
            if free <= zero:
                # §5.13 lists the answers "if the Charge Point or connector" is so; for the
                # charge point as a whole, the state all its connectors share wins.
                if states and all(s is ReservationStatus.FAULTED for s in states):
                    return ReservationStatus.FAULTED
                if states and all(s is ReservationStatus.UNAVAILABLE for s in states):
                    return ReservationStatus.UNAVAILABLE
                return ReservationStatus.OCCUPIED
        if old is not None:
            del self._by_id[old.reservation_id]
        self._by_id[request.reservation_id] = request
        return ReservationStatus.ACCEPTED

    def _state(self, c: Connector, *, replacing: Reservation | None) -> ReservationStatus:
        """What a specific ReserveNow for connector ``c`` answers."""
        if c.fault is not None:
            return ReservationStatus.FAULTED
        if not c.operative:
            return ReservationStatus.UNAVAILABLE
        if (
            c.transaction is not None
            or c.intent is not None
            or c.finishing
            or c.plugged
            or c.awaiting_authorization is not None
        ):
            return ReservationStatus.OCCUPIED
        holder = self.holding(c.id)
        if holder is not None and holder is not replacing:
            return ReservationStatus.OCCUPIED  # held, possibly for a connector-0 reservation
        specific = [
            r
            for r in self._by_id.values()
            if r.connector_id == c.id and r is not replacing and r.claimed_on is None
        ]
        return ReservationStatus.OCCUPIED if specific else ReservationStatus.ACCEPTED

    def cancel(self, reservation_id: int) -> bool:
        """CancelReservation.req (OCPP 1.6 §5.1): True (Accepted) if it existed."""
        return self._end(reservation_id, "cancelled")

    # ------------------------------------------------------------------ life cycle

    def _end(self, reservation_id: int, reason: str) -> bool:
        if self._by_id.pop(reservation_id, None) is None:
            return False
        self.ended.append((reservation_id, reason))
        return True

    def next_expiry(self) -> float | None:
        return min((r.expiry for r in self._by_id.values()), default=None)

    def expire(self, now: float) -> bool:
        """End every reservation whose expiryDate has come; True if one did."""
        due = [r.reservation_id for r in self._by_id.values() if now >= r.expiry]
        for rid in due:
            self._end(rid, "expired")
        return bool(due)

    def admission(self, connector_id: int, id_tag: str, parent: str | None) -> Admission:
        """May ``id_tag`` (with ``parent``, None if unknown) start on this connector?"""
        holder = self.holding(connector_id)
        if holder is None or holder.matches(id_tag, parent):
            return Admission.YES
        return Admission.NO if parent is not None else Admission.ASK

    def refuses(
        self, connector_id: int, id_tag: str, parent: str | None, *, asked: bool = False
    ) -> bool:
        """A reservation holds the connector for someone else (OCPP 1.6 §5.13).  With
        ``asked``, a tag whose parent is still unknown counts as someone else: nobody
        will ask now."""
        admission = self.admission(connector_id, id_tag, parent)
        return admission is Admission.NO or (asked and admission is Admission.ASK)

    def claim(self, connector_id: int, id_tag: str, parent: str | None) -> Reservation | None:
        """The reserved identity was authorized here (§4.9 G2): its session takes over.

        Returns the reservation claimed (its id goes into StartTransaction.req), if any.
        """
        holder = self.holding(connector_id)
        chosen: Reservation | None
        if holder is not None:
            chosen = holder if holder.matches(id_tag, parent) else None
        else:
            # A connector-0 reservation that holds no connector (more are free) is
            # claimed by its identity on any connector.
            chosen = next(
                (
                    r
                    for r in self._by_id.values()
                    if r.claimed_on is None and r.connector_id == 0 and r.matches(id_tag, parent)
                ),
                None,
            )
        if chosen is None:
            return None
        chosen.claimed_on = connector_id
        self._held = {c: r for c, r in self._held.items() if r != chosen.reservation_id}
        return chosen

    def consume(self, reservation_id: int | None) -> int | None:
        """A transaction starts for a claimed reservation: it ends, its id is reported."""
        if reservation_id is None or not self._end(reservation_id, "used"):
            return None
        return reservation_id

    def assign(self, connectors: Sequence[Connector]) -> list[int]:
        """Work out which connectors are held, set ``reserved_for``; end reservations whose
        connector (or charge point) is Faulted or Unavailable.  Returns the ids of the
        connectors whose ``reserved_for`` changed."""
        if not self.active:
            return []
        station = connectors[0]
        station_down = station.fault is not None or not station.operative
        for r in list(self._by_id.values()):
            if r.claimed_on is not None:
                intent = connectors[r.claimed_on].intent
                if intent is None or intent.reservation_id != r.reservation_id:
                    # Its session ended without a transaction (ConnectionTimeOut, a reset,
                    # Unavailable): §4.9 has no Preparing -> Reserved, so it ends too.
                    self._end(r.reservation_id, "its session ended without a transaction")
                continue
            if station_down:
                self._end(r.reservation_id, "charge point faulted or unavailable")
            elif r.connector_id > 0:
                c = connectors[r.connector_id]
                if c.fault is not None or not c.operative:
                    self._end(r.reservation_id, "connector faulted or unavailable")
            elif all(c.fault is not None or not c.operative for c in connectors[1:]):
                self._end(r.reservation_id, "no connector can serve it")
        held: dict[int, int] = {}
        for r in self._by_id.values():
            if r.claimed_on is None and r.connector_id > 0:
                held[r.connector_id] = r.reservation_id
        zero = [r for r in self._by_id.values() if r.claimed_on is None and r.connector_id == 0]
        free = [c.id for c in connectors[1:] if c.id not in held and self._free_for_zero(c)]
        if zero and len(free) <= len(zero):
            # Every free connector is needed: hold them all.  A connector keeps the
            # reservation it held before, so its Reserved status does not flip around.
            previous = {rid: cid for cid, rid in self._held.items()}
            rest: list[Reservation] = []
            for r in zero:
                cid = previous.get(r.reservation_id)
                if cid is not None and cid in free:
                    held[cid] = r.reservation_id
                    free.remove(cid)
                else:
                    rest.append(r)
            for r, cid in zip(rest, free, strict=False):
                held[cid] = r.reservation_id
        changed: list[int] = []
        for c in connectors[1:]:
            rid = held.get(c.id)
            wanted = None if rid is None else self._by_id[rid].id_tag
            if c.reserved_for != wanted:
                c.reserved_for = wanted
                changed.append(c.id)
        self._held = held
        self._marked = bool(held)
        return changed

    @staticmethod
    def _free_for_zero(c: Connector) -> bool:
        """A connector a connector-0 reservation may hold: nobody is using it."""
        if c.fault is not None or not c.operative:
            return False
        if c.transaction is not None or c.intent is not None or c.finishing:
            return False
        if c.reserved_for is not None:
            return True  # held already: a cable plugged in since does not take it over (G2)
        return not c.plugged and c.awaiting_authorization is None
