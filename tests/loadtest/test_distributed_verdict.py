"""A master judges SLOs from its workers' windows: the steps shape's capacity verdict
against a CSMS whose capacity is known, and the plain verdict after spawning.

The reference CSMS runs in this process, serving one CALL at a time in 40 ms (25 calls/s);
every wallbox of the scenario charges from its boot and samples every 4 s (0.25 calls/s).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from emulator.csms import ReferenceCsms
from tests.loadtest.support import locust, write_scenario
from tests.ports import free_port

SERVICE_TIME = 0.040  # 25 calls/s

# Every charger charges from its boot on (warm start, a stay of ten hours) and sends a
# MeterValues every 4 s; leaving hands the transactions over (no StopTransaction burst
# into the CSMS's backlog at the end).
SAMPLING = """
[scenario]
name = "sampling"

[fleet]
id_prefix = "{prefix}"
connect_timeout = 20.0
response_timeout = 30.0
shutdown_transactions = "leave"
shutdown_drain_seconds = 0.0

[[models]]
name = "sampling"
[models.configuration]
MeterValueSampleInterval = 4
ClockAlignedDataInterval = 0
WebSocketPingInterval = 0
HeartbeatInterval = 3600

[sessions]
mode = "random"
profile = "flat"
start_time = "12:00"
warm_start = true
arrivals_per_hour = 100.0
dwell_minutes = [600.0, 600.0]
energy_kwh = [inf, inf]
plug_in_delay = [0.0, 0.0]
"""


def distributed(
    *master_args: str,
    workers: int,
    scenario: Path,
    env: dict[str, str] | None = None,
    service_time: float | None = None,
) -> list[tuple[int, str]]:
    """Run a headless master with ``workers`` workers against a reference CSMS; each
    process's (exit code, output), the master's first."""
    port = free_port()

    async def main() -> list[tuple[int, str]]:
        async with ReferenceCsms(service_time=service_time) as csms:
            master = asyncio.create_task(
                locust(
                    *("--master", "--master-bind-host", "127.0.0.1"),
                    *("--master-bind-port", str(port), "--headless"),
                    *("--expect-workers", str(workers), "--expect-workers-max-wait", "30"),
                    *("--scenario", str(scenario), "--csms-url", csms.url),
                    *master_args,
                    env=env,
                    timeout=110,
                )
            )
            others = [
                asyncio.create_task(
                    locust(
                        *("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)),
                        *("--scenario", str(scenario)),
                        timeout=110,
                    )
                )
                for _ in range(workers)
            ]
            return list(await asyncio.gather(master, *others))

    return asyncio.run(main())


@pytest.mark.timeout(150)
def test_a_master_and_two_workers_give_the_capacity_verdict_of_the_steps_shape(
    tmp_path: Path,
) -> None:
    """20 wallboxes offer 5 calls/s (a fifth of the CSMS's capacity): the step passes.
    160 offer 40 calls/s, above it: the queue and the latencies grow without end and the
    step fails.  The verdict: 20, limited by the SLOs."""
    scenario = tmp_path / "sampling.toml"
    scenario.write_text(SAMPLING.format(prefix="DV"))
    verdict_path, report = tmp_path / "out" / "verdict.json", tmp_path / "report"
    results = distributed(
        *("--fleet-shape", "steps:sizes=20/160,hold=20,rate=10"),
        *("--slo", "*:p95<1s", "--verdict-json", str(verdict_path), "--report", str(report)),
        workers=2,
        scenario=scenario,
        env={"LOCUST_SLO": "errors<1%"},
        service_time=SERVICE_TIME,
    )
    (code, out), *others = results
    for worker_code, worker_out in others:
        assert worker_code == 0, worker_out
    assert code == 0, out  # a verdict was reached
    assert "Traceback" not in out
    # A verdict per step as the run goes, the verdict at the end.
    step_lines = [line for line in out.splitlines() if "ocpp_fleet: step " in line]
    assert any("step 1/2, 20 wallboxes" in line and ": PASS over " in line for line in step_lines)
    assert any("step 2/2, 160 wallboxes" in line and ": FAIL over " in line for line in step_lines)
    assert "Capacity verdict: Your CSMS held 20 chargers; at 160 chargers: *:p95<1s was" in out

    verdict = json.loads(verdict_path.read_text())
    assert (verdict["capacity"], verdict["limited_by"]) == (20, "slo")
    assert verdict["workers"] == 2  # the master merged both workers' windows
    assert [s["chargers"] for s in verdict["steps"]] == [20, 160]
    passing, failing = verdict["steps"]
    assert passing["passed"] and not failing["passed"]
    assert "*:p95<1s" in [v["slo"] for v in verdict["violations"]]
    # The hold of step 1 is its steady traffic only: no boots, ~5 MeterValues a second.
    assert "BootNotification" not in passing["actions"]
    # 20 wallboxes sampling every 4 s offer 5 calls/s whatever the machine's load (a late
    # sample is sent late, not dropped); the band is for where the hold's edges fall, and
    # 20 boots inside it would add 4 calls/s on average over a 5-s hold at least.
    assert 2.5 < passing["calls_per_second"] < 7.5, passing
    assert 3.0 <= passing["hold_s"] <= 17.0, passing
    assert passing["connected"] == 20
    assert {"lateness_p99_ms", "loop_lag_p99_ms", "limited"} <= set(passing["generator"])
    assert [j["slo"] for j in passing["slo"]] == ["errors<1%", "*:p95<1s"]
    assert verdict["scenario"] == "sampling" and verdict["seed"] == 1
    assert verdict["fleet_shape"] == "steps:sizes=20/160,hold=20,rate=10"

    assert json.loads((report / "result.json").read_text()) == verdict
    html = (report / "report.html").read_text()
    assert "Your CSMS held 20 chargers" in html
    rows = json.loads((report / "timeseries.json").read_text())["rows"]
    assert len(rows) >= 3  # 10-s rows over ~40 s
    assert any((row["chargers"] or 0) > 20 for row in rows)
    assert sum(a["count"] for row in rows for a in row["actions"]) > 100


def test_a_master_judges_plain_slos_from_its_workers_windows(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="DP", mode="random")
    (code, out), (worker_code, worker_out) = distributed(
        *("-u", "4", "-r", "20", "--run-time", "12s"),
        *("--slo", "*:p99<5s", "--slo", "*:p50<0.001ms"),
        workers=1,
        scenario=scenario,
    )
    assert worker_code == 0, worker_out
    assert code == 1, out
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Service-level objectives"))
    last = next(i for i, line in enumerate(lines) if line.startswith("SLO verdict: "))
    table = lines[first : last + 1]
    assert table[0].endswith(" s after the ramp)"), table  # windows arrived after spawning
    rows = {line.split()[0]: line for line in table[2:-1]}
    assert " PASS " in rows["*:p99<5s"] and " FAIL " in rows["*:p50<0.001ms"]
    assert "answered call" in rows["*:p99<5s"]  # measured over calls, not "no calls"
    assert table[-1].startswith("SLO verdict: FAIL (1 of 2 not met over ")


def test_a_master_with_a_bad_rule_stops_before_waiting_for_workers(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="DB")
    code, out = asyncio.run(
        locust(
            *("--master", "--headless", "--expect-workers", "1", "--master-bind-port", "0"),
            *("--scenario", str(scenario), "--csms-url", "ws://127.0.0.1:9/ocpp"),
            *("--slo", "errors<1xs"),
            timeout=30,
        )
    )
    assert code == 2, out
    errors = [line for line in out.splitlines() if "/ERROR/" in line]
    assert len(errors) == 1, out
    assert errors[0].endswith(
        'ocpp-fleet cannot start: --slo "errors<1xs": unknown unit "xs" (ms, s or %)'
    )
    # Nothing after the refusal: the master stopped there.  One that waited for its worker
    # instead would never end (none is started) and locust() would raise its timeout;
    # Locust's own "Waiting for workers" line is logged only after 5 s, at INFO, so its
    # absence would prove nothing.
    assert out.strip().splitlines()[-1] == errors[0]
