"""The capacity search against a CSMS whose capacity is known: the reference CSMS serving
one CALL at a time in 40 ms (25 calls/s), on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator.capacity import CapacitySearch, SearchSettings, Step, run_search
from emulator.csms import ReferenceCsms
from emulator.csms.service import Served
from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import parse_scenario
from emulator.metrics.slo import Slo, SloResult, evaluate, parse_slo
from emulator.metrics.stats import Direction, RunStats

ROOT = Path(__file__).resolve().parents[2]
SERVICE_TIME = 0.040  # 25 calls/s

# Every charger charges from its boot on (warm start, a stay of ten hours) and sends a
# MeterValues every 4 s: a steady 0.25 calls/s, at phases spread by the boots.
BUSY = (ROOT / "scenarios" / "capacity-demo.toml").read_text()
# This test's judge: a CSMS that holds five chargers (no SLO expression measures that).
AT_MOST_5 = Slo(text="chargers<=5", measure="chargers", action=None, op="<=", limit=5.0, unit="")


@pytest.mark.timeout(480)
def test_the_verdict_lies_between_half_and_full_utilisation_of_the_csms() -> None:
    scenario = parse_scenario(BUSY, source="<capacity test>")
    slos = [parse_slo("*:p95<300ms")]
    windows: list[tuple[int, Served, bool]] = []

    async def main() -> Any:
        async with ReferenceCsms(service_time=SERVICE_TIME) as csms:
            stats = RunStats()
            fleet = Fleet(scenario=scenario, csms_url=csms.url, chargers=0, seed=3, reporter=stats)
            hold_started: list[Served] = []

            def phase(text: str) -> None:
                if "holding" in text:
                    hold_started.append(csms.served)

            def step(done: Step) -> None:
                windows.append((done.chargers, csms.served - hold_started[-1], done.passed))

            search = CapacitySearch(
                fleet=fleet,
                stats=stats,
                judge=lambda window: evaluate(slos, window).results,
                # A coarser bisection than the command's 10 % keeps this test short.
                settings=SearchSettings(start=50, growth=1.5, hold=6.0, precision=0.25),
                on_step=step,
                on_phase=phase,
            )
            return await asyncio.wait_for(run_search(search), timeout=450)

    verdict = asyncio.run(main())
    # The offered load per charger, from the calls the CSMS itself received during the
    # holds of the steps it kept up with.
    offered = statistics.median(
        served.total / served.elapsed / chargers for chargers, served, passed in windows if passed
    )
    half, full = 0.5 / (offered * SERVICE_TIME), 1.0 / (offered * SERVICE_TIME)
    # One MeterValues every 4 s: 0.25, but a 6-s hold sees one or two of each charger,
    # by its phase (0.283 and 0.316 were seen; a hold of 8 s would see two of each, at
    # the price of longer settles and recoveries: 173 s for this test once).
    assert 0.22 < offered < 0.34
    assert verdict.limited_by == "slo", verdict.sentence()
    assert verdict.capacity is not None
    assert half <= verdict.capacity <= full, (half, verdict.capacity, full, verdict.sentence())
    failing = verdict.deciding
    assert failing is not None and failing.chargers > verdict.capacity
    assert failing.chargers <= verdict.capacity * 1.25 + 1  # bisected to within 25 %
    assert [v.slo.text for v in verdict.violations] == ["*:p95<300ms"]
    assert "held" in verdict.sentence() and f"{verdict.capacity:,}" in verdict.sentence()
    # Each step judged its hold only: the boots of its newest wallboxes are not in it.
    # A hold is a sleep of 6 s between two snapshots: a loaded machine wakes it late,
    # never early, so only the upper bound is loose (twice the hold).
    for s in verdict.steps:
        assert 6.0 <= s.window.elapsed < 12.0
        assert "BootNotification" not in s.to_json()["actions"]


@pytest.mark.timeout(120)
def test_a_running_fleet_grows_shrinks_and_boots_as_the_search_asks() -> None:
    """The real fleet as the search sees it (LiveFleet): wallboxes added at the ramp,
    counted when booted, removed on a recovery until they have closed.  The search's
    decisions are the model's business (test_search_model.py): here a judge that fails
    every hold of more than five chargers makes the search grow, recover and bisect."""
    scenario = parse_scenario(BUSY, source="<capacity test>")
    sizes_seen: list[tuple[str, int]] = []

    async def main() -> Any:
        async with ReferenceCsms() as csms:
            stats = RunStats()
            fleet = Fleet(scenario=scenario, csms_url=csms.url, chargers=0, seed=3, reporter=stats)

            def judge(window: RunStats) -> list[SloResult]:
                chargers = len(fleet.drivers)
                return [SloResult(slo=AT_MOST_5, value=chargers, passed=chargers <= 5, detail="")]

            def phase(text: str) -> None:
                if "recovered in" not in text:  # the end of a recovery says how long it took
                    sizes_seen.append((text.split(": ")[1].split(" ")[0], len(fleet.drivers)))

            search = CapacitySearch(
                fleet=fleet,
                stats=stats,
                judge=judge,
                settings=SearchSettings(start=4, growth=2.0, hold=1.0),
                on_phase=phase,
            )
            return await asyncio.wait_for(run_search(search), timeout=100)

    verdict = asyncio.run(main())
    assert [(s.chargers, s.passed) for s in verdict.steps] == [
        (4, True),
        (8, False),
        (6, False),
        (5, True),
    ]
    # Each phase found the fleet the size the one before left it: the recoveries shrank
    # it to 4 (the removed wallboxes had closed), the holds found every wallbox booted.
    assert sizes_seen == [
        ("resizing", 0),
        ("4", 4),
        ("resizing", 4),
        ("8", 8),
        ("recovering", 8),
        ("resizing", 4),
        ("6", 6),
        ("recovering", 6),
        ("resizing", 4),
        ("5", 5),
    ]
    assert (verdict.capacity, verdict.limited_by) == (5, "slo")
    for step in verdict.steps:
        assert step.connected == step.chargers
        assert step.window.elapsed >= 1.0
        assert (Direction.CP_TO_CSMS, "BootNotification") not in step.window.actions


def test_the_command_writes_the_verdict_json_and_the_report(tmp_path: Path) -> None:
    csms = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator.cli",
            "csms",
            "--port",
            "0",
            "--service-time",
            "40ms",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert csms.stdout is not None
        url = ""
        for _ in range(20):
            line = csms.stdout.readline()
            if "ws://" in line:
                url = line[line.index("ws://") :].split()[0].removesuffix("/<chargerId>")
                break
        assert url, "the CSMS did not say where it listens"
        scenario = tmp_path / "idle.toml"
        scenario.write_text(BUSY)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "emulator.cli",
                "capacity",
                "--csms-url",
                url,
                "--scenario",
                str(scenario),
                "--slo",
                "*:p95<300ms",
                "--start",
                "20",
                "--max",
                "30",
                "--hold",
                "4",
                "--json",
                str(tmp_path / "verdict.json"),
                "--report",
                str(tmp_path / "report"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        csms.terminate()
        csms.wait(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    # 30 chargers offer 7.5 calls/s to a CSMS that serves 25/s: --max is what stops it.
    assert verdict["capacity"] == 30 and verdict["limited_by"] == "max"
    assert [s["chargers"] for s in verdict["steps"]] == [20, 30]
    step = verdict["steps"][-1]
    assert set(step) >= {"chargers", "passed", "calls_per_second", "actions", "generator"}
    assert set(step["actions"]["MeterValues"]) == {"count", "p50_ms", "p95_ms", "p99_ms", "errors"}
    # 7.5 calls/s offered, far below the CSMS's 25/s: a loaded generator sends fewer
    # (its sends go out late), never more, and the hold's 1 or 2 samples of each charger
    # give 5 to 10 (the window's phase, as in the calibration test above).
    assert 5 < step["calls_per_second"] < 10
    assert verdict["scenario"] == "capacity-demo" and verdict["seed"] == 7
    assert {"python", "ocpp-fleet", "websockets"} <= set(verdict["versions"])
    html = (tmp_path / "report" / "report.html").read_text()
    assert "at least that" in html  # the verdict sentence heads the page
    assert json.loads((tmp_path / "report" / "result.json").read_text()) == verdict
    assert (tmp_path / "report" / "timeseries.csv").exists()
    assert "PASS" in result.stdout and "Your CSMS held 30 chargers" in result.stdout


def test_a_capacity_search_without_slos_or_with_a_bad_one_is_a_usage_error(tmp_path: Path) -> None:
    scenario = tmp_path / "idle.toml"
    scenario.write_text(BUSY)
    common = ["capacity", "--csms-url", "ws://127.0.0.1:9/ocpp", "--scenario", str(scenario)]
    for extra, expected in (
        ([], "needs SLOs"),
        (["--slo", "*:p95<300xs"], 'unknown unit "xs"'),
        (["--slo", "ledger=0"], "ledger SLO"),
        (["--slo", "errors<1%", "--growth", "1"], "--growth"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "emulator.cli", *common, *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (extra, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_csms_nobody_can_reach_ends_the_search_with_exit_3(tmp_path: Path) -> None:
    scenario = tmp_path / "idle.toml"
    assert "connect_timeout = 30.0" in BUSY
    scenario.write_text(BUSY.replace("connect_timeout = 30.0", "connect_timeout = 2.0"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator.cli",
            "capacity",
            "--csms-url",
            "ws://127.0.0.1:9/ocpp",
            "--scenario",
            str(scenario),
            "--slo",
            "errors<1%",
            "--start",
            "3",
            "--hold",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no wallbox reached the CSMS" in done.stderr
