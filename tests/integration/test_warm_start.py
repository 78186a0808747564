"""`steady` as a new user runs it, at two fake wall clocks (Debian's faketime): busy from
the first minute, whatever the hour, and the same sessions at both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.debian import ensure_debian_package

ROOT = Path(__file__).resolve().parents[2]
CHARGERS = 300
# A night in March and an evening in July: the wall clock's hour must not matter.
CLOCKS = ("2026-03-01 03:00:00", "2026-07-15 19:30:00")


def _start(clock: str, workdir: Path) -> subprocess.Popen[str]:
    workdir.mkdir()
    return subprocess.Popen(
        [
            "faketime",
            "-f",
            f"@{clock}",
            sys.executable,
            "-m",
            "emulator.cli",
            "run",
            "--scenario",
            "scenarios/steady.toml",
            "--chargers",
            str(CHARGERS),
            "--duration",
            "90",
            "--no-progress",
            "--json",
            str(workdir / "summary.json"),
            "--ledger",
            str(workdir),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TZ": "UTC"},  # faketime reads its start time as local time
    )


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_steady_charges_from_the_first_minute_at_any_hour_with_the_same_sessions(
    tmp_path: Path,
) -> None:
    ensure_debian_package("faketime", "faketime")
    runs = [_start(clock, tmp_path / f"run{i}") for i, clock in enumerate(CLOCKS)]
    outputs = [run.communicate(timeout=240) for run in runs]
    sessions: list[set[tuple[str, str, int]]] = []
    for i, (run, (stdout, stderr), clock) in enumerate(zip(runs, outputs, CLOCKS, strict=True)):
        assert run.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
        started = datetime.fromisoformat(clock).replace(tzinfo=UTC).timestamp()
        ledger: dict[str, Any] = json.loads((tmp_path / f"run{i}" / "csms-ledger.json").read_text())
        first_minute = {
            t["chargerId"]
            for t in ledger["transactions"]
            if _timestamp(t["startTimestamp"]) < started + 60.0
        }
        assert len(first_minute) >= 0.25 * CHARGERS, (clock, len(first_minute))
        assert "ledgers agree" in stdout
        sessions.append(
            {(t["chargerId"], t["idTag"], t["meterStart"]) for t in ledger["transactions"]}
        )
        # The load offered, per action and charger-hour, in the summary and the JSON.
        assert "messages per charger per hour" in stdout
        summary = json.loads((tmp_path / f"run{i}" / "summary.json").read_text())
        starts = next(a for a in summary["actions"] if a["action"] == "StartTransaction")
        # duration_s is rounded to the millisecond in the JSON: recomputing from it may
        # differ from the summary's own figure in the last digit, never by more.
        hours = summary["duration_s"] / 3600.0
        assert starts["per_charger_hour"] == pytest.approx(
            starts["count"] / CHARGERS / hours, abs=0.0015
        )
    # Same scenario, seed and start time: the same chargers charged with the same cards
    # and meter readings, at 03:00 and at 19:30.
    assert sessions[0] == sessions[1]
