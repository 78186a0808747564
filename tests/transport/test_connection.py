"""The byte pumps behind the driver keep one contract (emulator.transport.connection),
on real sockets on 127.0.0.1 against a websockets server: the same text, the same
close codes, the same exceptions, whichever pump moves the bytes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from emulator.protocol.redaction import picows_logger
from emulator.transport.connection import Connection, Transport
from emulator.transport.driver import ConnectionSettings, basic_authorization, open_connection
from emulator.transport.picows_pump import PicowsConnection

Handler = Callable[[ServerConnection], Awaitable[None]]


async def with_server(
    handler: Handler,
    test: Callable[[str], Awaitable[None]],
    *,
    subprotocols: list[str] | None = None,
    process_request: Callable[[ServerConnection, Request], Response | None] | None = None,
) -> None:
    async with serve(
        handler,
        "127.0.0.1",
        0,
        subprotocols=subprotocols if subprotocols is not None else ["ocpp1.6"],  # type: ignore[arg-type]
        compression=None,
        process_request=process_request,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        await asyncio.wait_for(test(f"ws://127.0.0.1:{port}/ocpp/CP1"), 20)


async def opened(url: str, transport: Transport, **settings: Any) -> Connection:
    config = ConnectionSettings(url=url, transport=transport, **settings)
    headers = {"Authorization": basic_authorization("CP1", b"secret")}
    return await open_connection(url, config, headers, None)


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def test_the_chosen_pump_moves_text_both_ways_and_answers_pings(transport: Transport) -> None:
    async def test(url: str) -> None:
        ws = await opened(url, transport)
        assert isinstance(ws, PicowsConnection) == (transport == "picows")
        assert ws.subprotocol == "ocpp1.6"
        for text in ('[2,"1","Heartbeat",{}]', "ü€" * 3000):  # one frame, then a long one
            await ws.send(text)
            assert await ws.recv() == text
        latency = await asyncio.wait_for(await ws.ping(), 5)
        assert latency >= 0.0
        await ws.close(1000, "done")
        with pytest.raises(ConnectionClosed):
            await ws.send("late")

    asyncio.run(with_server(echo, test))


def test_a_csms_close_reaches_recv_with_its_code(transport: Transport) -> None:
    async def closer(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4000, "go away")

    async def test(url: str) -> None:
        ws = await opened(url, transport)
        await ws.send("hello")
        with pytest.raises(ConnectionClosed) as raised:
            await ws.recv()
        assert raised.value.rcvd is not None
        assert (raised.value.rcvd.code, raised.value.rcvd.reason) == (4000, "go away")

    asyncio.run(with_server(closer, test))


def test_a_message_over_max_size_closes_with_1009_fragments_included(
    transport: Transport,
) -> None:
    closes: list[int | None] = []

    async def fragments(ws: ServerConnection) -> None:
        await ws.send(["ab", "cd"])  # a fragmented message, 4 bytes: delivered whole
        await ws.send(["x" * 60, "y" * 60])  # over 100 in all: 1009
        try:
            await ws.recv()
        except ConnectionClosed:
            pass
        closes.append(ws.close_code)

    async def test(url: str) -> None:
        ws = await opened(url, transport, max_size=100)
        assert await ws.recv() == "abcd"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        await asyncio.sleep(0.2)
        assert closes == [1009]

    asyncio.run(with_server(fragments, test))


def test_a_refused_upgrade_raises_websockets_invalid_status(transport: Transport) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        assert request.headers["Authorization"] == basic_authorization("CP1", b"secret")
        return connection.respond(401, "who are you\n")

    async def test(url: str) -> None:
        with pytest.raises(InvalidStatus) as raised:
            await opened(url, transport)
        assert raised.value.response.status_code == 401

    asyncio.run(with_server(echo, test, process_request=refuse))


def test_a_csms_that_selects_no_subprotocol_is_seen_as_such(transport: Transport) -> None:
    async def test(url: str) -> None:
        ws = await opened(url, transport)
        assert ws.subprotocol is None  # the driver refuses it (close 1002)
        await ws.close(1002, "ocpp1.6 required")

    asyncio.run(with_server(echo, test, subprotocols=[]))


def test_picows_lines_are_debug_at_most_and_carry_no_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = picows_logger("picows.client")
    request = b"GET /ocpp/CP1 HTTP/1.1\r\nAuthorization: Basic Q1AxOnNlY3JldA==\r\nHost: x\r\n\r\n"
    key = b'[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"00ff"}]'
    with caplog.at_level(1, logger="picows.client"):
        log.info("WS connection established: %s", "somewhere")
        log.log(9, "Send upgrade request: %s", request)
        log.log(9, "New data: %s", key)
    assert {r.levelno for r in caplog.records} <= {logging.DEBUG, 9}
    assert "Basic ***" in caplog.text and "Q1AxOnNlY3JldA" not in caplog.text
    assert "00ff" not in caplog.text and "names AuthorizationKey" in caplog.text
