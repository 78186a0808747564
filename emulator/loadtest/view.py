"""The Fleet tab's data: per-process snapshots summed over workers (pure, no Locust).

Each fleet process publishes a snapshot dict (see ``_LoopSide.snapshot`` in
:mod:`.bridge`); a master receives one per worker with every stats report.  Counts add
up; the generator's health is the worst of any worker, because one overloaded worker
already distorts the latencies it reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COUNT_FIELDS", "aggregate", "bottleneck_warning", "summary_lines"]

COUNT_FIELDS: tuple[str, ...] = (
    "chargers",
    "chargers_peak",
    "connected",
    "booted",
    "charging",
    "transactions_running",
    "transactions_started",
    "transactions_stopped",
    "queue_depth",
    "transaction_backlog",
    "connects",
    "reconnects",
    "messages_sent",
    "messages_received",
)

_HEALTH_MAX = (
    "loop_lag_p99",
    "loop_lag_max",
    "lateness_p99",
    "lateness_max",
    "overloaded_seconds",
    "worst_lateness_p99",
    "worst_loop_lag_p99",
)


def aggregate(snapshots: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """``{worker index: snapshot}`` → totals, worst health and the per-worker rows."""
    totals: dict[str, Any] = dict.fromkeys(COUNT_FIELDS, 0)
    statuses: Counter[str] = Counter()
    health: dict[str, Any] = dict.fromkeys(_HEALTH_MAX, 0.0)
    health["overloaded"] = False
    health["overloaded_workers"] = []
    rows = []
    for index in sorted(snapshots):
        snap = snapshots[index]
        for name in COUNT_FIELDS:
            totals[name] += int(snap.get(name, 0))
        statuses.update(snap.get("statuses", {}))
        h = snap.get("health") or {}
        for name in _HEALTH_MAX:
            health[name] = max(health[name], float(h.get(name, 0.0)))
        for name in ("lateness_limit", "lag_limit"):
            if name in h:
                health[name] = h[name]
        if h.get("overloaded"):
            health["overloaded"] = True
            health["overloaded_workers"].append(index)
        rows.append({"worker": index, **{k: snap.get(k, 0) for k in COUNT_FIELDS}, "health": h})
    totals["statuses"] = dict(sorted(statuses.items()))
    return {
        "workers": len(snapshots),
        "totals": totals,
        "health": health,
        "per_worker": rows,
        "warning": bottleneck_warning(health),
    }


def bottleneck_warning(health: Mapping[str, Any]) -> str:
    """The console/UI warning while the generator is overloaded, else ``""``."""
    if not health.get("overloaded"):
        return ""
    where = health.get("overloaded_workers") or []
    on = f" on worker {', '.join(map(str, where))}" if where else ""
    return (
        f"The load generator is the bottleneck{on}: p99 send lateness "
        f"{float(health.get('lateness_p99', 0.0)) * 1000:.0f} ms, p99 loop lag "
        f"{float(health.get('loop_lag_p99', 0.0)) * 1000:.0f} ms. Latencies measured now "
        "include the generator's own delays: run fewer wallboxes per worker or add workers."
    )


def summary_lines(view: Mapping[str, Any]) -> list[str]:
    """The fleet's end-of-run summary, printed after Locust's own."""
    totals, health = view["totals"], view["health"]
    lines = [
        "Fleet summary (ocpp-fleet)",
        f"  wallboxes {totals['chargers_peak']} at most, now {totals['chargers']}, connected {totals['connected']}, booted "
        f"{totals['booted']}, connects {totals['connects']}, reconnects {totals['reconnects']}",
        f"  transactions {totals['transactions_started']} started, "
        f"{totals['transactions_stopped']} stopped; transaction messages not delivered "
        f"{totals['transaction_backlog']}",
        f"  generator: worst p99 send lateness {float(health['worst_lateness_p99']) * 1000:.0f} ms"
        f" (limit {float(health.get('lateness_limit', 0.25)) * 1000:.0f}), worst p99 loop lag "
        f"{float(health['worst_loop_lag_p99']) * 1000:.0f} ms"
        f" (limit {float(health.get('lag_limit', 0.1)) * 1000:.0f})",
    ]
    if float(health["overloaded_seconds"]) > 0:
        lines.append(
            f"  WARNING: the load generator was the bottleneck for "
            f"{float(health['overloaded_seconds']):.0f} s of this run; latencies measured "
            "then include its own delays. Run fewer wallboxes per worker or add workers."
        )
    else:
        lines.append("  generator kept up: latencies above are the CSMS's (and the network's)")
    return lines


def rows_for_tab(view: Mapping[str, Any]) -> Sequence[dict[str, str]]:
    """Name/value rows for the Fleet tab's table in Locust's web UI."""
    totals, health = view["totals"], view["health"]
    rows = [
        {"name": "Wallboxes (users)", "value": str(totals["chargers"])},
        {"name": "Connected", "value": str(totals["connected"])},
        {"name": "Booted (Accepted)", "value": str(totals["booted"])},
        {"name": "Transactions running", "value": str(totals["transactions_running"])},
        {"name": "Offline queue depth", "value": str(totals["queue_depth"])},
        {"name": "Transaction messages waiting", "value": str(totals["transaction_backlog"])},
        {"name": "Reconnects", "value": str(totals["reconnects"])},
    ]
    rows += [
        {"name": f"Connectors {status}", "value": str(n)}
        for status, n in totals["statuses"].items()
    ]
    rows += [
        {
            "name": "Generator loop lag p99",
            "value": f"{float(health['loop_lag_p99']) * 1000:.1f} ms",
        },
        {
            "name": "Generator send lateness p99",
            "value": f"{float(health['lateness_p99']) * 1000:.1f} ms",
        },
        {
            "name": "Generator",
            "value": view["warning"] or "keeping up",
        },
    ]
    if view["workers"] > 1:
        rows.append({"name": "Workers reporting", "value": str(view["workers"])})
    return rows
