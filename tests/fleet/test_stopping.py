"""A stopping fleet is waited for while it makes progress."""

from __future__ import annotations

import asyncio

import pytest

from emulator.fleet.stopping import StopPacer, StopProgress


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

    def __init__(self, name: int, log: list[tuple[str, int]]) -> None:
        self.name = name
        self.stopping = False
        self.log = log

    def stop(self) -> None:
        self.stopping = True
        self.log.append(("asked", self.name))
        asyncio.get_running_loop().call_soon(self.log.append, ("worked", self.name))


async def paced(
    drivers: int, *, batch: int, extra: list[int] | None = None
) -> tuple[StopPacer, list[tuple[str, int]]]:
    log: list[tuple[str, int]] = []
    pacer = StopPacer(batch=batch)
    task = asyncio.ensure_future(pacer.run())
    fakes = [FakeDriver(i, log) for i in range(drivers)]
    for fake in fakes:
        pacer.stop(fake)
    for i in extra or []:
        pacer.stop(fakes[i])  # queued twice
    pacer.close()
    await asyncio.wait_for(task, timeout=5)
    return pacer, log


def test_every_queued_wallbox_is_asked_once_and_the_pacer_ends_when_closed() -> None:
    pacer, log = asyncio.run(paced(1000, batch=32, extra=[0, 5, 999]))
    asked = [name for what, name in log if what == "asked"]
    assert sorted(asked) == list(range(1000))  # once each, duplicates skipped
    assert pacer.turns == 32  # ceil(1000 / 32): the duplicates did not use up a batch
    assert pacer.pending == 0


def test_the_next_batch_waits_until_the_last_batchs_work_has_run() -> None:
    _, log = asyncio.run(paced(100, batch=10))
    worked: set[int] = set()
    for what, name in log:
        if what == "worked":
            worked.add(name)
        else:  # asking wallbox `name`: every earlier batch's work is done
            assert worked >= set(range(name - name % 10)), name


def test_a_batch_is_at_least_one() -> None:
    with pytest.raises(ValueError):
        StopPacer(batch=0)
