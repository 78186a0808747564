"""Charger ids per worker and the model mix per slot (no Locust needed)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from emulator.fleet.model_mix import ModelSequence
from emulator.fleet.runner import Fleet
from emulator.loadtest.partition import (
    SlotAllocator,
    charger_number,
    worker_range,
)
from emulator.metrics import NullReporter
from tests.loadtest.support import scenario


def test_workers_get_disjoint_consecutive_ranges_of_charger_numbers() -> None:
    ranges = [worker_range(w, 1000) for w in range(5)]
    assert ranges[0] == range(1, 1001)
    assert ranges[3] == range(3001, 4001)
    seen: set[int] = set()
    for r in ranges:
        assert seen.isdisjoint(r)
        seen.update(r)
    assert seen == set(range(1, 5001))


def test_a_slot_beyond_the_range_of_its_worker_is_refused() -> None:
    assert charger_number(2, 0, 100) == 201
    assert charger_number(2, 99, 100) == 300
    with pytest.raises(ValueError, match="ids-per-worker"):
        charger_number(2, 100, 100)


def test_the_lowest_free_slot_is_handed_out_first() -> None:
    slots = SlotAllocator(limit=5)
    assert [slots.acquire() for _ in range(4)] == [0, 1, 2, 3]
    slots.release(2)
    slots.release(0)
    assert slots.acquire() == 0
    assert slots.acquire() == 2
    assert slots.acquire() == 4
    with pytest.raises(ValueError):
        slots.acquire()
    assert len(slots) == 5


def test_every_prefix_of_slots_holds_the_model_mix_within_one_charger() -> None:
    mix = ModelSequence(scenario())  # shares 3 : 1
    counts: Counter[int] = Counter()
    for slot in range(400):
        counts[mix.index_at(slot)] += 1
        n = slot + 1
        assert abs(counts[0] - 0.75 * n) <= 1
        assert abs(counts[1] - 0.25 * n) <= 1


def test_each_worker_gets_its_share_so_the_whole_fleet_does_too() -> None:
    mix = ModelSequence(scenario())
    per_worker = [Counter(mix.index_at(s) for s in range(n)) for n in (100, 60, 40)]
    assert [c[0] for c in per_worker] == [75, 45, 30]
    assert sum(c[1] for c in per_worker) == 50


def test_a_wallbox_added_at_runtime_draws_the_same_numbers_as_in_a_standalone_fleet() -> None:
    sc = scenario()
    standalone = Fleet(scenario=sc, csms_url="ws://x", chargers=3, seed=9, reporter=NullReporter())
    dynamic = Fleet(scenario=sc, csms_url="ws://x", chargers=0, seed=9, reporter=NullReporter())
    third = standalone.drivers[2]
    added = dynamic.add_wallbox(3, third.wallbox.model)
    assert added.wallbox.charge_point_id == third.wallbox.charge_point_id == "LT000003"
    assert added.wallbox.rng.integers(1 << 62) == third.wallbox.rng.integers(1 << 62)
    assert np.isclose(
        added.wallbox.connectors[1].meter.register_wh(),
        third.wallbox.connectors[1].meter.register_wh(),
    )
