"""A fleet against the embedded reference CSMS over real websockets on 127.0.0.1."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from emulator.core.status import Status
from emulator.csms import ReferenceCsms
from emulator.fleet.scenario import Scenario
from tests.integration.support import eventually, running_fleet, scenario


def parse_with_password(password: str) -> Scenario:
    base = scenario(mode="remote-only")
    fleet = msgspec.structs.replace(base.fleet, basic_auth_password=password)
    return msgspec.structs.replace(base, fleet=fleet)


def test_fleet_sessions_match_the_csms_ledger_exactly() -> None:
    async def main() -> None:
        async with ReferenceCsms(heartbeat_interval=60) as csms:
            async with running_fleet(scenario(arrivals=3600.0), csms.url, chargers=20) as (
                fleet,
                stats,
            ):
                await eventually(
                    lambda: sum(len(wb.transactions) for wb in fleet.wallboxes) >= 20,
                    20.0,
                    "20 transactions",
                )
            ledger = csms.ledger.to_json()
            wallbox_tx = {
                (wb.charge_point_id, t.transaction_id): t
                for wb in fleet.wallboxes
                for t in wb.transactions
            }
            assert all(tid is not None for _, tid in wallbox_tx), "every start acknowledged"
            csms_tx = {(t["chargerId"], t["transactionId"]): t for t in ledger["transactions"]}
            assert set(csms_tx) == set(wallbox_tx)
            for key, tx in wallbox_tx.items():
                record = csms_tx[key]
                assert record["meterStart"] == tx.meter_start
                assert record["meterStop"] == tx.meter_stop
                assert record["reason"] == tx.stop_reason
            assert ledger["duplicateStarts"] == ledger["duplicateStops"] == 0
            assert ledger["unknownStops"] == ledger["overlappingStarts"] == 0
            assert all(r.schema_violations == 0 for r in csms.chargers.values())
            assert all(r.boot_count == 1 for r in csms.chargers.values())
            assert stats.connects == 20 and not stats.connect_failures

    asyncio.run(main())


def test_remote_start_plugs_an_ev_in_and_remote_stop_ends_the_transaction() -> None:
    async def main() -> None:
        async with ReferenceCsms() as csms:
            async with running_fleet(scenario(mode="remote-only"), csms.url) as (fleet, _):
                wb = fleet.wallboxes[0]
                cp = wb.charge_point_id
                await csms.wait_until(
                    lambda: csms.chargers.get(cp) is not None and csms.chargers[cp].booted, 10
                )
                assert not wb.transactions, "remote-only chargers start nothing on their own"
                answer = await csms.call(
                    cp, "RemoteStartTransaction", {"idTag": "DRIVER1", "connectorId": 1}
                )
                assert answer == {"status": "Accepted"}
                await eventually(
                    lambda: wb.status() is Status.CHARGING, 5.0, "Charging within 2 s of plug"
                )
                await eventually(
                    lambda: wb.transactions[0].transaction_id is not None, 5.0, "start acked"
                )
                tid = wb.transactions[0].transaction_id
                answer = await csms.call(cp, "RemoteStopTransaction", {"transactionId": tid})
                assert answer == {"status": "Accepted"}
                await eventually(
                    lambda: any(
                        t["reason"] == "Remote" for t in csms.ledger.to_json()["transactions"]
                    ),
                    5.0,
                    "StopTransaction reason Remote",
                )

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["Hard", "Soft"])
def test_a_reset_during_a_transaction_reboots_as_the_reference_describes(kind: str) -> None:
    """Hard: restart at once, the transaction is lost; Soft: stop it, then restart (§3.1)."""

    async def main() -> None:
        async with ReferenceCsms() as csms:
            async with running_fleet(scenario(mode="remote-only"), csms.url) as (fleet, _):
                wb = fleet.wallboxes[0]
                wb.reboot_seconds = 0.2
                cp = wb.charge_point_id
                await csms.wait_until(lambda: cp in csms.chargers and csms.chargers[cp].booted, 10)
                await csms.call(cp, "RemoteStartTransaction", {"idTag": "DRIVER1"})
                await eventually(
                    lambda: bool(wb.transactions) and wb.transactions[0].transaction_id, 5.0
                )
                assert await csms.call(cp, "Reset", {"type": kind}) == {"status": "Accepted"}
                await eventually(
                    lambda: csms.chargers[cp].boot_count == 2, 10.0, "a second BootNotification"
                )
                await asyncio.sleep(0.3)
                record = csms.ledger.to_json()["transactions"][0]
                if kind == "Hard":
                    assert wb.lost_transactions == [wb.transactions[0]]
                    assert record["meterStop"] is None  # lost: no StopTransaction, ever
                else:
                    assert record["reason"] == "SoftReset"
                    assert record["meterStop"] == wb.transactions[0].meter_stop
                answer = await csms.call(
                    cp, "GetConfiguration", {"key": ["TransactionMessageRetryInterval"]}
                )
                assert answer["configurationKey"][0]["value"] == "0"  # survives the reset

    asyncio.run(main())


def test_configuration_changes_apply_over_the_wire() -> None:
    async def main() -> None:
        async with ReferenceCsms() as csms:
            async with running_fleet(scenario(mode="remote-only"), csms.url) as (fleet, _):
                cp = fleet.wallboxes[0].charge_point_id
                await csms.wait_until(lambda: cp in csms.chargers and csms.chargers[cp].booted, 10)
                change = await csms.call(
                    cp, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "5"}
                )
                assert change == {"status": "Accepted"}
                before = csms.chargers[cp].action_counts.get("Heartbeat", 0)
                await eventually(
                    lambda: csms.chargers[cp].action_counts.get("Heartbeat", 0) > before,
                    12.0,
                    "a heartbeat",
                )
                read_only = await csms.call(
                    cp, "ChangeConfiguration", {"key": "NumberOfConnectors", "value": "2"}
                )
                assert read_only == {"status": "Rejected"}

    asyncio.run(main())


def test_basic_auth_from_the_scenario_is_sent_and_a_wrong_password_is_refused() -> None:
    async def main() -> None:
        async with ReferenceCsms(basic_auth={"IT000001": "s3cret", "IT000002": "other"}) as csms:
            sc = parse_with_password("s3cret")
            async with running_fleet(sc, csms.url, chargers=2) as (fleet, stats):
                await csms.wait_until(
                    lambda: "IT000001" in csms.chargers and csms.chargers["IT000001"].booted, 10
                )
                await eventually(
                    lambda: stats.connect_failures["http_401"] >= 1, 10.0, "IT000002 refused"
                )
            assert not fleet.drivers[1].ever_connected

    asyncio.run(main())


def test_websocket_pings_go_out_every_web_socket_ping_interval() -> None:
    async def main() -> None:
        async with ReferenceCsms() as csms:
            sc = scenario(mode="remote-only", extra_config="WebSocketPingInterval = 10")
            async with running_fleet(sc, csms.url) as (_, stats):
                await eventually(lambda: stats.ping_rtt_latency.count >= 1, 12.0, "a pong")

    asyncio.run(main())
