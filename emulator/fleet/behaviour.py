"""The world around one wallbox: drivers arrive, plug in, swipe cards, leave (pure, seeded).

A behaviour owns no I/O and reads no clock: the driver task calls ``tick(now)`` at
``next_deadline()`` and hands it the wallbox's events.  What each visit looks like is
drawn by :mod:`emulator.fleet.sessions` (arrival profile, EV, card, how it ends).

A visit, in ``random`` mode:

* authorization first (card, then cable within ``plug_in_delay``) or plug first;
* a *no-show* authorizes and never plugs in: the charger's ConnectionTimeOut ends it;
* with ``dwell_minutes`` the driver leaves at departure time, full or not; without,
  ``idle_after_full`` after the car is full (SuspendedEV);
* the driver ends it with the card (``Local``) or by unplugging at the car
  (``EVDisconnected``), by ``stop_by_tag_share``.

In ``remote-only`` mode nothing happens until the CSMS's RemoteStartTransaction is
accepted; the EV is then plugged in within ``plug_in_delay``.
"""

from __future__ import annotations

import numpy as np

from emulator.core.wallbox import Event, EventKind, Wallbox
from emulator.fleet.scenario import SessionMode, SessionSettings
from emulator.fleet.sessions import ArrivalProcess, SessionPlan, draw_session
from emulator.fleet.timeline import Action, Timeline


class SessionBehaviour:
    """Seeded session generator for one wallbox (connector 1)."""

    def __init__(
        self,
        *,
        wallbox: Wallbox,
        settings: SessionSettings,
        rng: np.random.Generator,
        now: float,
    ) -> None:
        self.wallbox = wallbox
        self.settings = settings
        self.rng = rng
        self._timeline = Timeline()
        self._visit: SessionPlan | None = None
        self._stopping = False
        self._start = now
        self._arrivals = ArrivalProcess(settings=settings, start=now)
        self.sessions_started = 0
        self.plans: list[SessionPlan] = []  # every visit so far, for reproducibility checks
        if settings.mode is SessionMode.RANDOM:
            self._schedule_arrival(now)

    # ------------------------------------------------------------------ scheduling

    def _at(self, when: float, action: Action) -> None:
        self._timeline.at(when, action)

    def next_deadline(self) -> float | None:
        return self._timeline.next_deadline()

    def tick(self, now: float) -> None:
        self._timeline.run_due(now)

    def finish(self, now: float) -> None:
        """The run ends: no new arrivals (running transactions are stopped by the driver)."""
        self._stopping = True
        self._timeline.clear()

    def _plug_delay(self) -> float:
        return self.settings.plug_in_delay.sample(self.rng)

    # ------------------------------------------------------------------ random sessions

    def _schedule_arrival(self, now: float) -> None:
        if self._stopping:
            return
        arrival = self._arrivals.next_arrival(now, self._start, self.rng)
        if arrival is not None:
            self._at(arrival, self._arrive)

    def _draw(self, now: float) -> SessionPlan:
        plan = draw_session(
            settings=self.settings, model=self.wallbox.model, rng=self.rng, arrival=now
        )
        self.plans.append(plan)
        return plan

    def _arrive(self, now: float) -> None:
        c = self.wallbox.connectors[1]
        if self._visit is not None or not c.free or c.plugged:
            self._schedule_arrival(now)  # the driver finds the charger busy and leaves
            return
        plan = self._visit = self._draw(now)
        self.sessions_started += 1
        if plan.no_show or plan.authorize_first:
            self.wallbox.present_id_tag(plan.id_tag, now)
            if not plan.no_show:
                self._at(now + self._plug_delay(), self._plug)
        else:
            self._plug(now)
            self._at(
                now + self._plug_delay(), lambda at: self.wallbox.present_id_tag(plan.id_tag, at)
            )
        if plan.dwell is not None and not plan.no_show:
            self._at(now + plan.dwell, self._leave)

    def _plug(self, now: float) -> None:
        if self._visit is not None and not self.wallbox.connectors[1].plugged:
            self.wallbox.plug_in(now, ev=self._visit.make_ev())

    def _leave(self, now: float) -> None:
        """The driver ends the visit: by card (Local) or by unplugging at the EV."""
        plan = self._visit
        if plan is None:
            return
        c = self.wallbox.connectors[1]
        tx = c.transaction
        if tx is not None and plan.stop_by_tag:
            self.wallbox.present_id_tag(tx.id_tag, now)
            self._unplug_later(now)
        else:
            self._unplug(now)

    def _unplug(self, now: float) -> None:
        self.wallbox.unplug(now)
        self._end_visit(now)

    def _unplug_later(self, now: float) -> None:
        """Unplug after a moment, unless that visit is over by then (no stray unplugs)."""
        visit = self._visit

        def unplug(at: float) -> None:
            if self._visit is visit:
                self._unplug(at)

        self._at(now + self._plug_delay(), unplug)

    def _end_visit(self, now: float) -> None:
        if self._visit is not None:
            self._visit = None
            if self.settings.mode is SessionMode.RANDOM:
                self._schedule_arrival(now)

    # ------------------------------------------------------------------ reactions

    def on_events(self, events: list[Event], now: float) -> None:
        if self._stopping:
            return
        plugged = self.wallbox.connectors[1].plugged
        for event in events:
            kind = event.kind
            if kind is EventKind.REMOTE_START_ACCEPTED:
                if not plugged and self._visit is None:
                    self._visit = self._draw(now)
                    self.sessions_started += 1
                    self._at(now + self._plug_delay(), self._plug)
            elif kind is EventKind.EV_FULL:
                if self._visit is not None and self._visit.dwell is None:
                    self._at(now + self.settings.idle_after_full.sample(self.rng), self._leave)
            elif kind is EventKind.TRANSACTION_STOPPED:
                # Stopped by the CSMS, the charger or a card: the driver unplugs and goes.
                if plugged:
                    self._unplug_later(now)
            elif kind in (EventKind.AUTHORIZATION_REJECTED, EventKind.CONNECTION_TIMEOUT):
                if plugged:
                    self._unplug_later(now)
                else:
                    self._end_visit(now)
            elif kind is EventKind.REBOOTED and plugged:
                self._unplug_later(now)
