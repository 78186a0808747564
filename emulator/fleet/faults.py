"""Seeded fault injection: what goes wrong around each wallbox, and when.

Per charger, from its own ``numpy`` stream (so a run replays):

* network: random disconnects (Poisson, ``disconnects_per_hour``), a blackout of a
  share of the fleet (``blackout_share`` at ``blackout_at`` for ``blackout_seconds``:
  no connection possible), added latency before every frame we send;
* charger: spontaneous reboots (running transaction stopped with reason ``Reboot``),
  power losses (stopped with ``PowerLoss``, the charger off for ``power_loss_seconds``,
  the StopTransaction sent after it is back), connector faults (StatusNotification
  Faulted with an errorCode, cleared after ``connector_fault_seconds``), clock skew.

The injector is a Behaviour (next_deadline/tick/on_events/finish) like the session
generator; network faults are requests the driver reads from :attr:`network`.
CSMS-side faults (restart, CALLERROR bursts, silence, delay) belong to the embedded
reference CSMS: see :func:`csms_misbehaviour`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from emulator.core.effects import Event
from emulator.core.wallbox import Wallbox
from emulator.fleet.scenario import FaultSettings
from emulator.fleet.timeline import Action, Timeline
from emulator.transport.network import NetworkFaults


class FaultInjector:
    def __init__(
        self,
        *,
        wallbox: Wallbox,
        settings: FaultSettings,
        rng: np.random.Generator,
        now: float,
    ) -> None:
        self.wallbox = wallbox
        self.settings = settings
        self.rng = rng
        self.network = NetworkFaults(
            latency=(settings.added_latency.low, settings.added_latency.high)
        )
        self.injected: dict[str, int] = {}
        self._timeline = Timeline()
        self._stopping = False
        self._poisson("disconnect", settings.disconnects_per_hour, now, self._disconnect)
        self._poisson("reboot", settings.reboots_per_hour, now, self._reboot)
        self._poisson("power_loss", settings.power_losses_per_hour, now, self._power_loss)
        self._poisson("connector_fault", settings.connector_faults_per_hour, now, self._fault)
        if settings.blackout_seconds > 0 and rng.random() < settings.blackout_share:
            self._at(now + settings.blackout_at, self._blackout)

    @property
    def active(self) -> bool:
        return bool(self._timeline)

    # ------------------------------------------------------------------ scheduling

    def _at(self, when: float, action: Action) -> None:
        self._timeline.at(when, action)

    def _poisson(self, name: str, per_hour: float, now: float, action: Action) -> None:
        if per_hour <= 0 or self._stopping:
            return

        def fire(at: float) -> None:
            self.injected[name] = self.injected.get(name, 0) + 1
            action(at)
            self._poisson(name, per_hour, at, action)

        self._at(now + float(self.rng.exponential(3600.0 / per_hour)), fire)

    def next_deadline(self) -> float | None:
        return self._timeline.next_deadline()

    def tick(self, now: float) -> None:
        self._timeline.run_due(now)

    def on_events(self, events: list[Event], now: float) -> None:
        return None

    def finish(self, now: float) -> None:
        self._stopping = True
        self._timeline.clear()
        if self.wallbox.connectors[1].fault is not None:
            self.wallbox.clear_fault(now)

    # ------------------------------------------------------------------ faults

    def _disconnect(self, now: float) -> None:
        self.network.drop_requested = True

    def _blackout(self, now: float) -> None:
        self.injected["blackout"] = self.injected.get("blackout", 0) + 1
        self.network.blocked_until = now + self.settings.blackout_seconds
        self.network.drop_requested = True

    def _reboot(self, now: float) -> None:
        self.wallbox.reboot(now)

    def _power_loss(self, now: float) -> None:
        self.wallbox.power_loss(now, outage=self.settings.power_loss_seconds.sample(self.rng))

    def _fault(self, now: float) -> None:
        codes = self.settings.connector_fault_codes
        if not codes or self.wallbox.connectors[1].fault is not None:
            return
        code = codes[int(self.rng.integers(len(codes)))]
        self.wallbox.set_fault(now, error_code=code)
        self._at(now + self.settings.connector_fault_seconds.sample(self.rng), self.wallbox_clear)

    def wallbox_clear(self, now: float) -> None:
        self.wallbox.clear_fault(now)


class Behaviours:
    """Several behaviours seen by the driver as one (sessions + faults)."""

    def __init__(self, *parts: Any) -> None:
        self.parts = [p for p in parts if p is not None]

    def next_deadline(self) -> float | None:
        deadlines = [d for p in self.parts if (d := p.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> None:
        for part in self.parts:
            part.tick(now)

    def on_events(self, events: list[Event], now: float) -> None:
        for part in self.parts:
            part.on_events(events, now)

    def finish(self, now: float) -> None:
        for part in self.parts:
            part.finish(now)


def csms_misbehaviour(
    settings: FaultSettings, rng: np.random.Generator
) -> Callable[..., Any] | None:
    """The reference CSMS's misbehave hook for the scenario's CSMS faults (None: none)."""
    from emulator.csms.misbehaviour import AnswerCallError, Delay, Silence

    if not (
        settings.csms_callerror_share or settings.csms_silence_share or settings.csms_delay.high
    ):
        return None

    def hook(charger_id: str, call: Any) -> Any:
        draw = rng.random()
        if draw < settings.csms_callerror_share:
            return AnswerCallError("InternalError", "injected fault")
        if draw < settings.csms_callerror_share + settings.csms_silence_share:
            return Silence()
        delay = settings.csms_delay.sample(rng)
        return Delay(delay) if delay > 0 else None

    return hook
