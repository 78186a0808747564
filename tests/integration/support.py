"""Integration helpers: real websockets on 127.0.0.1, bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Self

import orjson
from websockets.asyncio.server import ServerConnection, serve

from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import Scenario, parse_scenario
from emulator.metrics.stats import RunStats
from emulator.transport.connection import DEFAULT_TRANSPORT, Transport

ROOT = Path(__file__).resolve().parents[2]


def ocpp_fleet(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``ocpp-fleet args`` in a process of its own, from the repository's root."""
    return subprocess.run(
        [sys.executable, "-m", "emulator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


FAST = """
[scenario]
name = "integration"

[fleet]
id_prefix = "IT"
connect_timeout = 10.0
response_timeout = {response_timeout}
ramp_per_second = 200.0
transport = "{transport}"

[[models]]
name = "socket"
variant = "socket"
phases = 3
max_current = 32.0
[models.configuration]
TransactionMessageRetryInterval = 0
TransactionMessageAttempts = {attempts}
MeterValueSampleInterval = {sample}
ClockAlignedDataInterval = 0
HeartbeatInterval = {heartbeat}
{extra_config}

[sessions]
mode = "{mode}"
arrivals_per_hour = {arrivals}
plug_in_delay = [0.1, 0.3]
energy_kwh = {energy}
idle_after_full = [0.1, 0.5]
authorize_first_share = 0.5
stop_by_tag_share = 0.3
"""


def scenario(
    *,
    mode: str = "random",
    arrivals: float = 3600.0,
    sample: int = 4,
    heartbeat: int = 60,
    attempts: int = 6,
    response_timeout: float = 5.0,
    extra_config: str = "",
    energy: str = "[0.005, 0.02]",
    transport: Transport = DEFAULT_TRANSPORT,
) -> Scenario:
    text = FAST.format(
        mode=mode,
        arrivals=arrivals,
        sample=sample,
        heartbeat=heartbeat,
        attempts=attempts,
        response_timeout=response_timeout,
        extra_config=extra_config,
        energy=energy,
        transport=transport,
    )
    return parse_scenario(text, source="<integration>")


@contextlib.asynccontextmanager
async def running_fleet(
    scenario: Scenario, url: str, *, chargers: int = 1, seed: int = 1
) -> AsyncIterator[tuple[Fleet, RunStats]]:
    """A fleet running in the background; stopped (gracefully) on exit."""
    stats = RunStats()
    fleet = Fleet(
        scenario=scenario, csms_url=url, chargers=chargers, seed=seed, reporter=stats, strict=True
    )
    task = asyncio.create_task(fleet.run(duration=300.0))
    try:
        yield fleet, stats
    finally:
        fleet.stop()
        await asyncio.wait_for(task, timeout=30.0)


async def eventually(
    predicate: Callable[[], bool], timeout: float, what: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class LoopbackServer:
    """A websockets server on 127.0.0.1 speaking ocpp1.6 (any free port) for a test CSMS:
    ``async with`` starts and stops it; subclasses handle each connection."""

    _server: Any = None
    port = 0

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def _handler(self, ws: ServerConnection) -> None:
        raise NotImplementedError


class RawCsms(LoopbackServer):
    """A hand-driven OCPP-J peer: answers Boot/Status/Heartbeat, records every frame.

    Tests push arbitrary text to the charger and read what it sends back.
    """

    def __init__(self) -> None:
        self.frames: list[Any] = []  # decoded frames from the charger (or raw text if not JSON)
        self.connections: list[ServerConnection] = []
        self.answer: Callable[[str, dict[str, Any]], dict[str, Any] | None] = self._default

    @staticmethod
    def _default(action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        now = "2026-01-01T00:00:00.000Z"
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": now, "interval": 60}
        if action == "Heartbeat":
            return {"currentTime": now}
        return {}

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        async for text in ws:
            try:
                frame = orjson.loads(text)
            except orjson.JSONDecodeError:
                self.frames.append(text)
                continue
            self.frames.append(frame)
            if isinstance(frame, list) and frame and frame[0] == 2:
                reply = self.answer(frame[2], frame[3])
                if reply is not None:
                    await ws.send(orjson.dumps([3, frame[1], reply]).decode())

    async def send(self, text: str) -> None:
        await self.connections[-1].send(text)

    async def reply_to(self, unique_id: str, timeout: float = 5.0) -> Any:
        """The charger's CALLRESULT/CALLERROR for our CALL ``unique_id``."""
        found: list[Any] = []

        def seen() -> bool:
            for f in self.frames:
                if isinstance(f, list) and f and f[0] in (3, 4) and f[1] == unique_id:
                    found.append(f)
                    return True
            return False

        await eventually(seen, timeout, f"a reply to {unique_id}")
        return found[0]


async def drain_after_faults(fleet: Fleet, csms: Any, timeout: float = 100.0) -> None:
    """Stop injecting faults, then wait until every wallbox is back with an empty queue.

    A wallbox that failed to reconnect several times may be waiting out a backoff of up
    to 60 s (full jitter), hence the generous bound; it returns as soon as all are back.
    """
    fleet.stop_faults()
    csms.misbehave = None
    await eventually(
        lambda: (
            all(d.connected for d in fleet.drivers)
            and all(d.wallbox.outbox.transaction_backlog == 0 for d in fleet.drivers)
        ),
        timeout,
        "every wallbox back and its queue drained",
    )
