"""What a run shows on the terminal while it lives: the progress line, the generator's
health flips, and at the end the SLO table and verdict line."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from emulator.fleet.health import HealthSnapshot
    from emulator.fleet.runner import Fleet
    from emulator.metrics.fleetview import FleetCounts
    from emulator.metrics.slo import Verdict
    from emulator.metrics.stats import RunStats

PROGRESS_INTERVAL = 0.5


def output_console() -> Console:
    """The run's console: a pipe or CI log gets a wide table instead of rich's 80-column
    default."""
    return Console(width=None if sys.stdout.isatty() else 132)


def error_line(message: str) -> None:
    """One error line on stderr, printed as plain text (a message may hold square
    brackets, e.g. ``[fleet]``, which rich markup would eat)."""
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    err.print(Text.assemble(("error:", "red"), " ", message))


@asynccontextmanager
async def progress(console: Console, fleet: Fleet, stats: RunStats) -> AsyncIterator[None]:
    """The live progress line while the block runs; its last frame stays."""
    started = time.monotonic()
    live = Live(_progress(fleet.counts(), stats, 0.0, 0.0), console=console, refresh_per_second=2)
    live.start()
    task = asyncio.create_task(_show_progress(live, fleet, stats, started), name="progress")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        live.update(_progress(fleet.counts(), stats, time.monotonic() - started, 0.0))
        live.stop()


async def _show_progress(live: Live, fleet: Fleet, stats: RunStats, started: float) -> None:
    last_total = stats.messages_sent + stats.messages_received
    last_time = time.monotonic()
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL)
        now = time.monotonic()
        total = stats.messages_sent + stats.messages_received
        rate = (total - last_total) / max(1e-9, now - last_time)
        last_total, last_time = total, now
        live.update(_progress(fleet.counts(), stats, now - started, rate))


def _progress(counts: FleetCounts, stats: RunStats, elapsed: float, rate: float) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{elapsed:5.0f} s[/]",
        f"connected [bold]{counts.connected}[/]/{counts.chargers}",
        f"booted {counts.booted}",
        f"charging [bold green]{counts.charging}[/]",
        f"tx {counts.transactions_started}↑ {counts.transactions_stopped}↓",
        f"[bold]{rate:6.0f}[/] msg/s",
        f"queued {counts.queue_depth}",
    )
    return table


def health_changed(console: Console, snapshot: HealthSnapshot) -> None:
    """The generator's verdict flipped (emulator.fleet.health): say so at once."""
    if snapshot.overloaded:
        console.print(
            f"[bold red]warning:[/] the load generator is the bottleneck ({snapshot.describe()}): "
            "latencies measured now include its own delays; run fewer wallboxes per process",
            highlight=False,
        )
    else:
        console.print(f"the load generator keeps up again ({snapshot.describe()})", highlight=False)


def render_verdict(console: Console, verdict: Verdict) -> None:
    """The SLO table after the summary, and the final verdict line."""
    table = Table(
        title=f"Service-level objectives (window: {verdict.window_s:.1f} s after the ramp)"
        if verdict.note is None
        else f"Service-level objectives (window: {verdict.window_s:.1f} s; {verdict.note})",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("SLO", no_wrap=True)
    table.add_column("Measured", justify="right", no_wrap=True)
    table.add_column("Limit", justify="right", no_wrap=True)
    table.add_column("Verdict", no_wrap=True)
    table.add_column("Over")
    for result in verdict.results:
        table.add_row(
            Text(result.slo.text),
            Text(result.value_text),
            Text(f"{result.slo.op} {result.slo.limit_text}"),
            Text("PASS", style="bold green") if result.passed else Text("FAIL", style="bold red"),
            Text(result.detail),
        )
    console.print(table)
    style = "bold green" if verdict.passed else "bold red"
    console.print(Text(verdict.line(), style=style), soft_wrap=True)
