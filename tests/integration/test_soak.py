"""A bounded soak with faults on: tasks, file descriptors and memory stay flat (issue 7).

Minutes here, hours in Kubernetes (scenarios/soak.toml). The figures are printed
(`pytest -s`) for the closing note; the assertions are about growth, not speed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource

import pytest

from emulator.csms import ReferenceCsms
from emulator.fleet.faults import csms_misbehaviour
from emulator.fleet.ledger import compare, fleet_ledger
from emulator.fleet.scenario import parse_scenario
from tests.integration.support import drain_after_faults, running_fleet

SOAK = """
[scenario]
name = "mini-soak"
[fleet]
id_prefix = "SOAK"
response_timeout = 2.0
ramp_per_second = 500.0
[[models]]
[models.configuration]
ClockAlignedDataInterval = 30
MeterValueSampleInterval = 5
TransactionMessageRetryInterval = 1
TransactionMessageAttempts = 10
HeartbeatInterval = 20
[sessions]
arrivals_per_hour = 900.0
energy_kwh = [0.01, 0.05]
idle_after_full = [0.5, 3.0]
plug_in_delay = [0.2, 1.0]
[faults]
disconnects_per_hour = 60.0
reboots_per_hour = 10.0
power_losses_per_hour = 10.0
power_loss_seconds = [0.5, 2.0]
connector_faults_per_hour = 20.0
connector_fault_seconds = [1.0, 3.0]
csms_callerror_share = 0.02
csms_silence_share = 0.01
"""

CHARGERS = 150
WINDOW = 40.0


def rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


@pytest.mark.timeout(300)
def test_a_faulty_soak_keeps_tasks_descriptors_and_memory_flat() -> None:
    scenario = parse_scenario(SOAK, source="<soak>")

    async def main() -> list[tuple[float, int, int, int]]:
        samples: list[tuple[float, int, int, int]] = []
        hook = csms_misbehaviour(scenario.faults, __import__("numpy").random.default_rng(1))
        async with ReferenceCsms(misbehave=hook, ping_interval=None) as csms:
            async with running_fleet(scenario, csms.url, chargers=CHARGERS) as (fleet, stats):
                await asyncio.sleep(10)  # ramp and warm-up
                loop = asyncio.get_running_loop()
                start = loop.time()
                while loop.time() - start < WINDOW:
                    gc.collect()
                    samples.append(
                        (
                            loop.time() - start,
                            len(asyncio.all_tasks()),
                            len(os.listdir("/proc/self/fd")),
                            rss_kib(),
                        )
                    )
                    await asyncio.sleep(5)
                await drain_after_faults(fleet, csms)
            comparison = compare(fleet_ledger(fleet.wallboxes), csms.ledger.to_json())
            assert comparison.consistent, comparison.discrepancies
            print(
                f"\nsoak: {comparison.matched} transactions matched, {stats.reconnects} reconnects"
            )
        return samples

    samples = asyncio.run(main())
    for at, tasks, fds, rss in samples:
        print(f"  t={at:5.1f}s tasks={tasks} fds={fds} rss={rss / 1024:.1f} MiB")
    first, last = samples[0], samples[-1]
    # Connections come and go with the faults: compare the window's ends with some slack.
    assert last[1] <= first[1] + CHARGERS * 0.1, "tasks grow"
    assert last[2] <= first[2] + CHARGERS * 0.1, "file descriptors grow"
    growth_per_wallbox = (last[3] - min(s[3] for s in samples)) / CHARGERS
    print(f"  RSS growth over the window: {growth_per_wallbox:.2f} KiB per wallbox")
    assert growth_per_wallbox < 8.0, "memory per wallbox grows"
