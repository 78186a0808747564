"""Session plans: arrival statistics, time-of-day shape, reproducibility (issue 4)."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from emulator.core.model import ChargerModel
from emulator.fleet.scenario import EvSpec, Range, SessionSettings
from emulator.fleet.sessions import hourly_profile, plan_sessions

T0 = 1_767_225_600.0  # a UTC midnight
MODEL = ChargerModel(phases=3, max_current=32.0)


def settings(**fields: object) -> SessionSettings:
    return msgspec.structs.replace(SessionSettings(), **fields)


@pytest.mark.parametrize("profile", ["flat", "home", "workplace", "public"])
def test_arrival_counts_over_a_compressed_month_fit_the_configured_rate(profile: str) -> None:
    # 30 days of sessions at 24x compression: 30 h of wall clock, drawn in no time.
    s = settings(arrivals_per_hour=0.5, profile=profile, time_compression=24.0)
    plans = plan_sessions(
        settings=s, model=MODEL, rng=np.random.default_rng(7), start=T0, horizon=30 * 3600
    )
    expected = 0.5 * 24 * 30  # rate x hours per day x days (the profile keeps the daily mean)
    # Poisson: the count is within 4 standard deviations (fixed seed: deterministic).
    assert abs(len(plans) - expected) < 4 * math.sqrt(expected)


def test_the_time_of_day_profile_shapes_arrivals() -> None:
    s = settings(arrivals_per_hour=2.0, profile="workplace", time_compression=24.0)
    plans = plan_sessions(
        settings=s, model=MODEL, rng=np.random.default_rng(3), start=T0, horizon=60 * 3600
    )
    virtual_hours = np.array([((p.arrival - T0) * 24.0 % 86400) // 3600 for p in plans], dtype=int)
    counts = np.bincount(virtual_hours, minlength=24)
    weights = hourly_profile("workplace")
    expected = weights / weights.sum() * len(plans)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 60  # 23 degrees of freedom: p ~ 1e-4 would be ~55; a flat shape gives > 1000
    assert counts[7:10].sum() > 5 * counts[0:5].sum()  # mornings, not nights


def test_two_runs_with_one_seed_produce_identical_plans_and_another_seed_differs() -> None:
    s = settings(
        arrivals_per_hour=3.0,
        no_show_share=0.1,
        dwell_minutes=Range(30.0, 240.0),
        evs=(
            EvSpec(name="small", battery_kwh=40.0, phases=1),
            EvSpec(name="big", share=2.0, battery_kwh=80.0),
        ),
    )
    one = plan_sessions(
        settings=s, model=MODEL, rng=np.random.default_rng(11), start=T0, horizon=86400
    )
    two = plan_sessions(
        settings=s, model=MODEL, rng=np.random.default_rng(11), start=T0, horizon=86400
    )
    other = plan_sessions(
        settings=s, model=MODEL, rng=np.random.default_rng(12), start=T0, horizon=86400
    )
    assert one == two and len(one) > 30
    assert one != other


def test_plug_in_time_is_longer_than_charging_time_and_compression_scales_both() -> None:
    base = settings(
        arrivals_per_hour=1.0,
        dwell_minutes=Range(240.0, 600.0),
        evs=(EvSpec(name="ev", max_current=16.0),),
    )
    for compression in (1.0, 24.0):
        s = msgspec.structs.replace(base, time_compression=compression)
        plans = plan_sessions(
            settings=s,
            model=MODEL,
            rng=np.random.default_rng(5),
            start=T0,
            horizon=86400 / compression * 10,
        )
        for p in plans:
            assert p.dwell is not None
            power_w = 3 * 230 * p.max_current
            charging_s = p.energy_wh / power_w * 3600
            assert p.dwell >= 240 * 60 / compression - 1e-6
            assert charging_s <= 80_000 / power_w * 3600 / compression + 1e-6


def test_the_ev_catalogue_is_drawn_by_share_and_limited_by_the_charger() -> None:
    s = settings(
        arrivals_per_hour=5.0,
        evs=(
            EvSpec(name="one-phase", phases=1, max_current=32.0),
            EvSpec(name="three-phase", share=3.0, phases=3),
        ),
    )
    single_phase_charger = ChargerModel(phases=1, max_current=16.0)
    plans = plan_sessions(
        settings=s,
        model=single_phase_charger,
        rng=np.random.default_rng(9),
        start=T0,
        horizon=10 * 86400,
    )
    names = [p.ev for p in plans]
    share = names.count("three-phase") / len(names)
    assert 0.7 < share < 0.8
    assert all(p.phases == 1 for p in plans)


def test_every_shipped_scenario_loads_and_documents_itself_at_the_top() -> None:
    from pathlib import Path

    from emulator.fleet.scenario import load_scenario

    root = Path(__file__).resolve().parents[2] / "scenarios"
    names = {p.stem for p in root.glob("*.toml")}
    assert {
        "remote-only",
        "demo",
        "steady",
        "home-overnight",
        "workplace-peak",
        "clock-aligned-spike",
        "boot-storm",
        "smart-charging",
        "soak",
    } <= names
    for path in root.glob("*.toml"):
        scenario = load_scenario(path)
        assert path.read_text().startswith(f"# {scenario.name}:") or path.read_text().startswith(
            "# "
        )
        assert scenario.description


def test_the_embedded_csms_learns_the_invalid_cards_of_the_scenario() -> None:
    from pathlib import Path

    from emulator.fleet.scenario import load_scenario

    scenario = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "steady.toml")
    table = scenario.csms_id_tags()
    assert table["INVALID00000"] == "Invalid" and table["BLOCKED00049"] == "Blocked"
    assert "RFID00000" not in table
