"""The reference CSMS over real websockets on 127.0.0.1, driven by a raw OCPP-J client."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.typing import Subprotocol

from emulator.csms import (
    AnswerCallError,
    AnswerGarbage,
    CallErrorReceived,
    ChargerNotConnected,
    Delay,
    DropConnection,
    Misbehaviour,
    ReferenceCsms,
    Silence,
    serve_forever,
)
from emulator.protocol.codec import Call, FrameError
from emulator.protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

T = TypeVar("T")
CP = "CP0001"
BOOT = {"chargePointVendor": "ACWallbox", "chargePointModel": "AC22-3P"}
OCPP16 = [Subprotocol("ocpp1.6")]


class RawCharger:
    """Just enough of a charge point: send frames, read frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send_call(self, action: str, payload: dict[str, Any]) -> str:
        unique_id = f"t{next(self._ids)}"
        await self.ws.send(orjson.dumps([2, unique_id, action, payload]).decode())
        return unique_id

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        unique_id = await self.send_call(action, payload)
        reply = await self.recv()
        assert reply[1] == unique_id
        return reply

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        reply = await self.call(action, payload)
        assert reply[0] == 3, reply
        result: dict[str, Any] = reply[2]
        return result

    async def recv_text(self, within: float = 2.0) -> str:
        async with asyncio.timeout(within):
            message = await self.ws.recv()
        assert isinstance(message, str)
        return message

    async def recv(self, within: float = 2.0) -> Any:
        return orjson.loads(await self.recv_text(within))

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await self.recv_text(seconds)
        except TimeoutError:
            return True
        return False

    async def answer_next_call(self, payload: dict[str, Any]) -> list[Any]:
        call = await self.recv()
        assert call[0] == 2
        await self.ws.send(orjson.dumps([3, call[1], payload]).decode())
        return list(call)


@asynccontextmanager
async def charger(
    csms: ReferenceCsms, charger_id: str = CP, **connect_options: Any
) -> AsyncIterator[RawCharger]:
    async with connect(
        f"{csms.url}/{charger_id}", subprotocols=OCPP16, compression=None, **connect_options
    ) as ws:
        await csms.wait_until(lambda: charger_id in csms.connected, 2)
        yield RawCharger(ws)


def run(scenario: Callable[[ReferenceCsms], Awaitable[T]], **csms_options: Any) -> T:
    """Run ``scenario`` against a fresh CSMS on a free port, bounded to 10 s."""

    async def bounded() -> T:
        async with asyncio.timeout(10), ReferenceCsms(**csms_options) as csms:
            return await scenario(csms)

    return asyncio.run(bounded())


def start_payload(connector: int = 1, tag: str = "TAG1", meter: int = 1000) -> dict[str, Any]:
    return {
        "connectorId": connector,
        "idTag": tag,
        "meterStart": meter,
        "timestamp": "2024-05-01T10:00:00Z",
    }


def stop_payload(transaction_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "meterStop": 2500,
        "timestamp": "2024-05-01T11:00:00Z",
        **fields,
    }


def only_first(
    action: str, misbehaviour: Misbehaviour
) -> Callable[[str, Call], Misbehaviour | None]:
    """A hook that misbehaves once, on the first CALL of ``action``."""
    fired: list[bool] = []

    def hook(charger_id: str, call: Call) -> Misbehaviour | None:
        if call.action == action and not fired:
            fired.append(True)
            return misbehaviour
        return None

    return hook


# -- connecting ------------------------------------------------------------------------


def test_the_url_names_the_port_actually_bound() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        assert csms.port > 0
        assert csms.url == f"ws://127.0.0.1:{csms.port}/ocpp"

    run(scenario)


def test_the_charger_id_is_the_last_segment_of_the_path() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with connect(f"{csms.url}/site-7/CP%2042?x=1", subprotocols=OCPP16):
            await csms.wait_until(lambda: "CP 42" in csms.connected, 2)

    run(scenario)


def test_a_path_without_a_charger_id_is_refused_with_404() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{csms.url}/", subprotocols=OCPP16):
                pass
        assert caught.value.response.status_code == 404

    run(scenario)


def test_a_handshake_without_the_ocpp16_subprotocol_is_refused_with_400() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{csms.url}/{CP}"):
                pass
        assert caught.value.response.status_code == 400
        assert CP not in csms.chargers

    run(scenario)


def test_basic_auth_with_the_charger_id_and_its_password_is_accepted() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        url = csms.url.replace("ws://", f"ws://{CP}:s3cret@")
        async with connect(f"{url}/{CP}", subprotocols=OCPP16):
            await csms.wait_until(lambda: CP in csms.connected, 2)

    run(scenario, basic_auth={CP: "s3cret"})


@pytest.mark.parametrize(
    "userinfo", ["", f"{CP}:wrong@", "CP0002:s3cret@"], ids=["none", "wrong password", "other user"]
)
def test_basic_auth_refuses_bad_credentials_with_401(userinfo: str) -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        url = csms.url.replace("ws://", f"ws://{userinfo}")
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{url}/{CP}", subprotocols=OCPP16):
                pass
        assert caught.value.response.status_code == 401

    run(scenario, basic_auth={CP: "s3cret", "CP0002": "s3cret"})


def test_connects_and_disconnects_are_recorded() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        for _ in range(2):
            async with charger(csms):
                pass
        await csms.wait_until(lambda: not csms.chargers[CP].connected, 2)
        assert (csms.chargers[CP].connects, csms.chargers[CP].disconnects) == (2, 2)

    run(scenario)


def test_a_reconnect_replaces_the_old_connection() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as old:
            async with charger(csms) as new:
                with pytest.raises(ConnectionClosed):
                    await old.recv()
                await csms.wait_until(lambda: csms.chargers[CP].disconnects == 1, 2)
                assert csms.chargers[CP].connected
                call = asyncio.create_task(csms.call(CP, "ClearCache", {}))
                await new.answer_next_call({"status": "Accepted"})
                assert await call == {"status": "Accepted"}

    run(scenario)


def test_stop_closes_every_connection_with_going_away() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            await csms.stop()
            with pytest.raises(ConnectionClosed):
                await cp.recv()
            assert cp.ws.close_code == 1001

    run(scenario)


def test_serve_forever_serves_until_cancelled() -> None:
    async def main() -> None:
        ready: asyncio.Queue[ReferenceCsms] = asyncio.Queue()
        task = asyncio.create_task(serve_forever(on_ready=ready.put_nowait, heartbeat_interval=5))
        csms = await ready.get()
        async with charger(csms) as cp:
            assert (await cp.result("BootNotification", BOOT))["interval"] == 5
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(OSError):
            async with connect(f"{csms.url}/{CP}", subprotocols=OCPP16, open_timeout=1):
                pass

    asyncio.run(asyncio.wait_for(main(), 10))


# -- charger-initiated messages --------------------------------------------------------


def test_a_boot_notification_is_accepted_with_time_and_interval() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            result = await cp.result("BootNotification", BOOT)
        assert result["status"] == "Accepted"
        assert result["interval"] == 300
        assert result["currentTime"].endswith("Z")
        record = csms.chargers[CP]
        assert record.booted
        assert record.boot_payload == BOOT

    run(scenario, heartbeat_interval=300)


def test_boot_status_answers_rejected_when_configured() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            assert (await cp.result("BootNotification", BOOT))["status"] == "Rejected"
        assert not csms.chargers[CP].booted

    run(scenario, boot_status="Rejected")


def test_a_heartbeat_is_answered_with_the_current_time_and_recorded() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            assert "currentTime" in await cp.result("Heartbeat", {})
        assert csms.chargers[CP].last_heartbeat is not None
        assert csms.chargers[CP].action_counts == {"Heartbeat": 1}

    run(scenario)


ID_TAGS: dict[str, Any] = {
    "ACCEPTED1": "Accepted",
    "BLOCKED1": "Blocked",
    "EXPIRED1": "Expired",
    "INVALID1": "Invalid",
    "DATED1": {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00Z"},
}


@pytest.mark.parametrize(
    ("id_tag", "expected"),
    [
        ("ACCEPTED1", {"status": "Accepted"}),
        ("BLOCKED1", {"status": "Blocked"}),
        ("EXPIRED1", {"status": "Expired"}),
        ("INVALID1", {"status": "Invalid"}),
        ("blocked1", {"status": "Blocked"}),
        ("DATED1", {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00Z"}),
        ("STRANGER", {"status": "Invalid"}),
    ],
)
def test_authorize_answers_from_the_id_tag_table(id_tag: str, expected: dict[str, Any]) -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            assert await cp.result("Authorize", {"idTag": id_tag}) == {"idTagInfo": expected}

    run(scenario, id_tags=ID_TAGS, unknown_tag_status="Invalid")


def test_transactions_get_unique_increasing_ids_and_are_recorded() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            first = await cp.result("StartTransaction", start_payload(connector=1))
            second = await cp.result("StartTransaction", start_payload(connector=2))
            stopped = await cp.result(
                "StopTransaction", stop_payload(first["transactionId"], reason="EVDisconnected")
            )
        assert (first["transactionId"], second["transactionId"]) == (1, 2)
        assert first["idTagInfo"] == {"status": "Blocked"}
        assert stopped == {}
        tx = csms.ledger.transactions[1]
        assert (tx.charger_id, tx.connector_id, tx.meter_stop, tx.reason) == (
            CP,
            1,
            2500,
            "EVDisconnected",
        )
        assert tx.energy_wh == 1500.0
        assert not csms.ledger.transactions[2].stopped

    run(scenario, id_tags={"TAG1": "Blocked"})


def test_a_retransmitted_start_transaction_gets_the_same_id_and_counts_as_duplicate() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            first = await cp.result("StartTransaction", start_payload())
            again = await cp.result("StartTransaction", start_payload())
        assert again["transactionId"] == first["transactionId"]
        assert len(csms.ledger.transactions) == 1
        assert csms.ledger.duplicate_starts == 1

    run(scenario)


def test_a_second_stop_of_a_transaction_is_answered_and_counts_as_duplicate() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            tx = (await cp.result("StartTransaction", start_payload()))["transactionId"]
            await cp.result("StopTransaction", stop_payload(tx))
            again = await cp.result("StopTransaction", stop_payload(tx, idTag="TAG1"))
        assert again == {"idTagInfo": {"status": "Accepted"}}
        assert csms.ledger.duplicate_stops == 1

    run(scenario)


def test_a_stop_of_an_unknown_transaction_is_answered_and_counted() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            assert await cp.result("StopTransaction", stop_payload(999, idTag="BLOCKED1")) == {
                "idTagInfo": {"status": "Blocked"}
            }
        assert csms.ledger.unknown_stops == 1

    run(scenario, id_tags={"BLOCKED1": "Blocked"})


def test_meter_values_record_count_and_last_energy_register() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            tx = (await cp.result("StartTransaction", start_payload(meter=1000)))["transactionId"]
            for kwh in ("1.2", "1.75"):
                sampled = {
                    "value": kwh,
                    "unit": "kWh",
                    "measurand": "Energy.Active.Import.Register",
                }
                payload = {
                    "connectorId": 1,
                    "transactionId": tx,
                    "meterValue": [
                        {"timestamp": "2024-05-01T10:05:00Z", "sampledValue": [sampled]}
                    ],
                }
                assert await cp.result("MeterValues", payload) == {}
        record = csms.chargers[CP]
        assert (record.meter_values_count, record.energy_register_wh) == (2, {1: 1750.0})
        transaction = csms.ledger.transactions[tx]
        assert (transaction.meter_values_count, transaction.energy_wh) == (2, 750.0)

    run(scenario)


def test_status_notifications_record_status_and_error_code_per_connector() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            for connector, status, error in (
                (0, "Available", "NoError"),
                (1, "Faulted", "GroundFailure"),
            ):
                payload = {"connectorId": connector, "status": status, "errorCode": error}
                assert await cp.result("StatusNotification", payload) == {}
        statuses = csms.chargers[CP].statuses
        assert (statuses[0].status, statuses[0].error_code) == ("Available", "NoError")
        assert (statuses[1].status, statuses[1].error_code) == ("Faulted", "GroundFailure")

    run(scenario)


def test_data_transfer_to_an_unregistered_vendor_is_unknown_vendor_id() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            reply = await cp.result("DataTransfer", {"vendorId": "nobody"})
        assert reply == {"status": "UnknownVendorId"}

    run(scenario)


def test_data_transfer_to_a_registered_vendor_gets_its_handler_answer() -> None:
    def acme(charger_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted", "data": f"{charger_id}:{payload.get('data')}"}

    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            reply = await cp.result("DataTransfer", {"vendorId": "acme", "data": "ping"})
        assert reply == {"status": "Accepted", "data": f"{CP}:ping"}

    run(scenario, data_transfer_vendors={"acme": acme})


def test_diagnostics_and_firmware_statuses_keep_the_last_and_a_history() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            for status in ("Uploading", "Uploaded"):
                await cp.result("DiagnosticsStatusNotification", {"status": status})
            for status in ("Downloading", "Downloaded", "Installing", "Installed"):
                await cp.result("FirmwareStatusNotification", {"status": status})
        record = csms.chargers[CP]
        assert (record.diagnostics_status, record.diagnostics_history) == (
            "Uploaded",
            ["Uploading", "Uploaded"],
        )
        assert record.firmware_status == "Installed"
        assert len(record.firmware_history) == 4

    run(scenario)


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError"}, "ProtocolError"),
        ("Heartbeat", {"extra": 1}, "FormationViolation"),
        ("Authorize", {"idTag": "X" * 21}, "TypeConstraintViolation"),
        ("DiagnosticsStatusNotification", {"status": "Lost"}, "PropertyConstraintViolation"),
        ("Teleport", {}, "NotImplemented"),
        ("Reset", {"type": "Soft"}, "NotSupported"),
    ],
)
def test_an_invalid_call_is_answered_with_its_callerror_and_counted(
    action: str, payload: dict[str, Any], code: str
) -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            reply = await cp.call(action, payload)
        assert reply[0] == 4
        assert reply[2] == code
        assert csms.chargers[CP].schema_violations == 1
        assert csms.schema_violations == 1
        assert csms.chargers[CP].last_violation is not None

    run(scenario)


def test_a_broken_call_with_a_readable_id_is_answered_with_formation_violation() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            await cp.ws.send('[2, "b1", "Heartbeat", []]')
            reply = await cp.recv()
        assert reply[:3] == [4, "b1", "FormationViolation"]
        assert csms.chargers[CP].frame_errors == 1

    run(scenario)


def test_an_unreadable_frame_is_counted_and_not_answered() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            await cp.ws.send("this is not json")
            reply = await cp.call("Heartbeat", {})  # the first reply is the heartbeat's
        assert reply[0] == 3
        assert csms.chargers[CP].frame_errors == 1

    run(scenario)


# -- CSMS-initiated calls --------------------------------------------------------------


def test_call_returns_the_chargers_result() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            result = asyncio.create_task(csms.call(CP, "Reset", {"type": "Hard"}))
            call = await cp.answer_next_call({"status": "Accepted"})
            assert await result == {"status": "Accepted"}
        assert call[2:] == ["Reset", {"type": "Hard"}]

    run(scenario)


def test_call_raises_the_chargers_callerror() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            result = asyncio.create_task(csms.call(CP, "Reset", {"type": "Hard"}))
            call = await cp.recv()
            await cp.ws.send(orjson.dumps([4, call[1], "NotSupported", "no reset", {}]).decode())
            with pytest.raises(CallErrorReceived) as caught:
                await result
        assert (caught.value.code, caught.value.description) == ("NotSupported", "no reset")

    run(scenario)


def test_call_times_out_and_a_late_answer_is_counted_unmatched() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            result = asyncio.create_task(csms.call(CP, "Reset", {"type": "Hard"}, timeout=0.2))
            call = await cp.recv()
            with pytest.raises(TimeoutError):
                await result
            await cp.ws.send(orjson.dumps([3, call[1], {"status": "Accepted"}]).decode())
            await csms.wait_until(lambda: csms.chargers[CP].unmatched_results == 1, 2)

    run(scenario)


def test_call_to_a_charger_that_is_not_connected_raises_a_key_error() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        with pytest.raises(ChargerNotConnected):
            await csms.call("nobody", "ClearCache", {})
        with pytest.raises(KeyError):
            await csms.call("nobody", "ClearCache", {})

    run(scenario)


def test_call_pending_when_the_charger_disconnects_raises_not_connected() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            result = asyncio.create_task(csms.call(CP, "ClearCache", {}))
            await cp.recv()
        with pytest.raises(ChargerNotConnected):
            await result

    run(scenario)


def test_call_refuses_an_invalid_request_unless_told_to_send_it() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            with pytest.raises(LocalProtocolError):
                await csms.call(CP, "Reset", {"type": "Gentle"})
            result = asyncio.create_task(
                csms.call(CP, "Reset", {"type": "Gentle"}, check_request=False)
            )
            call = await cp.recv()
            await cp.ws.send(
                orjson.dumps([4, call[1], "PropertyConstraintViolation", "", {}]).decode()
            )
            with pytest.raises(CallErrorReceived):
                await result

    run(scenario)


def test_call_refuses_a_result_that_fails_the_response_schema() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            result = asyncio.create_task(csms.call(CP, "Reset", {"type": "Hard"}))
            await cp.answer_next_call({"status": "Sure"})
            with pytest.raises(RemoteProtocolError) as caught:
                await result
        assert caught.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
        assert csms.chargers[CP].response_violations == 1

    run(scenario)


def test_call_fails_on_a_malformed_answer_with_its_id() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as cp:
            result = asyncio.create_task(csms.call(CP, "ClearCache", {}))
            call = await cp.recv()
            await cp.ws.send(orjson.dumps([3, call[1], "Accepted"]).decode())
            with pytest.raises(FrameError):
                await result

    run(scenario)


def test_call_all_reports_each_chargers_result_or_exception() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms, "CP1") as cp1, charger(csms, "CP2"):
            results = asyncio.create_task(
                csms.call_all("ClearCache", {}, charger_ids=["CP1", "CP2", "CP3"], timeout=0.3)
            )
            await cp1.answer_next_call({"status": "Accepted"})  # CP2 stays silent
            outcome = await results
        assert outcome["CP1"] == {"status": "Accepted"}
        assert isinstance(outcome["CP2"], TimeoutError)
        assert isinstance(outcome["CP3"], ChargerNotConnected)

    run(scenario)


def test_wait_until_raises_timeout_error_when_the_predicate_stays_false() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        with pytest.raises(TimeoutError):
            await csms.wait_until(lambda: False, 0.2)

    run(scenario)


# -- misbehaviour ----------------------------------------------------------------------


def test_answer_call_error_refuses_without_processing() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        csms.misbehave = only_first(
            "StartTransaction", AnswerCallError(ErrorCode.INTERNAL_ERROR, "db down")
        )
        async with charger(csms) as cp:
            reply = await cp.call("StartTransaction", start_payload())
        assert reply[2:4] == ["InternalError", "db down"]
        assert csms.ledger.transactions == {}
        assert csms.chargers[CP].action_counts == {"StartTransaction": 1}

    run(scenario)


def test_answer_garbage_sends_the_text_instead_of_the_result() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        csms.misbehave = only_first("Heartbeat", AnswerGarbage("}{ not ocpp"))
        async with charger(csms) as cp:
            await cp.send_call("Heartbeat", {})
            assert await cp.recv_text() == "}{ not ocpp"

    run(scenario)


def test_silence_never_answers_but_a_retransmitted_start_gets_the_same_transaction() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        csms.misbehave = only_first("StartTransaction", Silence())
        async with charger(csms) as cp:
            await cp.send_call("StartTransaction", start_payload())
            assert await cp.nothing_within(0.3)
            retry = await cp.result("StartTransaction", start_payload())
        assert retry["transactionId"] == 1
        assert csms.ledger.duplicate_starts == 1

    run(scenario)


def test_drop_connection_aborts_the_socket_without_answering() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        csms.misbehave = only_first("BootNotification", DropConnection())
        async with charger(csms) as cp:
            await cp.send_call("BootNotification", BOOT)
            with pytest.raises(ConnectionClosedError):
                await cp.recv()
            assert cp.ws.close_code == 1006  # no close frame: TCP aborted
        await csms.wait_until(lambda: csms.chargers[CP].disconnects == 1, 2)
        assert csms.chargers[CP].boot_count == 1  # processed, the answer was lost

    run(scenario)


def test_a_graceful_drop_closes_with_1011() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        csms.misbehave = only_first("Heartbeat", DropConnection(graceful=True))
        async with charger(csms) as cp:
            await cp.send_call("Heartbeat", {})
            with pytest.raises(ConnectionClosed):
                await cp.recv()
            assert cp.ws.close_code == 1011

    run(scenario)


def test_delay_answers_late_without_holding_up_the_connection() -> None:
    async def scenario(csms: ReferenceCsms) -> None:
        csms.misbehave = only_first("Heartbeat", Delay(0.4))
        loop = asyncio.get_running_loop()
        async with charger(csms) as cp:
            sent_at = loop.time()
            heartbeat_id = await cp.send_call("Heartbeat", {})
            # Meanwhile the CSMS's own call is answered and matched.
            clear = asyncio.create_task(csms.call(CP, "ClearCache", {}))
            await cp.answer_next_call({"status": "Accepted"})
            assert await clear == {"status": "Accepted"}
            reply = await cp.recv()
            assert reply[:2] == [3, heartbeat_id]
            assert loop.time() - sent_at >= 0.4  # the delay: a lower bound, load only adds

    run(scenario)
