"""Benchmark phase (b): ocpp-fleet's standalone engine, the same Fleet `ocpp-fleet run` uses.

Run by capacity.py; prints one JSON line of measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time

import msgspec
import uvloop
from common import baseline_rss, cpu, emit, log, phase_parser, raise_fd_limit, rss

from emulator.core.outcome import TIMEOUT
from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import load_scenario
from emulator.metrics.stats import Direction, RunStats
from emulator.metrics.timeseries import Row, TimeSeries


class TimedSeries(TimeSeries):
    """The time series `--report` records, with the CPU each row costs added up."""

    cpu_seconds = 0.0

    def sample(self, *, final: bool = False) -> Row | None:
        began = time.process_time()
        try:
            return super().sample(final=final)
        finally:
            self.cpu_seconds += time.process_time() - began


def round_trips(stats: RunStats) -> int:
    return sum(
        a.count for (direction, _), a in stats.actions.items() if direction is Direction.CP_TO_CSMS
    )


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    # Before the scenario: the files it names (identities, cards) count as the fleet's.
    base = baseline_rss()
    scenario = load_scenario(args.scenario)
    if args.transport:
        scenario = scenario.with_transport(args.transport)
    # Connect everything at once, like the floor client: the benchmark measures the rate.
    scenario = msgspec.structs.replace(
        scenario,
        fleet=msgspec.structs.replace(
            scenario.fleet, ramp_per_second=math.inf, connect_timeout=args.connect_timeout
        ),
    )
    if args.source_address:
        pool = [args.source_address]
    else:
        pool = []
    stats = RunStats()
    fleet = Fleet(
        scenario=scenario,
        csms_url=args.url,
        chargers=args.chargers,
        seed=1,
        reporter=stats,
        source_addresses=pool,
        tune_gc=True,  # as `ocpp-fleet run` and Locust do
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    cpu_start = cpu()
    run = asyncio.create_task(fleet.run(duration=3600.0))
    connected_at = booted_at = math.nan
    deadline = started + args.connect_timeout
    # Cheap checks only while connecting: Fleet.counts() walks every wallbox (~15 ms at
    # 10,000), which would slow the very thing measured.  Connects come from the stats
    # (O(1)); the O(n) boot count runs only once everything is connected.
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        if math.isnan(connected_at):
            if stats.connects >= args.chargers:
                connected_at = loop.time()
            continue
        if sum(1 for d in fleet.drivers if d.wallbox.accepted) >= args.chargers:
            booted_at = loop.time()
            break
    cpu_connect = cpu() - cpu_start
    log(f"fleet: {fleet.counts().connected} connected in {connected_at - started:.2f} s")
    await asyncio.sleep(args.warmup)
    fleet.health.reset()
    # What `ocpp-fleet run --report` and `ocpp-fleet capacity` record: a row every 10 s.
    series = TimedSeries(
        stats, fleet=fleet.gauges, generator=lambda: fleet.health.snapshot().as_dict()
    )
    recording = asyncio.create_task(series.record())
    rt0, cpu0, t0 = round_trips(stats), cpu(), time.monotonic()
    lost0, connects0 = stats.disconnects.copy(), stats.connects
    await asyncio.sleep(args.measure)
    rt1, cpu1, t1 = round_trips(stats), cpu(), time.monotonic()
    lost, reconnects = +(stats.disconnects - lost0), stats.connects - connects0
    recording.cancel()
    fleet.health.close_window()
    figures = fleet.health.percentiles()
    steady_rss = rss()
    counts = fleet.counts()
    fleet.stop()
    await asyncio.wait_for(run, 60)
    emit(
        {
            "client": f"ocpp-fleet {scenario.fleet.transport}",
            "transport": scenario.fleet.transport,
            "chargers": args.chargers,
            "connected": counts.connected,
            "booted": counts.booted,
            "baseline_rss": base,
            "steady_rss": steady_rss,
            "connect_seconds": connected_at - started,
            "boot_seconds": booted_at - started,
            "connect_cpu": cpu_connect,
            "window_seconds": t1 - t0,
            "round_trips": rt1 - rt0,
            "cpu_seconds": cpu1 - cpu0,
            "lateness_p50": figures["lateness_p50"],
            "lateness_p99": figures["lateness_p99"],
            "lateness_max": figures["lateness_max"],
            "loop_lag_p99": figures["loop_lag_p99"],
            "connect_failures": sum(stats.connect_failures.values()),
            "timeouts": sum(a.outcomes[TIMEOUT] for a in stats.actions.values()),
            "lost_in_window": lost.total(),  # connections that closed in the window
            "lost_reasons": dict(lost),
            "reconnects_in_window": reconnects,
            "timeseries_rows": len(series.rows),
            "timeseries_cpu": series.cpu_seconds,
        }
    )


if __name__ == "__main__":
    parser = phase_parser()
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--source-address", default="")
    parser.add_argument("--transport", default="", help="default: the scenario's")
    uvloop.run(main(parser.parse_args()))
