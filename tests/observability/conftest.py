"""One real Prometheus scraping one running, misbehaving fleet, shared by a module's tests.

Two fleets, one per test module, never both at once: `scraped`, an in-process fleet
as `ocpp-fleet run` serves it (harness.FleetThread), and `locust_scraped`, a headless
Locust run in a child process serving ``--metrics-port``, against the same misbehaving
CSMS (harness.CsmsThread) with the same scenario.

Bounded in time: each fixture waits at most ``SETTLE_TIMEOUT`` seconds for the scrapes
(about 16 s when all goes well) and everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.loadtest.support import LOCUST, LOCUSTFILE, ROOT, child_env
from tests.observability.harness import SCENARIO, CsmsThread, FleetThread
from tests.observability.prom import (
    Prometheus,
    end_process,
    ensure_installed,
    scrape_config_for,
    tail,
)
from tests.ports import free_port

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

# The Locust run: LOCUST_USERS wallboxes (the last REFUSED of them refused by the CSMS)
# for at most LOCUST_RUN_TIME, so that it ends by itself even if this process dies;
# the fixture ends it sooner (SIGTERM), once the module's tests are done.
LOCUST_USERS = 20
LOCUST_START_TIMEOUT = 15.0
LOCUST_RUN_TIME = 60  # s: > LOCUST_START_TIMEOUT + SETTLE_TIMEOUT + the queries (~2 s)


@dataclass(frozen=True)
class Scraped:
    prometheus: Prometheus
    target: str  # the fleet's metrics address, Prometheus's `instance` label


@contextmanager
def scraping(target: str, workdir: Path) -> Iterator[Scraped]:
    """A Prometheus scraping ``target`` with the shipped config, once the scrapes of
    EVENTS have settled (or SETTLE_TIMEOUT has passed: the tests then say what lacks)."""
    prometheus = Prometheus(config=scrape_config_for(target), workdir=workdir)
    try:
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
        yield Scraped(prometheus=prometheus, target=target)
    finally:
        prometheus.stop()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    ensure_installed("prometheus", "promtool")
    fleet = FleetThread()
    fleet.start()
    try:
        target = f"127.0.0.1:{fleet.port}"
        with scraping(target, tmp_path_factory.mktemp("prometheus")) as found:
            yield found
    finally:
        fleet.stop()


class LocustRun:
    """``locust -f locustfiles/ocpp_fleet.py --headless`` in a child process, its
    output in a file; serving its metrics on a free loopback port."""

    def __init__(self, *, csms_url: str, workdir: Path) -> None:
        self.scenario = workdir / "scenario.toml"
        self.scenario.write_text(SCENARIO)
        self.log_file = workdir / "locust.log"
        self.port = free_port()
        self.csms_url = csms_url
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            *("--headless", "-u", str(LOCUST_USERS), "-r", str(LOCUST_USERS)),
            *("--run-time", f"{LOCUST_RUN_TIME}s"),
            *("--scenario", str(self.scenario), "--csms-url", self.csms_url),
            *("--metrics-port", str(self.port)),
        ]
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [str(LOCUST), "-f", str(LOCUSTFILE), *args],
                cwd=ROOT,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + LOCUST_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"locust exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://{self.target}/metrics", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        pytest.fail(f"locust served no metrics on {self.target} in {LOCUST_START_TIMEOUT} s")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM: Locust stops its users, the wallboxes close (SIGKILL after 30 s)."""
        end_process(self.process, grace=30.0)

    def log(self, chars: int = 4000) -> str:
        return tail(self.log_file, chars)


@dataclass(frozen=True)
class LocustScraped(Scraped):
    run: LocustRun


@pytest.fixture(scope="module")
def locust_scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocustScraped]:
    ensure_installed("prometheus", "promtool")
    csms = CsmsThread(chargers=LOCUST_USERS)
    csms.start()
    run: LocustRun | None = None
    try:
        run = LocustRun(csms_url=csms.url, workdir=tmp_path_factory.mktemp("locust"))
        run.start()
        with scraping(run.target, tmp_path_factory.mktemp("prometheus")) as found:
            yield LocustScraped(prometheus=found.prometheus, target=found.target, run=run)
    finally:
        csms.calm()  # the wallboxes' stop is not slowed down by silences
        if run is not None:
            run.stop()
        csms.stop()
