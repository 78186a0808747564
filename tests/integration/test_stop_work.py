"""The work a wallbox's stop makes, as the stop pacer reads it from real wallboxes:
an idle connected one has its close, a charging one its StopTransaction and
StatusNotifications too."""

from __future__ import annotations

import asyncio

from emulator.csms import ReferenceCsms
from emulator.fleet.runner import Fleet
from emulator.fleet.stopping import CHARGING_STOP_WORK, MESSAGE_WORK, stop_work
from emulator.metrics.stats import RunStats
from tests.integration.support import eventually, running_fleet, scenario


def test_a_wallbox_never_connected_has_only_its_task_to_end() -> None:
    fleet = Fleet(scenario=scenario(), csms_url="ws://x", chargers=2, seed=1, reporter=RunStats())
    assert [stop_work(d) for d in fleet.drivers] == [1, 1]


def test_an_idle_wallbox_has_its_close_and_a_charging_one_its_messages_too() -> None:
    async def main() -> None:
        async with ReferenceCsms() as csms:
            idle = scenario(arrivals=0.0, sample=0)
            async with running_fleet(idle, csms.url, chargers=2) as (fleet, _):
                await eventually(
                    lambda: all(
                        d.connected
                        and d.wallbox.accepted
                        and d.wallbox.outbox.depth == 0
                        and d.wallbox.outbox.in_flight is None
                        for d in fleet.drivers
                    ),
                    10.0,
                    "both booted, nothing queued",
                )
                assert [stop_work(d) for d in fleet.drivers] == [1, 1]
            # EVs that never get full: every wallbox is charging when the run ends.
            charging = scenario(arrivals=36000.0, energy="[inf, inf]", sample=0)
            async with running_fleet(charging, csms.url, chargers=2) as (fleet, _):
                await eventually(
                    lambda: all(
                        any(c.transaction is not None for c in d.wallbox.connectors)
                        and d.wallbox.outbox.transaction_backlog == 0
                        for d in fleet.drivers
                    ),
                    15.0,
                    "both charging, their StartTransactions answered",
                )
                for driver in fleet.drivers:
                    outbox = driver.wallbox.outbox
                    queued = outbox.depth + (outbox.in_flight is not None)
                    assert stop_work(driver) == CHARGING_STOP_WORK + MESSAGE_WORK * queued

    asyncio.run(main())
