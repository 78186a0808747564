"""What the driver owns, on real sockets on 127.0.0.1: connecting with backoff, the one
deadline it waits on, moving text both ways, and the effects that need a socket (a
reboot closes with 1001 and reconnects after its delay; a stop closes with 1001).

The OCPP-J conversation itself is the charger link's (tests/core)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import numpy as np
import orjson
import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from emulator.core.effects import Event
from emulator.core.link import ChargerLink
from emulator.core.model import ChargerModel
from emulator.core.wallbox import Wallbox
from emulator.metrics import RunStats
from emulator.protocol.schemas import SchemaRegistry
from emulator.protocol.timefmt import format_timestamp
from emulator.transport.connection import Transport
from emulator.transport.driver import ConnectionSettings, WallboxDriver
from tests.integration.support import LoopbackServer, eventually

SCHEMAS = SchemaRegistry()


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (as the fleet's drivers run)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Csms(LoopbackServer):
    """Answers BootNotification (with ``interval``) and Heartbeat; records what arrives
    with its time, the close code of every connection, and can send a CALL."""

    def __init__(self, *, interval: int) -> None:
        self.interval = interval
        self.received: list[tuple[float, Any]] = []
        self.connected_at: list[float] = []
        self.close_codes: list[int | None] = []
        self.connection: ServerConnection | None = None

    async def _handler(self, ws: ServerConnection) -> None:
        self.connection = ws
        self.connected_at.append(time.monotonic())
        try:
            async for text in ws:
                frame = orjson.loads(text)
                self.received.append((time.monotonic(), frame))
                if frame[0] != 2:
                    continue
                now = format_timestamp(time.time())
                answer: dict[str, Any] = {}
                if frame[2] == "BootNotification":
                    answer = {"status": "Accepted", "currentTime": now, "interval": self.interval}
                elif frame[2] == "Heartbeat":
                    answer = {"currentTime": now}
                await ws.send(orjson.dumps([3, frame[1], answer]).decode())
        except ConnectionClosed:
            pass
        self.close_codes.append(ws.close_code)

    def times_of(self, action: str) -> list[float]:
        return [t for t, f in self.received if f[0] == 2 and f[2] == action]


def make_driver(url: str, transport: Transport, **settings: Any) -> WallboxDriver:
    now = time.time()
    wallbox = Wallbox(
        charge_point_id="CP-DRIVER-1",
        model=ChargerModel(configuration={"ClockAlignedDataInterval": "0"}),
        rng=np.random.default_rng(7),
        now=now,
    )
    return WallboxDriver(
        link=ChargerLink(wallbox=wallbox, schemas=SCHEMAS, strict_outgoing=True),
        behaviour=None,
        settings=ConnectionSettings(url=url, transport=transport, **settings),
        reporter=RunStats(),
        rng=np.random.default_rng(8),
    )


@contextlib.asynccontextmanager
async def running(driver: WallboxDriver) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(driver.run())
    try:
        yield task
    finally:
        driver.stop()
        await asyncio.wait_for(task, 15)


@in_loop
async def test_failed_attempts_back_off_with_full_jitter_under_a_doubling_ceiling(
    transport: Transport,
) -> None:
    attempts: list[float] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(time.monotonic())
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    driver = make_driver(
        f"ws://127.0.0.1:{port}/ocpp", transport, backoff_initial=0.05, backoff_max=0.4
    )
    async with server, running(driver):
        await eventually(lambda: len(attempts) >= 12, 20.0, "twelve connect attempts")
    gaps = np.diff(attempts[:12])
    ceilings = np.minimum(0.4, 0.05 * 2.0 ** np.arange(len(gaps)))
    # Each wait is a draw, uniform in [0, ceiling], from the driver's seeded generator
    # (make_driver: default_rng(8)), which draws nothing else while it cannot connect.
    jitter = np.random.default_rng(8)
    draws = np.array([jitter.uniform(0.0, ceiling) for ceiling in ceilings])
    # A gap is its draw plus the refused attempt's round trip: a lower bound, which a
    # loaded machine can only exceed.
    assert np.all(gaps >= draws - 0.01), (gaps, draws)
    # A driver that waited its ceilings (no jitter) or doubled them without the cap would
    # take at least sum(ceilings) = 3.55 s; the draws take 1.65 s, so this fails only if
    # 11 refused attempts on loopback took 1.9 s beyond their waits.
    assert gaps.sum() < ceilings.sum(), (gaps, draws, ceilings)
    stats = driver.reporter
    assert isinstance(stats, RunStats)
    assert stats.connect_failures["http_503"] >= 12
    assert driver.connect_failures >= 12 and not driver.ever_connected


class Metronome:
    """A session behaviour whose only timer fires every ``period`` seconds."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.ticks: list[float] = []
        self.next_at = time.time() + period

    def next_deadline(self) -> float | None:
        return self.next_at

    def tick(self, now: float) -> None:
        if now >= self.next_at:
            self.ticks.append(time.monotonic())
            self.next_at = now + self.period

    def on_events(self, events: list[Event], now: float) -> None:
        pass

    def finish(self, now: float) -> None:
        pass


@in_loop
async def test_the_driver_waits_on_the_next_deadline_and_a_csms_call_ends_the_wait(
    transport: Transport,
) -> None:
    async with Csms(interval=300) as csms:
        driver = make_driver(csms.url, transport)
        metronome = Metronome(0.3)
        driver.behaviour = metronome
        async with running(driver):
            await eventually(lambda: len(metronome.ticks) >= 6, 10.0, "ticks")
            # One deadline (the behaviour's, here), served on time, connected or not: never
            # early (a lower bound, which load cannot break), and not by a coarser poll
            # (1 s would give gaps of 1 s).  The median of five gaps, so that a stall of the
            # loop on a loaded machine in one or two of them does not fail the test.
            gaps = np.diff(metronome.ticks[:6])
            assert np.all(gaps >= 0.25) and 0.25 <= np.median(gaps) <= 0.8, gaps
            metronome.period = 3600.0
            await eventually(lambda: metronome.next_at > time.time() + 60, 5.0, "a far deadline")
            assert csms.connection is not None
            await csms.connection.send('[2,"q1","GetConfiguration",{"key":["HeartbeatInterval"]}]')
            # The wait for a deadline an hour away is a wait on recv too: the CALL is
            # answered as it arrives, not when the wait ends (in an hour, the heartbeat's in
            # 300 s); 5 s is the bound, far from both and from a loaded machine's delays.
            await eventually(
                lambda: any(f[0] == 3 and f[1] == "q1" for _, f in csms.received), 5.0, "answer"
            )
    assert csms.close_codes == [1001]


@in_loop
async def test_a_reboot_closes_with_1001_and_connects_again_after_its_delay(
    transport: Transport,
) -> None:
    async with Csms(interval=300) as csms:
        driver = make_driver(csms.url, transport)
        async with running(driver):
            await eventually(lambda: driver.wallbox.accepted, 10.0, "booted")
            lost = time.monotonic()
            driver.wallbox.power_loss(time.time(), outage=1.0)
            driver.wake()
            await eventually(lambda: len(csms.connected_at) == 2, 10.0, "back after the outage")
            assert csms.close_codes == [1001]
            assert csms.connected_at[1] - lost >= 0.95  # the 1 s outage: a lower bound only
            await eventually(lambda: len(csms.times_of("BootNotification")) == 2, 10.0, "boot")
    stats = driver.reporter
    assert isinstance(stats, RunStats)
    assert stats.disconnects["reboot"] == 1


@pytest.mark.parametrize("phase", ["online", "backing off"])
@in_loop
async def test_stop_ends_any_wait_at_once(phase: str, transport: Transport) -> None:
    async with Csms(interval=300) as csms:
        url = csms.url if phase == "online" else "ws://127.0.0.1:9/ocpp"  # nothing listens
        driver = make_driver(url, transport, backoff_initial=600.0, backoff_max=600.0)
        task = asyncio.create_task(driver.run())
        if phase == "online":
            await eventually(lambda: driver.wallbox.accepted, 10.0, "booted")
        else:
            await eventually(lambda: driver.connect_failures == 1, 10.0, "refused")
        stopped = time.monotonic()
        driver.stop()
        await asyncio.wait_for(task, 10)
        # The waits stopped are 600 s (the backoff) and 300 s (the heartbeat); stopping
        # takes milliseconds here (a close handshake on loopback, or none), so 2 s leaves
        # a loaded machine two orders of magnitude.
        assert time.monotonic() - stopped < 2.0
        assert driver.finished
    if phase == "online":
        assert csms.close_codes == [1001]
