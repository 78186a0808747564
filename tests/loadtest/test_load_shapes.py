"""Each load shape's schedule, tick by tick (pure: no Locust runs)."""

from __future__ import annotations

import json

import pytest

from emulator.loadtest.schedules import (
    BootStorm,
    LinearRamp,
    ScheduleError,
    Soak,
    Steps,
    Tick,
    parse_duration,
    parse_schedule,
)
from tests.loadtest.support import run_python


def test_linear_ramp_spawns_at_the_rate_that_reaches_the_fleet_at_the_end_of_the_ramp() -> None:
    ramp = parse_schedule("ramp:users=1000,ramp=100s,hold=5m")
    assert ramp == LinearRamp(users=1000, ramp=100.0, hold=300.0)
    assert ramp.tick(0) == Tick(1000, 10.0)
    assert ramp.tick(399.9) == Tick(1000, 10.0)
    assert ramp.tick(400) is None
    assert ramp.waves_before(10_000) == 0


def test_steps_hold_each_fleet_size_then_end() -> None:
    steps = parse_schedule("steps:sizes=100/200/500,hold=60,rate=50")
    assert steps == Steps(sizes=(100, 200, 500), hold=60.0, rate=50.0)
    assert [steps.tick(t) for t in (0, 59.9, 60, 150, 179.9)] == [
        Tick(100, 50.0),
        Tick(100, 50.0),
        Tick(200, 50.0),
        Tick(500, 50.0),
        Tick(500, 50.0),
    ]
    assert steps.tick(180) is None


def test_boot_storm_connects_the_whole_fleet_within_seconds() -> None:
    storm = parse_schedule("boot-storm:users=10000,within=5s,hold=10m")
    assert storm == BootStorm(users=10000, within=5.0, hold=600.0)
    assert storm.tick(0) == Tick(10000, 2000.0)
    assert storm.tick(604.9) == Tick(10000, 2000.0)
    assert storm.tick(605) is None
    assert storm.waves_before(604) == 0


def test_a_repeated_boot_storm_drops_every_connection_at_each_period() -> None:
    storm = parse_schedule("boot-storm:users=100,within=0,hold=10m,every=2m")
    assert storm.tick(0) == Tick(100, 100.0)  # within 0 s: all in the first second
    assert storm.wave_share == 1.0
    assert [storm.waves_before(t) for t in (119, 120, 239, 240, 599, 700)] == [0, 1, 1, 2, 4, 4]


def test_soak_holds_for_hours_with_periodic_reconnect_waves_after_the_ramp() -> None:
    soak = parse_schedule("soak:users=5000,ramp=10m,hold=8h,every=30m,share=0.1")
    assert soak == Soak(users=5000, ramp=600.0, hold=28800.0, every=1800.0, share=0.1)
    assert soak.tick(0) == Tick(5000, 5000 / 600)
    assert soak.tick(600 + 28800 - 1) == Tick(5000, 5000 / 600)
    assert soak.tick(600 + 28800) is None
    assert soak.wave_share == 0.1
    assert soak.waves_before(600 + 1799) == 0
    assert soak.waves_before(600 + 1800) == 1
    assert soak.waves_before(600 + 3 * 1800 + 5) == 3
    assert soak.waves_before(10**9) == 15  # 16 would fall at the very end of the hold


def test_users_may_come_from_defaults_such_as_the_scenarios_fleet_size() -> None:
    ramp = parse_schedule("ramp:ramp=10", defaults={"users": "40"})
    assert ramp.tick(0) == Tick(40, 4.0)
    explicit = parse_schedule("ramp:users=8,ramp=4", defaults={"users": "40"})
    assert explicit.tick(0) == Tick(8, 2.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sine:users=5", "unknown fleet shape 'sine'"),
        ("ramp:ramp=10", "ramp: users is required"),
        ("ramp:users=10,speed=3", "unknown key 'speed'"),
        ("ramp:users=ten", "users: expected a whole number"),
        ("soak:users=1,share=2", "share: expected a share between 0 and 1"),
        ("steps:sizes=,hold=5", "expected fleet sizes"),
        ("ramp:users=10,hold=soon", "hold: expected a duration"),
        ("ramp:users", "expected key=value"),
    ],
)
def test_a_bad_shape_is_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(spec)


def test_durations_take_seconds_minutes_and_hours() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "10m", "1.5h", " 2h ")] == [
        90.0,
        90.0,
        600.0,
        5400.0,
        7200.0,
    ]


def test_the_locust_shape_follows_its_schedule_and_sends_each_wave_once() -> None:
    done = run_python("tests.loadtest.shape_probe", timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout)
    soak = probe["soak"]
    assert [tuple(tick) if tick else None for _, tick, _ in soak["ticks"]] == [(50, 5.0)] * 7 + [
        None
    ]
    # waves after the 10 s ramp, every 30 s: at 40, 70 and 100 (the hold ends at 110)
    assert [sent for _, _, sent in soak["ticks"]] == [0, 0, 0, 1, 1, 2, 3, 3]
    assert soak["messages"][0] == [probe["drop_message"], {"share": 0.2}]
    steps = probe["steps"]
    assert [tick for _, tick, _ in steps["ticks"]][:4] == [[5, 5.0], [5, 5.0], [10, 5.0], None]
    assert steps["messages"] == []
