"""Connector facts and the status derived from them (see status.py for why derived)."""

from __future__ import annotations

import math
from collections.abc import Callable
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
        if self.id == 0:  # the charge point itself: Available, Unavailable or Faulted
            return Status.AVAILABLE if self.operative else Status.UNAVAILABLE
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

    def plug(self, ev: Ev, *, lock: bool) -> None:
        """The driver connects ``ev`` (a socket variant locks the cable in)."""
        self.plugged = True
        self.ev = ev
        self.ev_suspended = False
        self.ev_paused = False
        if lock:
            self.locked = True

    def stop_draw(self, now: float) -> None:
        """The charger stops delivering at ``now``; the EV keeps what it got until then."""
        ev = self.ev
        added = self.meter.set_current(now, 0.0, phases=ev.phases if ev else None)
        if ev is not None:
            ev.delivered_wh += added

    def ev_full_at(self) -> float | None:
        """When MaxEnergyOnInvalidId is reached: the charger cuts off precisely there.

        The EV's own state (taper, full) is re-read only at readings and physics steps,
        like a car's charge controller, so every power change the EV makes happens at an
        instant whose reading the CSMS receives.
        """
        tx = self.transaction
        if self.ev is None or tx is None or tx.energy_cap_wh is None or self.meter.current_a <= 0:
            return None
        power = self.meter.power_w()
        cap_remaining = tx.meter_start + tx.energy_cap_wh - self.meter.energy_wh + 1e-6
        return self.meter.last_update + max(0.0, cap_remaining) * 3600.0 / power

    def last_stretch(self, ev: Ev, now: float) -> None:
        """Near full, draw just what is missing until the next re-read (the CV phase).

        The EV's draw changes only when it is re-read, so without this it would overshoot
        its target by up to one sample interval of energy.
        """
        if self.next_sample_at is None or not math.isfinite(ev.energy_wanted_wh):
            return
        step = self.next_sample_at - now
        remaining = ev.energy_wanted_wh - ev.delivered_wh
        for _ in range(2):  # power is nearly proportional to current: one correction suffices
            energy = self.meter.power_w() * step / 3600.0
            if step <= 0 or energy <= remaining:
                return
            self.meter.set_current(now, self.meter.current_a * remaining / energy)

    def set_draw(self, now: float, offered: Callable[[], float]) -> bool:
        """Set the EV's draw from the facts at ``now``, integrating what came before;
        ``offered`` gives Current.Offered at ``now`` (asked after the integration).
        True when the EV has just become full (it stops drawing: SuspendedEV)."""
        tx = self.transaction
        ev = self.ev
        phases = ev.phases if ev else None
        if ev is not None and tx is not None:
            ev.delivered_wh += self.meter.advance(now, phases=phases)
        self.offered_a = limit = offered()
        current = 0.0
        became_full = False
        self.evse_suspended = False
        if tx is not None and tx.energy_cap_wh is not None:
            if self.meter.register_wh() - tx.meter_start >= tx.energy_cap_wh:
                self.evse_suspended = True
        if tx is not None and ev is not None and self.plugged and not self.evse_suspended:
            if ev.full:
                became_full = not self.ev_suspended
                self.ev_suspended = True
            elif limit < ev.min_current:
                self.evse_suspended = True
            elif self.ev_paused:
                self.ev_suspended = True
            else:
                self.ev_suspended = False
                current = min(limit, ev.current_wanted())
        self.meter.set_current(now, current, phases=phases)
        if current > 0 and ev is not None:
            self.last_stretch(ev, now)
        return became_full

    def read(self, now: float) -> None:
        """A reading instant: the energy up to now at the old power is credited first,
        then new phase voltages (the EV re-decides its draw after: ``set_draw``)."""
        added = self.meter.advance(now)
        if self.ev is not None and self.transaction is not None:
            self.ev.delivered_wh += added
        self.meter.sample_voltage(now)
