"""The time series: rows of RunStats windows, their files, the recorder task, its cost."""

from __future__ import annotations

import ast
import asyncio
import csv
import itertools
import math
import random
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
from emulator.metrics.stats import Direction, RunStats
from emulator.metrics.timeseries import (
    ActionRow,
    Row,
    TimeSeries,
    generator_figures,
    read_csv,
    read_json,
    write_csv,
    write_json,
)

EPOCH = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Gauges:
    chargers: int
    connected: int
    charging: int
    queue_depth: int


def make_series(clock: FakeClock) -> tuple[RunStats, TimeSeries]:
    stats = RunStats(clock=clock)
    gauges = iter([Gauges(10, 9, 4, 3), Gauges(12, 12, 5, 0), Gauges(12, 11, 5, 7)])
    series = TimeSeries(
        stats,
        interval=10.0,
        fleet=lambda: next(gauges),
        generator=lambda: {
            "loop_lag_p99": 0.0042,
            "lateness_p99": 0.0125,
            "lag_limit": 0.1,
            "lateness_limit": 0.25,
            "overloaded": False,
            "deadlines": 17,
            "loop_lag_max": float("nan"),
        },
        wall_clock=lambda: EPOCH + clock.now,
    )
    return stats, series


def test_rows_hold_each_window_only_with_percentiles_failures_and_gauges() -> None:
    clock = FakeClock()
    stats, series = make_series(clock)
    for ms in range(1, 101):
        stats.round_trip("Heartbeat", ms / 1000, OK)
    stats.round_trip("StartTransaction", 0.004, Outcome.callerror("InternalError"))
    stats.round_trip("StartTransaction", 0.006, Outcome.callerror("InternalError"))
    stats.round_trip("StartTransaction", 30.0, TIMEOUT)
    stats.round_trip("MeterValues", 0.003, Outcome.schema("FormationViolation"))
    stats.csms_call("RemoteStartTransaction", 0.0005, None)
    stats.csms_call("DataTransfer", 0.0001, "NotImplemented")
    for _ in range(3):
        stats.connected(0.01)
    stats.connect_failed("refused")
    stats.connect_failed("refused")
    stats.connect_failed("http_401")
    stats.disconnected("reset")
    stats.message_sent()
    clock.now = 10.0
    first = series.sample()

    for _ in range(10):
        stats.round_trip("Heartbeat", 0.200, OK)
    stats.message_received()
    clock.now = 20.0
    second = series.sample()

    stats.round_trip("Heartbeat", 0.005, OK)
    stats.round_trip("Heartbeat", 2.0, DISCONNECTED)
    clock.now = 23.5
    last = series.finish()
    assert series.finish() is None, "nothing new: no empty row"

    assert first is not None and second is not None and last is not None
    assert series.rows == [first, second, last]
    assert (first.start_s, first.end_s, first.partial) == (0.0, 10.0, False)
    assert first.time == "2027-01-15T08:00:10.000+00:00"
    heartbeat = first.action("Heartbeat")
    assert heartbeat is not None and heartbeat.count == 100 and heartbeat.failures == {}
    assert heartbeat.p50_ms == pytest.approx(50.0, rel=0.01)
    assert heartbeat.p95_ms == pytest.approx(95.0, rel=0.01)
    assert heartbeat.p99_ms == pytest.approx(99.0, rel=0.01)
    start = first.action("StartTransaction")
    assert start is not None and start.count == 3 and start.errors == 3
    assert start.failures == {"callerror:InternalError": 2, "timeout": 1}
    # Two answered calls (4 and 6 ms): the timeout's 30 s is counted, not timed.
    assert start.p50_ms == pytest.approx(4.0, rel=0.01)
    assert start.p99_ms is not None and start.p99_ms < 10.0
    meter = first.action("MeterValues")
    assert meter is not None and meter.failures == {"schema:FormationViolation": 1}
    data_transfer = first.action("DataTransfer", "csms_to_cp")
    assert data_transfer is not None and data_transfer.failures == {"callerror:NotImplemented": 1}
    assert [(a.direction, a.action) for a in first.actions] == [
        ("cp_to_csms", "Heartbeat"),
        ("cp_to_csms", "MeterValues"),
        ("cp_to_csms", "StartTransaction"),
        ("csms_to_cp", "DataTransfer"),
        ("csms_to_cp", "RemoteStartTransaction"),
    ]
    assert first.connect_failures == {"http_401": 1, "refused": 2}
    assert (first.connects, first.disconnects, first.messages_sent) == (3, 1, 1)
    assert (first.chargers, first.connected, first.charging, first.queue_depth) == (10, 9, 4, 3)
    assert first.generator == {
        "loop_lag_p99_ms": 4.2,
        "lateness_p99_ms": 12.5,
        "loop_lag_limit_ms": 100.0,
        "lateness_limit_ms": 250.0,
        "overloaded": 0.0,
        "deadlines": 17.0,
    }
    assert first.calls == 100 + 3 + 1 + 2 and first.failures == 2 + 1 + 1 + 1

    # The second row holds the second window only.
    assert (second.start_s, second.end_s, second.partial) == (10.0, 20.0, False)
    assert [a.action for a in second.actions] == ["Heartbeat"]
    heartbeat = second.action("Heartbeat")
    assert heartbeat is not None and heartbeat.count == 10
    assert heartbeat.p50_ms == pytest.approx(200.0, rel=0.01)
    assert heartbeat.p99_ms == pytest.approx(200.0, rel=0.01)
    assert second.connect_failures == {} and second.connects == 0
    assert (second.messages_sent, second.messages_received) == (0, 1)
    assert second.chargers == 12 and second.queue_depth == 0

    # The last one is partial; a disconnected call counts but has no latency.
    assert (last.start_s, last.end_s, last.partial) == (20.0, 23.5, True)
    heartbeat = last.action("Heartbeat")
    assert heartbeat is not None and heartbeat.count == 2
    assert heartbeat.failures == {"disconnected": 1}
    # One value: within its bucket (a window's min and max are bucket edges, 1/64 wide).
    assert heartbeat.p50_ms == heartbeat.p99_ms == pytest.approx(5.0, rel=1 / 64)
    # Every call of the run is in exactly one row.
    assert sum(r.calls for r in series.rows) == sum(a.count for a in stats.actions.values())


def test_a_window_without_answers_has_no_percentiles() -> None:
    clock = FakeClock()
    stats, series = make_series(clock)
    stats.round_trip("Authorize", 30.0, TIMEOUT)
    clock.now = 10.0
    row = series.sample()
    assert row is not None
    authorize = row.action("Authorize")
    assert authorize is not None
    assert (authorize.p50_ms, authorize.p95_ms, authorize.p99_ms) == (None, None, None)
    assert authorize.failures == {"timeout": 1}


def test_generator_figures_convert_seconds_to_ms_and_skip_what_is_not_a_number() -> None:
    figures = generator_figures(
        {
            "loop_lag_p99": 0.5,
            "worst_lateness_p99": 1.25,
            "overloaded": True,
            "overloaded_seconds": 15.0,
            "note": "text",
            "lateness_max": float("inf"),
        }
    )
    assert figures == {
        "loop_lag_p99_ms": 500.0,
        "worst_lateness_p99_ms": 1250.0,
        "overloaded": 1.0,
        "overloaded_seconds": 15.0,
    }


def sample_rows() -> list[Row]:
    """Rows with awkward names: dots and percent signs, commas and quotes (a CSMS picks
    the action names of its CALLs), and gauges missing in one row."""
    odd = 'Vendor.Call%2E,"x"'
    return [
        Row(
            start_s=0.0,
            end_s=10.0,
            time="2027-01-15T08:00:10.000+00:00",
            actions=(
                ActionRow(
                    direction="cp_to_csms",
                    action="StartTransaction",
                    count=12,
                    p50_ms=41.25,
                    p95_ms=80.5,
                    p99_ms=123.456,
                    failures={"callerror:InternalError": 1, "schema:Formation.Violation": 2},
                ),
                ActionRow(
                    direction="csms_to_cp",
                    action=odd,
                    count=1,
                    p50_ms=None,
                    p95_ms=None,
                    p99_ms=None,
                    failures={"timeout": 1},
                ),
            ),
            connects=5,
            disconnects=1,
            connect_failures={"http 404": 2, "tls.unknown_ca": 1},
            messages_sent=30,
            messages_received=29,
            chargers=5,
            connected=4,
            charging=2,
            queue_depth=0,
            generator={"loop_lag_p99_ms": 3.5, "lateness_p99_ms": 0.125},
        ),
        Row(
            start_s=10.0,
            end_s=14.321,
            time="2027-01-15T08:00:14.321+00:00",
            partial=True,
            actions=(
                ActionRow(
                    direction="cp_to_csms",
                    action="Heartbeat",
                    count=3,
                    p50_ms=1.0,
                    p95_ms=2.0,
                    p99_ms=2.5,
                ),
            ),
        ),
    ]


def test_json_and_csv_round_trip(tmp_path: Path) -> None:
    rows = sample_rows()
    write_json(tmp_path / "timeseries.json", rows, interval=10.0)
    write_csv(tmp_path / "timeseries.csv", rows)
    assert read_json(tmp_path / "timeseries.json") == rows
    assert read_csv(tmp_path / "timeseries.csv") == rows

    with (tmp_path / "timeseries.csv").open(newline="") as file:
        table = list(csv.DictReader(file))
    assert len(table) == 2
    first, second = table
    # Per-action columns, flat: a spreadsheet reads them as they are.
    assert first["cp_to_csms.StartTransaction.p99_ms"] == "123.456"
    assert first["cp_to_csms.StartTransaction.errors"] == "3"
    assert first["cp_to_csms.StartTransaction.failures.schema:Formation%2EViolation"] == "2"
    assert first['csms_to_cp.Vendor%2ECall%252E,"x".failures.timeout'] == "1"
    assert first["connect_failures.tls%2Eunknown_ca"] == "1"
    assert first["generator.lateness_p99_ms"] == "0.125"
    assert second["cp_to_csms.StartTransaction.count"] == "0"
    assert second["cp_to_csms.StartTransaction.p99_ms"] == ""
    assert second["chargers"] == "" and second["partial"] == "true"


def test_empty_series_files_round_trip(tmp_path: Path) -> None:
    series = TimeSeries(RunStats(clock=FakeClock()))
    json_path, csv_path = series.write(tmp_path / "out")
    assert read_json(json_path) == [] and read_csv(csv_path) == []
    assert csv_path.read_text().splitlines()[0].startswith("start_s,end_s,time,partial")


def test_interval_must_be_positive() -> None:
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="interval"):
            TimeSeries(RunStats(), interval=bad)


def test_recorder_samples_on_a_cadence_and_takes_a_final_row_when_cancelled() -> None:
    async def main() -> tuple[TimeSeries, RunStats]:
        stats = RunStats()
        series = TimeSeries(stats, interval=0.05)

        async def traffic() -> None:
            async with series.running():
                for _ in range(1000):  # bounded: ~10 s at most, cancelled long before
                    stats.round_trip("Heartbeat", 0.001, OK)
                    await asyncio.sleep(0.01)

        task = asyncio.create_task(traffic())
        await asyncio.sleep(0.33)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5.0)
        return series, stats

    series, stats = asyncio.run(main())
    rows = series.rows
    spans = [(r.start_s, r.end_s) for r in rows]
    # A row every 0.05 s over at least 0.33 s: 6 or 7.  At most one per interval of the
    # time the rows cover (a loaded machine lengthens that, and the bound with it); at least
    # 4, which a loaded machine breaks only by holding the loop for 0.1 s or more.
    assert 4 <= len(rows) <= math.ceil((rows[-1].end_s - rows[0].start_s) / 0.05) + 1, spans
    assert all(not r.partial for r in rows[:-1]) and rows[-1].partial
    for earlier, later in itertools.pairwise(rows):
        assert later.start_s == earlier.end_s, "windows are contiguous"
    # The full rows last an interval: their median, so that a stall in one does not count.
    assert statistics.median(r.duration_s for r in rows[1:-1]) == pytest.approx(0.05, abs=0.02)
    assert sum(r.calls for r in rows) == stats.actions[Direction.CP_TO_CSMS, "Heartbeat"].count


def test_a_row_of_twenty_actions_counts_exactly_what_was_recorded_since_the_last() -> None:
    """Its cost is measured by bench/timeseries_row.py (next to recording's), not here."""
    stats = RunStats()
    rng = random.Random(5)
    names = [f"Action{i:02d}" for i in range(20)]
    series = TimeSeries(stats, interval=10.0)
    for size in (5_000, 2_000, 700):  # the first row sums what came before it
        recorded = Counter(rng.choice(names) for _ in range(size))
        timeouts = 0
        for name, calls in recorded.items():
            for i in range(calls):
                timeouts += i % 50 == 0
                stats.round_trip(name, 0.01 * (1 + i % 7), TIMEOUT if i % 50 == 0 else OK)
        row = series.sample()
        assert row is not None
        assert {a.action: a.count for a in row.actions} == recorded
        assert sum(a.failures.get("timeout", 0) for a in row.actions) == timeouts


def test_timeseries_imports_nothing_from_the_fleet_or_locust() -> None:
    source = Path(__file__).parents[2] / "emulator" / "metrics" / "timeseries.py"
    tree = ast.parse(source.read_text())
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    forbidden = [
        m for m in imported if m.startswith(("emulator.fleet", "emulator.loadtest", "emulator.cli"))
    ]
    assert imported and not forbidden
