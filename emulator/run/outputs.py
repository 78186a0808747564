"""What a finished run leaves: one :class:`RunResult`, and the writers that take it.

:func:`result_of` reads a run's resources once, after they were left
(:mod:`emulator.run.lifecycle`): the measurements, the fleet's counts and books, the
embedded CSMS's books and their comparison, the SLO verdict.  The writers take that
result: :func:`print_summary` (the terminal), :func:`write_json` (``--json``),
:func:`write_ledger` (``--ledger``), :func:`write_run_report` (``--report``), and
:func:`exit_code` says how the run ended (0, 1 an SLO was not met, 3 the CSMS accepted
no wallbox).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from emulator.fleet.ledger import LedgerComparison, fleet_ledger
from emulator.fleet.ledger import compare as compare_ledgers
from emulator.metrics.conformance import CsmsConformance
from emulator.metrics.fleetview import FleetCounts
from emulator.metrics.slo import Verdict
from emulator.metrics.stats import Direction, RunStats
from emulator.metrics.summary import (
    conformance_dict,
    render_conformance,
    render_summary,
    summary_dict,
)
from emulator.report import ReportData, machine, run_parameters, run_step, versions, write_report
from emulator.run.console import error_line, render_verdict
from emulator.run.setup import RunSetup, slo_texts

if TYPE_CHECKING:
    from emulator.metrics.timeseries import TimeSeries
    from emulator.run.lifecycle import LiveRun

__all__ = [
    "EXIT_SLO_FAILED",
    "EXIT_START",
    "RunResult",
    "exit_code",
    "print_summary",
    "result_of",
    "write_json",
    "write_ledger",
    "write_outputs",
    "write_run_report",
]

EXIT_SLO_FAILED = 1
EXIT_START = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """A finished ``ocpp-fleet run``."""

    setup: RunSetup
    url: str
    stats: RunStats
    window: RunStats  # after the ramp, before the shutdown (what the SLOs judge)
    window_note: str | None
    counts: FleetCounts
    wallboxes: int  # that were started (fewer than the setup's after an early stop)
    never_accepted: int
    conformance: CsmsConformance
    tags_exhausted: int
    health: dict[str, Any]  # emulator.fleet.health's report
    books: dict[str, Any]  # the fleet's ledger
    csms_books: dict[str, Any] | None  # the embedded CSMS's
    comparison: LedgerComparison | None
    operations: tuple[Any, ...]  # the embedded CSMS's operation outcomes
    verdict: Verdict | None
    series: TimeSeries | None

    @property
    def chargers(self) -> int:
        return self.setup.chargers


def result_of(run: LiveRun) -> RunResult:
    """Read a run that has ended (its resources left)."""
    fleet = run.fleet
    books = fleet_ledger(fleet.wallboxes)
    csms_books = comparison = None
    if run.csms is not None:
        csms_books = run.csms.ledger.to_json()
        comparison = compare_ledgers(books, csms_books)
    window, note = run.window.window()
    verdict = None
    if run.setup.slos:
        discrepancies = None if comparison is None else len(comparison.discrepancies)
        verdict = run.window.judge(run.setup.slos, ledger_discrepancies=discrepancies)
    return RunResult(
        setup=run.setup,
        url=run.url,
        stats=run.stats,
        window=window,
        window_note=note,
        counts=fleet.counts(),
        wallboxes=len(fleet.drivers),
        never_accepted=fleet.never_accepted,
        conformance=fleet.conformance,
        tags_exhausted=0 if fleet.tags is None else fleet.tags.exhausted,
        health=fleet.health.report(),
        books=books,
        csms_books=csms_books,
        comparison=comparison,
        operations=() if run.operations is None else tuple(run.operations.outcomes),
        verdict=verdict,
        series=run.series,
    )


def write_outputs(result: RunResult, console: Console) -> int:
    """Every output the setup asked for, in order; the exit code."""
    print_summary(result, console)
    outputs = result.setup.outputs
    if outputs.ledger is not None:
        write_ledger(result, outputs.ledger, console)
    if outputs.json is not None:
        write_json(result, outputs.json)
    if outputs.report is not None and result.series is not None:
        files = write_run_report(result, outputs.report)
        console.print(f"report: {files}")
    return exit_code(result)


def print_summary(result: RunResult, console: Console) -> None:
    """The summary on the terminal: per action, the generator, transactions, the CSMS's
    deviations, the ledgers, the CSMS's operations, the SLO verdict."""
    render_summary(result.stats, console=console, chargers=result.chargers)
    _health_summary(console, result.health)
    counts = result.counts
    console.print(
        f"transactions: {counts.transactions_started} started, "
        f"{counts.transactions_stopped} stopped; transaction messages not delivered: "
        f"{counts.transaction_backlog}"
    )
    render_conformance(
        result.conformance,
        console=console,
        chargers=result.wallboxes or result.chargers,
        never_accepted=result.never_accepted,
    )
    if result.tags_exhausted:
        console.print(
            f"{result.tags_exhausted:,} arrivals found every idTag of the scenario at a "
            "charger and did not happen (more tags: sessions.id_tags count)",
            highlight=False,
            soft_wrap=True,
        )
    if result.csms_books is not None and result.comparison is not None:
        _ledger_summary(console, result.csms_books, result.comparison)
    if result.operations:
        console.print("reference CSMS operations (answers per charger):")
        for outcome in result.operations:
            console.print(f"  {outcome.line()}", highlight=False)
    if result.verdict is not None:
        render_verdict(console, result.verdict)


def _ledger_summary(console: Console, books: dict[str, Any], comparison: LedgerComparison) -> None:
    transactions = books.get("transactions", [])
    stopped = sum(1 for t in transactions if t.get("meterStop") is not None)
    energy = sum(t.get("energyWh") or 0 for t in transactions)
    console.print(
        f"reference CSMS ledger: {len(transactions)} transactions, {stopped} stopped, "
        f"{energy / 1000:.1f} kWh"
    )
    verdict = "[green]ledgers agree[/]" if comparison.consistent else "[red]LEDGERS DISAGREE[/]"
    console.print(
        f"{verdict}: {comparison.matched} transactions matched, "
        f"{len(comparison.explained)} differences explained by rules, "
        f"{len(comparison.discrepancies)} discrepancies"
    )
    for line in comparison.discrepancies[:20]:
        console.print(f"  [red]✗[/] {line}", highlight=False)


def _health_summary(console: Console, health: dict[str, Any]) -> None:
    line = (
        f"generator: worst p99 send lateness {health['worstLatenessP99'] * 1000:.0f} ms "
        f"(limit {health['latenessLimit'] * 1000:.0f}), worst p99 loop lag "
        f"{health['worstLoopLagP99'] * 1000:.0f} ms (limit {health['lagLimit'] * 1000:.0f})"
    )
    if health["overloadedSeconds"] > 0:
        console.print(
            f"{line}\n[bold red]WARNING:[/] the load generator was the bottleneck for "
            f"{health['overloadedSeconds']:.0f} s of this run: latencies measured then include "
            "its own delays. Run fewer wallboxes per process (or more processes).",
            highlight=False,
        )
    else:
        console.print(f"{line}: kept up", highlight=False)


def write_ledger(result: RunResult, directory: Path, console: Console) -> None:
    """``--ledger DIR``: the fleet's books, and the embedded CSMS's with the comparison."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fleet-ledger.json").write_text(json.dumps(result.books, indent=1))
    if result.csms_books is None or result.comparison is None:
        console.print(
            f"ledger: wrote {directory / 'fleet-ledger.json'} (the fleet's books only: an "
            "external CSMS's books cannot be compared; the embedded reference CSMS keeps its "
            "own)",
            highlight=False,
            soft_wrap=True,
        )
        return
    (directory / "csms-ledger.json").write_text(json.dumps(result.csms_books, indent=1))
    (directory / "comparison.json").write_text(json.dumps(result.comparison.to_json(), indent=1))


def write_json(result: RunResult, path: Path) -> None:
    """``--json FILE``: the summary as JSON."""
    report = summary_dict(result.stats, chargers=result.chargers)
    counts = result.counts
    report["fleet"] = {name: getattr(counts, name) for name in counts.__slots__}
    if result.operations:
        report["csmsOperations"] = [o.to_json() for o in result.operations]
    report["generator"] = result.health
    report["csms"] = conformance_dict(
        result.conformance, chargers=result.wallboxes, never_accepted=result.never_accepted
    )
    if result.verdict is not None:
        report["slo"] = result.verdict.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def write_run_report(result: RunResult, directory: Path) -> Path:
    """``--report DIR``: the run as one step (its window after the ramp); the HTML's path."""
    assert result.series is not None
    setup, verdict, health = result.setup, result.verdict, result.health
    step = run_step(
        result.window,
        chargers=result.chargers,
        connected=result.counts.booted,
        slo=[] if verdict is None else [r.to_json() for r in verdict.results],
        generator={
            "lateness_p99_ms": round(health["worstLatenessP99"] * 1000.0, 3),
            "loop_lag_p99_ms": round(health["worstLoopLagP99"] * 1000.0, 3),
            "lateness_limit_ms": health["latenessLimit"] * 1000.0,
            "loop_lag_limit_ms": health["lagLimit"] * 1000.0,
        },
    )
    sentence = run_sentence(result.chargers, result.window, verdict)
    start_time = setup.scenario.sessions.start_time
    data: dict[str, Any] = {
        "capacity": None,
        "verdict": sentence,
        "steps": [step],
        "scenario": setup.scenario.name,
        "seed": setup.seed,
        "start_time": start_time,
        "versions": versions(),
        "machine": machine(),
    }
    if verdict is not None:
        data["slo"] = verdict.to_json()
    if result.window_note:
        data["note"] = result.window_note
    files = write_report(
        directory,
        ReportData(
            kind="run",
            verdict=sentence,
            result=data,
            rows=result.series.rows,
            interval=result.series.interval,
            parameters=run_parameters(
                scenario=setup.scenario.name,
                seed=setup.seed,
                start_time=start_time,
                chargers=result.chargers,
                duration_s=setup.duration,
                csms_url=result.url,
                slo=slo_texts([r.slo for r in verdict.results]) if verdict else "none",
            ),
        ),
    )
    return files.html


def run_sentence(chargers: int, window: RunStats, verdict: Verdict | None) -> str:
    """The report's headline for a run."""
    calls = sum(a.count for (d, _), a in window.actions.items() if d is Direction.CP_TO_CSMS)
    errors = sum(a.errors for (d, _), a in window.actions.items() if d is Direction.CP_TO_CSMS)
    load = (
        f"{chargers:,} chargers sent {calls:,} calls in the {window.elapsed:.0f} s after the "
        f"ramp, {errors:,} failed"
    )
    if verdict is None:
        return f"{load}; no SLOs were set."
    if verdict.passed:
        return f"{load}; all {len(verdict.results)} SLOs were met."
    missed = "; ".join(f"{r.slo.text} was {r.value_text}" for r in verdict.failed)
    return f"{load}; {len(verdict.failed)} of {len(verdict.results)} SLOs were not met: {missed}."


def exit_code(result: RunResult) -> int:
    """0; 1 when an SLO was not met; 3 when the CSMS accepted no wallbox (with one line
    on stderr naming what the CSMS did wrong, when it broke the boot's schema)."""
    if result.wallboxes and result.never_accepted == result.wallboxes:
        boots = [
            k for k in result.conformance.sorted_violations() if k.action == "BootNotification"
        ]
        hint = ""
        if boots:
            kind = boots[0]
            hint = f"; the CSMS broke the schema of {kind.where} ({kind.code}) {kind.count:,} times"
        error_line(
            f"the CSMS accepted none of the {result.wallboxes:,} wallboxes (BootNotification){hint}"
        )
        return EXIT_START
    if result.verdict is not None and not result.verdict.passed:
        return EXIT_SLO_FAILED
    return 0
