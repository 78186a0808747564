"""The fleet engine: many wallboxes in one event loop, ramped up, stopped gracefully.

Used by ``ocpp-fleet run`` (:meth:`Fleet.run`: a fixed fleet, ramped, for a duration)
and by the Locust bridge (:meth:`Fleet.serve` plus :meth:`Fleet.add_wallbox` /
:meth:`Fleet.remove_wallbox`: one wallbox per Locust user, added and removed while the
loop runs).  Randomness comes from one seeded ``numpy.random.Generator`` split per
wallbox: charger number ``n`` always gets child ``n - 1`` of the seed's
``SeedSequence`` (what ``Generator.spawn`` hands out in order), so the same scenario
and seed replay the same fleet, and a wallbox added at runtime behaves like the same
number in a standalone run.

Every fleet measures its own health (:mod:`emulator.fleet.health`): loop lag and how
late wallbox deadlines fire, so a run can tell when the generator, not the CSMS, is
the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, overload

import numpy as np

from emulator.core.link import ChargerLink
from emulator.core.model import ChargerModel
from emulator.core.rng import child_generator, deferred
from emulator.core.wallbox import Wallbox
from emulator.fleet.behaviour import SessionBehaviour
from emulator.fleet.faults import Behaviours, FaultInjector
from emulator.fleet.gc_policy import keep_collections_short
from emulator.fleet.health import GeneratorHealth
from emulator.fleet.scenario import Scenario
from emulator.fleet.security import resolve as resolve_security
from emulator.fleet.sessions import TagRegistry
from emulator.fleet.stopping import StopPacer, stop_work
from emulator.metrics import MultiReporter
from emulator.metrics.conformance import ConformanceListener, CsmsConformance
from emulator.metrics.fleetview import FleetCounts, FleetGauges, count, gauges
from emulator.protocol.schemas import SchemaRegistry
from emulator.transport.driver import Behaviour, ConnectionSettings, WallboxDriver
from emulator.transport.transfers import FileTransfers

if TYPE_CHECKING:
    from emulator.metrics import Reporter


class FleetStartError(RuntimeError):
    """The fleet could not start (e.g. no wallbox reached the CSMS within connect_timeout)."""


def _listeners(reporter: Reporter) -> list[ConformanceListener]:
    """The reporters (inside a MultiReporter too) that also count the CSMS's deviations."""
    parts = reporter.reporters if isinstance(reporter, MultiReporter) else (reporter,)
    found: list[ConformanceListener] = []
    for part in parts:
        if isinstance(part, MultiReporter):
            found += _listeners(part)
        elif isinstance(part, ConformanceListener):
            found.append(part)
    return found


def parse_address_pool(text: str) -> list[str]:
    """``"127.0.0.2-127.0.0.9"``, ``"10.0.0.5,10.0.0.6"`` or a mix: the addresses, in order.

    A range includes both ends.  Raises ValueError naming the bad part.
    """
    addresses: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            low = ipaddress.ip_address(first.strip())
            high = ipaddress.ip_address(last.strip()) if sep else low
        except ValueError:
            raise ValueError(f"not an IP address or range: {part!r}") from None
        if low.version != high.version or int(high) < int(low):
            raise ValueError(f"not an address range (low-high): {part!r}")
        if int(high) - int(low) >= 65536:
            raise ValueError(f"address range too large: {part!r}")
        kind = type(low)
        addresses.extend(str(kind(i)) for i in range(int(low), int(high) + 1))
    if not addresses:
        raise ValueError("empty address pool")
    return addresses


class Drivers(Sequence[WallboxDriver]):
    """The fleet's drivers in the order they joined: a read-only view of the fleet's
    table by charger number (a dict keeps insertion order), so a wallbox leaves in O(1)
    where a list's ``remove`` searched and shifted.

    Iterating, ``len`` and ``in`` cost what the dict's do; an index or a slice walks the
    table (O(n): for tests and inspection, not for a hot path).  Like a dict, it must not
    change while iterated: copy it (``list(fleet.drivers)``) to add or remove meanwhile.
    """

    __slots__ = ("_table",)

    def __init__(self, table: dict[int, WallboxDriver]) -> None:
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[WallboxDriver]:
        return iter(self._table.values())

    def __reversed__(self) -> Iterator[WallboxDriver]:
        return reversed(self._table.values())

    def __contains__(self, driver: object) -> bool:
        return any(d is driver for d in self._table.values())

    @overload
    def __getitem__(self, index: int) -> WallboxDriver: ...

    @overload
    def __getitem__(self, index: slice) -> list[WallboxDriver]: ...

    def __getitem__(self, index: int | slice) -> WallboxDriver | list[WallboxDriver]:
        return list(self._table.values())[index]

    def __repr__(self) -> str:
        return f"Drivers({len(self._table)} wallboxes)"


class Fleet:
    def __init__(
        self,
        *,
        scenario: Scenario,
        csms_url: str,
        chargers: int,
        seed: int,
        reporter: Reporter,
        first_index: int = 1,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
        source_addresses: Sequence[str] = (),
        health: GeneratorHealth | None = None,
        tune_gc: bool = False,
        strict_csms: bool = False,
    ) -> None:
        """``chargers`` wallboxes numbered from ``first_index`` (0 for an empty fleet that
        :meth:`add_wallbox` fills).  ``source_addresses``: local addresses the wallboxes
        bind to, round robin by charger number (each address has its own ~28k ephemeral
        ports towards one CSMS address and port).  ``tune_gc``: see :mod:`emulator.fleet.gc_policy`
        (process-wide, so only for processes that run a fleet: the CLI, Locust, benchmarks).
        ``strict_csms``: refuse every CSMS message that breaks its OCPP 1.6 schema, even a
        date-time without an offset that a real charger reads as UTC (emulator.protocol.lenient).
        """
        self.scenario = scenario
        self.tune_gc = tune_gc
        self.csms_url = csms_url
        self.reporter = reporter
        self.clock = clock
        self.seed = seed
        self.strict = strict
        self.schemas = SchemaRegistry()
        self.health = health if health is not None else GeneratorHealth()
        # The CSMS's schema violations and idTagInfo answers, for the summary; a reporter
        # that also wants them (Prometheus) listens.
        self.conformance = CsmsConformance()
        self.conformance.listeners.extend(_listeners(reporter))
        # Cards in a visit right now: one card is at one charger at a time.
        self.tags = None if scenario.sessions.shared_tags else TagRegistry(scenario.sessions)
        # One FTP semaphore for the fleet: a roll-out to every wallbox queues for
        # scenario.fleet.max_transfers sessions instead of opening them all at once.
        self.transfers = FileTransfers(max_concurrent=scenario.fleet.max_transfers)
        self._stop = asyncio.Event()
        # (id of the drawn model, the identities row's model) -> (drawn, the model used)
        self._shared_models: dict[tuple[int, str | None], tuple[ChargerModel, ChargerModel]] = {}
        # Security profile: passwords, CA and client certificates are checked here, once,
        # so a missing file is an error before the first connection (SecurityConfigError).
        credentials = resolve_security(
            scenario,
            charger_ids=[self.charger_id(first_index + i) for i in range(chargers)],
            url=csms_url,
        )
        # What a charger may raise its SecurityProfile with (A05): its model says.
        self._raise_material = credentials.raise_material()
        settings = ConnectionSettings(
            url=csms_url,
            open_timeout=scenario.fleet.handshake_timeout,
            basic_auth_password=credentials.password,
            passwords=credentials.passwords,
            ssl_for=credentials.ssl_for,
            cert_expired=credentials.cert_expired,
            install_client_certificate=credentials.install_client_certificate,
            security_profile=scenario.security.profile,
            tls_for=credentials.tls_for,
            stop_transactions_on_shutdown=scenario.fleet.shutdown_transactions == "stop",
            drain_timeout=scenario.fleet.shutdown_drain_seconds,
            transport=scenario.fleet.transport,
        )
        self._lenient_csms = not strict_csms
        self._settings: list[ConnectionSettings] = [
            replace(settings, source_address=address) for address in source_addresses
        ] or [settings]
        # Charger number -> driver, in the order they joined; drivers is its view.
        self._by_number: dict[int, WallboxDriver] = {}
        self.drivers = Drivers(self._by_number)
        self._removing: set[int] = set()
        self._group: asyncio.TaskGroup | None = None
        # While serving: stops wallboxes at the loop's pace.
        self._pacer: StopPacer[WallboxDriver] | None = None
        # Called on the fleet's loop with the number and driver of a removed wallbox
        # once the driver has finished (connection closed): the number may be reused.
        self.on_removed: Callable[[int, WallboxDriver], None] | None = None
        root = np.random.default_rng(seed)
        models: list[ChargerModel] = scenario.pick_models(chargers, root)
        now = clock()
        # The scenario's virtual clock reads sessions.start_time here; wallboxes added
        # later (Locust users) join the virtual day where it has got to.
        self.epoch = now
        for offset, model in enumerate(models):
            self._create(first_index + offset, self._model_for(first_index + offset, model), now)

    def _model_for(self, number: int, drawn: ChargerModel) -> ChargerModel:
        """Charger ``number``'s model: the one its identities row names, else ``drawn``
        (the scenario's mix), with the scenario's security profile and what a raise of it
        may use (Security Whitepaper A05).  Wallboxes of one model share one instance."""
        identities = self.scenario.identities
        name = None if identities is None else identities.model_of(number)
        profile = self.scenario.security.profile
        material = self._raise_material
        if name is None and not profile and not any(material.values()):
            return drawn
        key = (id(drawn), name)
        known = self._shared_models.get(key)
        if known is not None:
            return known[1]
        model = drawn
        if name is not None:
            model = next(m for m in self.scenario.models if m.name == name).to_charger_model()
        if profile or any(material.values()):
            model = replace(
                model,
                security_profile=profile,
                fleet_password=material["fleet_password"],
                fleet_ca=material["fleet_ca"],
                fleet_client_certificates=material["fleet_client_certificates"],
            )
        self._shared_models[key] = (drawn, model)  # drawn kept: its id stays its own
        return model

    def charger_id(self, number: int) -> str:
        """Charger ``number``'s id, as the scenario names it (its identities file's row,
        else its id prefix and the number); ValueError past the file's rows."""
        return self.scenario.charger_id(number)

    def _create(self, number: int, model: ChargerModel, now: float) -> WallboxDriver:
        # Child number-1 of the seed (what root.spawn() hands the number-th charger),
        # split in four as child.spawn(4) would, without building the child Generator.
        # Metering and sessions draw at once; the network jitter and fault streams only
        # on a reconnect or an injected fault, so they are built on first use (~1.2 KiB
        # each otherwise, for every wallbox: emulator.core.rng).
        key = number - 1
        wb_rng = child_generator(self.seed, (key, 0))
        behaviour_rng = child_generator(self.seed, (key, 1))
        net_rng = deferred(partial(child_generator, self.seed, (key, 2)))
        fault_rng = deferred(partial(child_generator, self.seed, (key, 3)))
        scenario = self.scenario
        faults = scenario.faults
        clock = self.clock
        epoch = self.epoch
        if faults.clock_skew_seconds > 0:
            skew = float(fault_rng.uniform(-faults.clock_skew_seconds, faults.clock_skew_seconds))
            base_clock = self.clock

            def clock() -> float:
                return base_clock() + skew

            now += skew
            epoch += skew
        wallbox = Wallbox(
            charge_point_id=self.charger_id(number),
            model=model,
            rng=wb_rng,
            now=now,
            response_timeout=scenario.fleet.response_timeout,
            boot_on_reconnect=scenario.fleet.boot_on_reconnect,
            strict=self.strict,
            transitions=self.conformance,
        )
        sessions = SessionBehaviour(
            wallbox=wallbox,
            settings=scenario.sessions,
            rng=behaviour_rng,
            now=now,
            epoch=epoch,
            tags=self.tags,
        )
        injector = FaultInjector(wallbox=wallbox, settings=faults, rng=fault_rng, now=now)
        behaviour: Behaviour = Behaviours(sessions, injector) if injector.active else sessions
        # Without scheduled faults or added latency the injector has nothing to do: let it
        # go (most fleets), rather than keep it for every wallbox.
        network = injector.network if injector.active or injector.network.latency[1] > 0 else None
        link = ChargerLink(
            wallbox=wallbox,
            schemas=self.schemas,
            conformance=self.conformance,
            lenient=self._lenient_csms,
            strict_outgoing=self.strict,
            message_ids=scenario.fleet.message_ids,
        )
        driver = WallboxDriver(
            link=link,
            behaviour=behaviour,
            network=network,
            settings=self._settings[(number - 1) % len(self._settings)],
            reporter=self.reporter,
            rng=net_rng,
            clock=clock,
            on_late=self._late,
            transfers=self.transfers,
        )
        self._by_number[number] = driver
        return driver

    def _late(self, seconds: float) -> None:
        """A wallbox deadline fired ``seconds`` after it was due (one call per deadline)."""
        self.health.late(seconds)
        self.reporter.lateness(seconds)

    # ------------------------------------------------------------------ runtime changes

    def add_wallbox(self, number: int, model: ChargerModel) -> WallboxDriver:
        """Add charger ``number`` (its id: :meth:`charger_id`) and, if the fleet is
        serving, connect it now.  Call on the fleet's loop."""
        if number in self._by_number:
            raise ValueError(f"charger {self.charger_id(number)} is already in the fleet")
        driver = self._create(number, self._model_for(number, model), self.clock())
        if self._group is not None:
            self._start(number, driver)
        elif self._stop.is_set():
            driver.stop()
        return driver

    def remove_wallbox(self, number: int) -> None:
        """Stop charger ``number`` cleanly (transactions stopped, messages flushed, close
        1001); it leaves :attr:`drivers` when its driver has finished.  Call on the loop."""
        driver = self._by_number.get(number)
        if driver is None or number in self._removing:
            return
        self._removing.add(number)
        if driver.finished or self._group is None:
            self._forget(number)
        elif self._pacer is not None:
            self._pacer.stop(driver)
        else:
            driver.stop()

    def drop_connections(self, share: float, rng: np.random.Generator) -> int:
        """Cut ``share`` of the open connections as a network failure would (no close
        handshake); those wallboxes reconnect with their backoff.  Returns how many."""
        open_drivers = [d for d in self.drivers if d.ws is not None and not d.stopping]
        count = round(len(open_drivers) * min(max(share, 0.0), 1.0))
        if count:
            for i in rng.choice(len(open_drivers), size=count, replace=False):
                ws = open_drivers[int(i)].ws
                if ws is not None:
                    ws.transport.abort()
        return count

    def _forget(self, number: int) -> None:
        driver = self._by_number.pop(number, None)
        self._removing.discard(number)
        if driver is not None:
            if self.on_removed is not None:
                self.on_removed(number, driver)

    def _start(self, number: int, driver: WallboxDriver) -> None:
        assert self._group is not None
        # The task runs driver.run itself (no wrapper coroutine: one frame less for
        # every wallbox); a removed wallbox is forgotten when it has finished.
        task = self._group.create_task(driver.run(), name=driver.wallbox.charge_point_id)
        task.add_done_callback(partial(self._finished, number, driver))

    def _finished(self, number: int, driver: WallboxDriver, _: object) -> None:
        if number in self._removing and self._by_number.get(number) is driver:
            self._forget(number)

    async def serve(self) -> None:
        """Run the wallboxes present and those added later until :meth:`stop`; then stop
        them all cleanly and return when every one has finished (the Locust bridge)."""
        async with self._serving():
            for number, driver in list(self._by_number.items()):
                self._start(number, driver)
            await self._stop.wait()

    @contextlib.asynccontextmanager
    async def _serving(self) -> AsyncIterator[None]:
        """The fleet's task group and its helpers; on leaving, every driver is asked to
        stop (a batch per loop turn, :class:`~emulator.fleet.stopping.StopPacer`) and the
        group waits until all of them have finished."""
        async with asyncio.TaskGroup() as group:
            helpers = self._start_helpers(group)
            pacer = self._pacer = StopPacer[WallboxDriver](work=stop_work)
            group.create_task(pacer.run(), name="stop-pacer")
            self._group = group
            try:
                yield
            finally:
                self._group = None
                for driver in self.drivers:
                    pacer.stop(driver)
                pacer.close()
                self._pacer = None
                for helper in helpers:
                    helper.cancel()

    def _start_helpers(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        helpers = [group.create_task(self.health.monitor(), name="generator-health")]
        if self.tune_gc:
            helpers.append(group.create_task(keep_collections_short(), name="gc-policy"))
        return helpers

    @property
    def never_accepted(self) -> int:
        """Wallboxes whose BootNotification the CSMS never accepted in this run."""
        return sum(1 for d in self.drivers if not d.ever_accepted)

    @property
    def wallboxes(self) -> list[Wallbox]:
        return [d.wallbox for d in self.drivers]

    def stop_faults(self) -> None:
        """End fault injection (e.g. to let a soak drain before comparing ledgers)."""
        for driver in self.drivers:
            behaviour = driver.behaviour
            if isinstance(behaviour, Behaviours):
                for part in behaviour.parts:
                    if isinstance(part, FaultInjector):
                        part.finish(driver.clock())
                        part.network.blocked_until = 0.0
            driver.wake()

    def stop(self) -> None:
        """Ask the run to end (signal handlers call this)."""
        self._stop.set()

    def gauges(self) -> FleetGauges:
        """Chargers, open connections, connectors reported Charging, queued and unanswered
        messages: the cheap counts (:func:`emulator.metrics.fleetview.gauges`)."""
        return gauges(self.drivers)

    def counts(self, started: int | None = None) -> FleetCounts:
        """Every count of the fleet's wallboxes (:func:`emulator.metrics.fleetview.count`)."""
        return count(self.drivers, started=started)

    async def run(
        self,
        *,
        duration: float,
        on_ramped: Callable[[], None] | None = None,
        on_ending: Callable[[], None] | None = None,
    ) -> None:
        """Ramp up, run for ``duration`` seconds (or until :meth:`stop`), shut down cleanly.

        ``on_ramped`` is called when the last wallbox of the ramp has been started (not
        when the run is stopped before), ``on_ending`` when the duration is over or the
        run was stopped, before the shutdown drain: the window an SLO verdict judges.
        Raises FleetStartError when no wallbox connected within ``connect_timeout``.
        """
        ramp = self.scenario.fleet.ramp_per_second
        started_at = asyncio.get_running_loop().time()
        deadline = started_at + duration
        connect_deadline = started_at + self.scenario.fleet.connect_timeout
        error: FleetStartError | None = None
        async with self._serving():
            for i, (number, driver) in enumerate(list(self._by_number.items())):
                if self._stop.is_set():
                    break
                await self._sleep_until(started_at + i / ramp)
                self._start(number, driver)
                error = self._start_error(connect_deadline)
                if error is not None:
                    break
            else:
                if on_ramped is not None and not self._stop.is_set():
                    on_ramped()
            while not self._stop.is_set() and error is None:
                error = self._start_error(connect_deadline)
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=min(remaining, 0.5))
            if on_ending is not None and error is None:
                on_ending()
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
