"""The steps verdict's logic, in this process with a hand-set clock (no Locust): windows cut
on a fleet process and placed on the judging process's clock, holds that take only the
windows inside them, each step judged over its hold, and the verdict over the steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from emulator.core.outcome import OK, TIMEOUT
from emulator.loadtest.steps import (
    FleetState,
    RowRecorder,
    StepJudge,
    WindowCollector,
    WindowCutter,
    steps_verdict,
    verdict_lines,
)
from emulator.metrics.slo import parse_slo
from emulator.metrics.stats import Direction, Histogram, RunStats, outcome_keys


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def window(
    seconds: float,
    *,
    meter_values: Sequence[float] = (),
    boots: int = 0,
    lateness: float | None = None,
) -> dict[str, Any]:
    """A worker's window as it arrives: ``seconds`` long, with these round trips."""
    clock = Clock(100.0)
    stats = RunStats(clock=clock)
    before = stats.snapshot()
    for latency in meter_values:
        stats.round_trip("MeterValues", latency, OK)
    for _ in range(boots):
        stats.round_trip("BootNotification", 0.01, OK)
    clock.now += seconds
    data: dict[str, Any] = {"v": 1, "stats": stats.snapshot().since(before).to_wire()}
    if lateness is not None:
        late = Histogram()
        for _ in range(100):
            late.record(lateness)
        data["late"] = late.to_wire()
    return data


SETTLED_10 = FleetState(chargers=10, booted=10, connected=10, queue_depth=0, in_flight=1)


def run_two_workers(
    judge: StepJudge,
    collector: WindowCollector,
    clock: Clock,
    *,
    until: float,
    fleet: Any,
    meter: Any,
    late: Any = lambda t, worker: None,
    boots: Any = lambda t: 0,
) -> None:
    """Advance the clock in half seconds to ``until``; each of two workers reports a 3-s
    window every 3 s (worker 1 half a second after worker 0); the judge polls."""
    while clock.now < until:
        clock.now = round(clock.now + 0.5, 3)
        t = clock.now
        for worker, phase in ((0, 0.0), (1, 0.5)):
            if (t - phase) % 3 == 0:
                collector.receive(
                    worker,
                    window(3.0, meter_values=meter(t), boots=boots(t), lateness=late(t, worker)),
                )
        judge.poll(t, fleet(t))


def test_each_step_is_judged_over_its_hold_and_the_verdict_is_the_largest_passing_size() -> None:
    clock = Clock()
    collector = WindowCollector(clock=clock)
    judged: list[tuple[int, int]] = []
    phases: list[str] = []
    judge = StepJudge(
        sizes=(10, 20, 40),
        hold=30.0,
        slos=[parse_slo("*:p95<100ms"), parse_slo("errors<1%")],
        collector=collector,
        on_step=lambda step, number: judged.append((number, step.chargers)),
        on_phase=phases.append,
    )

    def fleet(t: float) -> FleetState:
        if t < 8:  # step 1 is booting
            return FleetState(chargers=10, booted=min(10, int(t)), queue_depth=20)
        if t < 30:
            return SETTLED_10
        # step 2: never settles (a CSMS past its capacity keeps a queue)
        return FleetState(chargers=20, booted=20, queue_depth=30, in_flight=20)

    def meter(t: float) -> list[float]:
        return [0.02] * 5 if t <= 30 else [0.5] * 10

    # Boots arrive in the windows of the first 8 s only: the hold must not see them.
    run_two_workers(
        judge, collector, clock, until=60.0, fleet=fleet, meter=meter, boots=lambda t: 5 * (t < 9)
    )
    judge.finish(60.0, fleet(60.0))
    assert judged == [(1, 10), (2, 20)]
    first, second = judge.steps
    # Step 1's hold opened when the fleet had settled (at 8 s) and took the windows that
    # began at or after that: from worker 0 those that arrived at 12..30 s (seven), from
    # worker 1 at 12.5..27.5 s (six); its length is the mean of the time they cover.
    assert first.passed and first.connected == 10 and not first.note
    assert (Direction.CP_TO_CSMS, "BootNotification") not in first.window.actions
    assert first.window.actions[Direction.CP_TO_CSMS, "MeterValues"].count == (7 + 6) * 5
    assert first.window.elapsed == pytest.approx((21.0 + 18.0) / 2)
    assert first.calls_per_second == pytest.approx(65 / 19.5)
    # Step 2 never settled: judged over its second half, and says so.
    assert not second.passed
    assert second.note.startswith("the boots' burst had not drained by the middle")
    assert [r.slo.text for r in second.violations] == ["*:p95<100ms"]
    assert any("step 2/3 (20 wallboxes): 20 booted, holding 15 s" in p for p in phases)
    # Step 3 had just begun when the test stopped.
    assert judge.unjudged == [
        "step 3/3 (40 wallboxes): not judged, the test stopped 30 s before the end of its hold"
    ]
    verdict = judge.verdict()
    assert verdict is not None
    assert (verdict.capacity, verdict.limited_by) == (10, "slo")
    assert verdict.deciding is second
    result = verdict.to_json(scenario="s", seed=1, start_time="12:00")
    assert [s["chargers"] for s in result["steps"]] == [10, 20]
    assert result["violations"][0]["slo"] == "*:p95<100ms"
    assert result["steps"][1]["note"].startswith("the boots' burst")
    assert (
        verdict.sentence() == "Your CSMS held 10 chargers; at 20 chargers: *:p95<100ms was 500 ms."
    )
    lines = verdict_lines(verdict, unjudged=judge.unjudged)
    assert lines[2].split() == ["10", "10", "19.5", "s", "3.3", "PASS"]
    assert lines[3].split()[5:] == ["FAIL", "*:p95<100ms", "was", "500", "ms"]
    assert lines[-2:] == [*judge.unjudged, f"Capacity verdict: {verdict.sentence()}"]


def test_a_generator_over_its_limits_names_the_generator() -> None:
    clock = Clock()
    collector = WindowCollector(clock=clock)
    judge = StepJudge(
        sizes=(10, 20), hold=20.0, slos=[parse_slo("*:p95<100ms")], collector=collector
    )
    # Worker 0 is late by 400 ms in step 2 (limit 250 ms); worker 1 keeps up: the worst
    # worker counts.
    run_two_workers(
        judge,
        collector,
        clock,
        until=40.0,
        fleet=lambda t: SETTLED_10 if t < 20 else FleetState(chargers=20, booted=20),
        meter=lambda t: [0.02] * 5 if t <= 20 else [0.3] * 5,
        late=lambda t, worker: 0.4 if t > 20 and worker == 0 else 0.001,
    )
    judge.finish(40.0, FleetState())
    verdict = judge.verdict()
    assert verdict is not None and verdict.limited_by == "generator"
    failing = verdict.deciding
    assert failing is not None and failing.generator_limited
    assert failing.generator["lateness_p99_ms"] == pytest.approx(400, rel=0.01)
    assert not verdict.steps[0].generator_limited
    assert "load generator itself was over its limits" in verdict.sentence()


def test_a_step_cut_short_by_the_stop_is_not_judged() -> None:
    clock = Clock()
    collector = WindowCollector(clock=clock)
    judge = StepJudge(sizes=(10, 20), hold=20.0, slos=[parse_slo("*:p95<1s")], collector=collector)
    run_two_workers(
        judge, collector, clock, until=31.0, fleet=lambda t: SETTLED_10, meter=lambda t: [0.02]
    )
    judge.finish(31.0, SETTLED_10)
    assert [s.chargers for s in judge.steps] == [10]
    assert judge.unjudged == [
        "step 2/2 (20 wallboxes): not judged, the test stopped 9 s before the end of its hold"
    ]
    verdict = judge.verdict()
    assert verdict is not None and verdict.limited_by == "max" and verdict.capacity == 10
    assert "the largest step judged" in verdict.sentence()


def test_the_verdict_over_steps_in_any_order() -> None:
    clock = Clock()
    collector = WindowCollector(clock=clock)
    judge = StepJudge(sizes=(1,), hold=1.0, slos=[parse_slo("*:p95<1s")], collector=collector)
    assert judge.verdict() is None

    def step(chargers: int, passed: bool, generator: bool = False) -> Any:
        from emulator.capacity import Step
        from emulator.metrics.slo import SloResult

        slo = parse_slo("*:p95<1s")
        return Step(
            chargers=chargers,
            connected=chargers,
            window=RunStats(),
            judgements=[SloResult(slo=slo, value=0.5 if passed else 2.0, passed=passed, detail="")],
            generator={"lateness_p99_ms": 1.0, "loop_lag_p99_ms": 1.0},
            generator_limited=generator,
        )

    # Sizes are the user's: a pass above the smallest failure is not claimed.
    verdict = steps_verdict([step(400, False), step(100, True), step(200, True), step(800, True)])
    assert verdict is not None and (verdict.capacity, verdict.limited_by) == (200, "slo")
    assert verdict.deciding is not None and verdict.deciding.chargers == 400
    first_fails = steps_verdict([step(100, False), step(200, True)])
    assert first_fails is not None and first_fails.capacity is None
    assert first_fails.sentence().startswith("Your CSMS failed its SLOs already at 100 chargers")
    every = steps_verdict([step(100, True), step(300, True), step(200, True)])
    assert every is not None and (every.capacity, every.limited_by) == (300, "max")
    assert "the largest size of the steps shape" in every.sentence()


def test_the_cutter_cuts_what_was_measured_between_cuts_and_the_generators_share() -> None:
    clock = Clock(10.0)
    stats = RunStats(clock=clock)
    copies: list[Any] = [None]
    cutter = WindowCutter(stats, lambda: copies[0])
    lateness, lag = Histogram(), Histogram()
    stats.round_trip("Heartbeat", 0.01, OK)
    lateness.record(0.002)
    copies[0] = (1, lateness.copy(), lag.copy())
    clock.now += 1.0
    first = cutter.cut()
    stats.round_trip("Heartbeat", 0.02, OK)
    stats.round_trip("Heartbeat", 0.03, TIMEOUT)
    lateness.record(0.004)
    copies[0] = (1, lateness.copy(), lag.copy())
    clock.now += 2.0
    second = cutter.cut()
    # A new test's fleet (generation 2): its histograms start again from nothing.
    fresh = Histogram()
    fresh.record(0.3)
    copies[0] = (2, fresh, Histogram())
    third = cutter.cut()

    collector = WindowCollector(clock=Clock(500.0))
    one, two, three = (collector.receive(0, data) for data in (first, second, third))
    assert one.seconds == pytest.approx(1.0) and two.seconds == pytest.approx(2.0)
    heartbeat = (Direction.CP_TO_CSMS, "Heartbeat")
    assert one.stats.actions[heartbeat].count == 1
    assert outcome_keys(two.stats.actions[heartbeat].outcomes) == {"ok": 1, "timeout": 1}
    assert heartbeat not in three.stats.actions
    assert (one.lateness.count, two.lateness.count, three.lateness.count) == (1, 1, 1)
    assert two.lateness.max == pytest.approx(0.004, rel=0.02)
    assert three.lateness.max == pytest.approx(0.3)
    with pytest.raises(ValueError):
        collector.receive(0, {"v": 99, "stats": {"t": 1.0}})


def test_rows_take_every_window_that_arrived_and_add_up_to_the_run() -> None:
    clock = Clock()
    collector = WindowCollector(clock=clock)
    rows = RowRecorder(collector, interval=10.0, wall_clock=lambda: 1_700_000_000.0)
    hold = collector.open()  # a hold opened at 0 too: it takes only windows begun since
    sent = 0
    while clock.now < 25.0:
        clock.now += 1.0
        collector.receive(int(clock.now) % 2, window(1.0, meter_values=[0.01] * 3))
        sent += 3
        if rows.due():
            rows.sample(FleetState(chargers=7, connected=6, charging=5), {"loop_lag_p99": 0.002})
    rows.sample(FleetState(chargers=7), None, final=True)
    assert [(r.start_s, r.end_s, r.partial) for r in rows.rows] == [
        (0.0, 10.0, False),
        (10.0, 20.0, False),
        (20.0, 25.0, True),
    ]
    assert sum(r.calls for r in rows.rows) == sent == 75
    assert rows.rows[0].chargers == 7 and rows.rows[0].charging == 5
    assert rows.rows[0].generator == {"loop_lag_p99_ms": 2.0}
    meter = rows.rows[0].action("MeterValues")
    assert meter is not None and meter.p50_ms == pytest.approx(10.0, rel=0.01)
    assert hold.stats.actions[Direction.CP_TO_CSMS, "MeterValues"].count == 75


@pytest.mark.parametrize(
    ("state", "size", "settled"),
    [
        (FleetState(chargers=20, booted=20, queue_depth=1, in_flight=0), 20, True),
        (FleetState(chargers=20, booted=20, queue_depth=1, in_flight=1), 20, False),
        (FleetState(chargers=100, booted=100, queue_depth=3, in_flight=2), 100, True),
        (FleetState(chargers=100, booted=99, queue_depth=0, in_flight=0), 100, False),
        (FleetState(chargers=120, booted=120, queue_depth=0, in_flight=0), 100, False),
    ],
)
def test_a_step_settles_when_booted_and_at_most_one_wallbox_in_20_is_busy(
    state: FleetState, size: int, settled: bool
) -> None:
    assert state.settled(size) is settled


def test_the_fleet_state_sums_the_workers_snapshots() -> None:
    state = FleetState.of(
        [
            {"chargers": 3, "booted": 2, "connected": 3, "queue_depth": 4, "in_flight": 1},
            {"chargers": 5, "booted": 5, "connected": 5, "charging": 2},
        ]
    )
    assert state == FleetState(
        chargers=8, booted=7, connected=8, charging=2, queue_depth=4, in_flight=1
    )
