"""Benchmark phase (c): the same fleet under Locust, one process (a local runner: what a
worker does, without the master's network hop).  Prints one JSON line.

Locust runs as a library here so the phase can measure the same window as the others:
users spawn at --spawn-rate, every OCPP exchange becomes an events.request on the
gevent side (counted below and in Locust's own statistics), the fleet engine runs in
the bridge's native thread.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import gevent
from common import baseline_rss, cpu, emit, log, phase_parser, raise_fd_limit, rss
from locust import events  # the first Locust import: gevent patches the process here
from locust.env import Environment

from emulator.loadtest import WallboxUser, register
from emulator.loadtest.bridge import FleetBridge


class Wallbox(WallboxUser):
    pass


def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    plugin = register(events)
    options = argparse.Namespace(
        scenario=args.scenario,
        csms_url=args.url,
        id_prefix="",
        seed="1",
        ids_per_worker=100_000,
        source_addresses=args.source_address,
        fleet_shape="",
        headless=True,
    )
    env = Environment(user_classes=[Wallbox], events=events, parsed_options=options)
    runner = env.create_local_runner()
    events.init.fire(environment=env, runner=runner, web_ui=None)
    counted = {"round_trips": 0, "on": False}

    def count(request_type: str, name: str, **_: Any) -> None:
        if counted["on"] and request_type == "OCPP" and not name.endswith("(CSMS call)"):
            counted["round_trips"] += 1

    events.request.add_listener(count)
    base = baseline_rss()
    started = time.monotonic()
    cpu_start = cpu()
    runner.start(args.chargers, spawn_rate=args.spawn_rate)
    bridge: FleetBridge = plugin.bridge_for_users()
    connected_at = booted_at = math.nan
    while time.monotonic() < started + args.connect_timeout:
        gevent.sleep(0.1)
        snap = bridge.snapshot or {}
        if math.isnan(connected_at) and snap.get("connected", 0) >= args.chargers:
            connected_at = time.monotonic()
        if snap.get("booted", 0) >= args.chargers:
            booted_at = time.monotonic()
            break
    cpu_connect = cpu() - cpu_start
    log(f"locust: {bridge.snapshot.get('connected')} connected in {connected_at - started:.2f} s")
    gevent.sleep(args.warmup)
    side = bridge._side
    assert side is not None
    bridge.thread.call(side.health.reset)
    counted["on"] = True
    cpu0, t0 = cpu(), time.monotonic()
    gevent.sleep(args.measure)
    cpu1, t1 = cpu(), time.monotonic()
    counted["on"] = False

    async def figures() -> dict[str, float]:
        side.health.close_window()
        return side.health.percentiles()

    health = bridge.thread.run(figures, timeout=10)
    steady_rss = rss()
    snap = bridge.snapshot
    stats = runner.stats.total
    runner.quit()
    bridge.close()
    emit(
        {
            "client": "ocpp-fleet under Locust",
            "chargers": args.chargers,
            "connected": snap.get("connected", 0),
            "booted": snap.get("booted", 0),
            "baseline_rss": base,
            "steady_rss": steady_rss,
            "connect_seconds": connected_at - started,
            "boot_seconds": booted_at - started,
            "connect_cpu": cpu_connect,
            "window_seconds": t1 - t0,
            "round_trips": counted["round_trips"],
            "cpu_seconds": cpu1 - cpu0,
            "lateness_p50": health["lateness_p50"],
            "lateness_p99": health["lateness_p99"],
            "lateness_max": health["lateness_max"],
            "loop_lag_p99": health["loop_lag_p99"],
            "connect_failures": stats.num_failures,
            "timeouts": 0,
            "locust_requests": stats.num_requests,
        }
    )


if __name__ == "__main__":
    parser = phase_parser()
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--spawn-rate", type=float, default=1000.0)
    parser.add_argument("--source-address", default="")
    main(parser.parse_args())
