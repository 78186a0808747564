"""Many wallboxes and their session behaviours on one fake clock, with a CSMS that
answers every CALL at once: virtual days of a fleet in seconds, without sockets.

What the driver task does for one wallbox (tick at the next deadline, send, hand the
answers and the events on) is done here for a whole fleet with one heap of deadlines.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from emulator.core.effects import Event
from emulator.core.model import ChargerModel
from emulator.core.wallbox import Wallbox
from emulator.fleet.behaviour import SessionBehaviour
from emulator.fleet.scenario import SessionSettings
from emulator.protocol.timefmt import format_timestamp

QUIET_MODEL = ChargerModel(
    configuration={
        "MeterValueSampleInterval": "0",
        "ClockAlignedDataInterval": "0",
        "HeartbeatInterval": "86400",
        "WebSocketPingInterval": "0",
    }
)
"""A charger that sends only what sessions make it send (no samples, heartbeats, pings)."""


class InstantFleet:
    """``count`` chargers numbered 0.., charger n seeded with ``[seed, n]``."""

    def __init__(
        self,
        settings: SessionSettings,
        *,
        count: int,
        now: float,
        seed: int = 1,
        model: ChargerModel = QUIET_MODEL,
        online: bool = True,
        refused_prefixes: tuple[str, ...] = ("INVALID", "BLOCKED"),
    ) -> None:
        self.now = now
        self.epoch = now
        self.refused_prefixes = refused_prefixes
        self.sent: list[tuple[int, float, str, dict[str, Any]]] = []
        self._tx_ids = itertools.count(1)
        self.wallboxes: list[Wallbox] = []
        self.behaviours: list[SessionBehaviour] = []
        for n in range(count):
            rng = np.random.default_rng([seed, n])
            wb = Wallbox(charge_point_id=f"SIM{n:06d}", model=model, rng=rng, now=now)
            behaviour = SessionBehaviour(
                wallbox=wb, settings=settings, rng=np.random.default_rng([seed, n, 1]), now=now
            )
            self.wallboxes.append(wb)
            self.behaviours.append(behaviour)
        self._heap: list[tuple[float, int]] = []
        for n, wb in enumerate(self.wallboxes):
            if online:
                wb.connected(now)
            self.step(n, now)

    # ------------------------------------------------------------------ the CSMS

    def _answer(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": format_timestamp(self.now), "interval": 0}
        if action in ("Authorize", "StartTransaction", "StopTransaction"):
            tag = payload.get("idTag", "")
            status = "Invalid" if tag.startswith(self.refused_prefixes) else "Accepted"
            answer: dict[str, Any] = {"idTagInfo": {"status": status}}
            if action == "StartTransaction":
                answer["transactionId"] = next(self._tx_ids)
            if action == "StopTransaction" and not tag:
                return {}
            return answer
        if action == "Heartbeat":
            return {"currentTime": format_timestamp(self.now)}
        return {}

    # ------------------------------------------------------------------ the transport

    def step(self, n: int, now: float) -> None:
        """Charger ``n`` does what is due at ``now`` (call after changing it from outside:
        its next deadline is pushed again, an earlier entry just fires early)."""
        wb, behaviour = self.wallboxes[n], self.behaviours[n]
        behaviour.tick(now)
        wb.tick(now)
        while True:
            events = [e for e in wb.take_effects() if isinstance(e, Event)]
            if events:
                behaviour.on_events(events, now)
            call = wb.next_call(now) if wb.online else None
            if call is None:
                if not events:
                    break
                continue
            self.sent.append((n, now, call.action, call.payload))
            wb.handle_result(call.unique_id, self._answer(call.action, call.payload), now)
        deadlines = [d for d in (wb.next_deadline(), behaviour.next_deadline()) if d is not None]
        if deadlines:
            heapq.heappush(self._heap, (max(min(deadlines), now), n))

    def run_until(
        self, until: float, *, every: float = 0.0, observe: Callable[[float], None] | None = None
    ) -> None:
        """Advance the fake clock to ``until``; call ``observe(t)`` every ``every`` seconds."""
        next_look = self.now + every if observe is not None and every > 0 else None
        while True:
            due = self._heap[0][0] if self._heap else until
            if next_look is not None and next_look <= min(due, until):
                self.now = next_look
                assert observe is not None
                observe(next_look)
                next_look += every
                continue
            if due > until:
                break
            _, n = heapq.heappop(self._heap)
            self.now = max(self.now, due)
            self.step(n, self.now)
        self.now = until

    def busy(self) -> int:
        """Chargers holding a visit now (a driver is there)."""
        return sum(1 for b in self.behaviours if b.busy)

    def in_transaction(self) -> int:
        return sum(1 for wb in self.wallboxes if wb.connectors[1].transaction is not None)
