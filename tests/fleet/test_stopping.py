"""A stopping fleet is waited for while it makes progress."""

from __future__ import annotations

import asyncio

import pytest

from emulator.fleet.stopping import (
    CHARGING_STOP_WORK,
    STOP_BATCH,
    STOP_BUDGET,
    StopPacer,
    StopProgress,
)


def test_a_stop_that_keeps_moving_is_waited_for_until_the_cap() -> None:
    progress = StopProgress(stall=20, cap=120, mark=(0, 0, 0), now=0.0)
    for second in range(1, 121):  # a frame every second, for two minutes
        assert progress.give_up((second, 0, 0), float(second)) == ""
    assert progress.give_up((121, 0, 0), 120.5) == "still stopping after 120 s"


def test_a_stop_that_stalls_is_given_up_after_the_stall_time() -> None:
    progress = StopProgress(stall=20, cap=120, mark=(0, 0, 0), now=0.0)
    assert progress.give_up((5, 1, 0), 10.0) == ""  # moved at 10 s
    assert progress.give_up((5, 1, 0), 30.0) == ""  # 20 s since: not more
    assert progress.give_up((5, 1, 0), 30.1) == "nothing moved for 20 s"


def test_any_part_of_the_mark_counts_as_progress() -> None:
    progress = StopProgress(stall=5, cap=120, mark=(3, 3, 3), now=0.0)
    assert progress.give_up((3, 3, 4), 4.0) == ""  # one more websocket closed
    assert progress.give_up((3, 3, 4), 8.0) == ""
    assert progress.give_up((3, 3, 4), 9.5) == "nothing moved for 5 s"


@pytest.mark.parametrize(("stall", "cap"), [(0, 10), (10, 0), (-1, 10)])
def test_times_must_be_positive(stall: float, cap: float) -> None:
    with pytest.raises(ValueError):
        StopProgress(stall=stall, cap=cap, mark=0, now=0.0)


class FakeDriver:
    """Stopping schedules the work a real stop makes ready (its first frame) on the loop."""

    def __init__(self, name: int, log: list[tuple[str, int]], work: int = 1) -> None:
        self.name = name
        self.work = work
        self.stopping = False
        self.log = log

    def stop(self) -> None:
        self.stopping = True
        self.log.append(("asked", self.name))
        asyncio.get_running_loop().call_soon(self.log.append, ("worked", self.name))


def work_of(driver: FakeDriver) -> int:
    return driver.work


async def paced(
    drivers: int | list[int],
    *,
    budget: int,
    extra: list[int] | None = None,
) -> tuple[StopPacer[FakeDriver], list[tuple[str, int]]]:
    """Queue fakes (``drivers``: how many of work 1, or the work of each) and close."""
    log: list[tuple[str, int]] = []
    pacer = StopPacer[FakeDriver](budget, work=work_of)
    task = asyncio.ensure_future(pacer.run())
    works = [1] * drivers if isinstance(drivers, int) else drivers
    fakes = [FakeDriver(i, log, work) for i, work in enumerate(works)]
    for fake in fakes:
        pacer.stop(fake)
    for i in extra or []:
        pacer.stop(fakes[i])  # queued twice
    pacer.close()
    await asyncio.wait_for(task, timeout=5)
    return pacer, log


def asked_by_turn(log: list[tuple[str, int]]) -> list[list[int]]:
    """The wallboxes each turn asked: a turn's asks come before the work they made."""
    turns: list[list[int]] = []
    working = True
    for what, name in log:
        if what == "asked":
            if working:
                turns.append([])
            turns[-1].append(name)
        working = what == "worked"
    return turns


def test_every_queued_wallbox_is_asked_once_and_the_pacer_ends_when_closed() -> None:
    pacer, log = asyncio.run(paced(1000, budget=32, extra=[0, 5, 999]))
    asked = [name for what, name in log if what == "asked"]
    assert sorted(asked) == list(range(1000))  # once each, duplicates skipped
    assert pacer.turns == 32  # ceil(1000 / 32): the duplicates did not use up a batch
    assert pacer.asked == 1000
    assert pacer.pending == 0


def test_the_next_batch_waits_until_the_last_batchs_work_has_run() -> None:
    _, log = asyncio.run(paced(100, budget=10))
    worked: set[int] = set()
    for what, name in log:
        if what == "worked":
            worked.add(name)
        else:  # asking wallbox `name`: every earlier batch's work is done
            assert worked >= set(range(name - name % 10)), name


def test_a_turn_asks_wallboxes_in_queue_order_until_their_work_fills_the_budget() -> None:
    # Work 1, 1, 13, 1, 13, 13, 1 with a budget of 14: a turn stops once it reached 14.
    _, log = asyncio.run(paced([1, 1, 13, 1, 13, 13, 1], budget=14))
    assert asked_by_turn(log) == [[0, 1, 2], [3, 4], [5, 6]]


def test_a_wallbox_with_more_work_than_the_budget_is_asked_alone() -> None:
    _, log = asyncio.run(paced([50, 50, 1], budget=10))
    assert asked_by_turn(log) == [[0], [1], [2]]


def test_idle_wallboxes_stop_thirteen_times_faster_than_charging_ones() -> None:
    idle, _ = asyncio.run(paced(10_000, budget=STOP_BUDGET))
    charging, _ = asyncio.run(paced([CHARGING_STOP_WORK] * 10_000, budget=STOP_BUDGET))
    assert charging.turns == -(-10_000 // STOP_BATCH)  # 32 a turn, the pace measured
    assert idle.turns == -(-10_000 // STOP_BUDGET)  # 416 a turn
    assert charging.turns >= 13 * (idle.turns - 1)


def test_the_budget_is_at_least_one() -> None:
    with pytest.raises(ValueError):
        StopPacer(0)
