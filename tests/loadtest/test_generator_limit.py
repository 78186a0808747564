"""The load generator as the limit: handshakes that time out while its loop lags are its
own, a spawn rate that overloads it is named, and the handshake timeout is the scenario's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from emulator.fleet.runner import Fleet
from emulator.loadtest.overload import (
    GENERATOR_TIMEOUT,
    LagHistory,
    SpawnOverload,
    generator_failures_only,
    limit_lines,
    spawn_rate_warning,
    timeout_warning,
)
from emulator.metrics.stats import RunStats
from tests.loadtest.support import ROOT, locust, scenario, write_scenario


def health(lag_max: float, lag_p99: float = 0.0) -> dict[str, float]:
    return {"loop_lag_max": lag_max, "loop_lag_p99": lag_p99}


def test_a_timeout_is_the_generators_when_its_loop_lagged_during_the_attempt() -> None:
    history = LagHistory()
    history.record(100.0, health(0.002))
    history.record(105.0, health(4.0, 1.5))  # a spawn burst: the loop held for seconds
    history.record(110.0, health(0.003))
    # A 30 s handshake that timed out at 110 s overlapped the burst: 4 s >= 3 s.
    assert history.blames_generator(110.0, handshake_timeout=30.0)
    # The window of a lag is sampled seconds after it: a timeout just before counts it.
    assert history.blames_generator(100.0, handshake_timeout=30.0)
    # One that began after the burst did not overlap it.
    assert not history.blames_generator(150.0, handshake_timeout=30.0)
    # A lag far below the handshake timeout explains nothing.
    assert not history.blames_generator(110.0, handshake_timeout=60.0)
    # A lag long after the timeout is not its cause.
    assert not history.blames_generator(90.0, handshake_timeout=30.0)


def test_the_history_forgets_what_is_older_than_it_keeps() -> None:
    history = LagHistory(keep=10.0)
    history.record(0.0, health(9.0))
    history.record(20.0, health(0.001))
    assert history.worst(-100.0) == 0.001


def test_generator_timeouts_alone_do_not_fail_the_run_but_any_other_failure_does() -> None:
    ours = ("WebSocket", f"OcppFailure('{GENERATOR_TIMEOUT}')", 904)
    csms = ("WebSocket", "OcppFailure('connect failed: timeout')", 1)
    assert generator_failures_only([ours]) == 904
    assert generator_failures_only([ours, csms]) == 0
    assert generator_failures_only([("OCPP", "CALLERROR InternalError", 1)]) == 0
    assert generator_failures_only([]) == 0


def test_the_warning_names_the_spawn_rate_and_the_lag() -> None:
    text = spawn_rate_warning(
        spawn_rate=2000,
        workers=4,
        where="worker 2",
        health={"loop_lag_p99": 3.2, "loop_lag_max": 7.0, "lag_limit": 0.1},
    )
    assert "2000 users/s (500/s per worker)" in text
    assert "worker 2" in text and "p99 3200 ms" in text and "max 7.0 s" in text
    spawn = SpawnOverload(spawn_rate=2000)
    spawn.add(2, {"loop_lag_max": 7.0})
    spawn.add(0, {"loop_lag_max": 3.0})
    lines = limit_lines(spawn, 904, 2000)
    assert "spawning 2000 users/s overloaded the load generator (worker 0, 2" in lines[0]
    assert lines[1].strip().startswith("904 connection attempts timed out")
    assert "spawning 2000 users/s" in lines[1]
    assert limit_lines(None, 0) == []
    text = timeout_warning(spawn_rate=4000, where="worker 1", health={"loop_lag_max": 1.2})
    assert "worker 1 lags" in text and "max 1.2 s" in text and "4000 users/s" in text


def test_the_handshake_timeout_is_the_scenarios() -> None:
    """A CSMS that accepts TCP and never answers the upgrade: with handshake_timeout 0.3 s
    the first attempt is given up within a second, not after websockets' 10 s."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    async def main() -> RunStats:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        base = scenario()
        quick = msgspec.structs.replace(
            base, fleet=msgspec.structs.replace(base.fleet, handshake_timeout=0.3)
        )
        stats = RunStats()
        fleet = Fleet(
            scenario=quick,
            csms_url=f"ws://127.0.0.1:{port}/ocpp",
            chargers=1,
            seed=1,
            reporter=stats,
        )
        async with server:
            await asyncio.wait_for(fleet.run(duration=1.2), 20)
            for writer in held:
                writer.close()
        return stats

    stats = asyncio.run(main())
    assert stats.connect_failures["timeout"] >= 1


def test_timeouts_while_the_loop_lags_are_counted_as_the_generators(tmp_path: Path) -> None:
    """A local run whose fleet loop is held 0.5 s of every 0.7 s, against a CSMS that never
    answers the upgrade (handshake_timeout 3 s): every timeout is the generator's, and
    they alone do not make the exit code 1."""
    path = write_scenario(tmp_path, prefix="LAG")
    path.write_text(path.read_text().replace("connect_timeout = 10.0", "handshake_timeout = 3.0"))

    async def main() -> tuple[int, str]:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await locust(
                *("-f", str(ROOT / "tests" / "loadtest" / "lag_probe.py")),
                *("--headless", "-u", "3", "-r", "10", "--run-time", "14s"),
                *("--scenario", str(path), "--csms-url", f"ws://127.0.0.1:{port}/ocpp"),
                timeout=60,
            )

    code, out = asyncio.run(main())
    assert "timeout while the load generator lagged" in out, out
    # Every failure line that names a connect timeout (Locust's error report quotes the
    # text its own way) is the generator's: none counted against the CSMS.
    timeouts = [line for line in out.splitlines() if "connect failed: timeout" in line]
    assert timeouts, out
    assert all(GENERATOR_TIMEOUT in line for line in timeouts), timeouts
    assert "timed out while the load generator's loop lagged" in out
    assert code == 0, out
