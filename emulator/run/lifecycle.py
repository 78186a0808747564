"""The life of a run: its resources entered in one order and left in the reverse one.

:func:`fleet_run` enters, on one :class:`~contextlib.AsyncExitStack`: the Prometheus
endpoint, the embedded reference CSMS (and its scheduled restart and operations), the
fleet, the signal handlers (SIGINT, SIGTERM stop the fleet cleanly), the progress
display, the time series and the loop-lag monitor.  Leaving stops them the other way
round, whatever ended the block (the duration, a signal, an error): the measurements
stop first, then the displays, the CSMS's operations and the CSMS, the endpoint last.
``ocpp-fleet capacity`` uses the same pieces (:func:`signals`), and a Locust process with a
fleet enters its own (:func:`metrics_served`, its loop bridge) on an exit stack the same
way, left when Locust quits.
What a run leaves behind is a :class:`RunResult` for the writers of
:mod:`emulator.run.outputs`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from emulator.fleet.faults import csms_misbehaviour
from emulator.fleet.runner import Fleet, FleetStartError
from emulator.fleet.scenario import Scenario
from emulator.fleet.security import resolve as resolve_security
from emulator.metrics import MultiReporter, Reporter
from emulator.metrics.slo import Slo, Verdict, evaluate
from emulator.metrics.stats import RunStats
from emulator.metrics.timeseries import TimeSeries
from emulator.run.console import health_changed, progress
from emulator.run.setup import MetricsAddress, RunSetup

if TYPE_CHECKING:
    from emulator.csms import ReferenceCsms
    from emulator.csms.operations import OperationSchedule
    from emulator.metrics.prometheus import MetricsEndpoint

__all__ = ["LiveRun", "SloWindow", "fleet_run", "metrics_endpoint", "metrics_served", "signals"]


@dataclass(slots=True, kw_only=True)
class LiveRun:
    """A run's resources while it lives, and what is read of them afterwards."""

    setup: RunSetup
    console: Console
    stats: RunStats
    fleet: Fleet
    url: str
    window: SloWindow
    csms: ReferenceCsms | None = None
    series: TimeSeries | None = None
    operations: OperationSchedule | None = None
    metrics: MetricsEndpoint | None = None


@asynccontextmanager
async def fleet_run(setup: RunSetup, console: Console) -> AsyncIterator[LiveRun]:
    """``async with fleet_run(setup, console) as run: await run.fleet.run(...)``."""
    async with AsyncExitStack() as stack:
        metrics = stack.enter_context(metrics_endpoint(setup.metrics, console))
        stats = RunStats()
        reporter: Reporter = stats
        if metrics is not None:
            reporter = MultiReporter(reporters=(stats, metrics.reporter))
        csms = await stack.enter_async_context(embedded_csms(setup, console))
        url = csms.url if csms is not None else setup.csms_url
        assert url is not None  # the setup has a URL unless the CSMS is embedded
        fleet = Fleet(
            scenario=setup.scenario,
            csms_url=url,
            chargers=setup.chargers,
            seed=setup.seed,
            reporter=reporter,
            strict=setup.strict,
            source_addresses=setup.source_addresses,
            tune_gc=True,  # this process runs the fleet: keep collection pauses short
            strict_csms=setup.strict_csms,
        )
        fleet.health.on_change = lambda snapshot: health_changed(console, snapshot)
        if metrics is not None:
            metrics.collector.add(fleet)
        stack.enter_context(signals(fleet.stop))
        _announce(setup, console, url)
        run = LiveRun(
            setup=setup,
            console=console,
            stats=stats,
            fleet=fleet,
            url=url,
            window=SloWindow(stats, setup.duration),
            csms=csms,
            metrics=metrics,
        )
        run.operations = await stack.enter_async_context(csms_operations(run))
        if setup.progress:
            await stack.enter_async_context(progress(console, fleet, stats))
        if setup.outputs.report is not None:
            run.series = TimeSeries(
                stats, fleet=fleet.gauges, generator=lambda: fleet.health.snapshot().as_dict()
            )
            await stack.enter_async_context(run.series.running())
        if metrics is not None:
            await stack.enter_async_context(metrics.loop_lag_monitor())
        stack.callback(stats.stop)  # left first: the measurements end with the fleet
        yield run


def _announce(setup: RunSetup, console: Console, url: str) -> None:
    sessions = setup.scenario.sessions
    console.print(
        f"{setup.chargers} wallboxes, scenario [bold]{setup.scenario.name}[/], seed "
        f"{setup.seed}, start {sessions.start_time}{' (warm)' if sessions.warm_start else ''}, "
        f"{setup.duration:g} s → {url}"
    )


@contextmanager
def metrics_endpoint(
    address: MetricsAddress | None, console: Console
) -> Iterator[MetricsEndpoint | None]:
    """This process's Prometheus endpoint while the block runs (None: not asked for)."""
    if address is None:
        yield None
        return
    with metrics_served(address) as endpoint:
        console.print(f"Prometheus metrics on {endpoint.url}")
        yield endpoint


@contextmanager
def metrics_served(address: MetricsAddress) -> Iterator[MetricsEndpoint]:
    """Serve ``/metrics`` at ``address`` while the block runs (every process with a
    fleet: ``run`` and each Locust process).  A port that cannot be bound is
    FleetStartError (exit 3)."""
    from emulator.metrics.prometheus import MetricsEndpoint, disable_created_series

    disable_created_series()  # the same series from every door
    try:
        endpoint = MetricsEndpoint(host=address.host, port=address.port)
    except OSError as exc:
        raise FleetStartError(
            f"cannot serve metrics on {address.host}:{address.port}: {exc.strerror or exc}"
        ) from None
    try:
        yield endpoint
    finally:
        endpoint.close()


@asynccontextmanager
async def embedded_csms(setup: RunSetup, console: Console) -> AsyncIterator[ReferenceCsms | None]:
    """The embedded reference CSMS when the setup has no CSMS URL: it knows the
    scenario's invalid, blocked and expired cards, misbehaves and restarts as the
    scenario's ``[faults]`` say."""
    if not setup.embedded_csms:
        yield None
        return
    from emulator.csms import ReferenceCsms

    scenario = setup.scenario
    csms = ReferenceCsms(
        host="127.0.0.1", port=0, id_tags=scenario.csms_id_tags(), **_registered(scenario)
    )
    await csms.start()
    console.print(f"embedded reference CSMS on {csms.url}")
    csms.misbehave = csms_misbehaviour(scenario.faults, np.random.default_rng([setup.seed, 1]))
    restart = None
    if scenario.faults.csms_restart_seconds > 0:
        restart = asyncio.create_task(
            _restart_later(
                csms, scenario.faults.csms_restart_at, scenario.faults.csms_restart_seconds
            ),
            name="csms-restart",
        )
    try:
        yield csms
    finally:
        if restart is not None:
            restart.cancel()
            with suppress(asyncio.CancelledError):
                await restart
        await csms.stop()


def _registered(scenario: Scenario) -> dict[str, Any]:
    """With an identities file the embedded CSMS knows only its chargers (HTTP 404 for
    any other id) and, when the file has passwords, checks each charger's own (401)."""
    identities = scenario.identities
    if identities is None:
        return {}
    from emulator.csms import PasswordBook

    known: dict[str, Any] = {"known_chargers": identities.ids}
    if identities.passwords and scenario.security.profile != 3:
        default = resolve_security(scenario, charger_ids=[], url="ws://127.0.0.1/").password
        known["basic_auth"] = PasswordBook(identities.passwords, default)
    return known


async def _restart_later(csms: ReferenceCsms, at: float, down_for: float) -> None:
    await asyncio.sleep(at)
    await csms.restart(down_for=down_for)


@asynccontextmanager
async def csms_operations(run: LiveRun) -> AsyncIterator[OperationSchedule | None]:
    """The scenario's ``[[csms.operations]]`` on the embedded CSMS while the block runs."""
    operations = run.setup.scenario.csms.operations
    if not operations:
        yield None
        return
    if run.csms is None:
        run.console.print(
            f"[yellow]note:[/] the scenario's {len(operations)} csms.operations are not run: "
            "only the embedded reference CSMS runs them (no --csms-url)"
        )
        yield None
        return
    from emulator.csms.operations import OperationSchedule

    schedule = OperationSchedule(
        csms=run.csms,
        operations=operations,
        charger_ids=[run.fleet.charger_id(n) for n in range(1, run.setup.chargers + 1)],
        seed=run.setup.seed,
    )
    schedule.start()
    try:
        yield schedule
    finally:
        await schedule.stop()


@contextmanager
def signals(handler: Callable[[], Any]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``handler`` on the running loop while the block runs."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class SloWindow:
    """What an SLO verdict judges: from the end of the ramp (the last wallbox started) to
    the end of the duration, before the shutdown drain; a snapshot at each end."""

    def __init__(self, stats: RunStats, duration: float) -> None:
        self.stats = stats
        self.start = stats.snapshot()
        self.planned_end = _moment(self.start) + duration
        self.ramped: RunStats | None = None
        self.ended: RunStats | None = None

    def hooks(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`Fleet.run` that cut the window."""
        return {"on_ramped": self._ramped, "on_ending": self._ending}

    def _ramped(self) -> None:
        self.ramped = self.stats.snapshot()

    def _ending(self) -> None:
        self.ended = self.stats.snapshot()

    def window(self) -> tuple[RunStats, str | None]:
        """The measurements after the ramp, and a note when that is not the window."""
        end = self.ended if self.ended is not None else self.stats
        note = None
        start = self.ramped
        if start is None:
            note = "the run ended before its ramp did: judged from the start"
            start = self.start
        elif _moment(start) >= self.planned_end:
            note = "the run was shorter than its ramp: judged from the start"
            start = self.start
        return end.since(start), note

    def judge(self, slos: Sequence[Slo], *, ledger_discrepancies: int | None) -> Verdict:
        window, note = self.window()
        return evaluate(slos, window, ledger_discrepancies=ledger_discrepancies, note=note)


def _moment(snapshot: RunStats) -> float:
    """When a :meth:`RunStats.snapshot` was taken (its clock)."""
    return snapshot.stopped if snapshot.stopped is not None else snapshot.started
