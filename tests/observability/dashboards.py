"""The Grafana dashboards' queries, and the checks a real Prometheus must pass with them.

Shared by the tests that run the dashboards against an `ocpp-fleet run` fleet
(test_dashboard_queries.py) and against a headless Locust run
(test_locust_dashboard_queries.py): each panel expression must parse and return data,
and each template variable must find the scraped target.  Template variables are
substituted as Grafana would with one job and one instance selected (and "All"
actions).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from tests.observability.prom import JOB, Prometheus

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return panels


def panel_targets() -> list[Any]:
    """pytest params (expr, instant) of every panel of every dashboard."""
    params = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                params.append(
                    pytest.param(
                        target["expr"],
                        bool(target.get("instant")),
                        id=f"{path.stem}: {panel['title']} [{target['refId']}]",
                    )
                )
    return params


def variable_queries() -> list[Any]:
    """pytest params (name, query) of every query template variable."""
    params = []
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["query"]
                text = query["query"] if isinstance(query, dict) else query
                params.append(
                    pytest.param(variable["name"], text, id=f"{path.stem}: ${variable['name']}")
                )
    return params


def substitute(expr: str, instance: str) -> str:
    """``expr`` with Grafana's variables: job JOB, ``instance`` selected, all actions."""
    values = {
        "job": JOB,
        "instance": instance,  # unescaped: in a regex "." also matches itself
        "action": ".*",
        "__rate_interval": "1m",
        "__interval": "1s",
        "__range": "5m",
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"unknown template variable ${name} in {expr}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def assert_panel_returns_data(
    prometheus: Prometheus, instance: str, expr: str, instant: bool
) -> None:
    """The panel's query parses and returns at least one finite value."""
    query = substitute(expr, instance)
    if instant:
        result = prometheus.query(query)
        values = [float(series["value"][1]) for series in result]
    else:
        result = prometheus.query_range(query)
        values = [float(v) for series in result for _, v in series["values"]]
    assert result, f"no data for {query}"
    assert any(math.isfinite(v) for v in values), f"only NaN/Inf for {query}: {result[:3]}"


def assert_variable_finds(prometheus: Prometheus, instance: str, name: str, query: str) -> None:
    """The template variable's label_values() query finds the job, instance, an action."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert match, f"${name}: not a label_values(selector, label) query: {query}"
    selector, label = substitute(match.group(1), instance), match.group(2)
    values = prometheus.api(f"label/{label}/values", **{"match[]": selector})
    assert values, f"${name}: no values for {query}"
    expected = {"job": JOB, "instance": instance, "action": "BootNotification"}[name]
    assert expected in values
