"""A master and two workers on 127.0.0.1 with a few hundred wallboxes: each worker its own
range of charger ids, its share of the model mix and its own source address; the master's
totals equal what the CSMS counted, the shutdown included, at which every websocket
closes with 1001 and every transaction is stopped."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from tests.loadtest.books_csms import BooksCsms
from tests.loadtest.support import locust, write_scenario
from tests.ports import free_port

PER_WORKER = 100
ADDRESSES = ("127.0.0.2", "127.0.0.3")


def test_a_master_and_two_workers_split_the_fleet_and_the_master_counts_it_all(
    tmp_path: Path,
) -> None:
    scenario = write_scenario(tmp_path, prefix="DW", mode="random")
    port = free_port()
    stats_file = tmp_path / "master"

    async def main(csms: BooksCsms) -> list[tuple[int, str]]:
        common = ("--scenario", str(scenario), "--ids-per-worker", "1000")
        master_args = (
            *("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)),
            *("--headless", "--expect-workers", "2", "--expect-workers-max-wait", "30"),
            *("-u", str(2 * PER_WORKER), "-r", str(PER_WORKER), "--run-time", "10s"),
            *("--csms-url", csms.url, "--json-file", str(stats_file)),
            # A pool on the master: each worker's own address wins over it.
            *("--source-addresses", "127.0.0.9"),
        )
        worker_args = ("--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
        master = asyncio.create_task(locust(*master_args, *common, timeout=100))
        workers = [
            asyncio.create_task(
                locust(*worker_args, *common, "--source-addresses", address, timeout=100)
            )
            for address in ADDRESSES
        ]
        return list(await asyncio.gather(master, *workers))

    async def run() -> tuple[list[tuple[int, str]], BooksCsms]:
        async with BooksCsms() as csms:
            return await main(csms), csms

    results, csms = asyncio.run(run())
    for code, out in results:
        assert code == 0, out
    master_out = results[0][1]
    books = csms.books

    # Disjoint id ranges, each from one worker and its own source address.
    ids = sorted(books.charger_peer)
    low = [i for i in ids if i < "DW001001"]
    high = [i for i in ids if i >= "DW001001"]
    assert low == [f"DW{n:06d}" for n in range(1, PER_WORKER + 1)]  # worker 0: 1..1000
    assert high == [f"DW{n:06d}" for n in range(1001, 1001 + PER_WORKER)]  # worker 1
    peers = [{books.charger_peer[i] for i in share} for share in (low, high)]
    assert all(len(p) == 1 for p in peers), peers
    assert peers[0] | peers[1] == set(ADDRESSES)
    for share in (low, high):  # shares 3:1
        assert Counter(books.charger_model[i] for i in share) == {
            "AC22-3P": PER_WORKER * 3 // 4,
            "AC3.7-1P-C": PER_WORKER // 4,
        }

    # Clean shutdown: every websocket closed with 1001, every transaction stopped.
    assert books.opened == books.closed
    assert dict(books.closes) == {1001: books.opened}
    assert books.actions["StopTransaction"] > 0
    assert not books.open_transactions and books.unknown_stops == 0

    # The master's totals are what the CSMS counted, the shutdown's requests included.
    entries = json.loads(Path(f"{stats_file}.json").read_text())
    ocpp = {
        e["name"]: e["num_requests"]
        for e in entries
        if e["method"] == "OCPP" and not e["name"].endswith("(CSMS call)")
    }
    assert ocpp == dict(books.actions)
    connects = [e for e in entries if e["method"] == "WebSocket" and e["name"] == "connect"]
    assert connects and connects[0]["num_requests"] == books.opened
    assert sum(e["num_failures"] for e in entries) == 0
    assert "Fleet summary (ocpp-fleet)" in master_out
    assert f"wallboxes {2 * PER_WORKER} at most" in master_out
