"""One real Prometheus scraping one running, misbehaving fleet, shared by the module's tests.

Bounded in time: the fixture waits at most ``SETTLE_TIMEOUT`` seconds for the scrapes
(about 16 s when all goes well) and everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.observability.harness import FleetThread
from tests.observability.prom import Prometheus, ensure_installed, scrape_config_for

SCRAPES = 15  # one per second: enough for rate() over any of them
SETTLE_TIMEOUT = 35.0
# Series that only exist once the misbehaving CSMS made them happen: each must have a
# few samples before the dashboards are queried, so rate() has two points to work with.
EVENTS = (
    'ocpp_fleet_calls_unanswered_total{reason="timeout"}',
    'ocpp_fleet_callerrors_total{sender="csms"}',
    'ocpp_fleet_callerrors_total{sender="charger"}',
    'ocpp_fleet_schema_violations_total{message="callresult"}',
    'ocpp_fleet_schema_violations_total{message="call"}',
    'ocpp_fleet_schema_violations_total{message="frame"}',
    "ocpp_fleet_unexpected_answers_total",
    "ocpp_fleet_connect_failures_total",
    "ocpp_fleet_disconnects_total",
    "ocpp_fleet_csms_call_handling_seconds_count",
    "ocpp_fleet_pong_rtt_seconds_count",
)


@dataclass(frozen=True)
class Scraped:
    prometheus: Prometheus
    target: str  # the fleet's metrics address, Prometheus's `instance` label
    fleet: FleetThread


@pytest.fixture(scope="session")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    ensure_installed("prometheus", "promtool")
    fleet = FleetThread()
    fleet.start()
    prometheus: Prometheus | None = None
    try:
        target = f"127.0.0.1:{fleet.port}"
        prometheus = Prometheus(
            config=scrape_config_for(target), workdir=tmp_path_factory.mktemp("prometheus")
        )
        prometheus.start()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            scrapes = prometheus.scalar("count_over_time(ocpp_fleet_chargers[5m])")
            waiting = [
                e
                for e in EVENTS
                if not prometheus.scalar(f"min(count_over_time({e}[5m])) >= 3") >= 3
            ]
            if scrapes >= SCRAPES and not waiting:
                break
            time.sleep(0.5)
        yield Scraped(prometheus=prometheus, target=target, fleet=fleet)
    finally:
        if prometheus is not None:
            prometheus.stop()
        fleet.stop()
