"""The stationary state of a fleet's sessions and the warm start drawn from it."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from emulator.fleet.scenario import EvSpec, IdTagPool, Range, SessionSettings
from emulator.fleet.stationary import ChargerKind, draw_under_way, occupancy
from tests.fleet.simulate import InstantFleet

T0 = 1_767_225_600.0  # a UTC midnight
KIND = ChargerKind(phases=3, max_current=32.0, nominal_voltage=230.0, connection_timeout=60.0)

PUBLIC = msgspec.structs.replace(
    SessionSettings(),
    profile="public",
    time_compression=24.0,
    arrivals_per_hour=0.25,
    dwell_minutes=Range(60.0, 240.0),
    authorize_first_share=0.4,
    stop_by_tag_share=0.5,
    no_show_share=0.02,
    plug_in_delay=Range(3.0, 30.0),
    start_time="14:00",
    warm_start=True,
    id_tags=(
        IdTagPool(prefix="RFID", count=5000, share=0.96),
        IdTagPool(prefix="INVALID", count=50, share=0.04, status="Invalid"),
    ),
    evs=(EvSpec(name="midsize", battery_kwh=60.0, max_current=16.0),),
)
"""scenarios/steady.toml's sessions, a day compressed into an hour."""


def flat(**fields: object) -> SessionSettings:
    """Constant arrivals, every driver shows up with a good card, no plug delays."""
    base = msgspec.structs.replace(
        SessionSettings(),
        profile="flat",
        arrivals_per_hour=0.4,
        plug_in_delay=Range(0.0, 0.0),
        no_show_share=0.0,
        warm_start=True,
    )
    return msgspec.structs.replace(base, **fields)


@pytest.mark.parametrize("dwell", [Range(150.0, 150.0), Range(60.0, 240.0)])
def test_a_constant_rate_gives_erlangs_loss_formula_whatever_the_stay_distribution(
    dwell: Range,
) -> None:
    # One server, Poisson arrivals: p = ρ / (1 + ρ), ρ = λ·E[D], insensitive to D's shape.
    state = occupancy(flat(dwell_minutes=dwell), KIND)
    rho = 0.4 * 150.0 / 60.0
    assert state.busy == pytest.approx(rho / (1 + rho), abs=2e-3)


def test_the_busy_share_follows_the_profile_with_the_lag_of_a_stay() -> None:
    state = occupancy(PUBLIC, KIND)
    hours = [state.busy_at(h * 3600.0) for h in range(24)]
    assert hours[4] < 0.1 < 0.45 < hours[14]  # quiet at night, about half busy by day
    # The morning rise lags the arrival profile: more busy at 10:00 than at 08:00 although
    # fewer drivers arrive between 9 and 10 than at the 12:00 peak.
    assert hours[8] < hours[10] < hours[12]


def test_over_a_virtual_day_the_busy_share_stays_within_4_sigma_of_its_expectation() -> None:
    count = 2000
    fleet = InstantFleet(PUBLIC, count=count, now=T0, seed=5)
    state = occupancy(PUBLIC, KIND)
    worst = 0.0
    looks = 0

    def look(now: float) -> None:
        nonlocal worst, looks
        virtual = 14 * 3600.0 + (now - T0) * PUBLIC.time_compression
        p = state.busy_at(virtual)
        sigma = math.sqrt(p * (1 - p) / count)
        z = (fleet.busy() / count - p) / sigma
        assert abs(z) < 4.0, f"at {virtual / 3600 % 24:.2f} h: {fleet.busy()} busy, p = {p:.3f}"
        worst = max(worst, abs(z))
        looks += 1

    look(T0)
    # Every 10 virtual minutes for one virtual day (24x: an hour of fake wall clock).
    fleet.run_until(T0 + 3600.0, every=600.0 / PUBLIC.time_compression, observe=look)
    assert looks == 145
    # The sessions really ran: every busy charger was in a transaction most of the time.
    assert fleet.in_transaction() > 0.8 * fleet.busy() > 0


def test_a_cold_fleet_is_far_from_the_stationary_state_in_its_first_minutes() -> None:
    # What the warm start is for (and what the 4-sigma test above would catch).
    cold = msgspec.structs.replace(PUBLIC, warm_start=False)
    fleet = InstantFleet(cold, count=500, now=T0)
    fleet.run_until(T0 + 10.0)  # 4 virtual minutes: ~14 arrivals in 500 chargers
    expected = occupancy(PUBLIC, KIND).busy_at(14 * 3600) * 500
    assert fleet.busy() < 0.1 * expected and expected > 0.45 * 500


def test_warm_visits_have_the_residual_life_of_a_stationary_renewal_process() -> None:
    # Constant rate: the age and the remaining stay of the visit under way are both
    # distributed with density P(D > x) / E[D]; for D ~ U[60, 240] min their mean is
    # E[D²] / (2 E[D]) = 87.0 min.
    settings = flat(dwell_minutes=Range(60.0, 240.0))
    rng = np.random.default_rng(17)
    draws = [draw_under_way(settings, KIND, 12 * 3600.0, rng) for _ in range(20000)]
    busy = [d for d in draws if d is not None]
    p = occupancy(settings, KIND).busy_at(12 * 3600.0)
    assert len(busy) / len(draws) == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / len(draws)))
    mean_square = (240.0**3 - 60.0**3) / 3 / 180.0  # E[D²], minutes²
    expected = mean_square / (2 * 150.0) * 60.0
    ages = np.array([d.age for d in busy])
    remaining = np.array([d.remaining for d in busy])
    assert ages.mean() == pytest.approx(expected, rel=0.02)
    assert remaining.mean() == pytest.approx(expected, rel=0.02)
    assert (ages + remaining).min() >= 60 * 60.0 - 1e-6
    assert (ages + remaining).max() <= 240 * 60.0 + 1e-6


def _warm_pair(seed: int) -> tuple[InstantFleet, InstantFleet]:
    """The same chargers (same meters) cold and warm; every one busy at the start."""
    settings = flat(
        arrivals_per_hour=400.0,
        dwell_minutes=Range(60.0, 240.0),
        start_time="09:00",
        id_tags=(IdTagPool(prefix="CARD", count=90000),),
    )
    cold = msgspec.structs.replace(settings, warm_start=False, arrivals_per_hour=0.0)
    return (
        InstantFleet(cold, count=20, now=T0, seed=seed, online=False),
        InstantFleet(settings, count=20, now=T0, seed=seed, online=False),
    )


def test_a_warm_charger_starts_its_transaction_within_a_sample_interval_of_its_boot() -> None:
    cold, warm = _warm_pair(seed=3)
    registers = []
    for n, (wb, behaviour) in enumerate(zip(warm.wallboxes, warm.behaviours, strict=True)):
        assert behaviour.busy and wb.connectors[1].plugged, n
        assert str(wb.status()) == "Preparing"
        ev = wb.connectors[1].ev
        assert ev is not None and 0 < ev.delivered_wh <= ev.energy_wanted_wh
        # The energy the EV took before the start is in the register.
        before = cold.wallboxes[n].connectors[1].meter.energy_wh
        assert wb.connectors[1].meter.energy_wh == pytest.approx(before + ev.delivered_wh)
        registers.append(math.floor(before + ev.delivered_wh))
    interval = 60
    for wb in warm.wallboxes:  # the reference charger's default is 0: no samples, no delay
        wb.config.change("MeterValueSampleInterval", str(interval))
    booted_at = T0 + 7.0
    warm.run_until(booted_at)
    for wb in warm.wallboxes:
        wb.connected(booted_at)
        warm.step(warm.wallboxes.index(wb), booted_at)
        assert warm.behaviours[warm.wallboxes.index(wb)].starting  # the card is yet to come
    warm.run_until(booted_at + interval + 1.0)
    starts = []
    for n in range(len(warm.wallboxes)):
        sent = [
            (at, action, p)
            for m, at, action, p in warm.sent
            if m == n and p.get("connectorId") != 0  # the charge point's own status
        ]
        assert [(a, p.get("status")) for _, a, p in sent[:4]] == [
            ("BootNotification", None),
            ("StatusNotification", "Preparing"),
            ("Authorize", None),
            ("StartTransaction", None),
        ]
        # Charging, or SuspendedEV when the EV was already full at the start.
        assert sent[4][1] == "StatusNotification"
        assert sent[4][2]["status"] in ("Charging", "SuspendedEV")
        at, _, start = sent[3]
        assert start["meterStart"] == registers[n]
        assert start["idTag"].startswith("CARD")
        assert booted_at <= at < booted_at + interval
        assert not warm.behaviours[n].starting
        starts.append(at - booted_at)
    # The cards come at independent moments within the interval, so the chargers sample
    # in phases of their own: 20 uniform draws over 60 s spread over most of it.
    assert len(set(starts)) == len(starts)
    assert max(starts) - min(starts) > interval / 2


def test_a_warm_visit_lasts_one_stay_from_its_arrival_before_the_run() -> None:
    _, warm = _warm_pair(seed=4)
    for n, wb in enumerate(warm.wallboxes):
        wb.connected(T0)
        warm.step(n, T0)
    warm.run_until(T0 + 241 * 60.0)  # the longest stay (no compression: wall minutes)
    for n, behaviour in enumerate(warm.behaviours):
        plan = behaviour.plans[0]
        assert plan.arrival < T0  # the visit began before the run
        stops = [at for m, at, a, _ in warm.sent if m == n and a == "StopTransaction"]
        # Age before the run + remaining stay = one whole stay of 60-240 minutes.
        assert 60 * 60.0 - 1e-6 <= stops[0] - plan.arrival <= 240 * 60.0 + 1e-6, n


def test_a_warm_charger_whose_csms_never_answers_has_no_transaction_in_that_visit() -> None:
    _, warm = _warm_pair(seed=6)
    # Every charger is in a visit that began before the run (else nothing below is tested).
    assert all(b.busy and b.plans[0].arrival < T0 for b in warm.behaviours)
    assert len(warm.behaviours) == 20 and all(wb.connectors[1].plugged for wb in warm.wallboxes)
    warm.run_until(T0 + 241 * 60.0)  # never connected: nobody presents the card
    for behaviour, wb in zip(warm.behaviours, warm.wallboxes, strict=True):
        later = behaviour.plans[1].arrival if len(behaviour.plans) > 1 else math.inf
        # An empty list when none started (offline, nor do the later visits'): the list,
        # not all(...) over it, so that a transaction of the warm visit shows in the failure.
        assert [tx for tx in wb.transactions if tx.started_at < later] == []
