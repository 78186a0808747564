"""The reference CSMS with a service time: a server of known capacity, over real websockets.

A single-server FIFO queue across all chargers, ``SERVICE`` seconds per CALL, saturates at
1/SERVICE CALLs per second. The load comes from real fleets. The CSMS asks each wallbox
for a Heartbeat (TriggerMessage) on a fixed schedule, so the offered load is known:
wallboxes don't send Heartbeats more often than every 10 s on their own.
"""

from __future__ import annotations

import asyncio
import math
import signal
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from emulator.core.outcome import OK, Outcome
from emulator.csms import ReferenceCsms, Served, parse_service_time
from emulator.fleet.runner import Fleet
from emulator.metrics import NullReporter
from tests.integration.support import eventually, scenario

ROOT = Path(__file__).resolve().parents[2]
SERVICE = 0.02  # 50 CALLs per second
CAPACITY = 1 / SERVICE
OCPP16 = [Subprotocol("ocpp1.6")]
TRIGGER_HEARTBEAT = {"requestedMessage": "Heartbeat"}


class RoundTrips(NullReporter):
    """The wallboxes' charger-initiated round trips: (loop time of the end, action,
    seconds, outcome)."""

    def __init__(self) -> None:
        self.trips: list[tuple[float, str, float, str]] = []

    def round_trip(self, action: str, seconds: float, outcome: Outcome) -> None:
        self.trips.append((asyncio.get_running_loop().time(), action, seconds, outcome))

    def heartbeats(self, start: float, end: float) -> list[float]:
        """Latencies of the Heartbeats answered between loop times ``start`` and ``end``."""
        return [s for t, a, s, o in self.trips if a == "Heartbeat" and start <= t < end]


@asynccontextmanager
async def booted_fleet(
    csms: ReferenceCsms, chargers: int
) -> AsyncIterator[tuple[Fleet, RoundTrips]]:
    """``chargers`` wallboxes that start no sessions, booted, with the CSMS's queue empty."""
    trips = RoundTrips()
    fleet = Fleet(
        scenario=scenario(mode="remote-only"),
        csms_url=csms.url,
        chargers=chargers,
        seed=1,
        reporter=trips,
        strict=True,
    )
    task = asyncio.create_task(fleet.run(duration=60.0))
    ids = [driver.wallbox.charge_point_id for driver in fleet.drivers]
    try:
        # Each boot costs three services (BootNotification, two StatusNotifications).
        await eventually(
            lambda: (
                all(i in csms.chargers and csms.chargers[i].booted for i in ids)
                and csms.served.waiting == 0
            ),
            10.0,
            "every wallbox booted and the queue empty",
        )
        yield fleet, trips
    finally:
        fleet.stop()
        await asyncio.wait_for(task, timeout=20.0)
    assert not [t for t in trips.trips if t[3] is not OK], "every CALL answered"


async def ask_for_heartbeats(
    csms: ReferenceCsms, ids: list[str], period: float, until: float
) -> int:
    """Ask every charger for a Heartbeat every ``period`` s until loop time ``until``, the
    chargers' phases evenly spread; return how many TriggerMessages were accepted."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    accepted = 0

    async def one(at: float, charger_id: str) -> None:
        nonlocal accepted
        while at < until:
            await asyncio.sleep(at - loop.time())
            answer = await csms.call(charger_id, "TriggerMessage", TRIGGER_HEARTBEAT, timeout=5.0)
            accepted += answer == {"status": "Accepted"}
            at += period

    async with asyncio.TaskGroup() as group:
        for i, charger_id in enumerate(ids):
            group.create_task(one(start + period * i / len(ids), charger_id))
    return accepted


async def window(csms: ReferenceCsms, after: float, length: float) -> tuple[Served, float, float]:
    """What the CSMS served in ``length`` s starting ``after`` s from now, and the window's
    start and end in loop time."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(after)
    start, before = loop.time(), csms.served
    await asyncio.sleep(length)
    return csms.served - before, start, loop.time()


def test_throughput_saturates_at_one_over_the_service_time() -> None:
    """40 wallboxes asked for 2 Heartbeats/s each offer 80 CALLs/s to a 50/s server."""

    async def main() -> None:
        async with ReferenceCsms(service_time=SERVICE) as csms:
            async with booted_fleet(csms, 40) as (_, trips):
                ids = sorted(csms.connected)
                loop = asyncio.get_running_loop()
                load = asyncio.create_task(ask_for_heartbeats(csms, ids, 0.5, loop.time() + 6.0))
                measured = asyncio.create_task(window(csms, 1.5, 4.0))
                # While the queue is long, the CSMS's own calls still complete at once.
                await eventually(lambda: csms.served.waiting >= 25, 3.0, "a long queue")
                began = loop.time()
                answer = await csms.call(ids[0], "GetConfiguration", {"key": ["HeartbeatInterval"]})
                own_call = loop.time() - began
                waiting_after = csms.served.waiting
                served, start, end = await measured
                accepted = await load
            everything = csms.served
        latencies = trips.heartbeats(start, end)
        answered = len(latencies) / (end - start)
        print(
            f"\nsaturated: {served.throughput:.1f} CALLs/s served, fleet got {answered:.1f}/s,"
            f" busy {served.utilisation:.3f}, Heartbeat p50 {statistics.median(latencies):.3f} s"
            f" max {max(latencies):.3f} s, offered {served.total / served.elapsed / 40:.2f}"
            f" CALLs/charger/s, GetConfiguration {own_call * 1000:.1f} ms, {accepted} triggers"
        )
        assert answer["configurationKey"][0]["key"] == "HeartbeatInterval"
        # Queued, the call would wait behind >= 25 CALLs (0.5 s); answered apart, it takes
        # milliseconds: 0.3 s leaves a loaded machine room on both sides.
        assert own_call < 0.3 and waiting_after >= 15, (own_call, waiting_after)
        assert served.calls.keys() == {"Heartbeat"}
        assert abs(served.throughput - CAPACITY) <= 0.1 * CAPACITY
        assert abs(answered - CAPACITY) <= 0.1 * CAPACITY
        # The queue's clock is its completion deadlines (ServiceQueue catches up after a
        # late wake-up), so throughput and busy time do not depend on the machine's load.
        assert served.utilisation > 0.95
        # ~40 CALLs ahead of each: the latency is the queue's, not the service time.
        assert statistics.median(latencies) > 15 * SERVICE
        assert accepted >= 0.9 * 40 * 2 * 6.0
        # Nothing lost: every CALL received was served, all answers reached the fleet.
        assert everything.waiting == 0 and everything.served == everything.total
        assert len([t for t in trips.trips if t[1] == "Heartbeat"]) == everything.calls["Heartbeat"]

    asyncio.run(main())


def test_a_quarter_of_the_capacity_is_served_without_queueing() -> None:
    """25 wallboxes asked for a Heartbeat every 2 s: 12.5 CALLs/s, evenly spread."""

    async def main() -> None:
        async with ReferenceCsms(service_time=SERVICE) as csms:
            async with booted_fleet(csms, 25) as (_, trips):
                ids = sorted(csms.connected)
                loop = asyncio.get_running_loop()
                load = asyncio.create_task(ask_for_heartbeats(csms, ids, 2.0, loop.time() + 5.5))
                served, start, end = await window(csms, 1.0, 4.0)
                await load
        latencies = trips.heartbeats(start, end)
        offered = served.total / served.elapsed / 25  # per charger, from the CSMS's counts
        p50, p90 = (
            statistics.quantiles(latencies, n=10)[4],
            statistics.quantiles(latencies, n=10)[8],
        )
        print(
            f"\nquarter load: offered {offered:.3f} CALLs/charger/s, busy {served.utilisation:.3f},"
            f" Heartbeat p50 {p50 * 1000:.1f} ms p90 {p90 * 1000:.1f} ms max {max(latencies) * 1000:.1f} ms"
        )
        assert abs(offered - 0.5) <= 0.05
        assert abs(served.utilisation - 0.25) <= 0.03
        # The busy time is the service time of exactly the CALLs served in the window.
        assert math.isclose(served.busy, served.served * SERVICE, abs_tol=2 * SERVICE)
        # No queueing: each answer is one service time (and a loopback hop) after its CALL.
        # The lower bound is the queue's deadline, never early; the upper ones leave a
        # loaded machine 30 and 60 ms on a hop of ~1 ms, still well below the ~12 service
        # times an answer would wait if the 25 chargers' CALLs queued together.
        assert SERVICE <= p50 < 2.5 * SERVICE, p50
        assert p90 < 4 * SERVICE, p90

    asyncio.run(main())


class RawCharger:
    """A charge point by hand: pipelines CALLs, answers the CSMS's CALLs, records answers."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.answers: list[tuple[float, list[Any]]] = []  # (loop time, CALLRESULT/CALLERROR)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        async for text in self.ws:
            frame = orjson.loads(text)
            if frame[0] == 2:  # the CSMS's CALL: answered at once
                await self.ws.send(orjson.dumps([3, frame[1], {"configurationKey": []}]).decode())
            else:
                self.answers.append((loop.time(), frame))

    async def heartbeats(self, prefix: str, count: int) -> None:
        for n in range(1, count + 1):
            await self.ws.send(orjson.dumps([2, f"{prefix}{n}", "Heartbeat", {}]).decode())


def test_answers_keep_arrival_order_none_is_lost_and_the_csms_calls_go_on() -> None:
    async def main() -> None:
        async with ReferenceCsms(service_time=SERVICE) as csms:
            loop = asyncio.get_running_loop()
            async with connect(f"{csms.url}/A", subprotocols=OCPP16) as ws_a:
                a = RawCharger(ws_a)
                await a.heartbeats("a", 25)  # 0.5 s of work, sent at once
                await eventually(lambda: csms.served.total == 25, 2.0, "25 CALLs received")
                # A charger connecting now gets its handshake at once, not after the queue.
                began = loop.time()
                async with connect(f"{csms.url}/B", subprotocols=OCPP16) as ws_b:
                    handshake = loop.time() - began
                    b = RawCharger(ws_b)
                    await b.heartbeats("b", 1)
                    await eventually(lambda: csms.served.total == 26, 2.0, "B's CALL received")
                    # B's own CALL waits behind A's; the CSMS's call to B does not.
                    began = loop.time()
                    await csms.call("B", "GetConfiguration", {})
                    own_call = loop.time() - began
                    a_answered_by_then = len(a.answers)
                    await eventually(lambda: len(b.answers) == 1, 2.0, "B's answer")
                    await asyncio.sleep(0.1)  # anything more would be a duplicate
                served = csms.served
        print(
            f"\norder: handshake {handshake * 1000:.1f} ms, GetConfiguration {own_call * 1000:.1f} ms"
            f" with {25 - a_answered_by_then} of A's CALLs still queued,"
            f" 26 answers over {(b.answers[0][0] - a.answers[0][0]) * 1000:.0f} ms"
        )
        # Behind A's queue they would wait ~0.5 s; apart, milliseconds: 0.3 s leaves a
        # loaded machine room on both sides.
        assert handshake < 0.3 and own_call < 0.3
        assert a_answered_by_then < 20, "the call did not wait for the queue"
        assert all(frame[0] == 3 for _, frame in a.answers + b.answers), "CALLRESULTs"
        assert [frame[1] for _, frame in a.answers] == [f"a{n}" for n in range(1, 26)]
        assert [frame[1] for _, frame in b.answers] == ["b1"]
        # FIFO across chargers: B's CALL came last and was answered last, its service
        # (the CSMS's clock in currentTime, in ms) after all of A's.
        times = [frame[2]["currentTime"] for _, frame in a.answers + b.answers]
        assert times == sorted(times) and len(set(times)) == 26
        assert b.answers[0][0] > a.answers[-1][0]
        # One at a time: 26 services end 25 service times after the first one ends (a lower
        # bound: completions are deadlines, never early, whatever the load).
        assert b.answers[0][0] - a.answers[0][0] >= 25 * SERVICE * 0.95
        assert served.total == served.served == 26 and served.waiting == 0
        assert served.calls == {"Heartbeat": 26}

    asyncio.run(main())


def test_a_restart_drops_the_queue_and_keeps_the_counts() -> None:
    async def main() -> None:
        async with ReferenceCsms(service_time=SERVICE) as csms:
            async with connect(f"{csms.url}/A", subprotocols=OCPP16) as ws:
                a = RawCharger(ws)
                await a.heartbeats("a", 20)  # 0.4 s of work
                await eventually(lambda: len(a.answers) >= 5, 2.0, "5 answers")
                await csms.restart(down_for=0.0)
                dropped = csms.served
                await asyncio.sleep(3 * SERVICE)  # a dropped CALL would be served by now
            after = csms.served
        assert dropped.total == 20 and 5 <= dropped.served < 20 and dropped.waiting == 0
        assert after.served == dropped.served  # nothing served after the restart
        # ... and every CALL served before it answered, but for one cut off by the close.
        assert 0 <= dropped.served - len(a.answers) <= 1
        # Busy time ends with the restart, within the one service it cut short.
        assert dropped.served * SERVICE <= after.busy <= (dropped.served + 1) * SERVICE

    asyncio.run(main())


def test_service_times_are_read_with_their_unit() -> None:
    assert parse_service_time("20ms") == pytest.approx(0.02)
    assert parse_service_time("20 ms") == pytest.approx(0.02)
    assert parse_service_time("0.02s") == pytest.approx(0.02)
    assert parse_service_time(".5S") == pytest.approx(0.5)
    for bad in ("0", "0ms", "20", "fast", "-1ms", "10s", "10000ms", "1e-3s", ""):
        with pytest.raises(ValueError, match=r"expected a duration in \(0, 10s\), like 20ms"):
            parse_service_time(bad)
    with pytest.raises(ValueError):
        ReferenceCsms(service_time=0.0)


def test_a_window_is_the_difference_of_two_snapshots() -> None:
    earlier = Served(elapsed=10.0, calls={"Heartbeat": 5}, served=5, busy=0.1, waiting=0)
    later = Served(
        elapsed=14.0, calls={"Heartbeat": 105, "Authorize": 3}, served=100, busy=2.1, waiting=8
    )
    window = later - earlier
    assert window.calls == {"Heartbeat": 100, "Authorize": 3} and window.total == 103
    assert window.elapsed == 4.0 and window.served == 95 and window.waiting == 8
    assert window.utilisation == pytest.approx(0.5) and window.throughput == pytest.approx(23.75)
    assert later.line() == (
        "served 100 of 108 CALLs in 14.0 s (7.1/s), busy 2.1 s (15%), 8 waiting:"
        " Authorize 3, Heartbeat 105"
    )


def ocpp_fleet(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "csms", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_the_csms_command_serves_with_a_service_time_and_prints_what_it_served() -> None:
    process = ocpp_fleet("--service-time", "20ms")
    try:
        assert process.stdout is not None
        listening = process.stdout.readline()
        assert "listening on ws://127.0.0.1:" in listening, listening
        url = listening.split()[-1].removesuffix("/<chargerId>")
        assert process.stdout.readline().strip() == (
            "serving CALLs one at a time, 20 ms each: capacity 50 CALLs/s"
        )

        async def heartbeat() -> float:
            async with connect(f"{url}/CP1", subprotocols=OCPP16) as ws:
                loop = asyncio.get_running_loop()
                began = loop.time()
                await ws.send('[2,"h1","Heartbeat",{}]')
                async with asyncio.timeout(5.0):
                    answer = orjson.loads(await ws.recv())
                assert answer[:2] == [3, "h1"]
                return loop.time() - began

        assert asyncio.run(heartbeat()) >= SERVICE
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15.0)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "served 1 of 1 CALLs" in out and "Heartbeat 1" in out, out
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "fast"])
def test_a_bad_service_time_is_one_line_and_exit_2(value: str) -> None:
    process = ocpp_fleet("--service-time", value)
    out, err = process.communicate(timeout=30.0)
    assert process.returncode == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--service-time" in lines[0] and repr(value) in lines[0], err
    assert "listening" not in out
