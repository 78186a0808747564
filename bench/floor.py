"""Benchmark phase (a): the floor client, raw websockets + uvloop, nothing else.

One connection and one task per charger; it replays, on the same schedule, the very
frames ocpp-fleet sent in phase (b) (recorded by the responder): each CALL at its
recorded offset from the connection's opening, waiting for the answer (decoded with
orjson, unique id checked) before the next, and a WebSocket ping every
``--ping-interval`` seconds, as the wallboxes do.  No schemas, no model, no state: the
least any OCPP client has to do for this traffic.  Prints one JSON line.

``--transport picows`` makes it the picows floor: the same replay over picows
(bench/floor_picows.py) instead of websockets, so the benchmark can print both floors.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

import floor_picows
import orjson
import uvloop
from common import baseline_rss, cpu, emit, log, phase_parser, raise_fd_limit, rss
from websockets.asyncio.client import connect

from emulator.fleet.gc_policy import keep_collections_short
from emulator.metrics.stats import Histogram


class Floor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.connected = 0
        self.booted = 0
        self.failures = 0
        self.round_trips = 0
        self.window: tuple[float, float] = (math.inf, math.inf)
        self.lateness = Histogram()
        self.stop = asyncio.Event()

    async def charger(self, charger: str, frames: list[tuple[float, str, str]]) -> None:
        loop = asyncio.get_running_loop()
        url = f"{self.args.url}/{charger}"
        ws: Any
        try:
            if self.args.transport == "websockets":
                ws = await connect(
                    url,
                    subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                    compression=None,
                    ping_interval=None,
                    ping_timeout=None,
                    open_timeout=10.0,
                    max_queue=16,
                    user_agent_header=None,
                )
            else:
                ws = await floor_picows.connect(url, use_aiofastnet=self.args.aiofastnet)
        except (OSError, TimeoutError) as exc:
            self.failures += 1
            log(f"floor: {charger}: {exc!r}")
            return
        self.connected += 1
        opened = loop.time()
        first = True
        interval = self.args.ping_interval
        next_ping = opened + interval if interval else math.inf
        try:
            for offset, unique_id, text in frames:
                # The first CALL (BootNotification) goes out at once, as a wallbox's
                # does, so both clients do the same work while the fleet connects.
                due = opened if first else opened + offset / 1000.0
                while True:
                    now = loop.time()
                    if next_ping <= now and next_ping <= due:
                        await ws.ping()
                        next_ping += interval
                        continue
                    target = min(due, next_ping)
                    if target <= now:
                        break
                    await asyncio.sleep(target - now)
                sent = loop.time()
                if self.window[0] <= due < self.window[1]:
                    self.lateness.record(sent - due)
                await ws.send(text)
                reply = orjson.loads(await ws.recv())
                if reply[1] != unique_id:
                    raise RuntimeError(f"{charger}: answer to {reply[1]}, expected {unique_id}")
                if first:
                    first = False
                    self.booted += 1
                if self.window[0] <= loop.time() < self.window[1]:
                    self.round_trips += 1
            while not self.stop.is_set():
                now = loop.time()
                if next_ping <= now:
                    await ws.ping()
                    next_ping += interval
                    continue
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=next_ping - now)
                except TimeoutError:
                    pass
        finally:
            await ws.close()


def load_trace(path: str) -> dict[str, list[tuple[float, str, str]]]:
    traces = {}
    with open(path, "rb") as f:
        for line in f:
            record = orjson.loads(line)
            traces[record["id"]] = [
                (offset, orjson.loads(text)[1], text) for offset, text in record["frames"]
            ]
    return traces


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    traces = load_trace(args.trace)
    chargers = sorted(traces)[: args.chargers]
    floor = Floor(args)
    base = baseline_rss()
    loop = asyncio.get_running_loop()
    started = loop.time()
    cpu_start = cpu()
    # The same garbage-collection policy as ocpp-fleet's (Fleet(tune_gc=True), from the
    # start), so the comparison is about the OCPP layer, not about collector pauses.
    collections = asyncio.create_task(keep_collections_short())
    tasks = [asyncio.create_task(floor.charger(c, traces[c])) for c in chargers]
    connected_at = booted_at = math.nan
    deadline = started + args.connect_timeout
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        if math.isnan(connected_at) and floor.connected + floor.failures >= len(chargers):
            connected_at = loop.time()
        if floor.booted + floor.failures >= len(chargers):
            booted_at = loop.time()
            break
    cpu_connect = cpu() - cpu_start
    log(f"floor: {floor.connected} connected in {connected_at - started:.2f} s")
    await asyncio.sleep(args.warmup)
    t0 = loop.time()
    floor.window = (t0, t0 + args.measure)
    cpu0, m0 = cpu(), time.monotonic()
    await asyncio.sleep(args.measure)
    cpu1, m1 = cpu(), time.monotonic()
    steady_rss = rss()
    floor.stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    collections.cancel()
    p50, p99 = floor.lateness.percentiles((50, 99)) if floor.lateness.count else (0.0, 0.0)
    emit(
        {
            "client": "floor" if args.transport == "websockets" else f"{args.transport} floor",
            "chargers": len(chargers),
            "connected": floor.connected,
            "booted": floor.booted,
            "baseline_rss": base,
            "steady_rss": steady_rss,
            "connect_seconds": connected_at - started,
            "boot_seconds": booted_at - started,
            "connect_cpu": cpu_connect,
            "window_seconds": m1 - m0,
            "round_trips": floor.round_trips,
            "cpu_seconds": cpu1 - cpu0,
            "lateness_p50": p50,
            "lateness_p99": p99,
            "lateness_max": floor.lateness.max if floor.lateness.count else 0.0,
            "loop_lag_p99": math.nan,
            "connect_failures": floor.failures,
            "timeouts": 0,
        }
    )


if __name__ == "__main__":
    parser = phase_parser()
    parser.add_argument("--trace", required=True)
    parser.add_argument("--ping-interval", type=float, default=60.0)
    parser.add_argument("--transport", choices=("websockets", "picows"), default="websockets")
    parser.add_argument(
        "--aiofastnet",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="picows over aiofastnet's transports (picows' default; +4-5 KiB a connection "
        "here) or uvloop's (default: as the wallbox driver's picows pump)",
    )
    uvloop.run(main(parser.parse_args()))
