"""Locust processes serve the same Prometheus metrics as `ocpp-fleet run`, when asked.

Real parts on 127.0.0.1: Locust in child processes, the reference CSMS in this one, the
metrics scraped over HTTP while the fleet runs.  Plus the pure rules of
:func:`~emulator.loadtest.options.metrics_address` (which port, from where).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from emulator.csms import ReferenceCsms
from emulator.loadtest.options import MetricsAddress, OptionError, metrics_address
from tests.integration.support import eventually
from tests.loadtest.support import ROOT, locust, write_scenario
from tests.ports import free_port, free_port_pair

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape_until(url: str, ready: Any, timeout: float, what: str) -> Samples:
    """Scrape ``url`` every 0.2 s until ``ready(samples)``; the last scrape."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while True:
        try:
            samples = await asyncio.to_thread(scrape, url)
        except OSError:  # not serving yet
            pass
        else:
            if ready(samples):
                return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {samples}")
        await asyncio.sleep(0.2)


def listening_ports(pid: int) -> set[int]:
    return {
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


BOOT_COUNT = "ocpp_fleet_call_duration_seconds_count"


def unlabelled_metrics() -> set[str]:
    """The sample names of docs/metrics.md's metrics without labels (histograms: _count)."""
    rows = re.findall(
        r"^\| `(ocpp_fleet_\w+)` \| (\w+) \| — \|", (ROOT / "docs" / "metrics.md").read_text(), re.M
    )
    assert len(rows) > 10
    return {name + ("_count" if kind == "histogram" else "") for name, kind in rows}


def test_a_local_run_serves_the_per_action_metrics_while_it_runs(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="PM", mode="random")
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    users = 4

    def ready(s: Samples) -> bool:
        return (
            value(s, BOOT_COUNT, action="BootNotification", outcome="ok") >= users
            and value(s, "ocpp_fleet_chargers_connected") == users
            and value(s, "ocpp_fleet_transactions_started_total") >= 1
            and value(s, "ocpp_fleet_send_lateness_seconds_count") >= 1
            and value(s, "ocpp_fleet_loop_lag_seconds_count") >= 1
        )

    async def main() -> tuple[int, str, Samples]:
        async with ReferenceCsms() as csms:
            quit_ = asyncio.Event()
            run = asyncio.create_task(
                locust(
                    *("--headless", "-u", str(users), "-r", "20", "--run-time", "60s"),
                    *("--scenario", str(scenario), "--csms-url", csms.url),
                    *("--metrics-port", str(port)),
                    timeout=90,
                    terminate=quit_,
                )
            )
            try:
                samples = await scrape_until(url, ready, 40, "the fleet's metrics")
            finally:
                quit_.set()
                code, out = await run
            return code, out, samples

    code, out, samples = asyncio.run(main())
    assert code == 0, out
    assert f"Prometheus metrics on {url}" in out
    # Per action and outcome, as `ocpp-fleet run` serves them.
    assert value(samples, BOOT_COUNT, action="StatusNotification", outcome="ok") >= users
    assert value(samples, "ocpp_fleet_connect_duration_seconds_count") >= users
    assert value(samples, "ocpp_fleet_messages_total", direction="sent") > users
    assert value(samples, "ocpp_fleet_messages_total", direction="received") > users
    assert value(samples, "ocpp_fleet_chargers") == users
    assert value(samples, "ocpp_fleet_chargers_booted") == users
    assert value(samples, "ocpp_fleet_scenario_info", scenario="loadtest", version="0.1.0") == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    # The same series set as `ocpp-fleet run`: every documented metric without labels
    # is there (those with labels once they have a sample), no *_created, no charger id.
    names = {name for name, _ in samples}
    assert unlabelled_metrics() - names == set()
    assert not [n for n in names if n.endswith("_created")]
    labels = {v for _, pairs in samples for _, v in pairs}
    assert not [v for v in labels if re.search(r"PM\d{6}", v)]


def test_without_the_option_a_locust_process_serves_nothing(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="NM")

    async def main() -> tuple[int, str, set[int]]:
        async with ReferenceCsms() as csms:
            quit_ = asyncio.Event()
            pid: list[int] = []
            run = asyncio.create_task(
                locust(
                    *("--headless", "-u", "2", "-r", "20", "--run-time", "60s"),
                    *("--scenario", str(scenario), "--csms-url", csms.url),
                    timeout=90,
                    terminate=quit_,
                    started=pid.append,
                )
            )
            try:
                await eventually(
                    lambda: len([r for r in csms.chargers.values() if r.booted]) == 2,
                    30,
                    "2 booted wallboxes",
                )
                ports = listening_ports(pid[0])
            finally:
                quit_.set()
                code, out = await run
            return code, out, ports

    code, out, ports = asyncio.run(main())
    assert code == 0, out
    assert ports == set()  # headless, no metrics: no server at all
    assert "Prometheus metrics on" not in out


def test_a_metrics_port_in_use_ends_the_run_with_exit_3_and_one_clear_line(
    tmp_path: Path,
) -> None:
    scenario = write_scenario(tmp_path, prefix="IU")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = asyncio.run(
            locust(
                *("--headless", "-u", "1", "-r", "1", "--run-time", "30s"),
                *("--scenario", str(scenario), "--csms-url", "ws://127.0.0.1:9/ocpp"),
                timeout=60,
                env={"LOCUST_METRICS_PORT": str(port)},  # the option, as an environment variable
            )
        )
    assert code == 3, out
    assert f"ocpp-fleet cannot start: cannot serve metrics on 127.0.0.1:{port}" in out


def test_each_worker_serves_its_own_port_and_the_master_none(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="DM")
    master_port = free_port()
    base = free_port_pair()
    urls = [f"http://127.0.0.1:{base + i}/metrics" for i in range(2)]
    # As in the container image: every process gets the port in its environment.
    env = {"OCPP_FLEET_METRICS_PORT": str(base), "OCPP_FLEET_METRICS_HOST": "127.0.0.1"}

    def ready(s: Samples) -> bool:
        return (
            value(s, "ocpp_fleet_chargers_booted") == 2
            and value(s, BOOT_COUNT, action="BootNotification", outcome="ok") >= 2
        )

    async def main() -> dict[str, Any]:
        async with ReferenceCsms() as csms:
            common = ("--scenario", str(scenario), "--metrics-port-per-worker")
            master_args = (
                *("--master", "--master-bind-host", "127.0.0.1"),
                *("--master-bind-port", str(master_port)),
                *("--headless", "--expect-workers", "2", "--expect-workers-max-wait", "30"),
                *("-u", "4", "-r", "20", "--run-time", "60s", "--csms-url", csms.url),
            )
            worker_args = (
                *("--worker", "--master-host", "127.0.0.1"),
                *("--master-port", str(master_port)),
            )
            quit_ = asyncio.Event()
            master_pid: list[int] = []
            master = asyncio.create_task(
                locust(
                    *master_args,
                    *common,
                    timeout=90,
                    env=env,
                    terminate=quit_,
                    started=master_pid.append,
                )
            )
            workers = [
                asyncio.create_task(locust(*worker_args, *common, timeout=90, env=env))
                for _ in range(2)
            ]
            found: dict[str, Any] = {}
            try:
                found["scrapes"] = [
                    await scrape_until(url, ready, 40, f"metrics on {url}") for url in urls
                ]
                found["master_ports"] = listening_ports(master_pid[0])
            finally:
                quit_.set()  # the master quits and tells its workers to
                found["results"] = await asyncio.gather(master, *workers)
            return found

    found = asyncio.run(main())
    for code, out in found["results"]:
        assert code == 0, out
    master_out, *worker_outs = (out for _, out in found["results"])
    assert "Prometheus metrics on" not in master_out
    assert found["master_ports"] == {master_port}  # the master serves no metrics
    assert (
        sorted(u for u in urls for out in worker_outs if f"Prometheus metrics on {u}" in out)
        == urls
    )
    for samples in found["scrapes"]:  # each worker: its own 2 wallboxes
        assert value(samples, "ocpp_fleet_chargers") == 2
        assert value(samples, "ocpp_fleet_connect_duration_seconds_count") >= 2


# -- which port, from where (no Locust needed) -----------------------------------------


def options(**kw: Any) -> SimpleNamespace:
    base = {"metrics_port": "", "metrics_host": "", "metrics_port_per_worker": False}
    return SimpleNamespace(**(base | kw))


def test_no_port_no_metrics() -> None:
    assert metrics_address(options(), environ={}, worker_index=None) is None
    assert metrics_address(options(), environ={}, worker_index=3) is None


def test_the_option_wins_over_the_environment_which_is_the_fallback() -> None:
    env = {"OCPP_FLEET_METRICS_PORT": "9100", "OCPP_FLEET_METRICS_HOST": "0.0.0.0"}
    assert metrics_address(options(), environ=env, worker_index=None) == MetricsAddress(
        "0.0.0.0", 9100
    )
    chosen = options(metrics_port="9200", metrics_host="127.0.0.2")
    assert metrics_address(chosen, environ=env, worker_index=None) == MetricsAddress(
        "127.0.0.2", 9200
    )
    assert metrics_address(
        options(metrics_port=" 9300 "), environ={}, worker_index=None
    ) == MetricsAddress("127.0.0.1", 9300)


def test_per_worker_ports_add_the_worker_index_and_only_for_workers() -> None:
    per_worker = options(metrics_port="9100", metrics_port_per_worker=True)
    assert metrics_address(per_worker, environ={}, worker_index=None) == MetricsAddress(
        "127.0.0.1", 9100
    )  # a local run
    assert [
        metrics_address(per_worker, environ={}, worker_index=i).port  # type: ignore[union-attr]
        for i in range(3)
    ] == [9100, 9101, 9102]
    same = options(metrics_port="9100")
    assert metrics_address(same, environ={}, worker_index=2) == MetricsAddress("127.0.0.1", 9100)
    any_port = options(metrics_port="0", metrics_port_per_worker="true")
    assert metrics_address(any_port, environ={}, worker_index=2) == MetricsAddress("127.0.0.1", 0)


@pytest.mark.parametrize("text", ["http", "-1", "65536", "9100.5"])
def test_a_bad_port_names_where_it_came_from(text: str) -> None:
    with pytest.raises(OptionError, match="--metrics-port"):
        metrics_address(options(metrics_port=text), environ={}, worker_index=None)
    with pytest.raises(OptionError, match=r"\$OCPP_FLEET_METRICS_PORT"):
        metrics_address(options(), environ={"OCPP_FLEET_METRICS_PORT": text}, worker_index=None)


def test_a_per_worker_port_past_65535_is_an_error() -> None:
    late = options(metrics_port="65535", metrics_port_per_worker=True)
    with pytest.raises(OptionError, match="worker 1"):
        metrics_address(late, environ={}, worker_index=1)
