"""Seeded session plans: when drivers arrive, with which car and card, and how they leave.

Arrivals per charger are a non-homogeneous Poisson process whose rate follows a
time-of-day profile (home chargers fill in the evening, workplace ones in the
morning, public ones through the day), drawn by thinning (Lewis & Shedler 1979):
candidate gaps at the peak rate, each kept with probability λ(t)/λ_max.  The
profile is read on a *virtual* clock that runs ``time_compression`` times faster
than the wall clock, so a day of sessions fits in an hour while heartbeats, samples
and timeouts keep their real protocol intervals; dwell times and the energy the EVs
want shrink by the same factor so that a compressed session still ends the way the
real one would (full, or unplugged at departure).

The virtual clock starts at ``sessions.start_time`` (a local time of day), not at the
wall clock's, and everything is drawn from the one ``numpy.random.Generator`` handed in,
in a fixed order: the same scenario, seed and start time give the same plans, relative
to the start, on any day, at any hour, on any machine.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from emulator.core.metering import Ev
from emulator.core.model import ChargerModel
from emulator.fleet.scenario import CardPool, EvSpec, IdTagPool, SessionSettings

# Relative arrival intensity per local hour 0..23 (normalised to mean 1 below); shapes
# after the published load curves of residential, workplace and public AC charging
# (e.g. the ElaadNL open data and the NREL EVI-Pro profiles): evening peak at home,
# morning peak at work, a broad daytime hump in public.
_RAW_PROFILES: dict[str, tuple[float, ...]] = {
    "flat": (1.0,) * 24,
    "home": (0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.6,
             0.7, 0.7, 0.8, 1.1, 1.6, 2.4, 2.9, 2.6, 2.0, 1.4, 0.9, 0.5),
    "workplace": (0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 1.2, 3.5, 4.5, 3.0, 1.5, 0.9,
                  1.1, 1.3, 0.9, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05),
    "public": (0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 1.0, 1.3, 1.5, 1.6,
               1.7, 1.6, 1.5, 1.5, 1.6, 1.7, 1.5, 1.2, 0.9, 0.6, 0.4, 0.3),
}  # fmt: skip


@functools.cache
def hourly_profile(name: str) -> np.ndarray:
    """The profile's 24 weights, scaled to a mean of 1 (so the daily count is rate × 24).

    One read-only array per profile, shared by every wallbox."""
    raw = np.asarray(_RAW_PROFILES[name], dtype=float)
    weights = raw * (24.0 / raw.sum())
    weights.flags.writeable = False
    return weights


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One driver's visit, drawn at arrival (fields in draw order)."""

    arrival: float  # wall-clock seconds
    id_tag: str
    ev: str  # catalogue name, or "" without a catalogue
    energy_wh: float
    max_current: float
    min_current: float
    phases: int
    taper_from: float
    authorize_first: bool
    no_show: bool
    stop_by_tag: bool
    dwell: float | None  # wall-clock seconds plugged in, None: until full + idle

    def make_ev(self) -> Ev:
        return Ev(
            energy_wanted_wh=self.energy_wh,
            max_current=self.max_current,
            min_current=self.min_current,
            phases=self.phases,
            taper_from=self.taper_from,
            model=self.ev,
        )


def virtual_start(settings: SessionSettings, epoch: float) -> float:
    """The virtual local time of day, in seconds after midnight, at wall time ``epoch``.

    ``sessions.start_time = "HH:MM"`` fixes it, so the same scenario and seed draw the
    same sessions whenever and wherever they run; ``"now"`` reads the time of day of
    ``epoch`` (UTC shifted by ``utc_offset_hours``)."""
    fixed = settings.start_seconds
    if fixed is not None:
        return fixed
    return (epoch + settings.utc_offset_hours * 3600.0) % 86400.0


class ArrivalProcess:
    """Arrivals of one charger on the virtual clock of the scenario.

    The virtual clock reads ``virtual_start`` at the fleet's ``epoch`` and runs
    ``time_compression`` times faster than the wall clock from there."""

    __slots__ = ("_peak", "_rate", "_weights", "compression", "epoch", "offset")

    def __init__(self, *, settings: SessionSettings, epoch: float) -> None:
        self._weights = hourly_profile(settings.profile)
        self._rate = settings.arrivals_per_hour / 3600.0  # per virtual second, mean
        self._peak = self._rate * float(self._weights.max())
        self.compression = settings.time_compression
        self.epoch = epoch
        self.offset = virtual_start(settings, epoch)

    def virtual(self, now: float) -> float:
        """Virtual seconds since the local midnight before the epoch, at wall time ``now``."""
        return self.offset + (now - self.epoch) * self.compression

    def wall(self, virtual: float) -> float:
        return self.epoch + (virtual - self.offset) / self.compression

    def rate_at(self, virtual: float) -> float:
        """λ per virtual second at a virtual instant."""
        hour = int((virtual % 86400.0) // 3600.0)
        return self._rate * float(self._weights[hour])

    def next_arrival(self, now: float, rng: np.random.Generator) -> float | None:
        """The next arrival after ``now`` (wall clock), or None with a zero rate."""
        if self._peak <= 0:
            return None
        virtual = self.virtual(now)
        while True:
            virtual += float(rng.exponential(1.0 / self._peak))
            if rng.random() * self._peak <= self.rate_at(virtual):
                return self.wall(virtual)


class TagRegistry:
    """The idTags of a fleet that are in a visit right now, so no card is in two places.

    A driver's card is at one charger at a time: a scenario drawing tags with replacement
    would otherwise start a transaction with a card that is already charging elsewhere,
    which a CSMS rightly refuses (idTagInfo ConcurrentTx).  :meth:`claim` keeps the tag
    drawn when it is free; else it takes the next free tag of the same pool (then of the
    other pools, in file order) without drawing again, so every other draw of the charger
    stays what the seed makes it.  With every tag in use the arrival finds no driver.

    One registry per fleet (per process); ``sessions.shared_tags = true`` turns it off.
    Where a taken card of a cards file sits in its file is looked up in a table made at
    the first such collision (one per file pool), not by a scan of the file.
    """

    __slots__ = ("_positions", "exhausted", "in_use", "settings")

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.in_use: set[str] = set()
        self.exhausted = 0  # arrivals that found every tag in use (and no driver)
        self._positions: dict[int, dict[str, int]] = {}  # id(CardPool) -> card -> its n

    def claim(self, plan: SessionPlan) -> SessionPlan | None:
        """``plan`` with a tag no other visit holds, now held by it; None if there is none."""
        tag = plan.id_tag
        if tag not in self.in_use:
            self.in_use.add(tag)
            return plan
        free = self._free_near(tag)
        if free is None:
            self.exhausted += 1
            return None
        self.in_use.add(free)
        return replace(plan, id_tag=free)

    def release(self, plan: SessionPlan) -> None:
        self.in_use.discard(plan.id_tag)

    def _free_near(self, tag: str) -> str | None:
        pools = self.settings.id_tags
        home, index = next(
            ((p, i) for p in pools if (i := self._index(p, tag)) is not None), (None, None)
        )
        order = ([home] if home is not None else []) + [p for p in pools if p is not home]
        for pool in order:
            start = index + 1 if pool is home and index is not None else 0
            for k in range(pool.count):
                candidate = pool.tag((start + k) % pool.count)
                if candidate not in self.in_use:
                    return candidate
        return None

    def _index(self, pool: IdTagPool, tag: str) -> int | None:
        if not isinstance(pool, CardPool):
            return pool.index(tag)  # arithmetic on the prefix's number
        table = self._positions.get(id(pool))
        if table is None:
            table = self._positions[id(pool)] = {card: n for n, card in enumerate(pool.cards)}
        return table.get(tag)


def _pick_ev(evs: tuple[EvSpec, ...], rng: np.random.Generator) -> EvSpec:
    if len(evs) == 1:
        return evs[0]
    shares = np.array([e.share for e in evs], dtype=float)
    return evs[int(rng.choice(len(evs), p=shares / shares.sum()))]


def draw_session(
    *,
    settings: SessionSettings,
    model: ChargerModel,
    rng: np.random.Generator,
    arrival: float,
    under_way: bool = False,
) -> SessionPlan:
    """Everything about one visit, drawn in a fixed order from ``rng``.

    ``under_way``: a visit already in progress at a warm start (emulator.fleet.stationary):
    the driver did show up, with a card the CSMS accepts (refused cards and no-shows leave
    within a minute, so they are almost never what a busy charger holds)."""
    compression = settings.time_compression
    id_tag = settings.draw_id_tag(rng, accepted_only=under_way)
    if settings.evs:
        spec = _pick_ev(settings.evs, rng)
        soc_in = spec.arrival_soc.sample(rng)
        soc_out = max(soc_in, spec.target_soc.sample(rng))
        energy_wh = (soc_out - soc_in) * spec.battery_kwh * 1000.0
        ev_name, max_a, min_a = spec.name, spec.max_current, spec.min_current
        phases, taper = min(spec.phases, model.phases), spec.taper_from
    else:
        energy_wh = settings.energy_kwh.sample(rng) * 1000.0
        ev_name, max_a, min_a, phases, taper = "", model.max_current, 6.0, model.phases, 1.0
    if math.isfinite(energy_wh):
        energy_wh /= compression
    authorize_first = bool(rng.random() < settings.authorize_first_share)
    no_show = bool(rng.random() < settings.no_show_share) and not under_way
    stop_by_tag = bool(rng.random() < settings.stop_by_tag_share)
    dwell = None
    if settings.dwell_minutes is not None:
        dwell = settings.dwell_minutes.sample(rng) * 60.0 / compression
    return SessionPlan(
        arrival=arrival,
        id_tag=id_tag,
        ev=ev_name,
        energy_wh=energy_wh,
        max_current=max_a,
        min_current=min_a,
        phases=phases,
        taper_from=taper,
        authorize_first=authorize_first,
        no_show=no_show,
        stop_by_tag=stop_by_tag,
        dwell=dwell,
    )


def plan_sessions(
    *,
    settings: SessionSettings,
    model: ChargerModel,
    rng: np.random.Generator,
    start: float,
    horizon: float,
) -> list[SessionPlan]:
    """Every arrival in ``[start, start + horizon)`` with its draws (ignoring busy chargers).

    The behaviour draws the same way one arrival at a time; this is the planner's view
    for tests and for ``ocpp-fleet plan``-style previews.
    """
    process = ArrivalProcess(settings=settings, epoch=start)
    plans: list[SessionPlan] = []
    now = start
    while True:
        arrival = process.next_arrival(now, rng)
        if arrival is None or arrival >= start + horizon:
            return plans
        plans.append(draw_session(settings=settings, model=model, rng=rng, arrival=arrival))
        now = arrival
