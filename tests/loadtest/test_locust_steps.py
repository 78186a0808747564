"""The steps shape with SLOs in a local run: a verdict per step, the capacity verdict, its
JSON and report, the exit codes, and the options' usage errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from emulator.csms import ReferenceCsms
from tests.loadtest.support import locust, write_scenario


async def local(scenario: Path, *args: str) -> tuple[int, str]:
    async with ReferenceCsms() as csms:
        return await locust(
            "--headless", "--scenario", str(scenario), "--csms-url", csms.url, *args, timeout=60
        )


def test_every_step_passing_gives_the_largest_size_and_exit_code_0(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="LS", mode="random")
    verdict_path, report = tmp_path / "verdict.json", tmp_path / "report"
    code, out = asyncio.run(
        local(
            scenario,
            *("--fleet-shape", "steps:sizes=3/6,hold=8,rate=20", "--slo", "*:p99<5s"),
            *("--verdict-json", str(verdict_path), "--report", str(report)),
        )
    )
    assert code == 0, out
    assert "Traceback" not in out
    assert "step 1/2, 3 wallboxes (3 booted): PASS over " in out
    assert "step 2/2, 6 wallboxes (6 booted): PASS over " in out
    # A local run judges the steps, not the plain window after spawning.
    assert "SLO verdict" not in out
    sentence = "Your CSMS held 6 chargers, the largest size of the steps shape: its capacity is at least that."
    assert f"Capacity verdict: {sentence}" in out
    verdict = json.loads(verdict_path.read_text())
    assert (verdict["capacity"], verdict["limited_by"], verdict["violations"]) == (6, "max", [])
    assert verdict["verdict"] == sentence
    assert [s["chargers"] for s in verdict["steps"]] == [3, 6]
    for step in verdict["steps"]:
        assert step["passed"] and step["slo"][0]["detail"].endswith("answered calls")
        # The window is the hold's judged part: a loaded machine ends it late (8.08 s was
        # seen), never early, so only the upper bound has slack.
        assert 0.5 < step["hold_s"] < 8.0 + 2.0, step
    assert verdict["workers"] == 1
    assert json.loads((report / "result.json").read_text()) == verdict
    assert (report / "report.html").stat().st_size > 100_000  # plotly.js inlined
    assert (report / "timeseries.csv").read_text().count("\n") >= 2  # header and a row


def test_a_failing_first_step_gives_no_capacity_and_exit_code_1(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="LF", mode="random")
    code, out = asyncio.run(
        local(
            scenario,
            *("--fleet-shape", "steps:sizes=2/4,hold=5,rate=20", "--slo", "*:p50<0.001ms"),
        )
    )
    assert code == 1, out
    assert "step 1/2, 2 wallboxes" in out and ": FAIL over " in out
    assert (
        "Capacity verdict: Your CSMS failed its SLOs already at 2 chargers: *:p50<0.001ms was"
        in out
    )
    assert "Shutting down (exit code 1)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("-u", "1", "--run-time", "2s", "--slo", "errors<1%", "--verdict-json", "v.json"),
            "--verdict-json writes the verdict of a steps shape: give --fleet-shape "
            "steps:sizes=.../...,hold=...,rate=... (and SLOs)",
        ),
        (
            ("--fleet-shape", "steps:sizes=1,hold=2", "--report", "out"),
            "--report writes a verdict over SLOs: give --slo EXPR, $LOCUST_SLO or [slo] rules "
            "in the scenario",
        ),
    ],
    ids=["no-steps-shape", "no-slos"],
)
def test_the_verdict_options_without_a_steps_shape_and_slos_are_a_usage_error(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    scenario = write_scenario(tmp_path, prefix="LU")
    code, out = asyncio.run(local(scenario, *args))
    assert code == 2, out
    errors = [line for line in out.splitlines() if "/ERROR/" in line]
    assert len(errors) == 1, out
    assert errors[0].endswith(f"ocpp_fleet: ocpp-fleet cannot start: {message}")
