"""Helpers for the Locust tests: a fast scenario, and running Locust in a subprocess.

Anything that imports ``locust`` runs in a child process: ``import locust`` monkey-patches
the whole interpreter for gevent, which must never happen inside the pytest process
(every other test uses asyncio with real sockets and threads).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from emulator.fleet.scenario import Scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "locustfiles" / "ocpp_fleet.py"
LOCUST = Path(sys.executable).with_name("locust")

SCENARIO = """
[scenario]
name = "loadtest"
seed = 3

[fleet]
id_prefix = "{prefix}"
connect_timeout = 10.0
response_timeout = {response_timeout}
ramp_per_second = 500.0

[[models]]
name = "socket-3p"
share = 3
model = "AC22-3P"
variant = "socket"
phases = 3
max_current = 32.0
[models.configuration]
HeartbeatInterval = 60
MeterValueSampleInterval = 10
ClockAlignedDataInterval = 0

[[models]]
name = "cable-1p"
share = 1
model = "AC3.7-1P-C"
variant = "cable"
phases = 1
max_current = 16.0
[models.configuration]
HeartbeatInterval = 60
MeterValueSampleInterval = 10
ClockAlignedDataInterval = 0

[sessions]
mode = "{mode}"
arrivals_per_hour = 3600.0
plug_in_delay = [0.1, 0.3]
energy_kwh = [0.005, 0.02]
idle_after_full = [0.1, 0.5]
"""


def scenario_text(
    *, prefix: str = "LT", mode: str = "remote-only", response_timeout: float = 5.0
) -> str:
    return SCENARIO.format(prefix=prefix, mode=mode, response_timeout=response_timeout)


def scenario(**kwargs: object) -> Scenario:
    return parse_scenario(scenario_text(**kwargs), source="<loadtest>")  # type: ignore[arg-type]


def write_scenario(tmp_path: Path, **kwargs: object) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(scenario_text(**kwargs))  # type: ignore[arg-type]
    return path


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child, without anything that would turn on a
    metrics server by surprise (the container image sets OCPP_FLEET_METRICS_PORT)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OCPP_FLEET_METRICS_", "LOCUST_METRICS_"))
    }
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)
    env.update(extra or {})
    return env


def run_python(module: str, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` from the repository root, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def locust(
    *args: str,
    timeout: float = 60.0,
    terminate: Any = None,
    env: Mapping[str, str] | None = None,
    started: Callable[[int], None] | None = None,
    locustfile: Path = LOCUSTFILE,
) -> tuple[int, str]:
    """Run ``locust -f locustfiles/ocpp_fleet.py args`` to its end; (exit code, output).

    ``terminate``: an asyncio.Event; when set, the process gets SIGTERM (Locust's
    web UI has no quit button, and a web-UI run has no end of its own).  ``env``: extra
    environment variables; ``started`` is called with the child's pid; ``locustfile``:
    another one (a probe of tests/loadtest).
    """
    import asyncio
    import contextlib

    proc = await asyncio.create_subprocess_exec(
        str(LOCUST),
        "-f",
        str(locustfile),
        *args,
        cwd=ROOT,
        env=child_env(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )

    async def stopper() -> None:
        if terminate is not None:
            await terminate.wait()
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

    if started is not None:
        started(proc.pid)
    stopping = asyncio.create_task(stopper())
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(
            f"locust {' '.join(args)} ran over {timeout} s:\n{out.decode()}"
        ) from None
    finally:
        stopping.cancel()
        if proc.returncode is None:  # the caller gave up (an assertion, a cancel): no orphan
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode()
