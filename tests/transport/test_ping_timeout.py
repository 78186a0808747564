"""A half-open connection (a load balancer that silently stops forwarding) is noticed: a
ping unanswered for one WebSocketPingInterval aborts it and the wallbox reconnects."""

from __future__ import annotations

import asyncio
import contextlib

from emulator.csms import ReferenceCsms
from emulator.transport.connection import Transport
from tests.integration.support import eventually, running_fleet, scenario


class SwallowingProxy:
    """A TCP proxy on 127.0.0.1 that forwards, until :meth:`swallow`: from then on it keeps
    the open connections and reads what arrives on them, but forwards nothing either way
    (no FIN, no RST), like a load balancer that dropped the flows.  New connections are
    forwarded normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._swallowing: set[int] = set()  # connection numbers that are black holes now
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SwallowingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    def swallow(self) -> None:
        """Every connection open now goes silent."""
        self._swallowing.update(range(1, self.connections + 1))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(number, source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, number: int, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(65536):
                if number in self._swallowing:
                    continue  # read and dropped: the sender's TCP sees nothing wrong
                sink.write(data)
                await sink.drain()
            if number not in self._swallowing:
                sink.close()  # the end of the stream goes through too


def test_an_unanswered_ping_aborts_the_connection_and_the_wallbox_reconnects(
    transport: Transport,
) -> None:
    async def main() -> None:
        async with ReferenceCsms() as csms, SwallowingProxy(csms.port) as proxy:
            url = f"ws://127.0.0.1:{proxy.port}/ocpp"
            # WebSocketPingInterval 10 s (its minimum): the ping at 10 s goes unanswered,
            # and at 20 s the connection is declared dead.  Heartbeats are far away.
            sc = scenario(
                transport=transport,
                mode="remote-only",
                heartbeat=600,
                extra_config="WebSocketPingInterval = 10",
            )
            async with running_fleet(sc, url) as (fleet, stats):
                cp = fleet.wallboxes[0].charge_point_id
                await csms.wait_until(lambda: cp in csms.chargers and csms.chargers[cp].booted, 10)
                proxy.swallow()
                swallowed_at = asyncio.get_running_loop().time()
                await eventually(
                    lambda: stats.disconnects["ping_timeout"] >= 1, 30.0, "a dead link"
                )
                took = asyncio.get_running_loop().time() - swallowed_at
                # One interval after the unanswered ping: the swallow follows the connection
                # by well under a second, so the ping is due ~10 s later and the link dead
                # ~20 s after the swallow; an interval late would be ~30 s.  The 5 s between
                # are for a loaded machine; the lower bound is never early.
                assert 9.0 <= took <= 25.0, took
                await eventually(lambda: stats.reconnects >= 1 and fleet.drivers[0].connected, 5.0)
                assert proxy.connections == 2
                assert csms.chargers[cp].connected
            assert dict(stats.disconnects) == {"ping_timeout": 1, "stopped": 1}

    asyncio.run(main())
