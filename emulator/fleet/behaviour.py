"""The world around one wallbox: drivers arrive, plug in, swipe cards, leave (pure, seeded).

A behaviour owns no I/O and reads no clock: the driver task calls ``tick(now)`` at
``next_deadline()`` and hands it the wallbox's events.  Arrivals are a Poisson
process per charger (issue 4 adds time-of-day profiles and an EV catalogue).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from emulator.core.metering import Ev
from emulator.core.wallbox import Event, EventKind, Wallbox
from emulator.fleet.scenario import SessionMode, SessionSettings

Action = Callable[[float], None]


@dataclass(order=True, slots=True)
class _Scheduled:
    at: float
    seq: int
    action: Action = field(compare=False)


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
        self._queue: list[_Scheduled] = []
        self._seq = 0
        self._in_session = False
        self._stopping = False
        self.sessions_started = 0
        if settings.mode is SessionMode.RANDOM:
            self._schedule_arrival(now)

    # ------------------------------------------------------------------ scheduling

    def _at(self, when: float, action: Action) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Scheduled(when, self._seq, action))

    def next_deadline(self) -> float | None:
        return self._queue[0].at if self._queue else None

    def tick(self, now: float) -> None:
        while self._queue and self._queue[0].at <= now:
            item = heapq.heappop(self._queue)
            item.action(now)

    def finish(self, now: float) -> None:
        """The run ends: no new arrivals (running transactions are stopped by the driver)."""
        self._stopping = True
        self._queue.clear()

    # ------------------------------------------------------------------ draws

    def _ev(self) -> Ev:
        model = self.wallbox.model
        energy_kwh = self.settings.energy_kwh.sample(self.rng)
        return Ev(
            energy_wanted_wh=energy_kwh * 1000.0,
            max_current=model.max_current,
            phases=model.phases,
        )

    def _plug_delay(self) -> float:
        return self.settings.plug_in_delay.sample(self.rng)

    # ------------------------------------------------------------------ random sessions

    def _schedule_arrival(self, now: float) -> None:
        rate = self.settings.arrivals_per_hour
        if rate <= 0 or self._stopping:
            return
        self._at(now + float(self.rng.exponential(3600.0 / rate)), self._arrive)

    def _arrive(self, now: float) -> None:
        c = self.wallbox.connectors[1]
        if self._in_session or not c.free or c.plugged:
            self._schedule_arrival(now)  # the driver finds the charger busy and leaves
            return
        self._in_session = True
        self.sessions_started += 1
        tag = self.settings.draw_id_tag(self.rng)
        if self.rng.random() < self.settings.authorize_first_share:
            self.wallbox.present_id_tag(tag, now)
            self._at(now + self._plug_delay(), self._plug)
        else:
            self._plug(now)
            self._at(now + self._plug_delay(), lambda at: self.wallbox.present_id_tag(tag, at))

    def _plug(self, now: float) -> None:
        if not self.wallbox.connectors[1].plugged:
            self.wallbox.plug_in(now, ev=self._ev())

    def _leave(self, now: float) -> None:
        """The driver ends the session: by card (Local) or by unplugging at the EV."""
        c = self.wallbox.connectors[1]
        tx = c.transaction
        if tx is not None and self.rng.random() < self.settings.stop_by_tag_share:
            self.wallbox.present_id_tag(tx.id_tag, now)
            self._at(now + self._plug_delay(), self._unplug)
        else:
            self._unplug(now)

    def _unplug(self, now: float) -> None:
        self.wallbox.unplug(now)
        if self._in_session:
            self._in_session = False
            if self.settings.mode is SessionMode.RANDOM:
                self._schedule_arrival(now)

    # ------------------------------------------------------------------ reactions

    def on_events(self, events: list[Event], now: float) -> None:
        if self._stopping:
            return
        for event in events:
            kind = event.kind
            if kind is EventKind.REMOTE_START_ACCEPTED:
                if not self.wallbox.connectors[1].plugged:
                    self._in_session = True
                    self.sessions_started += 1
                    self._at(now + self._plug_delay(), self._plug)
            elif kind is EventKind.EV_FULL:
                idle = self.settings.idle_after_full.sample(self.rng)
                self._at(now + idle, self._leave)
            elif kind is EventKind.TRANSACTION_STOPPED:
                # Stopped by the CSMS, the charger or a card: the driver unplugs and goes.
                if self.wallbox.connectors[1].plugged:
                    self._at(now + self._plug_delay(), self._unplug)
            elif kind in (EventKind.AUTHORIZATION_REJECTED, EventKind.CONNECTION_TIMEOUT):
                if self.wallbox.connectors[1].plugged:
                    self._at(now + self._plug_delay(), self._unplug)
                elif self._in_session:
                    self._in_session = False
                    if self.settings.mode is SessionMode.RANDOM:
                        self._schedule_arrival(now)
            elif kind is EventKind.REBOOTED and self.wallbox.connectors[1].plugged:
                self._at(now + self._plug_delay(), self._unplug)
