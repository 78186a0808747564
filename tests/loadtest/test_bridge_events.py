"""The Locust bridge: a real fleet in the loop thread, events fired on the gevent side.

The fleet runs in a child process that imports Locust (see support.py); the reference
CSMS runs in the bridge's own event loop and misbehaves on purpose.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from tests.loadtest.support import run_python


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    done = run_python("tests.loadtest.bridge_probe", timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def by_name(probe: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e for e in probe["events"] if e["name"] == name]


def test_events_are_fired_on_the_gevent_side_while_the_fleet_runs_in_its_own_thread(
    probe: dict[str, Any],
) -> None:
    assert probe["loop_thread"] != probe["main_thread"]
    assert {e["thread"] for e in probe["events"]} == {probe["main_thread"]}


def test_charger_initiated_calls_are_named_by_action_with_request_type_ocpp(
    probe: dict[str, Any],
) -> None:
    names = Counter((e["request_type"], e["name"]) for e in probe["events"])
    assert names[("OCPP", "BootNotification")] >= 5
    assert names[("OCPP", "StatusNotification")] >= 2
    assert names[("WebSocket", "connect")] == 6  # five wallboxes and one re-added


def test_response_times_are_the_round_trips_in_milliseconds(probe: dict[str, Any]) -> None:
    delay_ms = probe["delay"] * 1000
    delayed = [
        e
        for e in by_name(probe, "BootNotification")
        if e["exception"] is None and e["response_time"] >= delay_ms
    ]
    assert len(delayed) == 1
    assert delayed[0]["response_time"] < delay_ms + 500
    quick = [e for e in by_name(probe, "StatusNotification")]
    assert all(0 < e["response_time"] < delay_ms for e in quick)


def test_callerrors_schema_violations_and_timeouts_are_failures_with_their_code(
    probe: dict[str, Any],
) -> None:
    failures = {e["exception"]: e for e in by_name(probe, "BootNotification") if e["exception"]}
    assert "CALLERROR InternalError" in failures
    assert any(text.startswith("schema violation") for text in failures)
    timeout = failures["timeout: no answer within response_timeout"]
    assert 1000 <= timeout["response_time"] < 1500  # response_timeout = 1 s
    assert {e["exception_type"] for e in failures.values()} == {"OcppFailure"}


def test_csms_initiated_calls_have_their_own_names_and_the_handling_time(
    probe: dict[str, Any],
) -> None:
    calls = by_name(probe, "GetConfiguration (CSMS call)")
    assert [e["exception"] for e in calls] == [
        None,
        "answered CALLERROR OccurenceConstraintViolation",
    ]
    assert probe["refused_with"] == "OccurenceConstraintViolation"
    assert all(0 <= e["response_time"] < 100 for e in calls)


def test_a_stopped_users_wallbox_closes_and_its_charger_id_is_reused(
    probe: dict[str, Any],
) -> None:
    assert probe["numbers"] == [201, 202, 203, 204, 205]  # worker 2, 100 ids per worker
    assert probe["ids"][0] == "PB000201"
    assert probe["again"] == 201
    assert probe["disconnects"]["PB000201"] == 2
    assert probe["boots"]["PB000201"] == 2  # a restarted charger boots again
