"""The fleet engine under Locust's control: wallboxes added and removed while it runs,
reconnect waves, and a pool of source addresses (real websockets on 127.0.0.x)."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import pytest

from emulator.csms import ReferenceCsms
from emulator.fleet.model_mix import ModelSequence
from emulator.fleet.runner import Fleet, parse_address_pool
from emulator.metrics.stats import RunStats
from emulator.transport.driver import WallboxDriver
from tests.integration.support import RawCsms, eventually
from tests.loadtest.support import scenario


def test_wallboxes_join_and_leave_a_serving_fleet_one_at_a_time() -> None:
    async def main() -> None:
        sc = scenario()
        models = ModelSequence(sc)
        removed: list[tuple[int, bool]] = []
        async with ReferenceCsms() as csms:
            fleet = Fleet(scenario=sc, csms_url=csms.url, chargers=0, seed=1, reporter=RunStats())

            def on_removed(number: int, driver: WallboxDriver) -> None:
                removed.append((number, driver.finished))

            fleet.on_removed = on_removed
            serving = asyncio.create_task(fleet.serve())
            for n in (1, 2, 3):
                fleet.add_wallbox(n, models.model_at(n - 1))
            await eventually(lambda: fleet.counts().booted == 3, 10, "3 booted")
            fleet.remove_wallbox(2)
            await eventually(lambda: removed == [(2, True)], 10, "the removal")
            assert [d.wallbox.charge_point_id for d in fleet.drivers] == ["LT000001", "LT000003"]
            assert not csms.chargers["LT000002"].connected
            fleet.add_wallbox(2, models.model_at(1))  # the number is free again
            await eventually(lambda: fleet.counts().booted == 3, 10, "3 booted again")
            fleet.stop()
            await asyncio.wait_for(serving, 20)
            assert all(not r.connected for r in csms.chargers.values())
            assert csms.chargers["LT000002"].connects == 2

    asyncio.run(main())


def test_a_number_still_in_the_fleet_cannot_be_added_twice() -> None:
    fleet = Fleet(scenario=scenario(), csms_url="ws://x", chargers=2, seed=1, reporter=RunStats())
    with pytest.raises(ValueError, match="LT000002 is already in the fleet"):
        fleet.add_wallbox(2, fleet.drivers[0].wallbox.model)


def test_a_reconnect_wave_cuts_connections_and_the_wallboxes_come_back() -> None:
    async def main() -> None:
        async with ReferenceCsms() as csms:
            stats = RunStats()
            fleet = Fleet(
                scenario=scenario(), csms_url=csms.url, chargers=4, seed=1, reporter=stats
            )
            for d in fleet.drivers:  # come back quickly
                d.settings = type(d.settings)(url=d.settings.url, backoff_initial=0.2)
            running = asyncio.create_task(fleet.run(duration=60))
            await eventually(lambda: fleet.counts().connected == 4, 10, "4 connected")
            assert fleet.drop_connections(0.5, np.random.default_rng(1)) == 2
            await eventually(lambda: stats.reconnects == 2, 10, "2 reconnects")
            await eventually(lambda: fleet.counts().connected == 4, 10, "4 connected again")
            fleet.stop()
            await asyncio.wait_for(running, 20)
            assert sorted(r.connects for r in csms.chargers.values()) == [1, 1, 2, 2]

    asyncio.run(main())


def test_wallboxes_bind_round_robin_to_a_pool_of_source_addresses() -> None:
    async def main() -> None:
        async with RawCsms() as raw:
            fleet = Fleet(
                scenario=scenario(),
                csms_url=raw.url,
                chargers=4,
                seed=1,
                reporter=RunStats(),
                source_addresses=["127.0.0.2", "127.0.0.3"],
            )
            running = asyncio.create_task(fleet.run(duration=60))
            await eventually(lambda: len(raw.connections) == 4, 10, "4 connections")
            peers = Counter(ws.remote_address[0] for ws in raw.connections)
            fleet.stop()
            await asyncio.wait_for(running, 20)
        assert peers == {"127.0.0.2": 2, "127.0.0.3": 2}

    asyncio.run(main())


def test_an_address_pool_is_written_as_ranges_and_lists() -> None:
    assert parse_address_pool("127.0.0.2-127.0.0.4") == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert parse_address_pool("127.1.0.9, 127.0.0.2-127.0.0.3") == [
        "127.1.0.9",
        "127.0.0.2",
        "127.0.0.3",
    ]
    assert parse_address_pool("::1") == ["::1"]
    for bad in ("", "localhost", "127.0.0.5-127.0.0.2", "127.0.0.1-::1", "127.0.0.0-127.9.0.0"):
        with pytest.raises(ValueError):
            parse_address_pool(bad)
