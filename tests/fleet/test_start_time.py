"""The scenario's virtual clock starts at ``sessions.start_time``, not at the wall clock's
time of day: the same scenario, seed and start time give the same sessions whenever and
wherever they run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from emulator.fleet.behaviour import SessionBehaviour
from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from emulator.fleet.sessions import SessionPlan
from emulator.metrics.stats import RunStats
from tests.fleet.simulate import InstantFleet

ROOT = Path(__file__).resolve().parents[2]
STEADY = load_scenario(ROOT / "scenarios" / "steady.toml")
# Two fake wall clocks: another day, another season, another hour (one at night).
CLOCK_A = datetime(2026, 3, 1, 3, 17, 41, tzinfo=UTC).timestamp()
CLOCK_B = datetime(2026, 7, 15, 19, 42, 5, 250000, tzinfo=UTC).timestamp()


def relative(plan: SessionPlan, epoch: float) -> tuple[object, ...]:
    """A plan with its arrival relative to the run's start (what must not depend on it)."""
    return (
        round(plan.arrival - epoch, 6),
        plan.id_tag,
        plan.ev,
        plan.energy_wh,
        plan.max_current,
        plan.phases,
        plan.authorize_first,
        plan.no_show,
        plan.stop_by_tag,
        None if plan.dwell is None else round(plan.dwell, 6),
    )


def fleet_at(clock: float, scenario: Scenario = STEADY, chargers: int = 200) -> Fleet:
    return Fleet(
        scenario=scenario,
        csms_url="ws://127.0.0.1:9/ocpp",  # never connected here
        chargers=chargers,
        seed=7,
        reporter=RunStats(),
        clock=lambda: clock,
    )


def sessions_of(fleet: Fleet) -> list[SessionBehaviour]:
    out = []
    for driver in fleet.drivers:
        assert isinstance(driver.behaviour, SessionBehaviour)
        out.append(driver.behaviour)
    return out


def test_two_wall_clocks_give_one_fleet_the_same_warm_state_and_first_arrivals() -> None:
    a, b = fleet_at(CLOCK_A), fleet_at(CLOCK_B)
    warm_a = [[relative(p, CLOCK_A) for p in s.plans] for s in sessions_of(a)]
    warm_b = [[relative(p, CLOCK_B) for p in s.plans] for s in sessions_of(b)]
    assert warm_a == warm_b
    # steady starts at 14:00 on its afternoon plateau: about half the fleet is busy.
    busy = sum(1 for plans in warm_a if plans)
    assert 0.35 * 200 < busy < 0.65 * 200
    first_a = [s.next_deadline() - CLOCK_A for s in sessions_of(a)]  # type: ignore[operator]
    first_b = [s.next_deadline() - CLOCK_B for s in sessions_of(b)]  # type: ignore[operator]
    assert first_a == pytest.approx(first_b, abs=1e-6)


def test_two_wall_clocks_replay_the_same_sessions_over_a_virtual_day() -> None:
    settings = msgspec.structs.replace(STEADY.sessions, time_compression=24.0)

    def day(clock: float) -> list[list[tuple[object, ...]]]:
        fleet = InstantFleet(settings, count=150, now=clock, seed=9)
        fleet.run_until(clock + 3600.0)  # 24x: one virtual day
        return [[relative(p, clock) for p in b.plans] for b in fleet.behaviours]

    one, two = day(CLOCK_A), day(CLOCK_B)
    assert one == two
    assert sum(len(plans) for plans in one) > 150  # about 6 visits a charger, most refused


def test_now_follows_the_wall_clock_and_differs_between_the_two() -> None:
    now = msgspec.structs.replace(
        STEADY, sessions=msgspec.structs.replace(STEADY.sessions, start_time="now")
    )
    a, b = fleet_at(CLOCK_A, now), fleet_at(CLOCK_B, now)
    busy_a = sum(1 for s in sessions_of(a) if s.busy)
    busy_b = sum(1 for s in sessions_of(b) if s.busy)
    # 03:17 UTC is the quiet night of the public profile, 19:42 its busy evening.
    assert busy_a < 0.15 * 200 < 0.35 * 200 < busy_b


def test_the_start_time_override_replaces_the_scenarios() -> None:
    night = STEADY.with_start_time("03:00")
    assert night.sessions.start_time == "03:00" and STEADY.sessions.start_time == "14:00"
    busy = sum(1 for s in sessions_of(fleet_at(CLOCK_B, night)) if s.busy)
    assert busy < 0.15 * 200
    with pytest.raises(ValueError, match=r'expected "HH:MM" \(00:00 to 23:59\) or "now"'):
        STEADY.with_start_time("noon")


def test_a_wallbox_added_later_joins_the_virtual_day_where_it_has_got_to() -> None:
    now = [CLOCK_A]
    fleet = Fleet(
        scenario=STEADY,
        csms_url="ws://127.0.0.1:9/ocpp",
        chargers=0,
        first_index=0,
        seed=7,
        reporter=RunStats(),
        clock=lambda: now[0],
    )
    # steady runs at 1x: 10 hours later it is 00:00 virtual, when almost nobody charges.
    now[0] = CLOCK_A + 10 * 3600.0
    added = [
        fleet.add_wallbox(n, fleet.scenario.models[0].to_charger_model()) for n in range(1, 201)
    ]
    busy = sum(1 for d in added if isinstance(d.behaviour, SessionBehaviour) and d.behaviour.busy)
    assert busy < 0.3 * 200  # p(00:00) is about 0.2, p(14:00) about 0.5


@pytest.mark.parametrize("value", ["25:00", "noon", "7:5", "24:00", "12:60", ""])
def test_a_malformed_start_time_is_one_error_naming_the_file_and_field(value: str) -> None:
    text = f'[scenario]\nname = "x"\n[sessions]\nstart_time = "{value}"\n'
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="x.toml")
    assert caught.value.field == "sessions.start_time"
    assert str(caught.value) == (
        f'x.toml: sessions.start_time: expected "HH:MM" (00:00 to 23:59) or "now", got "{value}"'
    )


def test_every_shipped_scenario_states_its_start_time() -> None:
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        text = path.read_text()
        assert "start_time = " in text, path.name
        load_scenario(path)  # and it is valid


@pytest.mark.parametrize("seed", range(8))
def test_steady_begins_with_a_third_or_more_of_the_fleet_busy_for_any_seed(seed: int) -> None:
    # 300 chargers at 14:00: p is 0.51, so 0.35 is more than five standard deviations away;
    # the integration test under faketime checks these become transactions within 60 s.
    fleet = Fleet(
        scenario=STEADY,
        csms_url="ws://127.0.0.1:9/ocpp",
        chargers=300,
        seed=seed,
        reporter=RunStats(),
        clock=lambda: CLOCK_A,
    )
    busy = sum(1 for s in sessions_of(fleet) if s.busy)
    assert busy >= 0.35 * 300, busy
