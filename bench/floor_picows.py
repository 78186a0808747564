"""The floor client's connection over picows (Cython websockets for asyncio).

bench/floor.py ``--transport picows`` replays the same frames on the same schedule over
this instead of websockets' ``ClientConnection``: the least a task-per-charger client
needs from picows (its callback API, a future per awaited frame), so the two floors
differ only in the websocket implementation.
"""

from __future__ import annotations

import asyncio
from collections import deque

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect


class Closed(Exception):
    """The connection closed while a frame was awaited."""


class PicowsConnection(WSListener):  # type: ignore[misc]
    """``send``/``recv``/``ping``/``close``, as the floor uses websockets' connection."""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self._inbox: deque[str] = deque()
        self._waiter: asyncio.Future[str] | None = None
        self._closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT:
            text = frame.get_payload_as_utf8_text()
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                self._waiter = None
                waiter.set_result(text)
            else:
                self._inbox.append(text)
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(Closed())

    async def recv(self) -> str:
        if self._inbox:
            return self._inbox.popleft()
        if self._closed:
            raise Closed()
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        return await waiter

    async def send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, text.encode())

    async def ping(self) -> None:
        assert self.transport is not None
        self.transport.send_ping()

    async def close(self) -> None:
        transport = self.transport
        if transport is None or self._closed:
            return
        transport.send_close(WSCloseCode.OK)
        transport.disconnect()
        await transport.wait_disconnected()


async def connect(url: str, *, use_aiofastnet: bool) -> PicowsConnection:
    _, listener = await ws_connect(
        PicowsConnection,
        url,
        websocket_handshake_timeout=10.0,
        extra_headers={"Sec-WebSocket-Protocol": "ocpp1.6"},
        use_aiofastnet=use_aiofastnet,
        read_buffer_init_size=1024,
    )
    assert isinstance(listener, PicowsConnection)
    return listener
