"""The one counting of a fleet's wallboxes (emulator.metrics.fleetview)."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.core.status import Status
from emulator.core.transaction import Transaction
from emulator.metrics.fleetview import (
    NOTHING_SETTLED,
    FleetCounts,
    FleetGauges,
    count,
    gauges,
    tally,
)
from tests.metrics.support import make_fleet


def transaction(stopped: bool) -> Transaction:
    tx = Transaction(local_id=1, connector_id=1, id_tag="TAG", meter_start=0, started_at=0.0)
    if stopped:
        tx.stopped_at = 1.0
    return tx


class Connected:
    """A driver whose websocket is open, around a real wallbox."""

    def __init__(self, wallbox: Any) -> None:
        self.wallbox = wallbox
        self.connected = True


def test_count_sums_every_wallbox_and_names_the_statuses_in_order() -> None:
    fleet = make_fleet(3)
    first, second, third = (d.wallbox for d in fleet.drivers)
    first.transactions += [transaction(True), transaction(False)]
    second.transactions += [transaction(True)]
    second.connectors[1].reported = Status.CHARGING
    third.connectors[1].reported = None  # nothing reported yet
    counts = count([Connected(first), *fleet.drivers[1:]])
    assert counts.chargers == counts.started == 3
    assert counts.connected == 1
    assert counts.charging == 1
    assert (counts.transactions_started, counts.transactions_stopped) == (3, 2)
    assert counts.statuses == {"Available": 1, "Charging": 1}
    assert list(counts.statuses) == sorted(counts.statuses)
    assert all(type(key) is str for key in counts.statuses)
    assert count(fleet.drivers, started=7).started == 7


def test_the_fleet_counts_and_gauges_are_the_one_counting() -> None:
    fleet = make_fleet(4)
    fleet.drivers[0].wallbox.connectors[1].reported = Status.CHARGING
    counts = fleet.counts()
    assert counts == count(fleet.drivers)
    assert fleet.gauges() == gauges(fleet.drivers)
    assert fleet.gauges() == FleetGauges(
        counts.chargers, counts.connected, counts.charging, counts.queue_depth, counts.in_flight
    )
    assert fleet.counts(started=2).started == 2


def test_a_tally_without_detail_counts_only_the_gauges() -> None:
    fleet = make_fleet(1)
    wallbox = fleet.drivers[0].wallbox
    wallbox.transactions.append(transaction(True))
    light = FleetCounts()
    tally(fleet.drivers[0], light, detail=False)
    assert (light.chargers, light.queue_depth) == (1, wallbox.outbox.depth)
    assert light.transactions_started == 0 and light.statuses == {}


def test_the_settled_prefix_spares_the_walk_and_counts_the_same() -> None:
    fleet = make_fleet(1)
    driver = fleet.drivers[0]
    wallbox = driver.wallbox
    lost = transaction(False)
    wallbox.transactions += [transaction(True), lost, transaction(True), transaction(False)]
    wallbox.lost_transactions.append(lost)  # a hard reset: final, never stopped
    first = FleetCounts()
    settled = tally(driver, first)
    assert settled == (3, 2)  # stopped, lost, stopped: the open one is not settled
    assert (first.transactions_started, first.transactions_stopped) == (4, 2)
    wallbox.transactions[3].stopped_at = 2.0
    again, fresh = FleetCounts(), FleetCounts()
    assert tally(driver, again, settled=settled) == (4, 3)
    tally(driver, fresh, settled=NOTHING_SETTLED)
    assert again == fresh
    assert (again.transactions_started, again.transactions_stopped) == (4, 3)


class RacingWallbox:
    """A wallbox whose transaction list the loop changes while another thread reads it."""

    def __init__(self, wallbox: Any) -> None:
        self._wallbox = wallbox

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wallbox, name)

    @property
    def transactions(self) -> list[Transaction]:
        raise RuntimeError("list changed size during iteration")


def test_a_read_that_races_the_loop_leaves_the_counts_as_they_were() -> None:
    fleet = make_fleet(1)
    counts = FleetCounts()
    with pytest.raises(RuntimeError):
        tally(Connected(RacingWallbox(fleet.drivers[0].wallbox)), counts)
    assert counts == FleetCounts()


def test_counts_add_up_statuses_too() -> None:
    total = FleetCounts(chargers=1, transactions_started=2, statuses={"Available": 1})
    total.add(FleetCounts(chargers=2, in_flight=1, statuses={"Available": 1, "Charging": 1}))
    assert total == FleetCounts(
        chargers=3, transactions_started=2, in_flight=1, statuses={"Available": 2, "Charging": 1}
    )
