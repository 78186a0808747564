"""The Fleet tab's figures: per-worker snapshots summed, the worst health shown."""

from __future__ import annotations

from typing import Any

from emulator.loadtest.view import aggregate, rows_for_tab, summary_lines


def snapshot(
    connected: int, *, lateness: float = 0.002, overloaded: bool = False
) -> dict[str, Any]:
    return {
        "chargers": connected,
        "chargers_peak": connected,
        "connected": connected,
        "booted": connected,
        "transactions_running": 1,
        "queue_depth": 2,
        "reconnects": 3,
        "statuses": {"Available": connected - 1, "Charging": 1},
        "health": {
            "lateness_p99": lateness,
            "loop_lag_p99": 0.001,
            "worst_lateness_p99": lateness,
            "worst_loop_lag_p99": 0.001,
            "overloaded": overloaded,
            "overloaded_seconds": 15.0 if overloaded else 0.0,
            "lateness_limit": 0.25,
            "lag_limit": 0.1,
        },
    }


def test_counts_add_up_over_workers_and_health_is_the_worst_of_them() -> None:
    view = aggregate({0: snapshot(10), 1: snapshot(20, lateness=0.4, overloaded=True)})
    totals = view["totals"]
    assert (totals["connected"], totals["queue_depth"], totals["reconnects"]) == (30, 4, 6)
    assert totals["statuses"] == {"Available": 28, "Charging": 2}
    assert view["health"]["lateness_p99"] == 0.4
    assert view["health"]["overloaded_workers"] == [1]
    assert "bottleneck on worker 1" in view["warning"]
    assert "400 ms" in view["warning"]


def test_the_tab_lists_counts_statuses_loop_lag_and_the_verdict() -> None:
    rows = {r["name"]: r["value"] for r in rows_for_tab(aggregate({0: snapshot(5)}))}
    assert rows["Connected"] == "5"
    assert rows["Connectors Charging"] == "1"
    assert rows["Reconnects"] == "3"
    assert rows["Generator loop lag p99"] == "1.0 ms"
    assert rows["Generator"] == "keeping up"


def test_the_summary_flags_a_run_whose_generator_was_the_bottleneck() -> None:
    ok = summary_lines(aggregate({0: snapshot(5)}))
    assert not any("WARNING" in line for line in ok)
    bad = summary_lines(aggregate({0: snapshot(5), 1: snapshot(5, overloaded=True)}))
    assert any("WARNING: the load generator was the bottleneck for 15 s" in line for line in bad)
