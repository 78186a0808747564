"""A connector's meter and the EV behind it (first cut; issue 4 brings the numpy physics).

The energy register integrates active power exactly between state changes, so
``meterStop - meterStart`` always equals the energy the charger delivered: power
only changes at events (plug, limit, EV full), and the register is advanced to
the event time first.  Reported values are integers in Wh as OCPP 1.6 §7.31 shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

POWER_FACTOR = 0.99


@dataclass(slots=True, kw_only=True)
class Ev:
    """What the car wants: energy, and what its onboard charger can draw."""

    energy_wanted_wh: float
    max_current: float = 32.0
    min_current: float = 6.0
    phases: int = 3
    delivered_wh: float = 0.0

    @property
    def full(self) -> bool:
        # A micro-Wh of slack: float integration must not keep a full EV drawing forever.
        return self.delivered_wh >= self.energy_wanted_wh - 1e-6


class Meter:
    """Per-connector energy register and instantaneous values."""

    __slots__ = (
        "_energy_wh",
        "_last",
        "current_a",
        "nominal_voltage",
        "phases",
        "rng",
        "voltage_v",
    )

    def __init__(
        self,
        *,
        phases: int,
        nominal_voltage: float,
        lifetime_wh: float,
        rng: np.random.Generator,
        now: float,
    ) -> None:
        self.phases = phases
        self.nominal_voltage = nominal_voltage
        self.rng = rng
        self._energy_wh = float(lifetime_wh)
        self._last = now
        self.current_a = 0.0  # per active phase
        self.voltage_v = nominal_voltage

    def power_w(self, phases: int | None = None) -> float:
        used = self.phases if phases is None else min(phases, self.phases)
        return used * self.voltage_v * self.current_a * POWER_FACTOR if self.current_a else 0.0

    def advance(self, now: float, *, phases: int | None = None) -> float:
        """Integrate power up to ``now``; returns the Wh added."""
        dt = now - self._last
        if dt <= 0:
            return 0.0
        added = self.power_w(phases) * dt / 3600.0
        self._energy_wh += added
        self._last = now
        return added

    def set_current(self, now: float, current_a: float, *, phases: int | None = None) -> float:
        """Change the draw at ``now`` (integrating the old draw first); returns Wh added."""
        added = self.advance(now, phases=phases)
        self.current_a = max(0.0, current_a)
        return added

    @property
    def last_update(self) -> float:
        return self._last

    @property
    def energy_wh(self) -> float:
        """The register with its fraction (reports use :meth:`register_wh`)."""
        return self._energy_wh

    def register_wh(self) -> int:
        return math.floor(self._energy_wh)

    def sample_voltage(self, now: float, *, phases: int | None = None) -> float:
        """Mains voltage with a little noise (±1 %); issue 4 adds drift and per-phase values.

        The register is advanced first, so a new voltage never changes energy already counted.
        """
        self.advance(now, phases=phases)
        self.voltage_v = float(self.nominal_voltage * (1.0 + 0.01 * self.rng.standard_normal()))
        return self.voltage_v
