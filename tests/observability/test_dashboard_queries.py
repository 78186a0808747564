"""Every PromQL expression of every Grafana panel, run by a real Prometheus against a real fleet.

The `scraped` fixture (conftest.py) runs a misbehaving reference CSMS, a fleet reporting
to PrometheusReporter, and Debian's Prometheus scraping it every second with the shipped
grafana/prometheus.yml.  Template variables are substituted as Grafana would with one
job and one instance selected (and "All" actions).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.observability.conftest import Scraped
from tests.observability.prom import JOB, SHIPPED_CONFIG, ensure_installed

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return panels


def _targets() -> list[Any]:
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


def _variable_queries() -> list[Any]:
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


def substitute(expr: str, scraped: Scraped) -> str:
    values = {
        "job": JOB,
        "instance": scraped.target,  # unescaped: in a regex "." also matches itself
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


def test_there_are_six_dashboards_with_queries() -> None:
    assert len(DASHBOARDS) == 6
    assert len(_targets()) >= 50


@pytest.mark.parametrize(("expr", "instant"), _targets())
def test_panel_query_parses_and_returns_data(scraped: Scraped, expr: str, instant: bool) -> None:
    query = substitute(expr, scraped)
    prometheus = scraped.prometheus
    if instant:
        result = prometheus.query(query)
        values = [float(series["value"][1]) for series in result]
    else:
        result = prometheus.query_range(query)
        values = [float(v) for series in result for _, v in series["values"]]
    assert result, f"no data for {query}"
    assert any(math.isfinite(v) for v in values), f"only NaN/Inf for {query}: {result[:3]}"


@pytest.mark.parametrize(("name", "query"), _variable_queries())
def test_template_variable_query_finds_values(scraped: Scraped, name: str, query: str) -> None:
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert match, f"${name}: not a label_values(selector, label) query: {query}"
    selector, label = substitute(match.group(1), scraped), match.group(2)
    values = scraped.prometheus.api(f"label/{label}/values", **{"match[]": selector})
    assert values, f"${name}: no values for {query}"
    expected = {"job": JOB, "instance": scraped.target, "action": "BootNotification"}[name]
    assert expected in values


def test_the_shipped_scrape_config_passes_promtool() -> None:
    ensure_installed("prometheus", "promtool")
    promtool = shutil.which("promtool")
    assert promtool is not None
    done = subprocess.run(
        [promtool, "check", "config", str(SHIPPED_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
