"""Connector facts and the status derived from them (see status.py for why derived)."""

from __future__ import annotations

from dataclasses import dataclass

from emulator.core.metering import Ev, Meter
from emulator.core.status import Status
from emulator.core.transaction import Transaction


@dataclass(slots=True, kw_only=True)
class Intent:
    """An authorized start that waits for the cable (ConnectionTimeOut runs)."""

    id_tag: str
    deadline: float
    remote: bool
    reservation_id: int | None = None


@dataclass(slots=True, kw_only=True)
class Connector:
    id: int
    meter: Meter
    operative: bool = True
    pending_operative: bool | None = None  # ChangeAvailability answered Scheduled
    fault: str | None = None  # a ChargePointErrorCode while Faulted
    plugged: bool = False  # cable between charger and EV
    locked: bool = False  # socket E-lock (socket variant)
    intent: Intent | None = None
    awaiting_authorization: str | None = None  # idTag whose Authorize.req is under way
    transaction: Transaction | None = None
    finishing: bool = False  # transaction ended, cable still in
    ev: Ev | None = None
    ev_suspended: bool = False  # the EV draws nothing (full, or paused by the car)
    ev_paused: bool = False  # the car stopped drawing on its own (Wallbox.ev_pause)
    evse_suspended: bool = False  # the charger offers nothing (limit, invalid id)
    reserved_for: str | None = None  # idTag of the reservation holding it (reservation.py)
    reported: Status | None = None  # last status queued as a StatusNotification
    error_code: str = "NoError"
    next_sample_at: float | None = None
    offered_a: float = 0.0

    def derive_status(self) -> Status:
        if self.fault is not None:
            return Status.FAULTED
        if self.transaction is not None:
            if self.evse_suspended:
                return Status.SUSPENDED_EVSE
            if self.ev_suspended or not self.plugged:
                return Status.SUSPENDED_EV
            return Status.CHARGING
        if not self.operative:
            return Status.UNAVAILABLE
        if self.finishing:
            return Status.FINISHING
        if self.intent is not None:
            return Status.PREPARING
        if self.reserved_for is not None:
            # OCPP 1.6 §4.9 G2: only the reservation's identity leaves Reserved (for
            # Preparing, when reservation.py claims it); a cable or an Authorize.req for
            # someone else does not, and there is no way back from Preparing to Reserved.
            return Status.RESERVED
        if self.plugged or self.awaiting_authorization is not None:
            return Status.PREPARING
        return Status.AVAILABLE

    @property
    def free(self) -> bool:
        """May a new session start here?"""
        return (
            self.fault is None
            and self.operative
            and self.transaction is None
            and self.intent is None
            and not self.finishing
        )
