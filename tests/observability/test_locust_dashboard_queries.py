"""The shipped dashboards against a Locust deployment: what Kubernetes soak tests run.

The `locust_scraped` fixture (conftest.py) runs the same misbehaving reference CSMS as
test_dashboard_queries.py, a headless Locust run of the same scenario in a child
process (``locustfiles/ocpp_fleet.py --metrics-port``, bounded by ``--run-time``), and
Debian's Prometheus scraping that port with the shipped grafana/prometheus.yml.  Every
panel expression must parse and return data, and the template variables must find the
Locust process as job and instance, exactly as for `ocpp-fleet run`.
"""

from __future__ import annotations

import pytest

from tests.observability.conftest import LOCUST_RUN_TIME, LocustScraped
from tests.observability.dashboards import (
    assert_panel_returns_data,
    assert_variable_finds,
    panel_targets,
    variable_queries,
)


def _still_running(scraped: LocustScraped) -> None:
    """Once Locust has ended its series are stale: say so rather than "no data"."""
    assert scraped.run.running, (
        f"the Locust run ended before the queries (--run-time {LOCUST_RUN_TIME}s):\n"
        f"{scraped.run.log()}"
    )


@pytest.mark.parametrize(("expr", "instant"), panel_targets())
def test_panel_query_returns_data_for_a_locust_run(
    locust_scraped: LocustScraped, expr: str, instant: bool
) -> None:
    _still_running(locust_scraped)
    assert_panel_returns_data(locust_scraped.prometheus, locust_scraped.target, expr, instant)


@pytest.mark.parametrize(("name", "query"), variable_queries())
def test_template_variable_finds_the_locust_run(
    locust_scraped: LocustScraped, name: str, query: str
) -> None:
    _still_running(locust_scraped)
    assert_variable_finds(locust_scraped.prometheus, locust_scraped.target, name, query)


def test_the_locust_run_fed_its_metrics_without_an_error(locust_scraped: LocustScraped) -> None:
    # The bridge logs a failing drain or fleet engine at ERROR, with a traceback.
    _still_running(locust_scraped)
    log = locust_scraped.run.log(chars=1_000_000)
    assert "Prometheus metrics on http://" + locust_scraped.target + "/metrics" in log
    assert "/ERROR/" not in log and "Traceback" not in log, log[-4000:]
