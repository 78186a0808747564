"""Which charger a Locust user becomes: disjoint id ranges per worker, the model mix per slot.

Pure (no Locust, no gevent): tested on its own.

A worker with index ``w`` (Locust's ``runner.worker_index``: 0, 1, 2, ... in the order
workers connected to the master; 0 for a local run) owns charger numbers
``w * ids_per_worker + 1`` to ``(w + 1) * ids_per_worker``.  Its users take *slots*
0, 1, 2, ... (always the lowest free one, so a fleet that shrinks and grows again reuses
the same identities, and a reconnect wave brings back the same chargers).  The model of
slot ``k`` comes from a house-monotone apportionment of the scenario's shares, so the
first ``n`` slots of every worker hold the model mix as closely as ``n`` allows, whatever
``n`` is: each worker gets its share of the mix, and so does the whole fleet.
"""

from __future__ import annotations

import heapq
from fractions import Fraction

from emulator.core.model import ChargerModel
from emulator.fleet.scenario import Scenario

__all__ = ["ModelSequence", "SlotAllocator", "charger_number", "worker_range"]

DEFAULT_IDS_PER_WORKER = 100_000


def worker_range(worker_index: int, ids_per_worker: int) -> range:
    """The charger numbers worker ``worker_index`` may use (1-based, disjoint)."""
    if worker_index < 0:
        raise ValueError(f"worker index must be >= 0, got {worker_index}")
    if ids_per_worker < 1:
        raise ValueError(f"ids per worker must be >= 1, got {ids_per_worker}")
    first = worker_index * ids_per_worker + 1
    return range(first, first + ids_per_worker)


def charger_number(worker_index: int, slot: int, ids_per_worker: int) -> int:
    """Charger number of ``slot`` on worker ``worker_index``; ValueError past its range."""
    numbers = worker_range(worker_index, ids_per_worker)
    if not 0 <= slot < len(numbers):
        raise ValueError(
            f"worker {worker_index} has no slot {slot}: at most {ids_per_worker} wallboxes "
            "per worker (raise --ids-per-worker)"
        )
    return numbers[slot]


class SlotAllocator:
    """Hands out the lowest free slot; a slot comes back with :meth:`release`."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._next = 0
        self._free: list[int] = []
        self._used: set[int] = set()

    def acquire(self) -> int:
        if self._free:
            slot = heapq.heappop(self._free)
        elif self._next < self.limit:
            slot = self._next
            self._next += 1
        else:
            raise ValueError(f"all {self.limit} slots are in use (raise --ids-per-worker)")
        self._used.add(slot)
        return slot

    def release(self, slot: int) -> None:
        if slot in self._used:
            self._used.remove(slot)
            heapq.heappush(self._free, slot)

    def __len__(self) -> int:
        return len(self._used)


class ModelSequence:
    """The model of every slot: Sainte-Laguë order over the scenario's model shares.

    Slot ``k`` goes to the model with the smallest ``(seats + 1/2) / share`` (ties to the
    model listed first).  A divisor method is house-monotone: adding a slot never takes
    one from another model, so every prefix is a fair apportionment.
    """

    def __init__(self, scenario: Scenario) -> None:
        self._models: list[ChargerModel] = [spec.to_charger_model() for spec in scenario.models]
        self._shares = [Fraction(spec.share) for spec in scenario.models]
        self._seats = [0] * len(self._models)
        self._order: list[int] = []

    def index_at(self, slot: int) -> int:
        """Index into the scenario's ``[[models]]`` of ``slot``'s model."""
        while len(self._order) <= slot:
            best = min(
                range(len(self._shares)),
                key=lambda i: ((self._seats[i] + Fraction(1, 2)) / self._shares[i], i),
            )
            self._seats[best] += 1
            self._order.append(best)
        return self._order[slot]

    def model_at(self, slot: int) -> ChargerModel:
        return self._models[self.index_at(slot)]
