"""Every PromQL expression of every Grafana panel, run by a real Prometheus against a real fleet.

The `scraped` fixture (conftest.py) runs a misbehaving reference CSMS, a fleet reporting
to PrometheusReporter, and Debian's Prometheus scraping it every second with the shipped
grafana/prometheus.yml.  The checks (dashboards.py) are shared with
test_locust_dashboard_queries.py, which runs them against a headless Locust run.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.observability.conftest import Scraped
from tests.observability.dashboards import (
    DASHBOARDS,
    assert_panel_returns_data,
    assert_variable_finds,
    panel_targets,
    variable_queries,
)
from tests.observability.prom import SHIPPED_CONFIG, ensure_installed


def test_there_are_six_dashboards_with_queries() -> None:
    assert len(DASHBOARDS) == 6
    assert len(panel_targets()) >= 50


@pytest.mark.parametrize(("expr", "instant"), panel_targets())
def test_panel_query_parses_and_returns_data(scraped: Scraped, expr: str, instant: bool) -> None:
    assert_panel_returns_data(scraped.prometheus, scraped.target, expr, instant)


@pytest.mark.parametrize(("name", "query"), variable_queries())
def test_template_variable_query_finds_values(scraped: Scraped, name: str, query: str) -> None:
    assert_variable_finds(scraped.prometheus, scraped.target, name, query)


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
