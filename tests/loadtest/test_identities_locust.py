"""A master and two workers log in as the chargers of one identities file, with security
profile 1: each worker takes its own block of rows, and every charger its own password,
against a reference CSMS that knows only those chargers and passwords."""

from __future__ import annotations

import asyncio
from pathlib import Path

from emulator.csms import PasswordBook, ReferenceCsms
from emulator.fleet.identities import read_identities
from tests.loadtest.support import locust
from tests.ports import free_port

ROWS = 10

SCENARIO = """
[scenario]
name = "registered fleet under Locust"
[fleet]
identities = "ids.csv"
[[models]]
[models.configuration]
ClockAlignedDataInterval = 0
[sessions]
mode = "remote-only"
[security]
profile = 1
"""


def test_workers_take_disjoint_blocks_of_the_rows_with_their_own_passwords(
    tmp_path: Path,
) -> None:
    rows = [f"REG-{n:02d},password-of-{n:02d}-xyz" for n in range(1, ROWS + 1)]
    (tmp_path / "ids.csv").write_text("charger_id,password\n" + "\n".join(rows) + "\n")
    scenario = tmp_path / "registered.toml"
    scenario.write_text(SCENARIO)
    identities = read_identities(tmp_path / "ids.csv")
    port = free_port()
    seen: set[str] = set()

    async def main(csms: ReferenceCsms) -> list[tuple[int, str]]:
        common = ("--scenario", str(scenario))
        master_args = (
            *("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)),
            *("--headless", "--expect-workers", "2", "--expect-workers-max-wait", "30"),
            *("-u", str(ROWS), "-r", str(ROWS), "--run-time", "8s", "--csms-url", csms.url),
        )
        worker_args = ("--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
        tasks = [asyncio.create_task(locust(*master_args, *common, timeout=90))] + [
            asyncio.create_task(locust(*worker_args, *common, timeout=90)) for _ in range(2)
        ]
        while not all(t.done() for t in tasks):
            seen.update(csms.connected)
            await asyncio.sleep(0.1)
        return [t.result() for t in tasks]

    async def run() -> list[tuple[int, str]]:
        async with ReferenceCsms(
            basic_auth=PasswordBook(identities.passwords), known_chargers=identities.ids
        ) as csms:
            results = await main(csms)
            booted = {cid for cid, record in csms.chargers.items() if record.booted}
            assert booted == set(identities.ids), booted  # every row once, none else
            return results

    results = asyncio.run(run())
    for code, out in results:
        assert code == 0, out[-3000:]
    master_out = results[0][1]
    assert "http_401" not in master_out and "http_404" not in master_out
    assert seen == set(identities.ids)
