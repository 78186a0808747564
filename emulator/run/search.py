"""``ocpp-fleet capacity``: the search (:mod:`emulator.capacity`) with a run's resources
and outputs: each step and the verdict on the terminal, ``--json``, ``--report``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from emulator.capacity import CapacitySearch, Step, Verdict, run_search, violations_text
from emulator.fleet.runner import Fleet, FleetStartError
from emulator.metrics.slo import SloResult, evaluate
from emulator.metrics.stats import RunStats
from emulator.metrics.timeseries import TimeSeries
from emulator.report import ReportData, run_parameters, write_report
from emulator.run.lifecycle import signals
from emulator.run.setup import RunSetup, slo_texts

__all__ = ["capacity_command"]


async def capacity_command(setup: RunSetup, console: Console) -> int:
    """Search, print each step and the verdict, write ``--json`` and ``--report``.
    Raises FleetStartError when no wallbox of the first step reached the CSMS (exit 3),
    KeyboardInterrupt on SIGINT or SIGTERM (no verdict); returns 0 with a verdict, 1 when
    even the first size failed its SLOs."""
    url = setup.csms_url
    assert url is not None  # a capacity setup has one
    stats = RunStats()
    fleet = Fleet(
        scenario=setup.scenario,
        csms_url=url,
        chargers=0,
        seed=setup.seed,
        reporter=stats,
        source_addresses=setup.source_addresses,
        tune_gc=True,
    )
    search = _search(setup, console, fleet, stats)
    series = TimeSeries(
        stats, fleet=fleet.gauges, generator=lambda: fleet.health.snapshot().as_dict()
    )
    task = asyncio.current_task()
    try:
        async with AsyncExitStack() as stack:
            stack.enter_context(signals(lambda: task.cancel() if task is not None else None))
            await stack.enter_async_context(series.running())
            verdict = await run_search(search)
    except asyncio.CancelledError:
        console.print("[yellow]interrupted[/]: no verdict")
        raise KeyboardInterrupt from None
    if not any(d.ever_connected for d in fleet.drivers) and stats.connects == 0:
        reasons = ", ".join(sorted(stats.connect_failures)) or "no answer"
        raise FleetStartError(f"no wallbox reached the CSMS at {url} ({reasons})")
    console.print(f"[bold]{verdict.sentence()}[/]", highlight=False)
    scenario = setup.scenario
    result = verdict.to_json(
        scenario=scenario.name, seed=setup.seed, start_time=scenario.sessions.start_time
    )
    if setup.outputs.json is not None:
        setup.outputs.json.parent.mkdir(parents=True, exist_ok=True)
        setup.outputs.json.write_text(json.dumps(result, indent=2))
    if setup.outputs.report is not None:
        html = write_search_report(setup, verdict, result, series, setup.outputs.report)
        console.print(f"report: {html}")
    return 1 if verdict.capacity is None else 0


def _search(setup: RunSetup, console: Console, fleet: Fleet, stats: RunStats) -> CapacitySearch:
    """The search of ``setup``, announced on ``console`` with its SLOs."""
    settings, scenario = setup.search, setup.scenario
    assert settings is not None
    console.print(
        f"capacity search: scenario [bold]{scenario.name}[/], seed {setup.seed}, start "
        f"{scenario.sessions.start_time}, from {settings.start:,} chargers x{settings.growth:g}"
        f"{'' if settings.max is None else f' up to {settings.max:,}'}, hold "
        f"{settings.hold:g} s → {setup.csms_url}"
    )
    for slo in setup.slos:
        console.print(f"  SLO {slo.text}", highlight=False)

    def judge(window: RunStats) -> Sequence[SloResult]:
        return evaluate(setup.slos, window).results

    return CapacitySearch(
        fleet=fleet,
        stats=stats,
        judge=judge,
        settings=settings,
        on_step=lambda step: _show(console, step),
        on_phase=lambda text: console.print(f"  {text}", style="dim", highlight=False),
    )


def _show(console: Console, step: Step) -> None:
    mark = "[green]PASS[/]" if step.passed else "[red]FAIL[/]"
    worst = violations_text(step.violations)
    generator = " [yellow](generator over its limits)[/]" if step.generator_limited else ""
    console.print(
        f"{mark} {step.chargers:,} chargers ({step.connected:,} booted): "
        f"{step.calls_per_second:,.1f} calls/s{generator}{': ' + worst if worst else ''}",
        highlight=False,
    )


def write_search_report(
    setup: RunSetup,
    verdict: Verdict,
    result: dict[str, Any],
    series: TimeSeries,
    directory: Path,
) -> Path:
    """``--report DIR`` of a capacity search; the HTML's path."""
    settings = setup.search
    assert settings is not None
    files = write_report(
        directory,
        ReportData(
            kind="capacity",
            verdict=verdict.sentence(),
            result=result,
            rows=series.rows,
            interval=series.interval,
            parameters=run_parameters(
                scenario=setup.scenario.name,
                seed=setup.seed,
                start_time=setup.scenario.sessions.start_time,
                csms_url=setup.csms_url or "",
                start=settings.start,
                max=settings.max,
                growth=settings.growth,
                hold_s=settings.hold,
                slo=slo_texts(setup.slos),
            ),
        ),
    )
    return files.html
