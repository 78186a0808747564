"""The capacity search against a model of a CSMS of known capacity (tests/capacity/model.py),
under a clock that advances at once: the exact sizes it tries, when it recovers, what it
waits for, and the verdict it comes to."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from emulator.capacity import (
    CPU_LIMIT,
    CapacitySearch,
    LiveFleet,
    SearchSettings,
    Step,
    Verdict,
    drained,
    generator_judgement,
    run_search,
)
from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import parse_scenario
from emulator.metrics.slo import SloResult, evaluate, parse_slo
from emulator.metrics.stats import Direction, RunStats
from tests.capacity.model import ON_TIME, InstantClock, ModelFleet

P95 = [parse_slo("*:p95<300ms")]


def judge(window: RunStats) -> Sequence[SloResult]:
    return evaluate(P95, window).results


@dataclass
class Searched:
    verdict: Verdict
    search: CapacitySearch
    fleet: ModelFleet
    clock: InstantClock
    phases: list[tuple[float, str]]  # (the clock's time, the phase's line)

    def outline(self) -> list[str]:
        """The phases in short: ``resize 0->20``, ``unpaced 20`` (a growth whose backlog
        stopped falling: the rest joined at the ramp rate), ``capped 20`` (a growth paced
        for as long as it may be: the rest joined at the ramp rate), ``stall 20`` (a settle that
        ended without progress), ``hold 20``, ``cut 20`` (a hold ended early), ``recover 160``,
        ``recovered 160``."""
        short = []
        for _, text in self.phases:
            size = int(text.split(" ")[0].replace(",", ""))
            if (grown := re.search(r"resizing from ([\d,]+)", text)) is not None:
                short.append(f"resize {grown[1].replace(',', '')}->{size}")
            elif "holding" in text:
                short.append(f"hold {size}")
            elif "hold ended" in text:
                short.append(f"cut {size}")
            elif "at the CSMS's pace" in text:
                short.append(f"capped {size}")
            elif "join at the ramp rate" in text:
                short.append(f"unpaced {size}")
            elif "has not fallen" in text:
                short.append(f"stall {size}")
            elif "recovered in" in text or "still waiting" in text:
                short.append(f"recovered {size}")
            else:
                assert "recovering" in text, text
                short.append(f"recover {size}")
        return short

    def at(self, phase: str) -> list[float]:
        """The times of the phases whose short form is ``phase``."""
        return [
            t for (t, _), short in zip(self.phases, self.outline(), strict=True) if short == phase
        ]


def search(settings: SearchSettings, *, cpu_share: float = 0.2, **model: Any) -> Searched:
    clock = InstantClock(cpu_share=cpu_share)
    stats = RunStats(clock=clock.now)
    fleet = ModelFleet(clock=clock, stats=stats, **model)
    phases: list[tuple[float, str]] = []
    capacity_search = CapacitySearch(
        fleet=fleet,
        stats=stats,
        judge=judge,
        settings=settings,
        on_phase=lambda text: phases.append((clock.now(), text)),
        clock=clock,
    )
    verdict = asyncio.run(capacity_search.run())
    return Searched(verdict, capacity_search, fleet, clock, phases)


def sizes(steps: Sequence[Step]) -> list[tuple[int, bool]]:
    return [(s.chargers, s.passed) for s in steps]


def test_the_search_grows_until_a_step_fails_then_bisects_recovering_after_each_failure() -> None:
    done = search(SearchSettings(start=20, growth=2.0, hold=10.0), capacity=270)
    assert sizes(done.search.steps) == [
        (20, True),
        (40, True),
        (80, True),
        (160, True),
        (320, False),
        (240, True),
        (280, False),
        (260, True),
    ]
    # After each failing step the fleet goes back to the last passing size first; after a
    # passing one the next size is tried from there.  Past the capacity (320, 280) the
    # CSMS answers only some of the boots: after two holds of that the rest join at once,
    # and the settle ends after 10 s without a new low of the backlog.
    assert done.outline() == [
        "resize 0->20", "hold 20", "resize 20->40", "hold 40", "resize 40->80", "hold 80",
        "resize 80->160", "hold 160",
        "resize 160->320", "capped 320", "stall 320", "hold 320",
        "recover 160", "recovered 160", "resize 160->240", "hold 240",
        "resize 240->280", "capped 280", "stall 280", "hold 280",
        "recover 240", "recovered 240", "resize 240->260", "hold 260",
    ]  # fmt: skip
    verdict = done.verdict
    assert (verdict.capacity, verdict.limited_by) == (260, "slo")
    assert verdict.deciding is done.search.steps[6] and verdict.steps == done.search.steps
    assert verdict.sentence() == (
        "Your CSMS held 260 chargers; at 280 chargers: *:p95<300ms was 1,008 ms."
    )
    assert done.fleet.wallboxes() == 260
    for step in done.search.steps:
        # Each step is judged over its hold only: its boots are not in it.
        assert step.window.elapsed == pytest.approx(10.0)
        assert (Direction.CP_TO_CSMS, "BootNotification") not in step.window.actions
        assert step.calls_per_second == pytest.approx(0.25 * step.chargers, abs=0.1)
        assert step.connected == step.chargers
        assert not step.generator_limited
        assert step.generator["cpu_share"] == pytest.approx(0.2)
        assert step.generator["lateness_p99_ms"] == pytest.approx(ON_TIME * 1000, rel=0.05)


def test_a_step_over_the_generators_limits_makes_the_verdict_a_lower_bound() -> None:
    # The CSMS would hold 10,000; the generator sends late past 200 wallboxes.
    done = search(
        SearchSettings(start=20, growth=2.0, hold=10.0), capacity=10_000, generator_limit=200
    )
    assert sizes(done.search.steps) == [
        (20, True),
        (40, True),
        (80, True),
        (160, True),
        (320, False),
        (240, False),
        (200, True),
        (220, False),
    ]
    assert [s for s in done.outline() if s.startswith("recover ")] == [
        "recover 160",
        "recover 160",
    ]
    verdict = done.verdict
    assert (verdict.capacity, verdict.limited_by) == (200, "generator")
    assert [s.generator_limited for s in done.search.steps] == [False] * 4 + [
        True,
        True,
        False,
        True,
    ]
    assert verdict.sentence() == (
        "The fleet held 200 chargers; at 220 chargers the load generator itself was over its "
        "limits (p99 send lateness 400 ms, p99 loop lag 1 ms, CPU 20% of a core), so this is "
        "a lower bound for the CSMS: add workers or processes and search again."
    )


def test_a_generator_using_most_of_a_core_during_the_hold_is_over_its_limits() -> None:
    # The clock's CPU time runs at 95 % of the time passed: each hold measures that share.
    done = search(SearchSettings(start=20, growth=2.0, hold=10.0), capacity=30, cpu_share=0.95)
    assert sizes(done.search.steps) == [
        (20, True),
        (40, False),
        (30, True),
        (35, False),
        (32, False),
    ]
    assert all(s.generator["cpu_share"] == pytest.approx(0.95) for s in done.search.steps)
    assert all(s.generator_limited for s in done.search.steps)
    verdict = done.verdict
    assert (verdict.capacity, verdict.limited_by) == (30, "generator")
    assert "CPU 95% of a core" in verdict.sentence()


def test_a_search_that_reaches_max_says_the_capacity_is_at_least_that() -> None:
    done = search(SearchSettings(start=20, growth=2.0, max=100, hold=10.0), capacity=270)
    assert sizes(done.search.steps) == [(20, True), (40, True), (80, True), (100, True)]
    assert "recover" not in " ".join(done.outline())
    verdict = done.verdict
    assert (verdict.capacity, verdict.limited_by, verdict.deciding) == (100, "max", None)
    assert verdict.sentence() == (
        "Your CSMS held 100 chargers, the most this search was allowed to try (--max): its "
        "capacity is at least that."
    )


def test_a_first_step_that_fails_ends_the_search_without_a_capacity() -> None:
    done = search(SearchSettings(start=300, hold=10.0), capacity=270)
    assert sizes(done.search.steps) == [(300, False)]
    assert done.outline() == ["resize 0->300", "capped 300", "stall 300", "hold 300"]
    assert done.verdict.capacity is None and done.verdict.limited_by == "slo"
    assert done.verdict.sentence() == (
        "Your CSMS failed its SLOs already at 300 chargers: *:p95<300ms was 1,008 ms."
    )


def test_the_hold_begins_at_the_first_look_after_the_boots_burst_has_drained() -> None:
    # Each boot queues 3 messages; the CSMS works them off at 0.25 x (270 - senders) a
    # second: the last boots leave a burst the settle waits for.
    done = search(SearchSettings(start=100, max=100, hold=10.0), capacity=270, burst=3)
    (began,) = done.at("hold 100")
    depth = dict(done.fleet.history)
    looks = sorted(t for t in depth if t <= began)
    assert depth[began] <= 100 // 20 < depth[looks[-2]]  # drained now, not 0.1 s before
    assert looks[-1] - looks[-2] == pytest.approx(0.1)
    assert max(depth.values()) > 100 // 20  # there was a burst to wait for
    assert done.verdict.limited_by == "max" and done.search.steps[0].passed


def test_wallboxes_join_no_faster_than_the_csms_answers_the_ones_before() -> None:
    # Each boot queues 10 messages; the CSMS works them off at 0.25 x (270 - senders) a
    # second (~50 at first): at the ramp's 50/s the boots would queue ~500 messages.
    done = search(SearchSettings(start=100, max=100, hold=10.0), capacity=270, burst=10)
    joined = done.fleet.joined
    assert [number for _, number, _ in joined] == list(range(1, 101))
    for _, number, depth in joined:
        assert depth < 100 // 20, (number, depth)  # under the step's drained level
    # At most one boot in flight per 20 wallboxes, each queueing 10: never the ~500 that
    # joining at the ramp's rate would queue.
    assert max(depth for _, depth in done.fleet.history) <= (100 // 20) * (1 + 10)
    # Paced by the answers, not by the ramp: 100 joins took far longer than 2 s.
    took = joined[-1][0] - joined[0][0]
    assert took > 5 * 100 / 50
    assert "unpaced 100" not in done.outline() and done.search.steps[0].passed
    assert done.verdict.spent["ramping"] >= took


def test_a_backlog_that_never_drains_is_waited_for_while_it_falls_and_ten_holds_in_recovery() -> (
    None
):
    # 50 messages are never answered: the fleet is never drained at these sizes.
    hold = 5.0
    done = search(SearchSettings(start=20, growth=2.0, hold=hold), capacity=30, stuck=50)
    assert sizes(done.search.steps) == [
        (20, True),
        (40, False),
        (30, True),
        (35, False),
        (32, False),
    ]
    outline = done.outline()
    times = [t for t, _ in done.phases]
    for i, phase in enumerate(outline):
        if phase.startswith("hold"):
            # Each growth waited for room under the drained level while the backlog fell,
            # at most two holds, and said why it stopped waiting (no new low for 10 s, or
            # the two holds); the rest joined at 50/s.  A settle after a capped growth
            # ends after 10 s without a new low; an unpaced one is held at once.
            resized = max(j for j in range(i) if outline[j].startswith("resize"))
            why = outline[resized + 1].split(" ")[0]
            assert why in ("unpaced", "capped"), outline
            assert times[resized + 1] - times[resized] == pytest.approx(2 * hold, abs=0.3)
            settle = 2 * hold if why == "capped" else 0.0
            waited = times[i] - times[resized + 1]
            assert settle <= waited <= settle + 40 / 50 + 0.1 + 0.3, (phase, waited)
        if phase.startswith("recover "):
            # The next phase comes after ten holds (and the closes, 0.5 s, before them).
            assert outline[i + 1] == phase.replace("recover", "recovered")
            waited = times[i + 1] - times[i]
            assert 10 * hold <= waited <= 10 * hold + 0.5 + 0.2, (phase, waited)
    assert [s for s in outline if s.startswith("recover ")] == ["recover 20", "recover 30"]
    assert "50 messages still waiting after" in done.phases[outline.index("recovered 20")][1]
    assert done.verdict.capacity == 30
    # Where the time went, as the verdict JSON says: five holds, two recoveries of ten
    # holds each, five growths of two holds, the settles after the capped ones.
    spent = done.verdict.spent
    assert spent["holding"] == pytest.approx(5 * hold, abs=0.1)
    capped = sum(o.startswith("capped") for o in outline)
    assert capped >= 1 and any(o.startswith("unpaced") for o in outline)
    assert spent["settling"] == pytest.approx(capped * 2 * hold, abs=0.5)
    assert spent["recovering"] == pytest.approx(2 * 10 * hold, abs=2.0)
    assert spent["ramping"] >= 5 * 2 * hold
    assert sum(spent.values()) == pytest.approx(done.clock.now(), abs=0.5)


def test_past_the_capacity_the_settle_and_the_hold_end_once_the_backlog_stops_falling() -> None:
    # A hold of 60 s: a settle without a new low of the backlog for 20 s (a third of the
    # hold) ends; so does a hold that has failed its SLOs by then.  Below the capacity
    # every hold lasts its 60 s.
    hold = 60.0
    done = search(SearchSettings(start=200, growth=2.0, hold=hold), capacity=270)
    assert sizes(done.search.steps)[:2] == [(200, True), (400, False)]
    outline = done.outline()
    assert outline[:6] == [
        "resize 0->200", "hold 200", "resize 200->400", "unpaced 400", "hold 400", "cut 400",
    ]  # fmt: skip
    times = [t for t, _ in done.phases]
    # The wallboxes joined as the CSMS answered the ones before, up to its capacity (270);
    # the 271st waited 20 s (a third of the hold) for room that never came, and then the
    # other 130 joined at the ramp's 50/s; the step was held once they had booted (0.1 s),
    # without a settle: the growth had waited for the backlog already.
    joined = {number: t for t, number, _ in done.fleet.joined if t < times[4]}
    assert joined[271] - joined[270] == pytest.approx(20.0, abs=0.2)
    assert times[3] == pytest.approx(joined[271], abs=0.01)
    assert times[4] - times[3] == pytest.approx(129 / 50 + 0.1, abs=0.11)
    assert times[5] - times[4] == pytest.approx(20.0, abs=1.01)  # 20 s without a new low
    failing = done.search.steps[1]
    assert failing.window.elapsed == pytest.approx(20.0, abs=1.01)
    assert re.match(r"hold ended after 2[01] of 60 s: past the CSMS's capacity", failing.note)
    assert failing.to_json()["note"] == failing.note
    for step in done.search.steps:
        if step.passed:
            assert step.window.elapsed == pytest.approx(hold) and not step.note


def test_a_step_whose_wallboxes_do_not_all_boot_is_held_after_the_connect_timeout() -> None:
    done = search(
        SearchSettings(start=20, max=20, hold=10.0),
        capacity=270,
        accepts=15,
        burst=0,
        connect_timeout=30.0,
    )
    (step,) = done.search.steps
    assert step.chargers == 20 and step.connected == 15
    assert done.phases[-1][1] == "20 chargers: 15 booted, holding 10 s"
    # 30 s after the 20th wallbox was added the hold began (at the first look after the
    # timeout, every 0.1 s).
    added = done.fleet.joined[-1][0]
    held = done.at("hold 20")[0]
    assert 30.0 <= held - added <= 30.0 + 0.1 + 1e-9
    assert step.calls_per_second == pytest.approx(0.25 * 15, abs=0.1)


def test_run_search_serves_the_fleet_and_stops_it_after_the_verdict() -> None:
    clock = InstantClock()
    stats = RunStats(clock=clock.now)
    fleet = ModelFleet(clock=clock, stats=stats, capacity=270)
    capacity_search = CapacitySearch(
        fleet=fleet,
        stats=stats,
        judge=judge,
        settings=SearchSettings(start=10, max=10, hold=1.0),
        clock=clock,
    )
    assert not fleet.stopped
    verdict = asyncio.run(run_search(capacity_search))
    assert verdict.capacity == 10 and fleet.stopped


@pytest.mark.parametrize(
    ("lateness", "lag", "cpu", "limited"),
    [
        (0.2, 0.05, 0.5, False),
        (0.3, 0.05, 0.5, True),  # send lateness over 250 ms
        (0.2, 0.2, 0.5, True),  # loop lag over 100 ms
        (0.2, 0.05, CPU_LIMIT + 0.01, True),
        (math.nan, math.nan, None, False),  # nothing measured counts as 0
    ],
)
def test_the_generator_is_over_its_limits_by_lateness_loop_lag_or_cpu(
    lateness: float, lag: float, cpu: float | None, limited: bool
) -> None:
    figures, over = generator_judgement(
        lateness_p99=lateness, loop_lag_p99=lag, lateness_limit=0.25, lag_limit=0.1, cpu_share=cpu
    )
    assert over is limited
    assert ("cpu_share" in figures) is (cpu is not None)
    assert figures["lateness_limit_ms"] == 250.0 and figures["loop_lag_limit_ms"] == 100.0


@pytest.mark.parametrize(
    ("size", "busy", "settled"),
    [(20, 1, True), (20, 2, False), (100, 5, True), (100, 6, False), (1, 1, True)],
)
def test_a_fleet_has_drained_when_at_most_one_wallbox_in_20_is_busy(
    size: int, busy: int, settled: bool
) -> None:
    from tests.capacity.model import Gauges

    assert drained(Gauges(queue_depth=busy - busy // 2, in_flight=busy // 2), size) is settled


def test_a_live_fleet_adds_wallboxes_of_the_scenarios_mix_and_counts_them() -> None:
    scenario = parse_scenario(MIX, source="<mix>")
    fleet = Fleet(
        scenario=scenario, csms_url="ws://127.0.0.1:9/ocpp", chargers=0, seed=1, reporter=RunStats()
    )
    live = LiveFleet(fleet)
    for number in range(1, 5):
        live.add_wallbox(number)
    assert live.wallboxes() == 4 and live.booted() == 0  # not serving: nobody connected
    assert [d.wallbox.model.model for d in fleet.drivers] == ["A", "B", "A", "B"]
    live.remove_wallbox(4)  # not serving: it leaves at once
    assert live.wallboxes() == 3
    assert (live.ramp_per_second, live.connect_timeout, live.drain_seconds) == (25.0, 12.0, 3.0)
    assert live.health is fleet.health
    assert live.gauges() == fleet.gauges()


MIX = """
[scenario]
name = "mix"

[fleet]
chargers = 1
ramp_per_second = 25.0
connect_timeout = 12.0
shutdown_drain_seconds = 3.0

[[models]]
name = "a"
model = "A"
share = 0.5

[[models]]
name = "b"
model = "B"
share = 0.5
"""
