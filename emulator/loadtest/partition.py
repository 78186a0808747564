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

A pool of source addresses given to the master is split the same way: the worker at
position ``p`` of ``n`` workers binds to every ``n``-th address from the ``p``-th
(:func:`address_slice`), so no two workers share an address while the pool has one
for each.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from emulator.run.setup import DEFAULT_IDS_PER_WORKER

__all__ = [
    "DEFAULT_IDS_PER_WORKER",
    "SlotAllocator",
    "address_slice",
    "charger_number",
    "worker_range",
]


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


def address_slice(pool: Sequence[str], position: int, workers: int) -> tuple[str, ...]:
    """The addresses of the worker at ``position`` (0-based) among ``workers`` workers.

    Disjoint and balanced within one address while the pool has at least one address per
    worker: ``pool[position::workers]``.  A smaller pool cannot be split: each worker
    then gets one address, ``pool[position % len(pool)]``, shared with other workers.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not 0 <= position < workers:
        raise ValueError(f"position must be in 0..{workers - 1}, got {position}")
    if not pool:
        return ()
    if len(pool) < workers:
        return (pool[position % len(pool)],)
    return tuple(pool[position::workers])


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
