"""The picows byte pump: a :class:`~emulator.transport.connection.Connection` over picows.

picows (Cython websockets for asyncio) parses frames in C and calls a listener per
frame; this module turns those calls into the awaited ``recv`` the driver waits on (one
future per wait, no queue task, no per-frame coroutine), and builds websockets'
exception types for what goes wrong, so the driver's failure reasons, close codes and
reconnects read the same over both transports (emulator.transport.connection).

What websockets did for the driver, done here: the ``ocpp1.6`` subprotocol offered and
read back (the driver refuses a CSMS that does not select it), extra headers (Basic
auth), TLS, a source address (:func:`~emulator.transport.connection.bound_socket`), the
open timeout around TCP, TLS and the upgrade, pings whose pongs resolve a waiter (a pong
answers its ping and every earlier one, RFC 6455 §5.5.3), the closing handshake bounded
by the close timeout, and ``max_size`` per message (1009), fragments included.  picows
answers the CSMS's pings itself.

Not done (websockets does): redirects and HTTP proxies from the environment.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Awaitable, Mapping
from http import HTTPStatus
from typing import Any, Final

from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSHandshakeError,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSProtocolError,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    ws_connect,
)
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from emulator.protocol.redaction import picows_logger
from emulator.transport.connection import SUBPROTOCOL, bound_socket

__all__ = ["PicowsConnection", "open_picows"]

_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY
_CONTINUATION: Final = WSMsgType.CONTINUATION
_PONG: Final = WSMsgType.PONG
_CLOSE: Final = WSMsgType.CLOSE
# picows' INFO lines are per connection (established, disconnected); the driver reports
# what matters, so they are DEBUG here, with secrets left out (emulator.protocol.redaction).
_LOG = picows_logger("picows.client")
# OCPP frames are small; the buffer doubles when one is larger (picows' default: 16 KiB
# a connection, most of what a wallbox would cost).
_READ_BUFFER: Final = 1024
_NO_STATUS: Final = 1005  # RFC 6455 §7.1.5: a close frame without a code
_PING: Final = struct.Struct("!I")


class PicowsConnection(WSListener):
    """One open websocket: picows calls :meth:`on_ws_frame`, the driver awaits
    :meth:`recv`."""

    __slots__ = (
        "_close_timeout",
        "_closed",
        "_failed",
        "_fragments",
        "_inbox",
        "_loop",
        "_max_size",
        "_ping_count",
        "_pings",
        "_waiter",
        "subprotocol",
        "ws",
    )

    def __init__(self, *, subprotocol: str | None, max_size: int, close_timeout: float) -> None:
        self.ws: WSTransport | None = None
        self.subprotocol = subprotocol
        self._loop = asyncio.get_running_loop()
        self._max_size = max_size
        self._close_timeout = close_timeout
        self._waiter: asyncio.Future[str | bytes] | None = None
        self._inbox: list[str | bytes] | None = None  # frames nobody waited for yet
        self._fragments: tuple[WSMsgType, list[bytes], int] | None = None  # kind, parts, size
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] | None = None
        self._ping_count = 0
        self._closed = False
        self._failed = False  # we failed the connection (a close frame is out): no more frames

    # ------------------------------------------------------------------ picows' calls

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self._failed:
            return  # picows goes on with the frames already read: they are dropped
        kind = frame.msg_type
        if kind == _TEXT or kind == _BINARY:
            if self._fragments is not None:
                self._fail()
                raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "expected a continuation")
            if frame.fin:
                self._deliver(self._decoded(kind, frame.get_payload_as_bytes()))
            else:
                self._fragments = (kind, [frame.get_payload_as_bytes()], frame.payload_size)
        elif kind == _CONTINUATION:
            self._continue(frame)
        elif kind == _PONG:
            self._ponged(frame.get_payload_as_bytes())
        elif kind == _CLOSE:
            if not transport.is_close_frame_sent:  # the CSMS closes: echo its code
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closed = True
        # picows keeps the failure that ended the connection (ours: a protocol error) for
        # wait_disconnected; taken here, or asyncio logs it as never retrieved.
        self._loop.create_task(transport.wait_disconnected()).add_done_callback(_retrieved)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._closed_error())
        pings = self._pings
        self._pings = None
        if pings:
            for future, _ in pings.values():
                future.cancel()

    def _deliver(self, data: str | bytes) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(data)
        elif self._inbox is None:
            self._inbox = [data]
        else:
            self._inbox.append(data)

    def _continue(self, frame: WSFrame) -> None:
        fragments = self._fragments
        if fragments is None:
            self._fail()
            raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "unexpected continuation")
        kind, parts, size = fragments
        size += frame.payload_size
        if size > self._max_size:
            self._fail()
            raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, f"message over {self._max_size}")
        parts.append(frame.get_payload_as_bytes())
        if frame.fin:
            self._fragments = None
            self._deliver(self._decoded(kind, b"".join(parts)))
        else:
            self._fragments = (kind, parts, size)

    def _decoded(self, kind: WSMsgType, payload: bytes) -> str | bytes:
        """The message: text for a text frame (invalid UTF-8 fails the connection, 1007)."""
        if kind != _TEXT:
            return payload
        try:
            return payload.decode()
        except UnicodeDecodeError:
            self._fail()
            raise WSProtocolError(WSCloseCode.INVALID_TEXT, "invalid UTF-8") from None

    def _fail(self) -> None:
        """What :meth:`on_ws_frame` raises next fails the connection (picows sends the
        close frame of the WSProtocolError and disconnects)."""
        self._failed = True
        self._fragments = None

    def _ponged(self, payload: bytes) -> None:
        pings = self._pings
        if not pings or payload not in pings:
            return  # unsolicited (RFC 6455 §5.5.3) or already given up
        now = self._loop.time()
        for key in list(pings):  # this ping and every earlier one (insertion order)
            future, sent = pings.pop(key)
            if not future.done():
                future.set_result(now - sent)
            if key == payload:
                break

    def _closed_error(self) -> ConnectionClosed:
        handshake = self.ws.close_handshake if self.ws is not None else None
        if handshake is None:
            return ConnectionClosed(None, None)
        rcvd = _close(handshake.recv)
        sent = _close(handshake.sent)
        return ConnectionClosed(rcvd, sent, handshake.recv_then_sent)

    # ------------------------------------------------------------------ the driver's calls

    @property
    def transport(self) -> asyncio.Transport:
        assert self.ws is not None
        return self.ws.underlying_transport

    async def recv(self) -> str | bytes:
        inbox = self._inbox
        if inbox:
            data = inbox.pop(0)
            if not inbox:
                self._inbox = None
            return data
        if self._closed:
            raise self._closed_error()
        waiter: asyncio.Future[str | bytes] = self._loop.create_future()
        self._waiter = waiter
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled just after the frame arrived: it is the next one returned.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._inbox = [waiter.result(), *(self._inbox or ())]
            raise
        finally:
            self._waiter = None

    async def send(self, message: str, /) -> None:
        if self._closed or self.ws is None:
            raise self._closed_error()
        self.ws.send(_TEXT, message.encode())

    async def ping(self) -> Awaitable[float]:
        if self._closed or self.ws is None:
            raise self._closed_error()
        self._ping_count += 1
        payload = _PING.pack(self._ping_count & 0xFFFFFFFF)
        future: asyncio.Future[float] = self._loop.create_future()
        if self._pings is None:
            self._pings = {}
        self._pings[payload] = (future, self._loop.time())
        self.ws.send_ping(payload)
        return future

    async def close(self, code: int = 1000, reason: str = "") -> None:
        ws = self.ws
        if ws is None or self._closed:
            return
        if not ws.is_close_frame_sent:
            ws.send_close(WSCloseCode(code), reason.encode())
        try:
            # The CSMS echoes the close frame (on_ws_frame then disconnects) or closes.
            async with asyncio.timeout(self._close_timeout):
                await ws.wait_disconnected()
        except TimeoutError:
            ws.disconnect(graceful=False)
        except Exception:  # picows re-raises a failure of ours: gone anyway
            pass


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _close(info: Any) -> Close | None:
    if info is None:
        return None
    code = int(info.code.value if hasattr(info.code, "value") else info.code)
    return Close(code or _NO_STATUS, info.reason or "")


async def open_picows(
    url: str,
    *,
    headers: Mapping[str, str],
    ssl_context: ssl.SSLContext | None,
    open_timeout: float,
    close_timeout: float,
    max_size: int,
    source_address: str | None,
) -> PicowsConnection:
    """One connect attempt: TCP (from the source address, if any), TLS, the upgrade,
    within ``open_timeout``.  Raises what websockets' ``connect`` would."""
    sock: socket.socket | None = None

    async def connected_socket(_url: Any) -> socket.socket:
        nonlocal sock
        sock = await bound_socket(url, source_address)
        return sock

    def listener(_request: WSUpgradeRequest, response: WSUpgradeResponse) -> PicowsConnection:
        selected = response.headers.get("Sec-WebSocket-Protocol")
        return PicowsConnection(
            subprotocol=selected, max_size=max_size, close_timeout=close_timeout
        )

    try:
        async with asyncio.timeout(open_timeout):
            ws, connection = await ws_connect(
                listener,
                url,
                ssl_context=ssl_context if url.startswith("wss://") else None,
                websocket_handshake_timeout=open_timeout,
                logger_name=_LOG,
                max_frame_size=max_size,
                extra_headers={**headers, "Sec-WebSocket-Protocol": SUBPROTOCOL},
                max_redirects=0,
                read_buffer_init_size=_READ_BUFFER,
                socket_factory=connected_socket,
                use_aiofastnet=False,  # +5 KiB a connection for no CPU the driver saves
            )
    except WSInvalidStatusError as exc:
        raise _invalid_status(exc) from exc
    except WSHandshakeError as exc:
        raise InvalidHandshake(str(exc)) from exc
    except WSError as exc:
        raise InvalidHandshake(str(exc)) from exc
    except BaseException:
        # Cancelled or timed out during the upgrade: picows shields its wait, so the
        # socket is shut down here (its transport then sees the end and closes).
        if sock is not None and sock.fileno() >= 0:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise
    if not isinstance(connection, PicowsConnection) or ws.is_disconnected:
        raise ConnectionClosed(None, None)  # closed before the upgrade completed
    return connection


def _invalid_status(exc: WSHandshakeError) -> InvalidStatus:
    response = exc.response
    status = int(response.status) if response is not None else 0
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    headers = Headers(list(response.headers.items()) if response is not None else [])
    return InvalidStatus(Response(status, phrase, headers, exc.raw_body or b""))
