"""Every door's mistakes are refused before any work: one line on stderr that keeps its
square brackets, exit code 2, no traceback, no wallbox started, no file left behind."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from emulator.cli import main, version_text
from emulator.run.options import OPTIONS, options_of
from emulator.run.setup import SetupError, build_setup, parse_duration

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "scenarios" / "demo.toml")
CAPACITY_DEMO = str(ROOT / "scenarios" / "capacity-demo.toml")


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``ocpp-fleet argv`` in this process; it must be refused at once: exit 2 and
    exactly one line on stderr, which is returned."""
    began = time.monotonic()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own mistakes
        code = int(exc.code or 0)
    # Refused before any work: a run would take its --duration of 60 s at least.
    assert time.monotonic() - began < 30
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Traceback" not in out
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--json", "/dev/null/out.json"], "--json /dev/null/out.json: /dev/null is a file"),
        (["--json", "/proc"], "--json /proc: is a directory, expected a file name"),
        (["--seed", "-1"], "--seed: expected an integer >= 0, got '-1'"),
        (["--seed", "x"], "--seed: expected an integer >= 0, got 'x'"),
        (["--chargers", "-5"], "--chargers: expected a positive integer, got '-5'"),
        (["--duration", "0"], "--duration: expected a duration > 0, got '0'"),
        (["--duration", "soon"], "--duration: expected a duration like 90, 90s, 10m or 2h"),
        (["--id-prefix", "CP/1 "], "--id-prefix: expected a string of at most 40 characters"),
        (["--csms-url", "http://csms:9000/ocpp"], "--csms-url must start with ws:// or wss://"),
        (["--csms-url", "ws://csms:70000/ocpp"], "--csms-url: a port is 1-65535"),
        (["--csms-url", "ws:///ocpp"], "--csms-url: no host in 'ws:///ocpp'"),
        (["--metrics-port", "70000"], "--metrics-port: expected a port number 0-65535"),
        (["--start-time", "25:00"], "--start-time:"),
        (["--source-addresses", "not-an-address"], "--source-addresses:"),
        (["--slo", "p99<1xs"], '--slo "p99<1xs": unknown unit "xs"'),
        (["--slo", "ledger=0", "--csms-url", "ws://127.0.0.1:9/"], "the ledger SLO cannot"),
    ],
)
def test_a_run_refuses_a_bad_option_in_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    line = refused(capsys, "run", "--scenario", DEMO, *argv)
    assert message in line


def test_a_report_folder_that_is_a_file_is_refused_and_left_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    existing = tmp_path / "report"
    existing.write_text("keep me")
    line = refused(capsys, "run", "--scenario", DEMO, "--report", str(existing))
    assert f"--report {existing}: {existing} is a file, expected a directory" in line
    assert existing.read_text() == "keep me"


def test_two_outputs_that_would_write_the_same_file_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "out"
    line = refused(
        capsys,
        "run",
        "--scenario",
        DEMO,
        "--report",
        str(report),
        "--json",
        str(report / "result.json"),
    )
    assert "which --json writes too" in line
    assert not report.exists()


def test_a_scenario_mistake_keeps_its_square_brackets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[fleet]\nramp = 3\n")
    line = refused(capsys, "run", "--scenario", str(bad))
    assert "fleet.ramp: unknown key; [fleet] takes: id_prefix" in line
    models = tmp_path / "models.toml"
    models.write_text("[[models]]\nfoo = 1\n")
    assert "[[models]] takes: name" in refused(capsys, "run", "--scenario", str(models))


def test_capacity_refuses_its_mistakes_before_connecting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = "ws://127.0.0.1:9/ocpp"
    line = refused(capsys, "capacity", "--scenario", DEMO, "--csms-url", url)
    assert "a capacity search needs SLOs" in line and "[slo] rules" in line
    line = refused(
        capsys,
        "capacity",
        "--scenario",
        CAPACITY_DEMO,
        "--csms-url",
        url,
        "--slo",
        "p95<1s",
        "--json",
        str(tmp_path / "out" / "result.json"),
        "--report",
        str(tmp_path / "out"),
    )
    assert "which --json writes too" in line
    line = refused(
        capsys,
        *("capacity", "--scenario", CAPACITY_DEMO, "--csms-url", url, "--slo", "p95<1s"),
        *("--json", "/dev/null/v.json"),
    )
    assert "--json /dev/null/v.json: /dev/null is a file" in line
    for option, value, message in (
        ("--growth", "1", "--growth: expected a factor > 1"),
        ("--hold", "0s", "--hold: expected a duration > 0"),
        ("--start", "0", "--start: expected a positive integer"),
    ):
        argv = ["--scenario", CAPACITY_DEMO, "--csms-url", url, "--slo", "p95<1s"]
        assert message in refused(capsys, "capacity", *argv, option, value)


def test_the_csms_refuses_a_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "csms", "--port", "70000")
    assert "--port: expected a port number 0-65535, got '70000'" in line


def test_options_are_taken_after_the_command_too(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "run", "--scenario", DEMO, "--log-level", "LOUD")
    assert "--log-level: expected one of DEBUG" in line
    line = refused(capsys, "--log-level", "debug", "run", "--scenario", DEMO, "--seed", "-3")
    assert "--seed" in line


def test_version_names_ocpp_fleet_and_its_key_dependencies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out == version_text() + "\n"
    for name in ("ocpp-fleet", "ocpp ", "websockets", "locust", "Python"):
        assert name in out


def test_help_texts_show_percent_signs_once(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "capacity", "csms"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "%%" not in out
        assert "--log-level" in out
    with pytest.raises(SystemExit):
        main(["csms", "--help"])
    csms_help = capsys.readouterr().out
    assert "(default 9000)" in csms_help and "(default 60)" in csms_help


def test_durations_take_the_same_units_everywhere() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "10m", "1.5h")] == [90, 90, 600, 5400]
    setup = build_setup("run", SimpleNamespace(scenario=DEMO, duration="10m"))
    assert setup.duration == 600
    locust = build_setup(
        "capacity",
        SimpleNamespace(scenario=CAPACITY_DEMO, csms_url="ws://h/", hold="2m", slo=["p95<1s"]),
    )
    assert locust.search is not None and locust.search.hold == 120


def test_locust_values_arrive_as_text_and_are_checked_the_same_way() -> None:
    """The web UI's form and locust.conf give every value as text."""
    values = SimpleNamespace(
        scenario=DEMO, csms_url="", seed="7", id_prefix="LT-", ids_per_worker="500"
    )
    setup = build_setup("locust", values, host="ws://127.0.0.1:9000/ocpp", environ={})
    assert (setup.csms_url, setup.seed, setup.id_prefix) == ("ws://127.0.0.1:9000/ocpp", 7, "LT-")
    assert setup.ids_per_worker == 500 and setup.scenario.charger_id(1) == "LT-000001"
    with pytest.raises(SetupError, match=r"no CSMS: give --csms-url"):
        build_setup("locust", SimpleNamespace(scenario=DEMO), environ={})
    with pytest.raises(SetupError, match=r"--csms-url must start with ws:// or wss://"):
        build_setup("locust", SimpleNamespace(scenario=DEMO), host="http://h:8089", environ={})
    with pytest.raises(SetupError, match=r"\$LOCUST_SLO \"p99!=1s\""):
        build_setup(
            "locust",
            SimpleNamespace(scenario=DEMO, csms_url="ws://h/"),
            environ={"LOCUST_SLO": "p99!=1s"},
        )


def test_every_option_reaches_the_setup_of_each_command_it_belongs_to() -> None:
    """A new option in the table is read (or it would silently do nothing): each
    option's dest is an attribute the setup reads, or, for a Locust process's own
    options, Locust's option reader."""
    import inspect

    from emulator.loadtest import options as locust_options
    from emulator.run import setup as module

    source = inspect.getsource(module)
    locust_source = inspect.getsource(locust_options)
    for option in OPTIONS:
        read_by = source if option.commands != {"locust"} else source + locust_source
        assert f'"{option.dest}"' in read_by, option.flag
    assert {o.flag for o in options_of("capacity")} >= {"--scenario", "--csms-url", "--hold"}


def test_a_refused_run_opens_no_port(capsys: pytest.CaptureFixture[str]) -> None:
    """The embedded CSMS and the metrics server start only after the setup was checked."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused(capsys, "run", "--scenario", DEMO, "--metrics-port", str(port), "--json", "/dev/null/x")
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # nobody listens there


def test_a_missing_output_folder_is_created_when_the_run_writes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    summary = tmp_path / "new" / "deeper" / "summary.json"
    argv = ["run", "--scenario", DEMO, "--chargers", "2", "--duration", "1s", "--no-progress"]
    assert main([*argv, "--json", str(summary)]) == 0
    assert "BootNotification" in summary.read_text()


def test_a_file_the_security_profile_names_is_checked_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scenario = tmp_path / "secure.toml"
    scenario.write_text(
        '[scenario]\nname = "secure"\n[security]\nprofile = 1\npassword_file = "missing.txt"\n'
    )
    line = refused(capsys, "run", "--scenario", str(scenario))
    assert line.startswith(f"error: {scenario}: security.password_file: cannot read")
    tls = tmp_path / "tls.toml"
    (tmp_path / "password.txt").write_text("secret\n")
    tls.write_text(
        '[scenario]\nname = "tls"\n[security]\nprofile = 2\npassword_file = "password.txt"\n'
    )
    line = refused(capsys, "run", "--scenario", str(tls), "--csms-url", "ws://127.0.0.1:9/")
    assert "security profile 2 needs TLS" in line


def test_a_worker_does_not_check_the_masters_output_paths() -> None:
    """The verdict's paths name the master's host; a worker writes none."""
    values = SimpleNamespace(scenario=DEMO, csms_url="ws://h/", verdict_json="/dev/null/v.json")
    with pytest.raises(SetupError, match=r"--verdict-json /dev/null/v.json: /dev/null is a file"):
        build_setup("locust", values, environ={})
    worker = build_setup("locust", values, environ={}, outputs=False)
    assert worker.outputs.json is None and worker.outputs.report is None
