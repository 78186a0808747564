"""Local lists, reservations and triggers between a fleet and the reference CSMS, over real
websockets on 127.0.0.1: from the CSMS's Python API and from a scenario's
``[[csms.operations]]``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from emulator.core.status import Status
from emulator.csms import CallErrorReceived, ReferenceCsms
from emulator.csms.operations import (
    OperationSchedule,
    cancel_reservation,
    get_local_list_version,
    reserve_now,
    send_local_list,
    trigger_message,
)
from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import parse_scenario
from tests.integration.support import FAST, eventually, running_fleet, scenario

ROOT = Path(__file__).resolve().parents[2]


def status_seen(csms: ReferenceCsms, charger_id: str, connector_id: int = 1) -> str | None:
    """The connector status the CSMS last heard of."""
    reported = csms.chargers[charger_id].statuses.get(connector_id)
    return None if reported is None else reported.status


def booted(csms: ReferenceCsms, fleet: Fleet) -> bool:
    return all(
        (record := csms.chargers.get(wb.charge_point_id)) is not None and record.booted
        for wb in fleet.wallboxes
    )


def test_a_local_list_push_reaches_every_wallbox_of_a_200_charger_fleet() -> None:
    full = {f"TAG{n:05d}": "Accepted" for n in range(5)}
    diff = {"TAG00000": None, "TAG00001": "Blocked", "TAG00099": "Accepted"}
    expected = {
        "TAG00001": "Blocked",
        "TAG00002": "Accepted",
        "TAG00003": "Accepted",
        "TAG00004": "Accepted",
        "TAG00099": "Accepted",
    }

    async def main() -> None:
        async with ReferenceCsms() as csms:
            quiet = scenario(mode="remote-only")
            async with running_fleet(quiet, csms.url, chargers=200) as (fleet, _):
                await csms.wait_until(lambda: booted(csms, fleet), 30)
                pushed = await csms.call_all(*send_local_list(1, full))
                assert set(pushed) == {wb.charge_point_id for wb in fleet.wallboxes}
                assert all(answer == {"status": "Accepted"} for answer in pushed.values())
                updated = await csms.call_all(*send_local_list(2, diff, update_type="Differential"))
                assert all(answer == {"status": "Accepted"} for answer in updated.values())
                # Replayed (a CSMS retrying after a timeout): the charger has version 2 already.
                again = await csms.call_all(*send_local_list(2, diff, update_type="Differential"))
                assert all(answer == {"status": "VersionMismatch"} for answer in again.values())
                versions = await csms.call_all(*get_local_list_version())
                assert all(answer == {"listVersion": 2} for answer in versions.values())
                for wb in fleet.wallboxes:
                    assert wb.auth.local_list_version == 2
                    lists = {tag: info.status.value for tag, info in wb.auth.local_list.items()}
                    assert lists == expected, wb.charge_point_id
                assert csms.schema_violations == 0
                assert all(r.response_violations == 0 for r in csms.chargers.values())

    asyncio.run(asyncio.wait_for(main(), 55))


def test_a_reservation_over_the_wire_holds_the_connector_for_its_tag_until_used() -> None:
    async def main() -> None:
        async with ReferenceCsms() as csms:
            async with running_fleet(scenario(mode="remote-only"), csms.url) as (fleet, _):
                wb = fleet.wallboxes[0]
                cp = wb.charge_point_id
                await csms.wait_until(lambda: booted(csms, fleet), 10)
                request = reserve_now(reservation_id=42, id_tag="DRIVER1", expiry=time.time() + 600)
                assert await csms.call(cp, *request) == {"status": "Accepted"}
                await csms.wait_until(lambda: status_seen(csms, cp) == "Reserved", 5)
                other = {"idTag": "DRIVER2", "connectorId": 1}
                assert await csms.call(cp, "RemoteStartTransaction", other) == {
                    "status": "Accepted"
                }
                await asyncio.sleep(0.3)  # DRIVER2's parent is unknown: Authorize tells; no match
                assert wb.status() is Status.RESERVED and not wb.transactions
                mine = {"idTag": "DRIVER1", "connectorId": 1}
                assert await csms.call(cp, "RemoteStartTransaction", mine) == {"status": "Accepted"}
                await csms.wait_until(lambda: bool(csms.ledger.to_json()["transactions"]), 5)
                (record,) = csms.ledger.to_json()["transactions"]
                assert record["reservationId"] == 42 and record["idTag"] == "DRIVER1"
                assert await csms.call(cp, *cancel_reservation(42)) == {"status": "Rejected"}
                await eventually(lambda: wb.status() is Status.CHARGING, 5.0, "Charging")

    asyncio.run(asyncio.wait_for(main(), 55))


def test_a_trigger_for_a_connector_that_does_not_exist_is_rejected_over_the_wire() -> None:
    async def main() -> None:
        async with ReferenceCsms() as csms:
            async with running_fleet(scenario(mode="remote-only"), csms.url) as (fleet, _):
                cp = fleet.wallboxes[0].charge_point_id
                await csms.wait_until(lambda: booted(csms, fleet), 10)
                beats = csms.chargers[cp].action_counts.get("Heartbeat", 0)
                assert await csms.call(cp, *trigger_message("Heartbeat")) == {"status": "Accepted"}
                await csms.wait_until(
                    lambda: csms.chargers[cp].action_counts.get("Heartbeat", 0) == beats + 1, 5
                )
                answer = await csms.call(cp, *trigger_message("StatusNotification", 2))
                assert answer == {"status": "Rejected"}

    asyncio.run(asyncio.wait_for(main(), 55))


OPERATIONS = """
[[models]]
name = "no-local-list"
profiles = ["Core", "Reservation", "RemoteTrigger", "FirmwareManagement", "SmartCharging"]

[[csms.operations]]
at = 1.0
action = "SendLocalList"
payload = { listVersion = 3, updateType = "Full", localAuthorizationList = [
  { idTag = "TAG00007", idTagInfo = { status = "Accepted" } },
] }

[[csms.operations]]
at = 1.2
action = "ReserveNow"
target = 0.5
payload = { connectorId = 0, expiryDate = "now+600", idTag = "TAG00007", reservationId = 9 }

[[csms.operations]]
at = 0.5
every = 0.5
action = "TriggerMessage"
target = [1, 2, 50]
payload = { requestedMessage = "StatusNotification", connectorId = 1 }

[[csms.operations]]
at = 1.8
action = "GetLocalListVersion"
"""


def operations_scenario() -> str:
    base = FAST.format(
        transport="websockets",
        mode="remote-only",
        arrivals=0,
        sample=60,
        heartbeat=60,
        attempts=3,
        response_timeout=5.0,
        extra_config="",
        energy="[5, 10]",
    )
    return base + OPERATIONS


def test_scenario_operations_run_against_the_fleet_during_a_short_run() -> None:
    text = operations_scenario()
    parsed = parse_scenario(text, source="<operations>")

    async def main() -> None:
        async with ReferenceCsms() as csms:
            async with running_fleet(parsed, csms.url, chargers=20, seed=5) as (fleet, _):
                await csms.wait_until(lambda: booted(csms, fleet), 10)
                ids = [fleet.charger_id(n) for n in range(1, 21)]
                schedule = OperationSchedule(
                    csms=csms, operations=parsed.csms.operations, charger_ids=ids, seed=5
                )
                schedule.start()
                try:
                    await eventually(
                        lambda: (
                            all(schedule.outcomes[i].runs == 1 for i in (0, 1, 3))
                            and schedule.outcomes[2].runs >= 4
                        ),
                        10.0,
                        "the operations",
                    )
                finally:
                    await schedule.stop()
                with_list = [
                    wb for wb in fleet.wallboxes if "LocalAuthListManagement" in wb.config.profiles
                ]
                assert len(with_list) == 10  # two models, equal shares
                push, reserve, trigger, version = schedule.outcomes
                assert push.to_json()["answers"] == {"Accepted": 10, "CALLERROR NotSupported": 10}
                assert version.answers == {"listVersion 3": 10, "CALLERROR NotSupported": 10}
                assert all(wb.auth.local_list_version == 3 for wb in with_list)
                assert reserve.calls == 10 and reserve.answers == {"Accepted": 10}
                reserved = [wb for wb in fleet.wallboxes if wb.reservations.get(9) is not None]
                assert len(reserved) == 10
                await csms.wait_until(
                    lambda: all(
                        status_seen(csms, wb.charge_point_id) == "Reserved" for wb in reserved
                    ),
                    5,
                )
                assert trigger.skipped == 1  # charger 50 is not in a fleet of 20
                assert trigger.calls == 2 * trigger.runs
                assert set(trigger.answers) == {"Accepted"}
                assert csms.schema_violations == 0

    asyncio.run(asyncio.wait_for(main(), 55))


def test_ocpp_fleet_run_executes_the_scenario_operations(tmp_path: Path) -> None:
    path = tmp_path / "operations.toml"
    path.write_text(operations_scenario().replace("at = 1.8", "at = 2.5"))
    report = tmp_path / "summary.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator.cli",
            "run",
            "--scenario",
            str(path),
            "--chargers",
            "10",
            "--duration",
            "4",
            "--no-progress",
            "--strict",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "reference CSMS operations" in result.stdout
    assert "[0] SendLocalList: 10 calls: Accepted 5, CALLERROR NotSupported 5" in result.stdout
    operations = json.loads(report.read_text())["csmsOperations"]
    assert [o["action"] for o in operations] == [
        "SendLocalList",
        "ReserveNow",
        "TriggerMessage",
        "GetLocalListVersion",
    ]
    assert operations[3]["answers"] == {"CALLERROR NotSupported": 5, "listVersion 3": 5}


def test_a_charger_answers_a_call_error_for_a_switched_off_profile_over_the_wire() -> None:
    text = operations_scenario().split("[[csms.operations]]")[0]
    parsed = parse_scenario(text.replace('name = "socket"', 'name = "x"'), source="<x>")

    async def main() -> None:
        async with ReferenceCsms() as csms:
            async with running_fleet(parsed, csms.url, chargers=4) as (fleet, _):
                await csms.wait_until(lambda: booted(csms, fleet), 10)
                without = [
                    wb
                    for wb in fleet.wallboxes
                    if "LocalAuthListManagement" not in wb.config.profiles
                ]
                assert len(without) == 2
                for wb in without:
                    try:
                        await csms.call(wb.charge_point_id, *get_local_list_version())
                    except CallErrorReceived as exc:
                        assert exc.code == "NotSupported"
                    else:
                        raise AssertionError("GetLocalListVersion answered without the profile")
                    keys = await csms.call(
                        wb.charge_point_id, "GetConfiguration", {"key": ["LocalAuthListEnabled"]}
                    )
                    assert keys.get("unknownKey") == ["LocalAuthListEnabled"]

    asyncio.run(asyncio.wait_for(main(), 55))
