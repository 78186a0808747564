"""The network faults a connection can suffer, as requests the driver reads.

Whoever injects faults (emulator.fleet.faults, seeded per charger) sets these; the
driver polls them at every wake-up: drop the connection now (no close frame, like a NAT
timeout or a cut cable), no route to the CSMS until a time, and latency added before
every frame it sends.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class NetworkFaults:
    """What the driver must do to its connection (it polls this at every wake-up)."""

    drop_requested: bool = False
    blocked_until: float = 0.0  # no connection before this wall-clock time
    latency: tuple[float, float] = (0.0, 0.0)

    def take_drop(self) -> bool:
        drop, self.drop_requested = self.drop_requested, False
        return drop
