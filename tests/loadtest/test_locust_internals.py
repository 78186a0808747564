"""What ocpp-fleet relies on in Locust's internals still holds (emulator.loadtest.
locust_internals): a Locust upgrade that changes it fails here, not in a run."""

from __future__ import annotations

import json
from typing import Any

from tests.loadtest.support import run_python


def probe(*args: str) -> dict[str, Any]:
    done = run_python("tests.loadtest.internals_probe", *args, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_everything_the_plugin_relies_on_in_the_installed_locust_holds() -> None:
    found = probe()
    assert found["broken"] == []


def test_the_module_names_the_locust_versions_it_was_checked_against() -> None:
    found = probe()
    assert found["checked_on"], "no version named"
    for version in found["checked_on"]:
        assert f"Locust {version}" in found["docstring"]


def test_a_locust_that_changed_what_the_plugin_relies_on_is_named() -> None:
    broken = probe("--break")["broken"]
    assert broken == [
        "runners.HEARTBEAT_LIVENESS is an int a master reads when a worker connects or beats",
        "MasterRunner.quit() tells the workers to quit and waits only half a second",
    ]
