"""The wallbox against a CSMS that misbehaves: it survives, and loses or duplicates nothing
beyond what TransactionMessageAttempts allows."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from emulator.core.outcome import TIMEOUT, Outcome
from emulator.csms import ReferenceCsms
from emulator.csms.misbehaviour import AnswerCallError, AnswerGarbage, DropConnection, Silence
from emulator.fleet.ledger import compare, fleet_ledger
from emulator.protocol.codec import Call
from emulator.transport.connection import Transport
from tests.integration.support import RawCsms, eventually, running_fleet, scenario
from tests.ports import free_port


def _ledger_matches(csms: ReferenceCsms, wallboxes: list[Any]) -> None:
    """The fleet's books and the CSMS's agree: nothing lost or invented."""
    comparison = compare(fleet_ledger(wallboxes), csms.ledger.to_json())
    assert comparison.consistent, comparison.discrepancies
    assert comparison.matched >= 1


def test_csms_down_at_start_the_wallbox_connects_when_it_comes_up(transport: Transport) -> None:
    async def main() -> None:
        port = free_port()
        url = f"ws://127.0.0.1:{port}/ocpp"
        async with running_fleet(scenario(transport=transport, mode="remote-only"), url) as (
            fleet,
            stats,
        ):
            await eventually(
                lambda: sum(stats.connect_failures.values()) >= 1, 5.0, "a refused connect"
            )
            async with ReferenceCsms(port=port) as csms:
                cp = fleet.wallboxes[0].charge_point_id
                await csms.wait_until(
                    lambda: cp in csms.chargers and csms.chargers[cp].booted, 15.0
                )
        assert stats.connect_failures["refused"] >= 1

    asyncio.run(main())


def test_connection_dropped_mid_transaction_reconnects_without_reboot_and_loses_nothing(
    transport: Transport,
) -> None:
    async def main() -> None:
        dropped: list[str] = []

        def hook(charger_id: str, call: Call) -> Any:
            if call.action == "MeterValues" and "transactionId" in call.payload and not dropped:
                dropped.append(call.unique_id)
                return DropConnection()
            return None

        async with ReferenceCsms(misbehave=hook) as csms:
            async with running_fleet(
                scenario(transport=transport, arrivals=3600.0, sample=4, energy="[0.05, 0.06]"),
                csms.url,
            ) as (fleet, stats):
                await eventually(lambda: bool(dropped), 20.0, "a dropped MeterValues")
                wb = fleet.wallboxes[0]
                await eventually(lambda: stats.reconnects >= 1, 10.0, "a reconnect")
                await eventually(lambda: len(wb.transactions) >= 2, 30.0, "another session")
            cp = fleet.wallboxes[0].charge_point_id
            assert csms.chargers[cp].boot_count == 1, "a plain reconnect sends no BootNotification"
            assert fleet.wallboxes[0].outbox.ledger.resent_after_disconnect["MeterValues"] == 1
            _ledger_matches(csms, fleet.wallboxes)
            assert csms.ledger.to_json()["duplicateStarts"] == 0

    asyncio.run(main())


def test_callerror_on_start_transaction_is_retried_and_recorded_once(transport: Transport) -> None:
    async def main() -> None:
        refused: list[str] = []

        def hook(charger_id: str, call: Call) -> Any:
            if call.action == "StartTransaction" and len(refused) < 2:
                refused.append(call.unique_id)
                return AnswerCallError("InternalError", "database busy")
            return None

        async with ReferenceCsms(misbehave=hook) as csms:
            async with running_fleet(scenario(transport=transport, arrivals=3600.0), csms.url) as (
                fleet,
                stats,
            ):
                wb = fleet.wallboxes[0]
                await eventually(
                    lambda: bool(wb.transactions) and wb.transactions[0].transaction_id is not None,
                    20.0,
                    "an acknowledged start",
                )
            assert wb.outbox.ledger.retried["StartTransaction"] == 2
            assert (
                stats.actions[
                    next(k for k in stats.actions if k[1] == "StartTransaction")
                ].outcomes[Outcome.callerror("InternalError")]
                == 2
            )
            _ledger_matches(csms, fleet.wallboxes)

    asyncio.run(main())


def test_exhausted_attempts_drop_the_message_by_rule_and_the_wallbox_keeps_running(
    transport: Transport,
) -> None:
    async def main() -> None:
        def hook(charger_id: str, call: Call) -> Any:
            if call.action == "StopTransaction":
                return AnswerCallError("InternalError", "never")
            return None

        async with ReferenceCsms(misbehave=hook) as csms:
            async with running_fleet(
                scenario(transport=transport, arrivals=3600.0, attempts=2), csms.url
            ) as (fleet, _):
                wb = fleet.wallboxes[0]
                rule = "StopTransaction: TransactionMessageAttempts (2) exhausted"
                await eventually(
                    lambda: wb.outbox.ledger.dropped[rule] >= 1, 30.0, "a dropped stop"
                )
                await eventually(lambda: len(wb.transactions) >= 2, 30.0, "the next session")
            assert wb.outbox.ledger.sent["StopTransaction"] >= 2 * wb.outbox.ledger.dropped[rule]

    asyncio.run(main())


def test_garbage_and_schema_violating_answers_are_counted_and_retried(transport: Transport) -> None:
    async def main() -> None:
        spoiled: list[str] = []

        def hook(charger_id: str, call: Call) -> Any:
            if call.action == "StartTransaction" and not spoiled:
                spoiled.append(call.unique_id)
                return AnswerGarbage(
                    f'[3,"{call.unique_id}",{{"transactionId":"seven","idTagInfo":{{"status":"Accepted"}}}}]'
                )
            if call.action == "StatusNotification" and len(spoiled) == 1:
                spoiled.append(call.unique_id)
                return AnswerGarbage("this is not OCPP-J")
            return None

        async with ReferenceCsms(misbehave=hook) as csms:
            sc = scenario(transport=transport, arrivals=3600.0, response_timeout=1.0)
            async with running_fleet(sc, csms.url) as (fleet, stats):
                wb = fleet.wallboxes[0]
                await eventually(lambda: len(spoiled) == 2, 20.0, "two spoiled answers")
                await eventually(
                    lambda: bool(wb.transactions) and wb.transactions[0].transaction_id is not None,
                    20.0,
                    "an acknowledged start",
                )
            outcomes = {o.key for a in stats.actions.values() for o in a.outcomes}
            assert "schema:TypeConstraintViolation" in outcomes
            assert (
                "timeout" in outcomes
            )  # the unreadable answer never arrived as far as OCPP-J goes
            ledger = csms.ledger.to_json()
            assert ledger["duplicateStarts"] == 1, "the retried start got the same transactionId"
            _ledger_matches(csms, fleet.wallboxes)

    asyncio.run(main())


def test_a_csms_that_never_answers_times_out_and_the_wallbox_goes_on(transport: Transport) -> None:
    async def main() -> None:
        silenced: list[str] = []

        def hook(charger_id: str, call: Call) -> Any:
            if call.action == "StatusNotification" and not silenced:
                silenced.append(call.unique_id)
                return Silence()
            return None

        async with ReferenceCsms(misbehave=hook) as csms:
            sc = scenario(transport=transport, mode="remote-only", response_timeout=1.0)
            async with running_fleet(sc, csms.url) as (fleet, stats):
                cp = fleet.wallboxes[0].charge_point_id
                await eventually(lambda: bool(silenced), 10.0, "a silenced call")
                answer = await csms.call(cp, "DataTransfer", {"vendorId": "nobody"}, timeout=5.0)
                assert answer == {"status": "UnknownVendorId"}
                await eventually(
                    lambda: any(a.outcomes.get(TIMEOUT) for a in stats.actions.values()),
                    5.0,
                    "a timeout",
                )

    asyncio.run(main())


MALFORMED = [
    ('[2,"m1","Reset",{"type":"Bogus"}]', "PropertyConstraintViolation"),
    ('[2,"m2","FooBar",{}]', "NotImplemented"),
    ('[2,"m3","Reset",{}]', "ProtocolError"),
    ('[2,"m4","Reset",{"type":5}]', "TypeConstraintViolation"),
    ('[2,"m5","Reset",{"type":"Hard","extra":1}]', "FormationViolation"),
    ('[2,"m6","CertificateSigned",{"certificateChain":"x"}]', "NotSupported"),
    ('[2,"m7","Reset"]', "FormationViolation"),
    (
        '[2,"m8","ChangeConfiguration",{"key":"HeartbeatInterval","value":"' + "9" * 501 + '"}]',
        "TypeConstraintViolation",
    ),
]


def test_malformed_csms_calls_get_the_right_callerror_and_the_wallbox_keeps_serving(
    transport: Transport,
) -> None:
    async def main() -> None:
        async with RawCsms() as raw:
            async with running_fleet(scenario(transport=transport, mode="remote-only"), raw.url):
                await eventually(lambda: bool(raw.connections), 10.0, "a connection")
                await eventually(
                    lambda: any(
                        isinstance(f, list) and f[:1] == [2] and f[2] == "StatusNotification"
                        for f in raw.frames
                    ),
                    10.0,
                    "boot done",
                )
                await raw.send("{this is not json")
                await raw.send('[2, 7, "Reset", {}]')
                for text, code in MALFORMED:
                    unique_id = orjson.loads(text)[1]
                    await raw.send(text)
                    reply = await raw.reply_to(unique_id)
                    assert reply[0] == 4 and reply[2] == code, (text[:60], reply)
                long_tag = '{"idTag":"' + "X" * 21 + '","idTagInfo":{"status":"Accepted"}}'
                await raw.send(
                    '[2,"ll1","SendLocalList",{"listVersion":1,"updateType":"Full",'
                    f'"localAuthorizationList":[{long_tag}]}}]'
                )
                assert await raw.reply_to("ll1") == [3, "ll1", {"status": "Failed"}]  # §3.1 limit
                await raw.send('[2,"ok1","GetConfiguration",{"key":["NumberOfConnectors"]}]')
                reply = await raw.reply_to("ok1")
                assert reply[0] == 3
                assert reply[2]["configurationKey"] == [
                    {"key": "NumberOfConnectors", "readonly": True, "value": "1"}
                ]

    asyncio.run(main())
