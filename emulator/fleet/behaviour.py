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

With ``warm_start`` a charger may begin with a visit already under way, drawn from the
stationary state at the start time (:mod:`emulator.fleet.stationary`): the EV is plugged
in from the start, partly charged, and the driver presents the card once the charger is
accepted by the CSMS, so the transaction starts with the current register and time; the
driver leaves when the residual stay is over.  The card comes at a uniformly random moment
within one ``MeterValueSampleInterval`` of the acceptance: a charger samples every interval
from the start of its transaction, and in a real fleet those starts are spread over time,
so the samples of wallboxes that boot together must not arrive together for ever (the
phases of a fleet in its stationary state are independent and uniform).

With a :class:`~emulator.fleet.sessions.TagRegistry` (the fleet's, unless the scenario sets
``sessions.shared_tags``) a card is in one visit at a time: from arrival until the visit
ends, no other charger of the fleet draws it.
"""

from __future__ import annotations

import numpy as np

from emulator.core.effects import Event, EventKind
from emulator.core.wallbox import Wallbox
from emulator.fleet.scenario import SessionMode, SessionSettings
from emulator.fleet.sessions import ArrivalProcess, SessionPlan, TagRegistry, draw_session
from emulator.fleet.stationary import POWER_FACTOR, ChargerKind, draw_under_way
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
        epoch: float | None = None,
        tags: TagRegistry | None = None,
    ) -> None:
        """``epoch``: when the fleet's virtual clock read ``sessions.start_time`` (a
        charger added later joins the day where it is); default ``now``.  ``tags``: the
        fleet's registry of cards in a visit (None: tags are drawn with replacement)."""
        self.wallbox = wallbox
        self.settings = settings
        self.rng = rng
        self.tags = tags
        self._timeline = Timeline()
        self._visit: SessionPlan | None = None
        self._held: SessionPlan | None = None  # the visit whose card the registry holds
        self._stopping = False
        self._start = now
        self._arrivals = ArrivalProcess(settings=settings, epoch=now if epoch is None else epoch)
        self.sessions_started = 0
        self.plans: list[SessionPlan] = []  # every visit so far, for reproducibility checks
        if settings.mode is SessionMode.RANDOM:
            if settings.warm_start:
                self._warm_start(now)
            self._schedule_arrival(now)

    @property
    def starting(self) -> bool:
        """A warm-started visit waits for its card: its transaction starts within one
        sample interval (a capacity step's settle waits for it)."""
        return self._under_way() is not None

    @property
    def busy(self) -> bool:
        """A driver is at the charger (from arrival until the visit ends)."""
        return self._visit is not None

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
        self._release()

    def _plug_delay(self) -> float:
        return self.settings.plug_in_delay.sample(self.rng)

    # ------------------------------------------------------------------ random sessions

    def _warm_start(self, now: float) -> None:
        """Maybe begin with a visit under way (drawn once; only the plan is kept)."""
        wb = self.wallbox
        model = wb.model
        kind = ChargerKind(
            phases=model.phases,
            max_current=model.max_current,
            nominal_voltage=model.nominal_voltage,
            connection_timeout=float(wb.config.get_int("ConnectionTimeOut")),
        )
        under_way = draw_under_way(self.settings, kind, self._arrivals.virtual(now), self.rng)
        if under_way is None:
            return
        drawn = draw_session(
            settings=self.settings,
            model=model,
            rng=self.rng,
            arrival=now - under_way.age,
            under_way=True,
        )
        plan = self._claim(drawn)
        if plan is None:
            return  # every card is in use: this charger starts idle
        self._visit = plan
        self.plans.append(plan)
        self.sessions_started += 1
        ev = plan.make_ev()
        # What the EV took before the emulation began, at its full draw, is in the
        # register already and in the car's state of charge.
        watts = ev.phases * model.nominal_voltage * min(ev.max_current, model.max_current)
        ev.delivered_wh = min(ev.energy_wanted_wh, watts * POWER_FACTOR * under_way.age / 3600.0)
        wb.connectors[1].meter.credit(ev.delivered_wh)
        wb.plug_in(now, ev=ev)  # the cable is in: Preparing until the card is presented
        if plan.dwell is not None:
            self._at(now + under_way.remaining, self._leave)

    def _under_way(self) -> SessionPlan | None:
        """The warm-started visit, while its card has not been presented yet."""
        plan = self._visit
        if plan is None or plan.arrival >= self._start:
            return None
        c = self.wallbox.connectors[1]
        return plan if c.plugged and c.transaction is None else None

    def _sample_phase(self) -> float:
        """Seconds until a warm-started visit's card: uniform within one sample interval
        (none when the charger does not sample)."""
        interval = self.wallbox.config.get_int("MeterValueSampleInterval")
        return float(self.rng.uniform(0.0, interval)) if interval > 0 else 0.0

    def _present_under_way(self, now: float) -> None:
        under_way = self._under_way()
        if under_way is not None:  # still plugged in, still no transaction
            self.wallbox.present_id_tag(under_way.id_tag, now)

    def _schedule_arrival(self, now: float) -> None:
        if self._stopping:
            return
        arrival = self._arrivals.next_arrival(now, self.rng)
        if arrival is not None:
            self._at(arrival, self._arrive)

    def _draw(self, now: float, *, claim: bool) -> SessionPlan | None:
        """The next visit's plan; with ``claim``, its card taken from the registry (None:
        every card is in use, so no driver comes).  The draws are the same either way."""
        plan: SessionPlan | None = draw_session(
            settings=self.settings, model=self.wallbox.model, rng=self.rng, arrival=now
        )
        if claim:
            plan = self._claim(plan)
        if plan is not None:
            self.plans.append(plan)
        return plan

    def _claim(self, plan: SessionPlan | None) -> SessionPlan | None:
        if plan is None or self.tags is None:
            return plan
        held = self.tags.claim(plan)
        self._held = held
        return held

    def _release(self) -> None:
        held = self._held
        if held is not None and self.tags is not None:
            self._held = None
            self.tags.release(held)

    def _arrive(self, now: float) -> None:
        # Arrivals are one Poisson process whatever the charger is doing: the next one is
        # drawn now, and a driver who finds the charger busy drives on (a loss system).
        self._schedule_arrival(now)
        c = self.wallbox.connectors[1]
        if self._visit is not None or not c.free or c.plugged:
            return
        plan = self._draw(now, claim=True)
        if plan is None:
            return  # every card of the fleet is at a charger: nobody to arrive
        self._visit = plan
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
        self._visit = None
        self._release()

    # ------------------------------------------------------------------ reactions

    def on_events(self, events: list[Event], now: float) -> None:
        if self._stopping:
            return
        plugged = self.wallbox.connectors[1].plugged
        for event in events:
            kind = event.kind
            if kind is EventKind.BOOT_ACCEPTED:
                if self._under_way() is not None:  # a warm start: the driver's card
                    self._at(now + self._sample_phase(), self._present_under_way)
            elif kind is EventKind.REMOTE_START_ACCEPTED:
                if not plugged and self._visit is None:
                    # The CSMS chose the card (RemoteStartTransaction.idTag): none is held.
                    self._visit = self._draw(now, claim=False)
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
            elif kind is EventKind.REBOOTED:
                # The restart ended the session: the driver unplugs, or, not plugged in
                # yet (authorized, waiting for the cable), gives up.
                if plugged:
                    self._unplug_later(now)
                else:
                    self._end_visit(now)
