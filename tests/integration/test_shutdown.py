"""SIGTERM (what Kubernetes sends) ends a run cleanly: summary, ledger, exit 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from emulator.transport.connection import Transport

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_stops_transactions_flushes_writes_the_ledger_and_exits_zero(
    tmp_path: Path,
    transport: Transport,
) -> None:
    scenario = tmp_path / "busy.toml"
    scenario.write_text(
        f'[scenario]\nname = "busy"\n[fleet]\nramp_per_second = 100.0\ntransport = "{transport}"\n'
        "[[models]]\n[models.configuration]\nClockAlignedDataInterval = 0\n"
        "[sessions]\narrivals_per_hour = 3600.0\nenergy_kwh = [inf, inf]\nplug_in_delay = [0.1, 0.3]\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "run", "--scenario", str(scenario), "--chargers", "10",
         "--duration", "120", "--no-progress", "--ledger", str(tmp_path / "ledger")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    time.sleep(6)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "ledgers agree" in stdout and "Traceback" not in stderr
    comparison = json.loads((tmp_path / "ledger" / "comparison.json").read_text())
    assert comparison["consistent"] and comparison["matched"] >= 5
    fleet = json.loads((tmp_path / "ledger" / "fleet-ledger.json").read_text())
    reasons = {t["reason"] for c in fleet["chargers"] for t in c["transactions"]}
    assert reasons == {"Local"}  # every running transaction was stopped and delivered
    assert all(c["messages"]["stillQueued"] >= 0 for c in fleet["chargers"])
