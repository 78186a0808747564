"""`ocpp-fleet run --slo` against the embedded reference CSMS: the verdict, its window,
its table and JSON, the exit codes, and one clear line for every bad rule."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from emulator.csms import ReferenceCsms
from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import parse_scenario
from emulator.metrics.stats import RunStats
from tests.integration.support import ocpp_fleet

# Ten wallboxes at 5 per second: the last one starts 1.8 s after the first.
SCENARIO = """
[scenario]
name = "slo"
seed = 2

[fleet]
id_prefix = "SLO"
chargers = 10
connect_timeout = 10.0
response_timeout = 5.0
ramp_per_second = {ramp}
shutdown_drain_seconds = {drain}

[[models]]
name = "socket"
variant = "socket"
phases = 3
max_current = 32.0
[models.configuration]
MeterValueSampleInterval = 4
ClockAlignedDataInterval = 0

[sessions]
mode = "random"
arrivals_per_hour = {arrivals}
plug_in_delay = [0.1, 0.3]
energy_kwh = [0.005, 0.02]
idle_after_full = [0.1, 0.5]

{extra}
"""


def scenario_text(
    *, ramp: float = 5.0, extra: str = "", arrivals: float = 3600.0, drain: float = 10.0
) -> str:
    return SCENARIO.format(ramp=ramp, extra=extra, arrivals=arrivals, drain=drain)


def write_scenario(tmp_path: Path, **kwargs: Any) -> Path:
    path = tmp_path / "slo.toml"
    path.write_text(scenario_text(**kwargs))
    return path


def run(scenario: Path, *extra: str, duration: str = "4") -> subprocess.CompletedProcess[str]:
    return ocpp_fleet(
        "run",
        "--scenario",
        str(scenario),
        "--duration",
        duration,
        "--no-progress",
        *extra,
    )


def test_slos_that_hold_exit_0_with_the_verdict_in_the_table_and_the_json(
    tmp_path: Path,
) -> None:
    scenario = write_scenario(tmp_path, extra='[slo]\nrules = ["*:p99<2s", "ledger=0"]\n')
    report = tmp_path / "run.json"
    result = run(
        scenario,
        "--slo",
        "StatusNotification:p95<1s",
        "--slo",
        "errors<0.5%",
        "--slo",
        "timeouts=0",
        "--slo",
        "connect_failures<1%",
        "--json",
        str(report),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    verdict = json.loads(report.read_text())["slo"]
    assert verdict["passed"] is True
    by_rule = {r["slo"]: r for r in verdict["results"]}
    # Scenario rules first, then the options, in order.
    assert list(by_rule) == [
        "*:p99<2s",
        "ledger=0",
        "StatusNotification:p95<1s",
        "errors<0.5%",
        "timeouts=0",
        "connect_failures<1%",
    ]
    assert all(r["passed"] for r in verdict["results"])
    assert by_rule["*:p99<2s"]["unit"] == "s" and 0 < by_rule["*:p99<2s"]["value"] < 2
    assert by_rule["StatusNotification:p95<1s"]["detail"].endswith("answered calls")
    assert by_rule["ledger=0"] | {"detail": ""} == {
        "slo": "ledger=0",
        "value": 0.0,
        "unit": "count",
        "op": "=",
        "limit": 0.0,
        "passed": True,
        "detail": "",
    }
    assert by_rule["errors<0.5%"]["value"] == 0.0 and by_rule["errors<0.5%"]["unit"] == "%"
    # The window starts when the last wallbox of the ramp started (1.8 s in) and ends with
    # the duration (4 s): about 2.2 s, not the whole run.
    assert 1.2 < verdict["window_s"] < 3.0, verdict["window_s"]
    assert "note" not in verdict
    out = result.stdout
    assert "Service-level objectives (window: " in out and "s after the ramp)" in out
    for rule in by_rule:
        assert rule in out
    assert out.rstrip().splitlines()[-1].startswith("SLO verdict: PASS (6 of 6 met over ")


def test_an_slo_that_fails_exits_1_and_says_which_and_by_how_much(tmp_path: Path) -> None:
    # The embedded CSMS refuses 30 % of the charger calls with a CALLERROR (a short
    # drain: refused StopTransactions would have the shutdown wait for their retries).
    scenario = write_scenario(tmp_path, drain=1.0, extra="[faults]\ncsms_callerror_share = 0.3\n")
    report = tmp_path / "run.json"
    result = run(
        scenario,
        "--slo",
        "BootNotification:p50<0.001ms",  # no CSMS answers in a microsecond
        "--slo",
        "errors<0.5%",
        "--slo",
        "*:p99<5s",
        "--slo",
        "DiagnosticsStatusNotification:p99<1s",  # never sent in this scenario
        "--json",
        str(report),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    verdict = json.loads(report.read_text())["slo"]
    assert verdict["passed"] is False
    boot, errors, pooled, never = verdict["results"]
    assert boot["passed"] is False and boot["value"] > 0.001 and boot["unit"] == "ms"
    assert errors["passed"] is False and 10.0 < errors["value"] < 60.0  # ~30 % refused
    assert " errors in " in errors["detail"]
    assert pooled["passed"] is True
    assert never == {
        "slo": "DiagnosticsStatusNotification:p99<1s",
        "value": None,
        "unit": "s",
        "op": "<",
        "limit": 1.0,
        "passed": False,
        "detail": "no DiagnosticsStatusNotification calls in the window",
    }
    lines = result.stdout.rstrip().splitlines()
    assert lines[-1] == (
        "SLO verdict: FAIL (3 of 4 not met over "
        f"{verdict['window_s']:.1f} s: BootNotification:p50<0.001ms, errors<0.5%, "
        "DiagnosticsStatusNotification:p99<1s)"
    )
    table = "\n".join(lines[-8:])
    assert "FAIL" in table and "PASS" in table and "no calls" in table


def test_a_run_shorter_than_its_ramp_is_judged_from_the_start_and_says_so(
    tmp_path: Path,
) -> None:
    scenario = write_scenario(tmp_path, ramp=4.0)  # the last of 10 starts at 2.25 s
    report = tmp_path / "run.json"
    result = run(
        scenario, "--chargers", "10", "--slo", "*:p99<5s", "--json", str(report), duration="1"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(report.read_text())["slo"]
    assert verdict["note"] == "the run was shorter than its ramp: judged from the start"
    assert verdict["window_s"] > 2.0  # the ramp still completes
    assert "judged from the start" in result.stdout


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "embedded reference CSMS on" not in result.stdout  # nothing started
    return lines[0]


def test_a_bad_slo_option_is_one_line_and_exit_2(tmp_path: Path) -> None:
    line = one_error_line(
        run(
            Path("scenarios/demo.toml"),
            "--slo",
            "timeouts=0",
            "--slo",
            "StartTransaction:p99<800xs",
        )
    )
    assert line == 'error: --slo "StartTransaction:p99<800xs": unknown unit "xs" (ms, s or %)'
    line = one_error_line(
        run(Path("scenarios/demo.toml"), "--slo", "RemoteStartTransaction:p99<1s")
    )
    assert line.startswith('error: --slo "RemoteStartTransaction:p99<1s": ')
    assert "a call the CSMS sends" in line


def test_a_bad_rule_in_the_scenario_names_the_file_and_the_field(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path, extra='[slo]\nrules = ["errors<0.5%", "StartTransaction:p99<800xs"]\n'
    )
    line = one_error_line(run(scenario))
    assert line == (f'error: {scenario}: slo.rules[1]: unknown unit "xs" (ms, s or %)')
    scenario.write_text(scenario_text(extra='[slo]\nrules = "errors<0.5%"\n'))
    line = one_error_line(run(scenario))
    assert line == f'error: {scenario}: slo.rules: expected an array of strings, got "errors<0.5%"'


def test_a_ledger_slo_against_an_external_csms_is_a_usage_error(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, extra='[slo]\nrules = ["ledger=0"]\n')
    line = one_error_line(run(scenario, "--csms-url", "ws://127.0.0.1:9/ocpp"))
    assert line.startswith(f"error: {scenario}: slo.rules[0]: the ledger SLO cannot be judged")
    assert "--csms-url" in line
    line = one_error_line(
        run(Path("scenarios/demo.toml"), "--slo", "ledger=0", "--csms-url", "ws://127.0.0.1:9/x")
    )
    assert line.startswith('error: --slo "ledger=0": the ledger SLO cannot be judged')


def test_the_run_calls_its_window_hooks_after_the_ramp_and_before_the_drain() -> None:
    """Fleet.run's hooks: on_ramped when the last wallbox started, on_ending when the
    duration is over and before the wallboxes stop; a run stopped during its ramp calls
    only on_ending."""
    scenario = parse_scenario(scenario_text(ramp=10.0), source="<slo>")

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with ReferenceCsms() as csms:
            loop = asyncio.get_running_loop()
            seen: dict[str, Any] = {}
            fleet = Fleet(
                scenario=scenario, csms_url=csms.url, chargers=5, seed=1, reporter=RunStats()
            )
            started = loop.time()
            await fleet.run(
                duration=3.0,
                on_ramped=lambda: seen.update(
                    ramped=loop.time() - started, started=fleet.counts().started
                ),
                on_ending=lambda: seen.update(
                    ending=loop.time() - started, connected=fleet.counts().connected
                ),
            )
            seen["after"] = fleet.counts().connected

            stopped: dict[str, Any] = {}
            slow = Fleet(
                scenario=parse_scenario(scenario_text(ramp=1.0), source="<slo>"),
                csms_url=csms.url,
                chargers=5,
                seed=1,
                reporter=RunStats(),
            )
            loop.call_later(0.5, slow.stop)
            await slow.run(
                duration=30,
                on_ramped=lambda: stopped.update(ramped=True),
                on_ending=lambda: stopped.update(ending=True),
            )
            return seen, stopped

    seen, stopped = asyncio.run(asyncio.wait_for(main(), 60))
    # The 5th wallbox starts at 0.4 s and the duration ends at 3 s: lower bounds, which load
    # cannot break; on_ramped comes with every wallbox started, 2.6 s before the end (the
    # upper bound leaves a loaded machine 2 s).  Before the drain is what connected says.
    assert seen["started"] == 5, seen
    assert 0.35 <= seen["ramped"] < 2.4, seen
    assert 3.0 <= seen["ending"] < 6.0, seen
    assert seen["connected"] == 5  # before the drain: still connected
    assert seen["after"] == 0
    assert stopped == {"ending": True}
