"""Per-worker options: a worker's own source addresses survive the master's spawn message,
and a pool given to the master is split into disjoint slices, one per worker."""

from __future__ import annotations

import asyncio
from argparse import Namespace
from pathlib import Path

import pytest

from emulator.loadtest.options import (
    WORKERS_OPTION,
    OptionError,
    fleet_options,
    own_options,
    worker_options,
)
from emulator.loadtest.partition import address_slice
from tests.loadtest.books_csms import BooksCsms
from tests.loadtest.support import ROOT, locust, write_scenario
from tests.ports import free_port


def started(**options: object) -> Namespace:
    """A process's parsed options as its command line gave them."""
    values: dict[str, object] = {
        "scenario": str(ROOT / "bench" / "idle-traffic.toml"),
        "csms_url": "ws://127.0.0.1:9000/ocpp",
        "source_addresses": "",
        "metrics_port": "",
        "metrics_host": "",
        "metrics_port_per_worker": False,
    }
    values.update(options)
    return Namespace(**values)


def spawned(worker: Namespace, master: Namespace, workers: list[int] | None) -> Namespace:
    """What Locust's worker does with a spawn message: the master's options over its own."""
    result = Namespace(**vars(worker))
    vars(result).update(vars(master))
    if workers is not None:
        setattr(result, WORKERS_OPTION, workers)
    return result


def test_a_pool_is_split_into_disjoint_balanced_slices() -> None:
    pool = [f"10.0.0.{i}" for i in range(1, 8)]
    slices = [address_slice(pool, p, 3) for p in range(3)]
    assert slices == [
        ("10.0.0.1", "10.0.0.4", "10.0.0.7"),
        ("10.0.0.2", "10.0.0.5"),
        ("10.0.0.3", "10.0.0.6"),
    ]
    # Fewer addresses than workers: one each, shared.
    assert [address_slice(pool[:2], p, 3) for p in range(3)] == [
        ("10.0.0.1",),
        ("10.0.0.2",),
        ("10.0.0.1",),
    ]
    with pytest.raises(ValueError):
        address_slice(pool, 3, 3)


def test_a_workers_own_addresses_and_metrics_options_survive_the_masters() -> None:
    worker = started(source_addresses="127.0.0.2", metrics_port="9101")
    own = own_options(worker)
    master = started(source_addresses="127.0.0.9-127.0.0.10", metrics_port="")
    chosen = worker_options(spawned(worker, master, [0, 1]), own, worker_index=1)
    assert chosen.parsed.source_addresses == "127.0.0.2"
    assert chosen.parsed.metrics_port == "9101"
    assert not chosen.shared
    assert fleet_options(chosen.parsed, host=None).source_addresses == ("127.0.0.2",)


def test_a_pool_only_the_master_has_is_sliced_by_the_workers_position() -> None:
    master = started(source_addresses="127.0.0.2-127.0.0.5")
    for index, expected in ((3, "127.0.0.2,127.0.0.4"), (7, "127.0.0.3,127.0.0.5")):
        worker = started()
        chosen = worker_options(
            spawned(worker, master, [3, 7]), own_options(worker), worker_index=index
        )
        assert chosen.parsed.source_addresses == expected
        assert not chosen.shared


def test_the_same_pool_on_master_and_worker_is_the_masters_to_split() -> None:
    # Workers forked by `--processes` (or sharing a locust.conf) carry the master's pool.
    master = started(source_addresses="127.0.0.2,127.0.0.3")
    worker = started(source_addresses="127.0.0.2,127.0.0.3")
    chosen = worker_options(spawned(worker, master, [0, 1]), own_options(worker), worker_index=1)
    assert chosen.parsed.source_addresses == "127.0.0.3"


def test_without_the_masters_list_of_workers_the_pool_is_shared_and_said_so() -> None:
    master = started(source_addresses="127.0.0.2-127.0.0.3")
    worker = started()
    chosen = worker_options(spawned(worker, master, None), own_options(worker), worker_index=0)
    assert chosen.parsed.source_addresses == "127.0.0.2,127.0.0.3"
    assert chosen.shared and "shared" in chosen.addresses
    joined_late = worker_options(
        spawned(worker, master, [0, 1]), own_options(worker), worker_index=2
    )
    assert joined_late.shared


def test_a_bad_pool_names_whose_it_is() -> None:
    worker = started(source_addresses="127.0.0.x")
    with pytest.raises(OptionError, match="this worker's"):
        worker_options(spawned(worker, started(), [0]), own_options(worker), worker_index=0)


def test_a_pool_given_to_the_master_gives_each_worker_its_own_address(tmp_path: Path) -> None:
    """Real processes: the CSMS sees each worker's wallboxes come from one address of the
    master's pool, a different one for each worker."""
    scenario = write_scenario(tmp_path, prefix="SA")
    port = free_port()

    async def main() -> tuple[list[tuple[int, str]], dict[str, str]]:
        async with BooksCsms() as csms:
            common = ("--scenario", str(scenario), "--ids-per-worker", "1000")
            master_args = (
                *("--master", "--master-bind-host", "127.0.0.1"),
                *("--master-bind-port", str(port), "--headless"),
                *("--expect-workers", "2", "--expect-workers-max-wait", "30"),
                *("-u", "6", "-r", "20", "--run-time", "4s", "--csms-url", csms.url),
                *("--source-addresses", "127.0.0.2-127.0.0.3"),
            )
            worker_args = ("--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
            results = await asyncio.gather(
                locust(*master_args, *common, timeout=90),
                *(locust(*worker_args, *common, timeout=90) for _ in range(2)),
            )
            return list(results), dict(csms.books.charger_peer)

    results, peers = asyncio.run(main())
    for code, out in results:
        assert code == 0, out
    by_worker = [
        {peers[cid] for cid in peers if cid < "SA001001"},
        {peers[cid] for cid in peers if cid >= "SA001001"},
    ]
    assert len(peers) == 6
    assert all(len(addresses) == 1 for addresses in by_worker), by_worker
    assert by_worker[0] | by_worker[1] == {"127.0.0.2", "127.0.0.3"}
