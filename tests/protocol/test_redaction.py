"""websockets' DEBUG log through the redacting adapter, and the CSMS's Basic header parser:
a real websockets handshake and frames over 127.0.0.1, logged at DEBUG."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from emulator.csms.server import basic_credentials
from emulator.protocol.redaction import websockets_logger
from emulator.transport.driver import basic_authorization

PASSWORD = b"\xffbinary-secret\x00"
FRAME = '[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"SECRETTAILSECRETTAIL"}]'


def test_headers_and_key_frames_are_redacted_and_everything_else_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(
            echo, "127.0.0.1", 0, logger=websockets_logger("websockets.server")
        ) as server:
            port = server.sockets[0].getsockname()[1]
            header = {"Authorization": basic_authorization("CP1", PASSWORD)}
            async with connect(
                f"ws://127.0.0.1:{port}/CP1",
                additional_headers=header,
                logger=websockets_logger("websockets.client"),
            ) as ws:
                await ws.send(FRAME)
                assert await ws.recv() == FRAME  # the frame itself is untouched
                await ws.send('[2,"2","Heartbeat",{}]')
                await ws.recv()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    text = caplog.text
    token = base64.b64encode(b"CP1:" + PASSWORD).decode()
    assert token not in text and "SECRETTAIL" not in text
    assert "> Authorization: Basic ***" in text and "< Authorization: Basic ***" in text
    assert "TEXT *** (sets AuthorizationKey)" in text
    assert "Heartbeat" in text  # other frames are logged as before
    # The same loggers as without the adapter, and the lines are websockets' own.
    ours = [r for r in caplog.records if r.name.startswith("websockets.")]
    assert {r.name for r in ours} == {"websockets.client", "websockets.server"}
    assert not [r for r in ours if r.filename == "redaction.py"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic_authorization("CP1", PASSWORD), (b"CP1", PASSWORD)),
        ("basic " + base64.b64encode(b"CP1:a:b").decode(), (b"CP1", b"a:b")),
        ("Basic " + base64.b64encode(b"no colon").decode(), None),
        ("Basic not*base64", None),
        ("Bearer " + base64.b64encode(b"CP1:x").decode(), None),
        (None, None),
    ],
    ids=["binary", "colon in password", "no colon", "not base64", "bearer", "none"],
)
def test_the_csms_reads_basic_credentials_as_bytes(
    header: str | None, expected: tuple[bytes, bytes] | None
) -> None:
    assert basic_credentials(header) == expected
