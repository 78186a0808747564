"""A connector's meter and the EV behind it: AC physics with numpy, integrated exactly.

What a CSMS sees of a fleet is its meter values, so they must add up:

* **Voltage** per phase wanders around nominal: a slow Ornstein-Uhlenbeck drift
  (grid load over minutes, σ ≈ 1.5 %), a little measurement noise (0.2 %) and the drop
  across the supply impedance under load (0.15 Ω per phase).
* **Current** is what the EV draws on each of its phases, never more than
  ``Current.Offered`` (the charger's maximum, the cable rating and any smart-charging
  limit, whichever is lowest).
* **Power** is P = Σ Vᵢ·Iᵢ·pf over the phases, the power factor rising from 0.95 at a
  trickle to 0.995 at full current, as onboard chargers do.
* **Energy** is the integral of that power.  Power is piecewise constant: it changes
  only at events (plug, limit, sample instants where voltage and the EV's taper are
  re-read), and the register is advanced to the event time *before* anything changes,
  so ``meterStop - meterStart`` is exactly the energy delivered and equals the integral
  of the reported power sample by sample (left Riemann sum) when nothing else happened
  between samples.  The register is reported as integer Wh (OCPP 1.6 §7.31).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SUPPLY_OHMS = 0.15
DRIFT_SIGMA = 0.015  # stationary standard deviation of the slow drift, relative
DRIFT_TAU = 600.0  # seconds: how slowly the grid voltage wanders
NOISE_SIGMA = 0.002  # measurement noise, relative


def power_factor(current_a: float, max_current_a: float) -> float:
    """Onboard chargers correct their power factor best at full load."""
    if current_a <= 0:
        return 1.0
    load = min(1.0, current_a / max(max_current_a, 1e-9))
    return 0.95 + 0.045 * load


@dataclass(slots=True, kw_only=True)
class Ev:
    """The car: how much energy it wants and how its onboard charger draws it.

    ``current_at`` tapers the draw linearly from ``max_current`` at ``taper_from`` of
    the wanted energy down to ``min_current`` at 100 % (the constant-voltage phase of a
    Li-ion charge); below ``min_current`` the car stops drawing: SuspendedEV.
    """

    energy_wanted_wh: float
    max_current: float = 32.0
    min_current: float = 6.0
    phases: int = 3
    delivered_wh: float = 0.0
    taper_from: float = 1.0  # 1.0: no taper (full current until full)
    model: str = ""

    @property
    def full(self) -> bool:
        # A micro-Wh of slack: float integration must not keep a full EV drawing forever.
        return self.delivered_wh >= self.energy_wanted_wh - 1e-6

    def current_wanted(self) -> float:
        """What the car would draw now if the charger offered everything."""
        if self.full:
            return 0.0
        if not math.isfinite(self.energy_wanted_wh) or self.taper_from >= 1.0:
            return self.max_current
        fill = self.delivered_wh / self.energy_wanted_wh
        if fill <= self.taper_from:
            return self.max_current
        remaining = (1.0 - fill) / (1.0 - self.taper_from)
        return max(
            self.min_current, self.min_current + (self.max_current - self.min_current) * remaining
        )


class Meter:
    """Per-connector energy register and instantaneous values (3 phases, some idle)."""

    __slots__ = (
        "_drift",
        "_energy_wh",
        "_last",
        "_last_drift",
        "active_phases",
        "current_a",
        "max_current",
        "nominal_voltage",
        "pf",
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
        max_current: float = 32.0,
    ) -> None:
        self.phases = phases
        self.nominal_voltage = nominal_voltage
        self.max_current = max_current
        self.rng = rng
        self._energy_wh = float(lifetime_wh)
        self._last = now
        self._last_drift = now
        self._drift = rng.normal(0.0, DRIFT_SIGMA, 3)
        self.current_a = 0.0  # per active phase
        self.active_phases = phases
        self.pf = 1.0
        self.voltage_v = np.full(3, nominal_voltage)
        self._reading()

    # ------------------------------------------------------------------ physics

    def _reading(self) -> None:
        """Re-read the phase voltages: drift, noise and the drop under the present load."""
        noise = self.rng.normal(0.0, NOISE_SIGMA, 3)
        drop = np.zeros(3)
        drop[: self.active_phases] = self.current_a * SUPPLY_OHMS
        self.voltage_v = self.nominal_voltage * (1.0 + self._drift + noise) - drop

    def _evolve_drift(self, now: float) -> None:
        dt = now - self._last_drift
        if dt <= 0:
            return
        # Exact Ornstein-Uhlenbeck step: mean-reverting to 0 with time constant DRIFT_TAU.
        decay = math.exp(-dt / DRIFT_TAU)
        spread = DRIFT_SIGMA * math.sqrt(1.0 - decay * decay)
        self._drift = self._drift * decay + self.rng.normal(0.0, spread, 3)
        self._last_drift = now

    def power_w(self, phases: int | None = None) -> float:
        """Active power now: Σ Vᵢ·I·pf over the phases in use."""
        if self.current_a <= 0:
            return 0.0
        used = self.active_phases if phases is None else min(phases, self.phases)
        return float(self.voltage_v[:used].sum()) * self.current_a * self.pf

    def advance(self, now: float, *, phases: int | None = None) -> float:
        """Integrate power up to ``now``; returns the Wh added."""
        dt = now - self._last
        if dt <= 0:
            return 0.0
        added = self.power_w() * dt / 3600.0
        self._energy_wh += added
        self._last = now
        return added

    def credit(self, wh: float) -> None:
        """Energy that flowed before the emulation began (a session already under way at
        a warm start): the register includes it, as the real meter's would."""
        self._energy_wh += max(0.0, wh)

    def set_current(self, now: float, current_a: float, *, phases: int | None = None) -> float:
        """Change the draw at ``now`` (integrating the old draw first); returns Wh added."""
        added = self.advance(now)
        if phases is not None:
            self.active_phases = min(phases, self.phases)
        current = max(0.0, current_a)
        if current != self.current_a:
            self.current_a = current
            self.pf = power_factor(current, self.max_current)
            self._reading()  # the drop across the supply follows the load at once
        return added

    def sample_voltage(self, now: float, *, phases: int | None = None) -> float:
        """A new reading at ``now`` (register advanced first); returns the mean phase voltage."""
        self.advance(now)
        self._evolve_drift(now)
        self._reading()
        return float(self.voltage_v[: self.phases].mean())

    # ------------------------------------------------------------------ readings

    @property
    def last_update(self) -> float:
        return self._last

    @property
    def energy_wh(self) -> float:
        """The register with its fraction (reports use :meth:`register_wh`)."""
        return self._energy_wh

    def register_wh(self) -> int:
        return math.floor(self._energy_wh)

    def phase_voltages(self) -> list[float]:
        return [float(v) for v in self.voltage_v[: self.phases]]

    def phase_currents(self) -> list[float]:
        """Current per phase of the charger (idle phases carry 0 A)."""
        return [self.current_a if i < self.active_phases else 0.0 for i in range(self.phases)]


def sampled_values(
    meter: Meter, measurands: list[str], context: str, *, offered_a: float, interval_start_wh: int
) -> list[dict[str, Any]]:
    """One reading of ``measurands`` (reference §3.1 MeterValues, OCPP 1.6 §7.43).

    Callers re-read the meter first, so the reported power is the power of the next
    interval: the register advances by exactly that power until something changes.
    ``offered_a``: the connector's Current.Offered; ``interval_start_wh``: the register at
    the last clock-aligned boundary (Energy.Active.Import.Interval).
    """
    values: list[dict[str, Any]] = []
    for measurand in measurands:
        if measurand == "Energy.Active.Import.Register":
            values.append(_sv(str(meter.register_wh()), context, measurand, "Wh"))
        elif measurand == "Energy.Active.Import.Interval":
            interval_wh = meter.register_wh() - interval_start_wh
            values.append(_sv(str(interval_wh), context, measurand, "Wh"))
        elif measurand == "Power.Active.Import":
            values.append(_sv(f"{meter.power_w():.0f}", context, measurand, "W"))
        elif measurand == "Power.Offered":
            offered_w = meter.active_phases * meter.nominal_voltage * offered_a
            values.append(_sv(f"{offered_w:.0f}", context, measurand, "W"))
        elif measurand == "Current.Offered":
            values.append(_sv(f"{offered_a:.1f}", context, measurand, "A"))
        elif measurand == "Current.Import":
            for phase, amps in enumerate(meter.phase_currents(), start=1):
                values.append(_sv(f"{amps:.1f}", context, measurand, "A", phase=f"L{phase}"))
        elif measurand == "Voltage":
            for phase, volts in enumerate(meter.phase_voltages(), start=1):
                values.append(_sv(f"{volts:.1f}", context, measurand, "V", phase=f"L{phase}-N"))
    return values


def _sv(
    value: str,
    context: str,
    measurand: str,
    unit: str,
    *,
    phase: str | None = None,
    location: str | None = "Outlet",
) -> dict[str, Any]:
    sampled: dict[str, Any] = {
        "value": value,
        "context": context,
        "measurand": measurand,
        "unit": unit,
    }
    if phase is not None:
        sampled["phase"] = phase
    if location is not None:
        sampled["location"] = location
    return sampled
