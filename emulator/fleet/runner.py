"""The fleet engine: many wallboxes in one event loop, ramped up, stopped gracefully.

Used by ``ocpp-fleet run`` and (issue 5) by the Locust bridge.  Randomness comes
from one seeded ``numpy.random.Generator`` split per wallbox (``Generator.spawn``),
so the same scenario and seed replay the same fleet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from emulator.core.model import ChargerModel
from emulator.core.status import Status
from emulator.core.wallbox import Wallbox
from emulator.fleet.behaviour import SessionBehaviour
from emulator.fleet.scenario import Scenario
from emulator.protocol.schemas import SchemaRegistry
from emulator.transport.driver import ConnectionSettings, WallboxDriver

if TYPE_CHECKING:
    from emulator.metrics import Reporter


class FleetStartError(RuntimeError):
    """The fleet could not start (e.g. no wallbox reached the CSMS within connect_timeout)."""


@dataclass(frozen=True, slots=True)
class FleetCounts:
    """A snapshot for progress displays (computed on demand, never per message)."""

    chargers: int
    started: int
    connected: int
    booted: int
    charging: int
    transactions_running: int
    transactions_started: int
    transactions_stopped: int
    queue_depth: int
    transaction_backlog: int


class Fleet:
    def __init__(
        self,
        *,
        scenario: Scenario,
        csms_url: str,
        chargers: int,
        seed: int,
        reporter: Reporter,
        id_prefix: str | None = None,
        first_index: int = 1,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scenario = scenario
        self.csms_url = csms_url
        self.reporter = reporter
        self.clock = clock
        self.schemas = SchemaRegistry()
        self._stop = asyncio.Event()
        prefix = scenario.fleet.id_prefix if id_prefix is None else id_prefix
        root = np.random.default_rng(seed)
        models: list[ChargerModel] = scenario.pick_models(chargers, root)
        settings = ConnectionSettings(
            url=csms_url,
            strict_outgoing=strict,
            basic_auth_password=scenario.fleet.basic_auth_password,
        )
        now = clock()
        self.drivers: list[WallboxDriver] = []
        for offset, (model, child) in enumerate(zip(models, root.spawn(chargers), strict=True)):
            wb_rng, behaviour_rng, net_rng = child.spawn(3)
            wallbox = Wallbox(
                charge_point_id=f"{prefix}{first_index + offset:06d}",
                model=model,
                rng=wb_rng,
                now=now,
                response_timeout=scenario.fleet.response_timeout,
                boot_on_reconnect=scenario.fleet.boot_on_reconnect,
                strict=strict,
            )
            behaviour = SessionBehaviour(
                wallbox=wallbox, settings=scenario.sessions, rng=behaviour_rng, now=now
            )
            self.drivers.append(
                WallboxDriver(
                    wallbox=wallbox,
                    behaviour=behaviour,
                    settings=settings,
                    schemas=self.schemas,
                    reporter=reporter,
                    rng=net_rng,
                    clock=clock,
                )
            )

    @property
    def wallboxes(self) -> list[Wallbox]:
        return [d.wallbox for d in self.drivers]

    def stop(self) -> None:
        """Ask the run to end (signal handlers call this)."""
        self._stop.set()

    def counts(self, started: int | None = None) -> FleetCounts:
        connected = booted = charging = running = started_tx = stopped_tx = depth = backlog = 0
        for d in self.drivers:
            wb = d.wallbox
            if d.connected:
                connected += 1
                if wb.accepted:
                    booted += 1
            c = wb.connectors[1]
            if c.reported is Status.CHARGING:
                charging += 1
            if c.transaction is not None:
                running += 1
            started_tx += len(wb.transactions)
            stopped_tx += sum(1 for t in wb.transactions if t.stopped_at is not None)
            depth += wb.outbox.depth
            backlog += wb.outbox.transaction_backlog
        return FleetCounts(
            chargers=len(self.drivers),
            started=len(self.drivers) if started is None else started,
            connected=connected,
            booted=booted,
            charging=charging,
            transactions_running=running,
            transactions_started=started_tx,
            transactions_stopped=stopped_tx,
            queue_depth=depth,
            transaction_backlog=backlog,
        )

    async def run(self, *, duration: float) -> None:
        """Ramp up, run for ``duration`` seconds (or until :meth:`stop`), shut down cleanly.

        Raises FleetStartError when no wallbox connected within ``connect_timeout``.
        """
        ramp = self.scenario.fleet.ramp_per_second
        started_at = asyncio.get_running_loop().time()
        deadline = started_at + duration
        connect_deadline = started_at + self.scenario.fleet.connect_timeout
        error: FleetStartError | None = None
        async with asyncio.TaskGroup() as group:
            try:
                for i, driver in enumerate(self.drivers):
                    if self._stop.is_set():
                        break
                    await self._sleep_until(started_at + i / ramp)
                    group.create_task(driver.run(), name=driver.wallbox.charge_point_id)
                    error = self._start_error(connect_deadline)
                    if error is not None:
                        break
                while not self._stop.is_set() and error is None:
                    error = self._start_error(connect_deadline)
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._stop.wait(), timeout=min(remaining, 0.5))
                    except TimeoutError:
                        pass
            finally:
                for driver in self.drivers:
                    driver.stop()
        if error is not None:
            raise error

    def _start_error(self, connect_deadline: float) -> FleetStartError | None:
        if asyncio.get_running_loop().time() < connect_deadline:
            return None
        if any(d.ever_connected for d in self.drivers):
            return None
        reasons = {d.last_failure for d in self.drivers if d.last_failure}
        detail = ", ".join(sorted(reasons)) or "no answer"
        return FleetStartError(
            f"no wallbox reached the CSMS at {self.csms_url} within "
            f"{self.scenario.fleet.connect_timeout:g} s ({detail})"
        )

    async def _sleep_until(self, loop_time: float) -> None:
        delay = loop_time - asyncio.get_running_loop().time()
        if delay > 0:
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except TimeoutError:
                pass
