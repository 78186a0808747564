"""The fleet processes' garbage-collection policy (emulator.fleet.gc_policy)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from emulator.fleet.gc_policy import THRESHOLDS, keep_collections_short


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.collect()


def test_survivors_are_frozen_and_short_lived_cycles_are_still_collected(
    restore_gc: None,
) -> None:
    async def main() -> tuple[int, int, bool]:
        policy = asyncio.create_task(keep_collections_short(interval=0.01))
        frozen_before = gc.get_freeze_count()
        keep = [Node() for _ in range(1_000)]  # alive: frozen at the next tick
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle that dies within a tick
        dead = weakref.ref(a)
        del a, b
        await asyncio.sleep(0.05)
        policy.cancel()
        assert keep
        return frozen_before, gc.get_freeze_count(), dead() is None

    frozen_before, frozen_after, collected = asyncio.run(main())
    assert frozen_after >= frozen_before + 1_000
    assert collected  # the young collection before each freeze reclaimed it
    assert gc.get_threshold() == THRESHOLDS
