"""`ocpp-fleet run --metrics-port`: the CLI serves the metrics while it runs, and only then."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCPP_FLEET_METRICS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "run", "--scenario", "scenarios/demo.toml", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(),
    )


def test_a_run_serves_metrics_on_the_port_it_prints() -> None:
    process = _run("--chargers", "3", "--duration", "4", "--no-progress", "--metrics-port", "0")
    try:
        assert process.stdout is not None
        url = None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r"Prometheus metrics on (http://127\.0\.0\.1:\d+/metrics)", line)
            if found:
                url = found.group(1)
        assert url is not None, "no metrics URL printed"
        text = ""
        while time.monotonic() < deadline and "ocpp_fleet_chargers_booted 3.0" not in text:
            time.sleep(0.2)
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        assert "ocpp_fleet_chargers_booted 3.0" in text
        assert (
            'ocpp_fleet_call_duration_seconds_count{action="BootNotification",outcome="ok"} 3.0'
            in text
        )
        assert "process_open_fds" in text
        assert "ocpp_fleet_loop_lag_seconds_count" in text
        _out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
    finally:
        process.kill()
        process.wait(10)


def test_no_metrics_server_starts_unless_asked() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator.cli",
            "run",
            "--scenario",
            "scenarios/demo.toml",
            "--chargers",
            "1",
            "--duration",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "metrics" not in done.stdout.lower()


def test_a_metrics_port_in_use_is_one_clear_line_and_exit_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "emulator.cli",
                "run",
                "--scenario",
                "scenarios/demo.toml",
                "--chargers",
                "1",
                "--duration",
                "1",
                "--no-progress",
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=_env(),
            timeout=60,
        )
    assert done.returncode == 3
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_metrics_port_is_a_usage_error() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator.cli",
            "run",
            "--scenario",
            "scenarios/demo.toml",
            "--metrics-port",
            "70000",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert "expected a port number 0-65535" in done.stderr
