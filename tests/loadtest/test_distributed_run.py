"""A master and two workers on 127.0.0.1: each worker its own range of charger ids and
its share of the model mix; the master sums the workers' fleets."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from emulator.csms import ReferenceCsms
from tests.loadtest.support import free_port, locust, write_scenario


def test_a_master_and_two_workers_split_the_fleet_into_disjoint_id_ranges(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="DW")
    port = free_port()

    async def main() -> tuple[list[tuple[int, str]], dict[str, str]]:
        async with ReferenceCsms() as csms:
            common = ("--scenario", str(scenario), "--ids-per-worker", "1000")
            master_args = (
                *("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)),
                *("--headless", "--expect-workers", "2", "--expect-workers-max-wait", "30"),
                *("-u", "10", "-r", "20", "--run-time", "8s", "--csms-url", csms.url),
            )
            worker_args = ("--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
            master = asyncio.create_task(locust(*master_args, *common, timeout=90))
            workers = [
                asyncio.create_task(locust(*worker_args, *common, timeout=90)) for _ in range(2)
            ]
            results = await asyncio.gather(master, *workers)
            models = {
                cid: (r.boot_payload or {}).get("chargePointModel", "")
                for cid, r in csms.chargers.items()
            }
            return results, models

    results, models = asyncio.run(main())
    for code, out in results:
        assert code == 0, out
    master_out = results[0][1]
    ids = sorted(models)
    low = [i for i in ids if i < "DW001001"]
    high = [i for i in ids if i >= "DW001001"]
    assert low == [f"DW{n:06d}" for n in range(1, 6)]  # worker 0: 1..1000
    assert high == [f"DW{n:06d}" for n in range(1001, 1006)]  # worker 1: 1001..2000
    for share in (low, high):  # shares 3:1 -> 4 + 1 of 5 on each worker
        assert Counter(models[i] for i in share) == {"AC22-3P": 4, "AC3.7-1P-C": 1}
    assert "Fleet summary (ocpp-fleet)" in master_out
    assert "wallboxes 10 at most" in master_out
