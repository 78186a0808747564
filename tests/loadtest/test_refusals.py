"""A mistake is refused before any work: one error line (its words as written, square
brackets too), exit code 2, no traceback, no user started; in the web UI the start is
refused with the message and no test runs.  Locust runs in a child process (support.py)
with a locustfile whose users note that they started (marking_locustfile.py)."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from emulator.fleet.scenario import ScenarioError, load_scenario
from tests.loadtest.support import ROOT, locust, scenario_text, write_scenario
from tests.ports import free_port

MARKING = ROOT / "tests" / "loadtest" / "marking_locustfile.py"
CSMS = "ws://127.0.0.1:9/ocpp"  # never reached: nothing may start


def unknown_key_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "unknown-key.toml"
    path.write_text(scenario_text().replace("[fleet]\n", "[fleet]\nramp = 3\n"))
    return path


def error_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "/ERROR/" in line]


async def refused_run(tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    started = tmp_path / "started-users.txt"
    code, out = await locust(
        *("--headless", "-u", "5", "-r", "5", "--run-time", "5s"),
        *args,
        env={"OCPP_FLEET_TEST_STARTED_USERS": str(started)},
        locustfile=MARKING,
        timeout=60,
    )
    return code, out, started


def assert_refused(code: int, out: str, started: Path, message: str) -> None:
    assert code == 2, out
    errors = error_lines(out)
    assert len(errors) == 1, out
    assert errors[0].endswith(f"ocpp_fleet: ocpp-fleet cannot start: {message}"), out
    assert "Traceback" not in out
    assert not started.exists(), f"users started:\n{out}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--csms-url", CSMS),
            "--scenario is required: a scenario TOML file (docs/scenarios.md)",
        ),
        (
            ("--scenario", "{unknown_key}", "--csms-url", CSMS),
            "{unknown_key_error}",
        ),
        (
            ("--scenario", "{scenario}", "--host", "http://127.0.0.1:9/ocpp"),
            "--csms-url must start with ws:// or wss://, got 'http://127.0.0.1:9/ocpp'",
        ),
        (
            ("--scenario", "{scenario}"),
            "no CSMS: give --csms-url ws://host:port/path (or Locust's --host)",
        ),
    ],
    ids=["no-scenario", "unknown-scenario-key", "http-host", "no-host"],
)
def test_a_headless_local_run_refuses_a_mistake_in_one_line_before_any_user(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    paths = {"scenario": str(write_scenario(tmp_path))}
    paths["unknown_key"] = str(unknown_key_scenario(tmp_path))
    with pytest.raises(ScenarioError) as unknown_key:
        load_scenario(paths["unknown_key"])
    paths["unknown_key_error"] = str(unknown_key.value)
    assert "[fleet] takes: id_prefix, chargers" in paths["unknown_key_error"]
    filled = tuple(arg.format(**paths) for arg in args)
    code, out, started = asyncio.run(refused_run(tmp_path, *filled))
    assert_refused(code, out, started, message.format(**paths))


def test_a_headless_master_refuses_a_mistake_before_waiting_for_workers(tmp_path: Path) -> None:
    code, out, started = asyncio.run(
        refused_run(
            tmp_path,
            *("--master", "--expect-workers", "1", "--master-bind-host", "127.0.0.1"),
            *("--master-bind-port", str(free_port())),
            *("--scenario", str(write_scenario(tmp_path)), "--host", "http://127.0.0.1:9/x"),
        )
    )
    assert_refused(
        code, out, started, "--csms-url must start with ws:// or wss://, got 'http://127.0.0.1:9/x'"
    )


def test_a_worker_refuses_its_own_bad_option_and_tells_its_master(tmp_path: Path) -> None:
    master_port, web_port = free_port(), free_port()
    started = tmp_path / "started-users.txt"

    async def main() -> tuple[tuple[int, str], tuple[int, str]]:
        quit_ = asyncio.Event()
        master = asyncio.create_task(
            locust(
                *("--master", "--master-bind-host", "127.0.0.1"),
                *("--master-bind-port", str(master_port)),
                *("--web-host", "127.0.0.1", "--web-port", str(web_port)),
                *("--scenario", str(write_scenario(tmp_path)), "--csms-url", CSMS),
                timeout=90,
                terminate=quit_,
            )
        )
        try:
            worker = await locust(
                *("--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)),
                *("--source-addresses", "10.0.0.300"),
                env={"OCPP_FLEET_TEST_STARTED_USERS": str(started)},
                locustfile=MARKING,
                timeout=60,
            )
        finally:
            quit_.set()
            master_result = await master
        return worker, master_result

    (code, out), (_, master_out) = asyncio.run(main())
    assert_refused(
        code,
        out,
        started,
        "--source-addresses (this worker's): not an IP address or range: '10.0.0.300'",
    )
    assert "quit. 0 workers ready" in master_out, master_out  # the master heard it


def post_form(url: str, form: dict[str, Any]) -> Any:
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(url, data, timeout=5) as response:
        return json.loads(response.read())


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_the_web_ui_refuses_a_start_whose_form_gives_a_bad_scenario(tmp_path: Path) -> None:
    bad = unknown_key_scenario(tmp_path)
    started = tmp_path / "started-users.txt"
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async def main() -> tuple[dict[str, Any], tuple[int, str]]:
        quit_ = asyncio.Event()
        run = asyncio.create_task(
            locust(
                *("--web-host", "127.0.0.1", "--web-port", str(port)),
                env={"OCPP_FLEET_TEST_STARTED_USERS": str(started)},
                locustfile=MARKING,
                timeout=90,
                terminate=quit_,
            )
        )
        found: dict[str, Any] = {}
        try:
            for _ in range(300):  # Locust starts in a second or two; allow a busy machine
                try:
                    await asyncio.to_thread(get_json, base + "/stats/requests")
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            form = {"user_count": 3, "spawn_rate": 10, "host": "", "scenario": str(bad)}
            form["csms_url"] = CSMS
            found["answer"] = await asyncio.to_thread(post_form, base + "/swarm", form)
            await asyncio.sleep(1.0)  # a start that was not refused would be spawning now
            found["stats"] = await asyncio.to_thread(get_json, base + "/stats/requests")
            found["fleet"] = await asyncio.to_thread(get_json, base + "/fleet/counts")
        finally:
            quit_.set()  # also when something above failed: never leave Locust running
            result = await run
        return found, result

    found, (_, out) = asyncio.run(main())
    assert found["answer"]["success"] is False, out
    message = found["answer"]["message"]
    assert message.startswith(f"ocpp-fleet cannot start: {bad}: fleet.ramp: unknown key; [fleet]")
    assert found["stats"]["state"] == "ready", out
    assert found["stats"]["user_count"] == 0
    assert not started.exists(), out
    assert "Traceback" not in out
    assert any(line.endswith(f"ocpp_fleet: {message}") for line in error_lines(out)), out
