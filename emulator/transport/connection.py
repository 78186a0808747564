"""What the wallbox driver needs of an open websocket, whichever library pumps its bytes.

Two implementations (``[fleet] transport`` / ``--transport``):

* ``websockets``: websockets' asyncio ``ClientConnection``, as it is;
* ``picows``: :class:`~emulator.transport.picows_pump.PicowsConnection`, picows'
  Cython frame parser behind the same few methods.

:class:`Connection` is that interface.  Its failures are websockets' exception types
(``ConnectionClosed`` with the close frames received and sent; ``InvalidStatus``,
``InvalidHandshake``, ``OSError``, ``TimeoutError`` from a connect), so the driver counts
reasons, close codes and reconnects the same way over both; the picows pump builds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable
from typing import Final, Literal, Protocol

from websockets.uri import parse_uri

__all__ = [
    "DEFAULT_TRANSPORT",
    "SUBPROTOCOL",
    "TRANSPORTS",
    "Connection",
    "Transport",
    "bound_socket",
]

Transport = Literal["websockets", "picows"]
TRANSPORTS: Final[tuple[Transport, ...]] = ("websockets", "picows")
DEFAULT_TRANSPORT: Final[Transport] = "websockets"
SUBPROTOCOL: Final = "ocpp1.6"


class Connection(Protocol):
    """An open websocket to the CSMS, as the driver uses it.

    ``recv``, ``send`` and ``ping`` raise ``websockets.exceptions.ConnectionClosed``
    once the connection is closed; ``recv`` is cancel-safe (a frame that arrived as the
    wait was cancelled is the next one returned)."""

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the CSMS selected (``Sec-WebSocket-Protocol``), if any."""
        ...

    @property
    def transport(self) -> asyncio.Transport:
        """The socket's transport: ``abort()`` cuts the connection without a close frame
        (a dead pong, an injected drop)."""
        ...

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str, /) -> None: ...

    async def ping(self) -> Awaitable[float]:
        """Send a ping; the result resolves (latency, seconds) when its pong arrives."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake, bounded by the connection's close timeout."""
        ...


async def bound_socket(url: str, source_address: str | None) -> socket.socket:
    """A TCP socket to the URL's host and port, connected, from ``source_address`` if any.

    With IP_BIND_ADDRESS_NO_PORT the kernel picks the local port at connect time, for
    that destination only.  A plain bind to (address, 0), what asyncio's ``local_addr``
    does, makes it search the ephemeral range at bind time for a port free for every
    destination: with 10,000 sockets per address that search took most of the host's
    CPU (system time) and stalled the handshakes of a 40,000-wallbox fleet."""
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    family = socket.AF_UNSPEC
    if source_address:
        family = socket.AF_INET6 if ":" in source_address else socket.AF_INET
    infos = await loop.getaddrinfo(uri.host, uri.port, family=family, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{uri.host} has no address reachable from {source_address}")
    # Each address in turn, as asyncio's create_connection (localhost: ::1, 127.0.0.1).
    for number, (family, kind, proto, _, address) in enumerate(infos, 1):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if source_address:
                with contextlib.suppress(OSError):  # not on every kernel: a plain bind
                    sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source_address, 0))
            await loop.sock_connect(sock, address)
        except OSError:
            sock.close()
            if number == len(infos):
                raise
        except BaseException:
            sock.close()
            raise
        else:
            return sock
    raise AssertionError("unreachable")  # the last address's failure was raised


_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux >= 4.2
