"""What one row of the time series costs, next to what recording its round trips cost.

    .venv/bin/python bench/timeseries_row.py

A run (and a capacity report) records one row every 10 s: a snapshot of the statistics,
one window, percentiles of every action.  Its budget is 2 % of a run's CPU: at 10,000
wallboxes a run uses ~0.28 core (README, Performance), so ~56 ms per 10 s row, of which
reading the fleet's gauges takes 20-30 ms.  This records 100,000 round trips of 20 actions,
then, 7 times, records 2,000 more and takes a row; it prints the row's cost (best and median
of 7), the cost of recording those 2,000 round trips measured the same way, and their
ratio, and the row's share of the budget.  Printed, never asserted.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine

from emulator.core.outcome import OK, TIMEOUT
from emulator.metrics.stats import RunStats
from emulator.metrics.timeseries import TimeSeries

ROWS = 7
PER_ROW = 2_000
BUDGET = 0.056  # seconds of CPU per 10 s row (2 % of 0.28 core)


def main() -> None:
    stats = RunStats()
    rng = random.Random(5)
    actions = [f"Action{i:02d}" for i in range(20)]
    for _ in range(100_000):
        stats.round_trip(rng.choice(actions), rng.lognormvariate(-4.0, 1.0), OK)
    series = TimeSeries(stats, interval=10.0)
    rows, records = [], []
    for _ in range(ROWS):
        samples = [
            (
                rng.choice(actions),
                rng.lognormvariate(-4.0, 1.0),
                OK if rng.random() < 0.98 else TIMEOUT,
            )
            for _ in range(PER_ROW)
        ]
        began = time.process_time()
        for action, seconds, outcome in samples:
            stats.round_trip(action, seconds, outcome)
        records.append(time.process_time() - began)
        began = time.process_time()
        row = series.sample()
        rows.append(time.process_time() - began)
        assert row is not None and sum(a.count for a in row.actions) == PER_ROW
    row_best, row_median = min(rows), sorted(rows)[ROWS // 2]
    rec_best, rec_median = min(records), sorted(records)[ROWS // 2]
    print(machine())
    print(
        f"one row of 20 actions: best {row_best * 1e3:.2f} ms, median {row_median * 1e3:.2f} ms CPU"
    )
    print(
        f"recording its {PER_ROW} round trips: best {rec_best * 1e3:.2f} ms, "
        f"median {rec_median * 1e3:.2f} ms CPU"
    )
    print(f"row / recording (medians): {row_median / rec_median:.2f}x")
    print(f"row / budget of {BUDGET * 1e3:.0f} ms per 10 s row: {row_median / BUDGET:.0%}")


if __name__ == "__main__":
    main()
