"""A worker reads a spawn message without rebuilding Locust's parser once per option."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.loadtest.support import run_python


def probe(*args: str) -> dict[str, Any]:
    done = run_python("tests.loadtest.spawn_probe", *args, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def cached() -> dict[str, Any]:
    return probe("--cache")


def test_locust_still_tests_each_option_against_its_defaults(cached: dict[str, Any]) -> None:
    # If a Locust upgrade stops doing this, the cache is moot: this says so.
    assert cached["handler_test"] == "k not in argument_parser.default_args_dict()"
    assert cached["options"] > 60  # Locust's 56 and ocpp-fleet's


def test_without_the_cache_every_option_rebuilds_the_parser() -> None:
    plain = probe()
    assert plain["builds"] == plain["options"] + 1  # the comprehension's, and one more call


def test_with_the_cache_one_spawn_message_builds_it_at_most_once(cached: dict[str, Any]) -> None:
    assert cached["builds"] <= 1


def test_the_worker_keeps_the_same_options_either_way(cached: dict[str, Any]) -> None:
    plain = probe()
    assert cached["kept"] == plain["kept"]
    assert "scenario" in cached["kept"] and "csms_url" in cached["kept"]
    assert "host" not in cached["kept"] and "num_users" not in cached["kept"]


def test_callers_get_copies_and_registering_twice_wraps_once(cached: dict[str, Any]) -> None:
    assert cached["host_after_mutation"] != "mutated by a caller"
    assert cached["wrapped_once"] is True
