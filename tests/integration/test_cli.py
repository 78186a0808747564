"""`ocpp-fleet` as a user runs it: one clear line and a non-zero exit for mistakes."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.integration.support import ocpp_fleet


def test_a_short_run_against_the_embedded_csms_prints_the_summary(tmp_path: Path) -> None:
    report = tmp_path / "summary.json"
    result = ocpp_fleet(
        "run",
        "--scenario",
        "scenarios/demo.toml",
        "--chargers",
        "5",
        "--duration",
        "3",
        "--no-progress",
        "--strict",
        "--json",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    assert "BootNotification" in result.stdout
    assert "p99" in result.stdout
    assert "Traceback" not in result.stderr
    assert report.exists() and "BootNotification" in report.read_text()


def test_a_malformed_scenario_names_file_and_field_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\n[sessions]\narrivals_per_hour = "fast"\n')
    result = ocpp_fleet("run", "--scenario", str(bad), "--duration", "1")
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "sessions.arrivals_per_hour" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_scenario_file_is_one_clear_error(tmp_path: Path) -> None:
    result = ocpp_fleet("run", "--scenario", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_csms_fails_after_the_connect_timeout(tmp_path: Path) -> None:
    scenario = tmp_path / "quick.toml"
    scenario.write_text('[scenario]\nname = "quick"\n[fleet]\nconnect_timeout = 1.5\n')
    with socket.socket() as s:  # bound, never listening: refused, and nobody else's
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = ocpp_fleet(
            "run",
            "--scenario",
            str(scenario),
            "--chargers",
            "2",
            "--duration",
            "30",
            "--csms-url",
            f"ws://127.0.0.1:{port}/ocpp",
            "--no-progress",
        )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no wallbox reached the CSMS" in result.stderr and "refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_csms_url_and_bad_options_are_usage_errors(tmp_path: Path) -> None:
    result = ocpp_fleet("run", "--scenario", "scenarios/demo.toml", "--csms-url", "http://x")
    assert result.returncode == 2 and "ws://" in result.stderr
    result = ocpp_fleet("run", "--scenario", "scenarios/demo.toml", "--chargers", "-3")
    assert result.returncode == 2 and "positive integer" in result.stderr


def test_the_csms_subcommand_reports_a_port_in_use() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = ocpp_fleet("csms", "--port", str(port))
    assert result.returncode == 3
    assert f"127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_unknown_options_are_one_clear_usage_error() -> None:
    result = ocpp_fleet("run", "--scenario", "scenarios/demo.toml", "--chargrs", "5")
    assert result.returncode == 2
    assert "unrecognized arguments: --chargrs" in result.stderr and "Traceback" not in result.stderr


def test_the_csms_subcommand_reports_a_missing_certificate(tmp_path: Path) -> None:
    result = ocpp_fleet("csms", "--port", "0", "--certfile", str(tmp_path / "missing.pem"))
    assert result.returncode == 2
    assert "cannot load the TLS certificate" in result.stderr and "Traceback" not in result.stderr
