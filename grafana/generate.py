"""Writes the Grafana dashboards in grafana/dashboards/ from the definitions below.

    python grafana/generate.py          # rewrite the JSON files
    python grafana/generate.py --check  # exit 1 if a file differs (the tests do this)

The dashboards are plain Grafana JSON (schemaVersion 39, Grafana 10 and later); this
script only keeps six of them consistent: every panel filters on the ``job`` and
``instance`` template variables, uses the ``datasource`` variable, and every metric
name comes from emulator/metrics/prometheus.py (docs/metrics.md lists them).
``tests/observability/test_prometheus_queries.py`` runs every expression below through
a real Prometheus scraping a real fleet.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

DS = {"type": "prometheus", "uid": "${datasource}"}
S = 'job=~"$job", instance=~"$instance"'  # every selector carries the template variables
RATE = "$__rate_interval"
TAG = "ocpp-fleet"


@dataclass
class Target:
    expr: str
    legend: str = ""
    heatmap: bool = False
    instant: bool = False


@dataclass
class Panel:
    title: str
    targets: list[Target]
    kind: str = "timeseries"  # timeseries | stat | heatmap | bargauge
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    stack: bool = False
    decimals: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def quantile(p: float, metric: str, by: str = "", extra: str = "") -> str:
    labels = f"{S}{', ' + extra if extra else ''}"
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile({p}, sum by ({group}) (rate({metric}_bucket{{{labels}}}[{RATE}])))"


def rate(metric: str, by: str | None = None, extra: str = "") -> str:
    labels = f"{S}{', ' + extra if extra else ''}"
    head = "sum" if by is None else f"sum by ({by})"
    return f"{head} (rate({metric}{{{labels}}}[{RATE}]))"


def total(metric: str, by: str | None = None, extra: str = "") -> str:
    labels = f"{S}{', ' + extra if extra else ''}"
    head = "sum" if by is None else f"sum by ({by})"
    return f"{head} ({metric}{{{labels}}})"


def pct_lines(metric: str, by: str = "", extra: str = "", legend: str = "") -> list[Target]:
    return [
        Target(quantile(p, metric, by, extra), f"p{int(p * 100)}{' ' + legend if legend else ''}")
        for p in (0.5, 0.95, 0.99)
    ]


# Calls that got no answer or a bad one, per second (absent series mean zero).
ANSWERED = "ocpp_fleet_call_duration_seconds_count"
BAD_ANSWERS = f'(sum (rate({ANSWERED}{{{S}, outcome!="ok"}}[{RATE}])) or vector(0))'
UNANSWERED = f"(sum (rate(ocpp_fleet_calls_unanswered_total{{{S}}}[{RATE}])) or vector(0))"
ALL_CALLS = f"(sum (rate({ANSWERED}{{{S}}}[{RATE}])) + {UNANSWERED})"
ERROR_RATIO = f"({BAD_ANSWERS} + {UNANSWERED}) / {ALL_CALLS}"


def overview() -> list[Panel]:
    return [
        Panel("Fleet size", [Target(total("ocpp_fleet_chargers"))], "stat", width=4, height=4),
        Panel(
            "Connected", [Target(total("ocpp_fleet_chargers_connected"))], "stat", width=4, height=4
        ),
        Panel("Booted", [Target(total("ocpp_fleet_chargers_booted"))], "stat", width=4, height=4),
        Panel(
            "Charging",
            [Target(total("ocpp_fleet_connectors", extra='status="Charging"'))],
            "stat",
            width=4,
            height=4,
        ),
        Panel(
            "Messages/s",
            [Target(rate("ocpp_fleet_messages_total"))],
            "stat",
            unit="reqps",
            width=4,
            height=4,
        ),
        Panel(
            "Failed calls",
            [Target(ERROR_RATIO)],
            "stat",
            unit="percentunit",
            description="Charger-initiated CALLs answered with a CALLERROR or a schema "
            "violation, or not answered at all (timeout, connection lost), as a share of all.",
            width=4,
            height=4,
            decimals=2,
        ),
        Panel(
            "Wallboxes",
            [
                Target(total("ocpp_fleet_chargers"), "fleet size"),
                Target(total("ocpp_fleet_chargers_connected"), "connected"),
                Target(total("ocpp_fleet_chargers_booted"), "booted"),
                Target(total("ocpp_fleet_connectors", extra='status="Charging"'), "charging"),
            ],
        ),
        Panel(
            "Connectors by status",
            [Target(total("ocpp_fleet_connectors", by="status"), "{{status}}")],
            stack=True,
        ),
        Panel(
            "OCPP messages/s",
            [Target(rate("ocpp_fleet_messages_total", by="direction"), "{{direction}}")],
            unit="reqps",
        ),
        Panel(
            "Charger-initiated calls/s by action",
            [Target(rate(ANSWERED, by="action"), "{{action}}")],
            unit="reqps",
            stack=True,
        ),
        Panel(
            "Errors/s",
            [
                Target(
                    rate("ocpp_fleet_callerrors_total", by="sender, code"),
                    "CALLERROR {{code}} from {{sender}}",
                ),
                Target(
                    rate("ocpp_fleet_calls_unanswered_total", by="reason"), "no answer: {{reason}}"
                ),
                Target(
                    rate("ocpp_fleet_schema_violations_total", by="message"), "schema: {{message}}"
                ),
            ],
            unit="reqps",
        ),
        Panel(
            "Transactions",
            [
                Target(total("ocpp_fleet_transactions_running"), "running"),
                Target(f"{rate('ocpp_fleet_transactions_started_total')} * 60", "started/min"),
                Target(f"{rate('ocpp_fleet_transactions_stopped_total')} * 60", "stopped/min"),
            ],
        ),
    ]


def latency() -> list[Panel]:
    metric = "ocpp_fleet_call_duration_seconds"
    action = 'action=~"$action"'
    panels = [
        Panel(
            "Round trip p50/p95/p99, selected actions",
            pct_lines(metric, extra=action),
            unit="s",
            description="From sending a CALL to receiving its CALLRESULT or CALLERROR, "
            "over every selected action.",
            width=24,
        ),
    ]
    for p in (0.5, 0.95, 0.99):
        panels.append(
            Panel(
                f"p{int(p * 100)} by action",
                [Target(quantile(p, metric, by="action", extra=action), "{{action}}")],
                unit="s",
                width=8,
            )
        )
    panels += [
        Panel(
            "Round trip heatmap, selected actions",
            [
                Target(
                    f"sum by (le) (increase({metric}_bucket{{{S}, {action}}}[{RATE}]))",
                    "{{le}}",
                    heatmap=True,
                )
            ],
            "heatmap",
            unit="s",
            width=24,
            height=10,
        ),
        Panel(
            "p95 by action (now)",
            [Target(quantile(0.95, metric, by="action", extra=action), "{{action}}", instant=True)],
            "bargauge",
            unit="s",
        ),
        Panel(
            "Mean round trip by action",
            [
                Target(
                    f"sum by (action) (rate({metric}_sum{{{S}, {action}}}[{RATE}])) "
                    f"/ sum by (action) (rate({metric}_count{{{S}, {action}}}[{RATE}]))",
                    "{{action}}",
                )
            ],
            unit="s",
        ),
        Panel(
            "Calls/s by action and outcome",
            [
                Target(
                    rate(f"{metric}_count", by="action, outcome", extra=action),
                    "{{action}} {{outcome}}",
                )
            ],
            unit="reqps",
        ),
        Panel(
            "Charger handling time of CSMS calls, p99 by action",
            [
                Target(
                    quantile(0.99, "ocpp_fleet_csms_call_handling_seconds", by="action"),
                    "{{action}}",
                )
            ],
            unit="s",
            description="How long an emulated wallbox took to answer a CSMS-initiated CALL: "
            "the generator's share, not the CSMS's.",
        ),
    ]
    return panels


def errors() -> list[Panel]:
    return [
        Panel(
            "Failed call share",
            [Target(ERROR_RATIO)],
            "stat",
            unit="percentunit",
            width=6,
            height=4,
            decimals=2,
        ),
        Panel(
            "CALLERRORs (range)",
            [Target(f"sum (increase(ocpp_fleet_callerrors_total{{{S}}}[$__range]))")],
            "stat",
            width=6,
            height=4,
            decimals=0,
        ),
        Panel(
            "Timeouts (range)",
            [
                Target(
                    f'sum (increase(ocpp_fleet_calls_unanswered_total{{{S}, reason="timeout"}}[$__range]))'
                )
            ],
            "stat",
            width=6,
            height=4,
            decimals=0,
        ),
        Panel(
            "Schema violations (range)",
            [Target(f"sum (increase(ocpp_fleet_schema_violations_total{{{S}}}[$__range]))")],
            "stat",
            width=6,
            height=4,
            decimals=0,
        ),
        Panel(
            "CALLERRORs/s by action and code",
            [
                Target(
                    rate("ocpp_fleet_callerrors_total", by="sender, action, code"),
                    "{{sender}}: {{action}} {{code}}",
                )
            ],
            unit="reqps",
            description="sender=csms: the CSMS refused a charger's CALL; sender=charger: an "
            "emulated wallbox refused a CSMS CALL.",
        ),
        Panel(
            "Unanswered calls/s by action",
            [
                Target(
                    rate("ocpp_fleet_calls_unanswered_total", by="action, reason"),
                    "{{action}} {{reason}}",
                )
            ],
            unit="reqps",
        ),
        Panel(
            "Schema violations/s",
            [
                Target(
                    rate("ocpp_fleet_schema_violations_total", by="message, action, code"),
                    "{{message}} {{action}} {{code}}",
                )
            ],
            unit="reqps",
        ),
        Panel(
            "Failed share by action",
            [
                Target(
                    f'sum by (action) (rate({ANSWERED}{{{S}, outcome!="ok"}}[{RATE}])) '
                    f"/ sum by (action) (rate({ANSWERED}{{{S}}}[{RATE}]))",
                    "{{action}}",
                )
            ],
            unit="percentunit",
            description="CALLERROR or schema-violating answers among answered calls.",
        ),
        Panel(
            "Answers to unknown unique ids/s",
            [Target(rate("ocpp_fleet_unexpected_answers_total", by="message"), "{{message}}")],
            unit="reqps",
        ),
        Panel(
            "Queued messages",
            [
                Target(total("ocpp_fleet_outbox_messages"), "outbox (offline queue)"),
                Target(
                    total("ocpp_fleet_transaction_backlog_messages"),
                    "transaction messages undelivered",
                ),
            ],
        ),
    ]


def connections() -> list[Panel]:
    metric = "ocpp_fleet_connect_duration_seconds"
    return [
        Panel(
            "Connected / fleet size",
            [
                Target(total("ocpp_fleet_chargers"), "fleet size"),
                Target(total("ocpp_fleet_chargers_connected"), "connected"),
                Target(total("ocpp_fleet_chargers_booted"), "booted"),
            ],
        ),
        Panel(
            "Connects, reconnects, disconnects /s",
            [
                Target(rate(f"{metric}_count"), "connects"),
                Target(rate("ocpp_fleet_reconnects_total"), "reconnects"),
                Target(rate("ocpp_fleet_disconnects_total", by="reason"), "disconnect: {{reason}}"),
            ],
            unit="reqps",
        ),
        Panel(
            "Connect failures/s by reason",
            [Target(rate("ocpp_fleet_connect_failures_total", by="reason"), "{{reason}}")],
            unit="reqps",
        ),
        Panel(
            "Handshake time (TCP + TLS + upgrade)",
            pct_lines(metric),
            unit="s",
        ),
        Panel(
            "Pong round trip",
            pct_lines("ocpp_fleet_pong_rtt_seconds"),
            unit="s",
            description="Websocket ping to pong: the CSMS's transport latency without OCPP handling.",
        ),
        Panel(
            "Pings answered/s",
            [Target(rate("ocpp_fleet_pong_rtt_seconds_count"), "pongs")],
            unit="reqps",
        ),
    ]


def energy() -> list[Panel]:
    return [
        Panel(
            "Power now",
            [Target(f"{total('ocpp_fleet_power_watts')} / 1000")],
            "stat",
            unit="kwatt",
            width=8,
            height=4,
        ),
        Panel(
            "Energy delivered (range)",
            [
                Target(
                    f"sum (increase(ocpp_fleet_energy_delivered_wh_total{{{S}}}[$__range])) / 1000"
                )
            ],
            "stat",
            unit="kwatth",
            width=8,
            height=4,
        ),
        Panel(
            "Transactions running",
            [Target(total("ocpp_fleet_transactions_running"))],
            "stat",
            width=8,
            height=4,
        ),
        Panel(
            "Power",
            [
                Target(total("ocpp_fleet_power_watts"), "instantaneous"),
                Target(
                    f"{rate('ocpp_fleet_energy_delivered_wh_total')} * 3600",
                    "average (from energy)",
                ),
            ],
            unit="watt",
        ),
        Panel(
            "Energy delivered",
            [Target(total("ocpp_fleet_energy_delivered_wh_total", by="instance"), "{{instance}}")],
            unit="watth",
            stack=True,
        ),
        Panel(
            "Transactions started / stopped per hour",
            [
                Target(f"{rate('ocpp_fleet_transactions_started_total')} * 3600", "started"),
                Target(f"{rate('ocpp_fleet_transactions_stopped_total')} * 3600", "stopped"),
            ],
        ),
        Panel(
            "Connectors in a session",
            [
                Target(
                    total(
                        "ocpp_fleet_connectors",
                        by="status",
                        extra='status=~"Preparing|Charging|SuspendedEV|SuspendedEVSE|Finishing"',
                    ),
                    "{{status}}",
                )
            ],
            stack=True,
        ),
    ]


def generator() -> list[Panel]:
    return [
        Panel(
            "Event-loop lag p99 by instance",
            [Target(quantile(0.99, "ocpp_fleet_loop_lag_seconds", by="instance"), "{{instance}}")],
            unit="s",
            description="Tens of milliseconds here mean the fleet process, not the CSMS, "
            "adds the latency: run fewer wallboxes per process.",
        ),
        Panel(
            "Send lateness p99 by instance",
            [
                Target(
                    quantile(0.99, "ocpp_fleet_send_lateness_seconds", by="instance"),
                    "{{instance}}",
                )
            ],
            unit="s",
            description="How late scheduled wallbox deadlines fired (heartbeats, samples, session steps).",
        ),
        Panel(
            "CPU by instance",
            [Target(rate("process_cpu_seconds_total", by="instance"), "{{instance}}")],
            unit="percentunit",
            description="1.0 is one core: a fleet process uses one event loop, so near 1.0 it is saturated.",
        ),
        Panel(
            "Resident memory per wallbox",
            [
                Target(
                    f"sum by (instance) (process_resident_memory_bytes{{{S}}}) "
                    f"/ sum by (instance) (ocpp_fleet_chargers{{{S}}})",
                    "{{instance}}",
                )
            ],
            unit="bytes",
        ),
        Panel(
            "File descriptors",
            [
                Target(total("process_open_fds", by="instance"), "open {{instance}}"),
                Target(total("process_max_fds", by="instance"), "limit {{instance}}"),
            ],
            description="One per websocket plus a few: the limit caps the wallboxes per process.",
        ),
        Panel(
            "Wallboxes per instance",
            [Target(total("ocpp_fleet_chargers_connected", by="instance"), "{{instance}}")],
        ),
        Panel(
            "Messages per CPU second",
            [
                Target(
                    f"sum by (instance) (rate(ocpp_fleet_messages_total{{{S}}}[{RATE}])) "
                    f"/ sum by (instance) (rate(process_cpu_seconds_total{{{S}}}[{RATE}]))",
                    "{{instance}}",
                )
            ],
        ),
        Panel(
            "Python GC collections/s",
            [Target(rate("python_gc_collections_total", by="generation"), "gen {{generation}}")],
            unit="reqps",
        ),
    ]


DASHBOARDS: dict[str, tuple[str, str, list[Panel]]] = {
    "fleet-overview": ("ocpp-fleet: fleet overview", "ocpp-fleet-overview", overview()),
    "csms-latency": ("ocpp-fleet: CSMS latency per action", "ocpp-fleet-latency", latency()),
    "errors-timeouts": ("ocpp-fleet: errors and timeouts", "ocpp-fleet-errors", errors()),
    "connection-health": ("ocpp-fleet: connection health", "ocpp-fleet-connections", connections()),
    "energy-power": ("ocpp-fleet: energy and power", "ocpp-fleet-energy", energy()),
    "generator-health": ("ocpp-fleet: generator health", "ocpp-fleet-generator", generator()),
}


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
        "options": [],
        "regex": "",
    }


def templating(with_action: bool) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "options": [],
            "refresh": 1,
            "regex": "",
        },
        variable("job", "Job", "label_values(ocpp_fleet_chargers, job)"),
        variable(
            "instance", "Instance", 'label_values(ocpp_fleet_chargers{job=~"$job"}, instance)'
        ),
    ]
    if with_action:
        items.append(
            variable(
                "action",
                "Action",
                'label_values(ocpp_fleet_call_duration_seconds_count{job=~"$job", instance=~"$instance"}, action)',
            )
        )
    return {"list": items}


def panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    options: dict[str, Any]
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None}]}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        }
    elif panel.kind == "bargauge":
        defaults["color"] = {"mode": "continuous-GrYlRd"}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
        }
    elif panel.kind == "heatmap":
        options = {
            "calculate": False,
            "cellGap": 1,
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "steps": 64,
                "exponent": 0.5,
                "fill": "dark-orange",
                "scale": "exponential",
                "reverse": False,
            },
            "yAxis": {"axisPlacement": "left", "unit": panel.unit},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "yHistogram": True},
            "legend": {"show": True},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
        }
    else:
        raise ValueError(f"unknown panel kind {panel.kind}")
    targets = []
    for ref, target in zip("ABCDEFGH", panel.targets, strict=False):
        item: dict[str, Any] = {
            "datasource": DS,
            "expr": target.expr,
            "legendFormat": target.legend or "__auto",
            "refId": ref,
            "range": not target.instant,
            "instant": target.instant,
            "editorMode": "code",
        }
        if target.heatmap:
            item["format"] = "heatmap"
        targets.append(item)
    result: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }
    if panel.description:
        result["description"] = panel.description
    result.update(panel.extra)
    return result


def dashboard(title: str, uid: str, panels: list[Panel]) -> dict[str, Any]:
    laid_out: list[dict[str, Any]] = []
    x = y = row_height = 0
    for pid, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(panel_json(panel, pid, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    with_action = any("$action" in t.expr for p in panels for t in p.targets)
    return {
        "uid": uid,
        "title": title,
        "tags": [TAG],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": []},
        "links": [
            {
                "title": "ocpp-fleet",
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": templating(with_action),
        "panels": laid_out,
    }


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{name}.json": json.dumps(dashboard(title, uid, panels), indent=2) + "\n"
        for name, (title, uid, panels) in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [
            name
            for name, text in files.items()
            if not (OUT / name).exists() or (OUT / name).read_text() != text
        ]
        stale += [p.name for p in OUT.glob("*.json") if p.name not in files]
        if stale:
            print(f"out of date: {', '.join(sorted(stale))}; run python grafana/generate.py")
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
