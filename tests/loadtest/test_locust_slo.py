"""SLO verdicts under Locust: a headless local run judged over the window after spawning,
its exit code, one clear line for a bad rule, and the refusal of ``ledger`` (a master's
verdict: test_distributed_verdict.py).

Locust runs in a child process (see support.py); the reference CSMS runs in this one and
refuses calls on purpose where a test needs failures.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
from emulator.csms import ReferenceCsms
from emulator.csms.misbehaviour import AnswerCallError
from emulator.loadtest.options import OptionError, command_line_slos
from emulator.loadtest.requests import RequestRecorder
from emulator.metrics.stats import RunStats
from tests.loadtest.support import locust, scenario_text, write_scenario


def refuse_status_notifications(charger_id: str, call: Any) -> AnswerCallError | None:
    return AnswerCallError() if call.action == "StatusNotification" else None


async def headless(
    scenario: Path, *args: str, refuse: bool = False, env: dict[str, str] | None = None
) -> tuple[int, str]:
    async with ReferenceCsms() as csms:
        if refuse:
            csms.misbehave = refuse_status_notifications
        return await locust(
            "--headless",
            "-u",
            "4",
            "-r",
            "20",
            "--run-time",
            "3s",
            "--scenario",
            str(scenario),
            "--csms-url",
            csms.url,
            *args,
            env=env,
            timeout=60,
        )


def verdict_of(out: str) -> list[str]:
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Service-level objectives"))
    last = next(i for i, line in enumerate(lines) if line.startswith("SLO verdict: "))
    return lines[first : last + 1]


def test_a_failing_slo_gives_exit_code_1_and_the_verdict_table(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="SF", mode="random")
    code, out = asyncio.run(
        headless(
            scenario,
            "--slo",
            "BootNotification:p50<0.001ms",
            "--slo",
            "*:p99<5s",
            env={"LOCUST_SLO": "errors<0.5%; StatusNotification:timeouts=0"},
            refuse=True,
        )
    )
    assert code == 1, out
    table = verdict_of(out)
    assert table[0].startswith("Service-level objectives (window: ")
    assert table[0].endswith(" s after the ramp)")
    rows = {line.split()[0]: line for line in table[2:-1]}
    # $LOCUST_SLO first, then --slo, in order.
    assert list(rows) == [
        "errors<0.5%",
        "StatusNotification:timeouts=0",
        "BootNotification:p50<0.001ms",
        "*:p99<5s",
    ]
    assert " FAIL " in rows["errors<0.5%"]  # every StatusNotification was refused
    assert " PASS " in rows["StatusNotification:timeouts=0"]
    assert " FAIL " in rows["BootNotification:p50<0.001ms"]
    assert " PASS " in rows["*:p99<5s"]
    assert table[-1].startswith("SLO verdict: FAIL (2 of 4 not met over ")
    assert table[-1].endswith("s: errors<0.5%, BootNotification:p50<0.001ms)")
    assert "Shutting down (exit code 1)" in out
    assert "Traceback" not in out


def test_slos_that_hold_give_exit_code_0_even_with_failed_requests(tmp_path: Path) -> None:
    """The verdict, not Locust's "any failure is exit code 1", decides: the rules say how
    many failures are acceptable."""
    scenario = tmp_path / "with-slo.toml"
    scenario.write_text(
        scenario_text(prefix="SP", mode="random") + '\n[slo]\nrules = ["*:p99<5s", "errors<95%"]\n'
    )
    code, out = asyncio.run(headless(scenario, "--slo", "timeouts=0", refuse=True))
    assert code == 0, out
    assert "CALLERROR InternalError" in out  # Locust recorded the refusals as failures
    table = verdict_of(out)
    rows = {line.split()[0]: line for line in table[2:-1]}
    assert list(rows) == ["*:p99<5s", "errors<95%", "timeouts=0"]
    assert all(" PASS " in row for row in rows.values()), table
    assert table[-1].startswith("SLO verdict: PASS (3 of 3 met over ")


def test_a_test_stopped_before_spawning_completed_is_judged_from_its_start(
    tmp_path: Path,
) -> None:
    scenario = write_scenario(tmp_path, prefix="SR", mode="random")
    # 20 users at 2 per second need 10 s; the test stops after 3.
    code, out = asyncio.run(headless(scenario, "-u", "20", "-r", "2", "--slo", "*:p99<5s"))
    assert code == 0, out
    table = verdict_of(out)
    assert table[0].startswith("Service-level objectives (window: ")
    assert table[0].endswith("; spawning had not completed: judged from the start)")
    assert table[-1].startswith("SLO verdict: PASS (1 of 1 met over ")


def test_without_slos_a_run_has_no_verdict(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="SN", mode="random")
    code, out = asyncio.run(headless(scenario))
    assert code == 0, out
    assert "SLO verdict" not in out and "Service-level objectives" not in out


def error_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "/ERROR/" in line]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ("--slo", "StartTransaction:p99<800xs"),
            None,
            'ocpp-fleet cannot start: --slo "StartTransaction:p99<800xs": '
            'unknown unit "xs" (ms, s or %)',
        ),
        (
            (),
            {"LOCUST_SLO": "timeouts=0;p99!=1s"},
            'ocpp-fleet cannot start: $LOCUST_SLO "p99!=1s": '
            'unknown operator "!=" (<, <=, =, ==, >, >=)',
        ),
        (
            ("--slo", "ledger=0"),
            None,
            'ocpp-fleet cannot start: --slo "ledger=0": the ledger SLO cannot be judged under '
            "Locust: only `ocpp-fleet run` against its embedded reference CSMS compares ledgers",
        ),
    ],
    ids=["unknown-unit", "environment-operator", "ledger"],
)
def test_a_bad_rule_ends_the_run_with_exit_code_2_and_one_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str] | None, message: str
) -> None:
    scenario = write_scenario(tmp_path, prefix="SB")
    code, out = asyncio.run(headless(scenario, *args, env=env))
    assert code == 2, out
    errors = error_lines(out)
    assert len(errors) == 1, out
    assert errors[0].endswith(f"ocpp_fleet: {message}")
    assert "Traceback" not in out


def test_a_bad_rule_in_the_scenario_names_the_file_and_the_field(tmp_path: Path) -> None:
    scenario = tmp_path / "bad-slo.toml"
    scenario.write_text(
        scenario_text(prefix="SS") + '\n[slo]\nrules = ["errors<1%", "StartTransaction:p99<8xs"]\n'
    )
    code, out = asyncio.run(headless(scenario))
    assert code == 2, out
    errors = error_lines(out)
    assert len(errors) == 1, out
    assert errors[0].endswith(
        f'ocpp_fleet: ocpp-fleet cannot start: {scenario}: slo.rules[1]: unknown unit "xs" '
        "(ms, s or %)"
    )
    assert "Traceback" not in out


# ------------------------------------------------------- in this process, no Locust


def test_rules_come_from_the_option_and_the_environment() -> None:
    class Parsed:
        slo = ["*:p99<1s", "timeouts=0"]

    slos = command_line_slos(Parsed(), environ={"LOCUST_SLO": " errors<1% ;; "})
    assert [s.text for s in slos] == ["errors<1%", "*:p99<1s", "timeouts=0"]
    assert [s.source for s in slos] == [
        '$LOCUST_SLO "errors<1%"',
        '--slo "*:p99<1s"',
        '--slo "timeouts=0"',
    ]

    class FromConfig:
        slo = "errors<1%;timeouts=0"  # a single value, as a config file or form gives

    assert [s.text for s in command_line_slos(FromConfig(), environ={})] == [
        "errors<1%",
        "timeouts=0",
    ]
    assert command_line_slos(object(), environ={}) == []

    class Bad:
        slo = ["p99<1"]

    with pytest.raises(OptionError, match=r'^--slo "p99<1": p99 takes a duration'):
        command_line_slos(Bad(), environ={})


def test_the_request_events_rebuild_what_the_fleet_measured() -> None:
    """What the bridge fires as Locust requests, read back by the recorder, equals what
    `ocpp-fleet run`'s RunStats gets from the fleet directly: the two runners judge the
    same numbers."""
    from emulator.loadtest.bridge import BridgeReporter, FleetBridge

    recorder = RequestRecorder(RunStats())
    bridge = FleetBridge(fire=recorder)
    direct = RunStats()
    loop_side = BridgeReporter(bridge._queue.append)
    for reporter in (direct, loop_side):
        reporter.connected(0.010)
        reporter.connect_failed("refused")
        reporter.connect_failed("http_401")
        reporter.round_trip("BootNotification", 0.020, OK)
        reporter.round_trip("Heartbeat", 0.030, Outcome.callerror("InternalError"))
        reporter.round_trip("MeterValues", 0.004, Outcome.schema("FormationViolation"))
        reporter.round_trip("MeterValues", 0.005, Outcome.schema())
        reporter.round_trip("MeterValues", 30.0, TIMEOUT)
        reporter.round_trip("StatusNotification", 1.0, DISCONNECTED)
        reporter.csms_call("Reset", 0.0002, None)
        reporter.csms_call("GetConfiguration", 0.0003, "OccurenceConstraintViolation")
        reporter.ping_rtt(0.002)
    bridge.drain()
    rebuilt = recorder.stats
    assert rebuilt is not None
    assert set(rebuilt.actions) == set(direct.actions)
    for key, stats in direct.actions.items():
        assert rebuilt.actions[key].outcomes == stats.outcomes, key
        assert rebuilt.actions[key].latency.count == stats.latency.count, key
        assert rebuilt.actions[key].latency.sum == pytest.approx(stats.latency.sum), key
    assert rebuilt.connects == direct.connects == 1
    assert rebuilt.connect_failures == direct.connect_failures
    assert rebuilt.connect_latency.sum == pytest.approx(direct.connect_latency.sum)

    recorder.stats = None  # between tests: events pass by
    recorder(request_type="OCPP", name="Heartbeat", response_time=1.0, exception=None)
    assert rebuilt.actions.keys() == direct.actions.keys()
