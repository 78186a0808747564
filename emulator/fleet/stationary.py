"""The stationary state of a charger's sessions, and a warm start drawn from it.

A wallbox has one connector and one driver at a time: a driver who finds it occupied
drives on (:meth:`emulator.fleet.behaviour.SessionBehaviour._arrive`).  Each charger
is therefore a *loss system* with one server, arrivals that are a Poisson process with a
time-of-day rate λ(t) (:mod:`emulator.fleet.sessions`) and occupancy times D (how long
a visit holds the charger: the stay, plus the moments of unplugging; a refused card or a
no-show holds it briefly).  Its probability of being busy at time t is, exactly,

    p(t) = ∫₀^∞ λ(t−u) · (1 − p(t−u)) · P(D > u) du

A driver is at the charger at t if and only if one arrived at some t−u, found it free
and is still there u later; at most one u qualifies (one server), and a Poisson arrival
at t−u is independent of the state just before it, which is free with probability
1 − p(t−u).

* With a constant rate this is **Erlang's loss formula** for one server,
  p = ρ / (1 + ρ) with ρ = λ·E[D], whatever the distribution of D (insensitivity).
* With a daily profile, Erlang's formula applied hour by hour, or to the offered load of
  the infinite-server system (the "modified offered load" approximation), is off by
  several points whenever the rate changes within one stay: a 1–4 h public stay spans
  a quarter of the profile's daily swing.  So the equation itself is solved, numerically,
  for the periodic state a fleet settles into: on a grid of two virtual minutes it is a
  linear system in the rate of visits that find the charger free (:func:`_solve`).

D is taken from the scenario's own draws: :func:`_occupancy_samples` draws visits with a
fixed seed in the way :class:`SessionBehaviour` plays them (stay, card, plug delays,
no-shows, the EV's charging time when there is no stay).

A **warm start** then draws every charger's state at the start time from that solution:
busy with probability p(t₀); if busy, the age a of the visit under way from the density
λ(t₀−a)·(1 − p(t₀−a))·P(D > a), and its whole length from D given D > a, so the
remaining stay follows the residual-life distribution.  Arrivals after t₀ then keep the
fleet in the same periodic state.  The solution is computed once per scenario and
charger kind (cached); a wallbox keeps only what it drew.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from emulator.fleet.scenario import SessionSettings
from emulator.fleet.sessions import hourly_profile

STEP = 120.0  # virtual seconds per step of the solution (a stay is hours long)
DAY_STEPS = 720
assert DAY_STEPS * STEP == 86400.0 and DAY_STEPS % 24 == 0
MAX_OCCUPANCY = 7 * 86400.0  # virtual seconds: longer visits (e.g. [inf, inf] kWh) are capped
SAMPLES = 8192
SAMPLE_SEED = 0x5E55_1015  # fixed: the solution depends on the scenario only
POWER_FACTOR = 0.99  # occupancy estimate only: the EV's draw at full current


@dataclass(frozen=True, slots=True)
class ChargerKind:
    """What the occupancy of a visit depends on besides the session settings."""

    phases: int
    max_current: float
    nominal_voltage: float
    connection_timeout: float  # ConnectionTimeOut, wall seconds


@dataclass(frozen=True, slots=True)
class Occupancy:
    """The periodic solution over one virtual day (index i: i·STEP after midnight)."""

    busy: np.ndarray  # p at each step
    accepted: np.ndarray  # λ·(1 − p): rate of visits that find the charger free
    mass: np.ndarray  # ∫ over step k of P(D > u) du, k = 0, 1, ...
    durations: np.ndarray  # sorted sampled occupancy times (virtual seconds)
    regular: np.ndarray  # same order: the visit is a shown-up, accepted one

    def busy_at(self, virtual: float) -> float:
        """p at a virtual instant (linear between steps)."""
        x = (virtual % 86400.0) / STEP
        i = int(x)
        frac = x - i
        return float(
            self.busy[i % DAY_STEPS] * (1.0 - frac) + self.busy[(i + 1) % DAY_STEPS] * frac
        )

    def expected_busy(self, virtual: np.ndarray) -> np.ndarray:
        """p at many virtual instants (for tests and reports)."""
        x = (np.asarray(virtual, dtype=float) % 86400.0) / STEP
        i = x.astype(int)
        frac = x - i
        return self.busy[i % DAY_STEPS] * (1.0 - frac) + self.busy[(i + 1) % DAY_STEPS] * frac


@dataclass(frozen=True, slots=True)
class VisitUnderWay:
    """A warm-started visit: how long it has run and how long it has left (wall seconds)."""

    age: float
    remaining: float


def occupancy(settings: SessionSettings, kind: ChargerKind) -> Occupancy:
    """The stationary (periodic) busy probability of one charger; cached (a stay of
    ``dwell_minutes`` does not depend on the charger's power: one solution for all)."""
    if settings.dwell_minutes is not None:
        kind = ChargerKind(
            phases=0,
            max_current=0.0,
            nominal_voltage=0.0,
            connection_timeout=kind.connection_timeout,
        )
    return _occupancy(settings, kind)


@functools.lru_cache(maxsize=64)
def _occupancy(settings: SessionSettings, kind: ChargerKind) -> Occupancy:
    durations, regular = _occupancy_samples(settings, kind)
    order = np.argsort(durations, kind="stable")
    durations, regular = durations[order], regular[order]
    steps = max(1, math.ceil(float(durations[-1]) / STEP)) if len(durations) else 1
    edges = np.arange(steps, dtype=float) * STEP
    # ∫_{kS}^{(k+1)S} P(D > u) du = E[clip(D − kS, 0, S)]: exact for the sampled D.
    mass = np.clip(durations[None, :] - edges[:, None], 0.0, STEP).mean(axis=1)
    rate = (
        settings.arrivals_per_hour
        / 3600.0
        * np.repeat(hourly_profile(settings.profile), DAY_STEPS // 24)
    )
    busy, accepted = _solve(rate, mass)
    for array in (busy, accepted, mass, durations, regular):
        array.flags.writeable = False
    return Occupancy(busy, accepted, mass, durations, regular)


def _solve(rate: np.ndarray, mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The periodic solution of p(i) = Σₖ a(i−k−1)·mass[k], a = λ·(1 − p), over one day.

    Linear in the rate of accepted visits a: with the kernel wrapped onto the day (a
    stay longer than a day comes round again), p = C·a for a circulant C, so
    (I + diag(λ)·C)·a = λ is solved once: no marching, stable for any rate."""
    kernel = np.zeros(DAY_STEPS)
    np.add.at(kernel, (np.arange(len(mass)) + 1) % DAY_STEPS, mass)
    index = np.arange(DAY_STEPS)
    circulant = kernel[(index[:, None] - index[None, :]) % DAY_STEPS]
    accepted = np.linalg.solve(np.eye(DAY_STEPS) + rate[:, None] * circulant, rate)
    busy = np.clip(circulant @ accepted, 0.0, 1.0)
    return busy, accepted


def _occupancy_samples(
    settings: SessionSettings, kind: ChargerKind
) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy times of ``SAMPLES`` visits (virtual seconds), drawn as the behaviour
    plays them, and whether each is a regular visit (shown up, card accepted)."""
    rng = np.random.default_rng(SAMPLE_SEED)
    compression = settings.time_compression
    pools = settings.id_tags
    shares = np.array([p.share for p in pools], dtype=float)
    accepted_share = float(shares[[p.status == "Accepted" for p in pools]].sum() / shares.sum())
    n = SAMPLES
    delay = settings.plug_in_delay
    first_delay = rng.uniform(delay.low, delay.high, n)
    last_delay = rng.uniform(delay.low, delay.high, n)
    no_show = rng.random(n) < settings.no_show_share
    refused = rng.random(n) >= accepted_share
    authorize_first = rng.random(n) < settings.authorize_first_share
    by_tag = rng.random(n) < settings.stop_by_tag_share
    # By card: the driver unplugs a moment after the swipe; the charger's stop prompts an
    # unplug too (SessionBehaviour draws a delay for each), whichever comes first.
    other_delay = rng.uniform(delay.low, delay.high, n)
    leaving = np.where(by_tag, np.minimum(last_delay, other_delay), 0.0)
    if settings.dwell_minutes is not None:
        stay = rng.uniform(settings.dwell_minutes.low, settings.dwell_minutes.high, n) * 60.0
        stay = stay + leaving * compression
    else:
        stay = (_charging_seconds(settings, kind, rng, n) + leaving) * compression
        idle = settings.idle_after_full
        stay = stay + rng.uniform(idle.low, idle.high, n) * compression
    refused_stay = np.where(authorize_first, 0.0, first_delay + last_delay) * compression
    durations = np.where(refused, refused_stay, stay)
    durations = np.where(no_show, kind.connection_timeout * compression, durations)
    durations = np.minimum(durations, MAX_OCCUPANCY)
    return durations, ~(no_show | refused)


def _charging_seconds(
    settings: SessionSettings, kind: ChargerKind, rng: np.random.Generator, n: int
) -> np.ndarray:
    """Wall seconds an EV charges at full current (no stay: the visit lasts until full)."""
    compression = settings.time_compression
    if settings.evs:
        specs = settings.evs
        shares = np.array([e.share for e in specs], dtype=float)
        which = rng.choice(len(specs), size=n, p=shares / shares.sum())
        seconds = np.empty(n)
        for j, spec in enumerate(specs):
            mine = which == j
            count = int(mine.sum())
            soc_in = rng.uniform(spec.arrival_soc.low, spec.arrival_soc.high, count)
            soc_out = np.maximum(
                soc_in, rng.uniform(spec.target_soc.low, spec.target_soc.high, count)
            )
            energy = (soc_out - soc_in) * spec.battery_kwh * 1000.0 / compression
            watts = _watts(kind, spec.phases, spec.max_current)
            seconds[mine] = energy / watts * 3600.0
        return seconds
    energy = rng.uniform(settings.energy_kwh.low, settings.energy_kwh.high, n) * 1000.0
    return energy / compression / _watts(kind, kind.phases, kind.max_current) * 3600.0


def _watts(kind: ChargerKind, phases: int, max_current: float) -> float:
    return (
        min(phases, kind.phases)
        * kind.nominal_voltage
        * min(max_current, kind.max_current)
        * POWER_FACTOR
    )


def draw_under_way(
    settings: SessionSettings, kind: ChargerKind, virtual: float, rng: np.random.Generator
) -> VisitUnderWay | None:
    """A charger's state at virtual time ``virtual`` drawn from the stationary
    distribution: None when free (or held by a refused card or a no-show, which lasts
    moments), else the age and remaining length of the visit under way."""
    state = occupancy(settings, kind)
    if rng.random() >= state.busy_at(virtual):
        return None
    x = (virtual % 86400.0) / STEP
    now_step = int(x)
    # Steps back to the arrival: weight accepted-rate × mass, as in the equation.
    back = np.arange(len(state.mass))
    weights = state.accepted[(now_step - back - 1) % DAY_STEPS] * state.mass
    total = float(weights.sum())
    if total <= 0.0:
        return None
    k = int(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right"))
    k = min(k, len(weights) - 1)
    age = (k + float(rng.random()) + (x - now_step)) * STEP
    # The visit's whole length given that it has lasted ``age``: residual life.
    longer = int(np.searchsorted(state.durations, age, side="right"))
    if longer >= len(state.durations):
        return None
    pick = longer + int(rng.integers(len(state.durations) - longer))
    if not state.regular[pick]:
        return None
    compression = settings.time_compression
    return VisitUnderWay(
        age=age / compression,
        remaining=(float(state.durations[pick]) - age) / compression,
    )
