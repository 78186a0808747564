from __future__ import annotations

import io
import json

from rich.console import Console

from emulator.core.outcome import OK, TIMEOUT, Outcome
from emulator.metrics import RunStats
from emulator.metrics.summary import render_summary, summary_dict


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sample_run() -> RunStats:
    clock = FakeClock()
    stats = RunStats(clock=clock)
    for ms in range(1, 101):  # 1..100 ms
        stats.round_trip("Heartbeat", ms / 1000, OK)
    stats.round_trip("Heartbeat", 30.0, TIMEOUT)
    stats.round_trip("Authorize", 0.004, Outcome.callerror("InternalError"))
    stats.round_trip("Authorize", 0.004, Outcome.callerror("InternalError"))
    stats.round_trip("Authorize", 0.006, OK)
    stats.csms_call("RemoteStartTransaction", 0.0005, None)
    stats.csms_call("DataTransfer", 0.0001, "NotImplemented")
    for _ in range(4):
        stats.connected(0.002)
    stats.disconnected("close 1006")
    stats.connected(0.003)
    stats.connect_failed("refused")
    stats.ping_rtt(0.0015)
    for _ in range(120):
        stats.message_sent()
    stats.message_received()
    stats.increment("sessions started", 7)
    clock.now = 60.0
    stats.stop()
    return stats


def rendered(stats: RunStats, *, width: int = 140) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    render_summary(stats, console=console)
    return console.export_text()


def line_of(text: str, start: str, *, containing: str = "") -> str:
    return next(
        line for line in text.splitlines() if line.strip().startswith(start) and containing in line
    )


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("│")]


def test_summary_has_a_row_per_action_with_direction_count_latencies_and_errors() -> None:
    text = rendered(sample_run())
    heartbeat = cells(line_of(text, "Heartbeat"))
    assert heartbeat[:3] == ["Heartbeat", "CP→CSMS", "101"]
    p50, p95, p99 = map(float, heartbeat[3:6])
    assert abs(p50 - 50.5) < 1 and abs(p95 - 95) < 1.5 and abs(p99 - 99) < 1.5
    assert heartbeat[6:] == ["1", "timeout 1"]
    assert cells(line_of(text, "Authorize"))[6:] == ["2", "InternalError 2"]
    assert cells(line_of(text, "RemoteStartTransaction"))[1] == "CSMS→CP"
    assert cells(line_of(text, "DataTransfer"))[6:] == ["1", "NotImplemented 1"]


def test_summary_totals_each_direction() -> None:
    text = rendered(sample_run())
    cp = cells(line_of(text, "Total", containing="CP→CSMS"))
    assert cp[1:3] == ["CP→CSMS", "104"]  # 101 heartbeats + 3 authorizes
    assert cp[6:] == ["3", "InternalError 2, timeout 1"]
    csms = cells(line_of(text, "Total", containing="CSMS→CP"))
    assert csms[1:3] == ["CSMS→CP", "2"]
    assert csms[6:] == ["1", "NotImplemented 1"]


def test_a_long_breakdown_is_cut_to_the_three_most_frequent() -> None:
    stats = RunStats()
    for outcome, n in [
        (TIMEOUT, 4),
        (Outcome.callerror("A"), 3),
        (Outcome.callerror("B"), 2),
        (Outcome.schema(), 1),
    ]:
        for _ in range(n):
            stats.round_trip("MeterValues", 0.01, outcome)
    assert cells(line_of(rendered(stats), "MeterValues"))[7] == "timeout 4, A 3, B 2, +1 more"


def test_a_narrow_terminal_gets_the_breakdown_below_the_table() -> None:
    text = rendered(sample_run(), width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    heartbeat = cells(line_of(text, "Heartbeat"))
    assert heartbeat[1:3] == ["CP→CSMS", "101"]
    assert heartbeat[-1] == "1"
    assert "Authorize CP→CSMS: InternalError 2" in text
    assert "Total CP→CSMS: InternalError 2, timeout 1" in text


def test_summary_shows_connections_messages_and_counters() -> None:
    text = rendered(sample_run())
    assert "60.0 s" in line_of(text, "Duration")
    assert "5 (1 reconnects), 4 open" in line_of(text, "Connects")
    assert "1 (refused 1)" in line_of(text, "Connect failures")
    assert "1 (close 1006 1)" in line_of(text, "Disconnects")
    assert "p50 1.50 ms" in line_of(text, "Ping RTT")
    assert "120 sent (2.0/s), 1 received" in line_of(text, "Messages")
    assert line_of(text, "sessions started").split()[-1] == "7"


def test_an_empty_run_renders_without_numbers() -> None:
    text = rendered(RunStats())
    assert "no OCPP calls" in text
    assert "–" in line_of(text, "Connect time")


def test_action_names_are_printed_literally_not_as_markup() -> None:
    stats = RunStats()
    stats.csms_call("[bold]Evil", 0.001, "NotImplemented")
    assert "[bold]Evil" in rendered(stats)


def test_summary_dict_is_strict_json_with_the_same_figures() -> None:
    data = summary_dict(sample_run())
    json.dumps(data, allow_nan=False)
    assert data["duration_s"] == 60.0
    heartbeat = next(a for a in data["actions"] if a["action"] == "Heartbeat")
    assert heartbeat["direction"] == "cp_to_csms"
    assert (heartbeat["count"], heartbeat["errors"]) == (101, 1)
    assert heartbeat["outcomes"] == {"ok": 100, "timeout": 1}
    assert heartbeat["latency_ms"]["count"] == 100
    assert abs(heartbeat["latency_ms"]["p50"] - 50.5) < 1
    assert heartbeat["latency_ms"]["max"] == 100.0
    assert data["totals"]["cp_to_csms"]["count"] == 104
    assert data["totals"]["csms_to_cp"]["errors"] == 1
    assert data["connections"]["reconnects"] == 1
    assert data["connections"]["connect_failures"] == {"refused": 1}
    assert data["messages"]["sent_per_s"] == 2.0
    assert data["counters"] == {"sessions started": 7}


def test_summary_dict_of_an_empty_run_has_nulls_not_nans() -> None:
    data = summary_dict(RunStats())
    json.dumps(data, allow_nan=False)
    assert data["actions"] == [] and data["totals"] == {}
    assert data["connections"]["connect_ms"]["p50"] is None
