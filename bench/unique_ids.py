"""What a CALL's unique id costs, next to the standard library's ``str(uuid.uuid4())``.

    .venv/bin/python bench/unique_ids.py [--ids 50000]

Every CALL a wallbox sends takes a fresh unique id (OCPP-J 1.6 §4.1.4); a fleet of
10,000 wallboxes sends a few hundred a second, so an id must cost microseconds, not the
tens of microseconds of reading the OS's entropy pool for each.  This makes ``--ids`` ids
with each generator, alternately, 7 times, and prints the best and median microseconds
per id of each and their ratio (``random_unique_id``'s docstring says about a fifth).
Printed, never asserted: the tests check the ids' format and uniqueness, not their speed.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine

from emulator.protocol import random_unique_id

ROUNDS = 7


def per_id(make: Callable[[], str], count: int) -> float:
    """Seconds of CPU per id, for ``count`` ids made in a row."""
    began = time.process_time()
    for _ in range(count):
        make()
    return (time.process_time() - began) / count


def stdlib_uuid4() -> str:
    return str(uuid.uuid4())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=50_000, help="ids per round and generator")
    count = parser.parse_args().ids
    ours: list[float] = []
    stdlib: list[float] = []
    for _ in range(ROUNDS):  # alternated, so that both see the same machine load
        ours.append(per_id(random_unique_id, count))
        stdlib.append(per_id(stdlib_uuid4, count))
    ours.sort()
    stdlib.sort()
    print(machine())
    for name, times in (("random_unique_id()", ours), ("str(uuid.uuid4())", stdlib)):
        print(
            f"{name:>19}: best {times[0] * 1e6:.2f} µs, "
            f"median {times[ROUNDS // 2] * 1e6:.2f} µs CPU per id"
        )
    print(f"ours / uuid4 (medians): {ours[ROUNDS // 2] / stdlib[ROUNDS // 2]:.2f}x")


if __name__ == "__main__":
    main()
