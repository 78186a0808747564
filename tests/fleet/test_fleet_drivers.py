"""A fleet's drivers: a view of its table by charger number, in the order they joined,
from which a wallbox leaves without a search through the others."""

from __future__ import annotations

from collections.abc import Iterable

from emulator.fleet.runner import Fleet
from emulator.metrics.stats import RunStats
from emulator.transport.driver import WallboxDriver
from tests.loadtest.support import scenario


def fleet(chargers: int) -> Fleet:
    return Fleet(
        scenario=scenario(), csms_url="ws://x", chargers=chargers, seed=1, reporter=RunStats()
    )


def ids(drivers: Iterable[WallboxDriver]) -> list[str]:
    return [d.wallbox.charge_point_id for d in drivers]


def test_the_drivers_are_in_charger_order_and_read_like_a_list() -> None:
    f = fleet(5)
    assert len(f.drivers) == 5
    assert ids(f.drivers) == ["LT000001", "LT000002", "LT000003", "LT000004", "LT000005"]
    assert f.drivers[0].wallbox.charge_point_id == "LT000001"
    assert f.drivers[-1].wallbox.charge_point_id == "LT000005"
    assert ids(f.drivers[1:3]) == ["LT000002", "LT000003"]
    assert ids(reversed(f.drivers)) == ids(f.drivers)[::-1]
    assert f.drivers[2] in f.drivers
    assert f.drivers.index(f.drivers[3]) == 3


def test_a_removed_wallbox_leaves_and_a_returning_number_joins_at_the_end() -> None:
    f = fleet(5)
    removed: list[tuple[int, WallboxDriver]] = []
    f.on_removed = lambda number, driver: removed.append((number, driver))
    second, fourth = f.drivers[1], f.drivers[3]
    f.remove_wallbox(2)  # not serving: it leaves at once
    f.remove_wallbox(4)
    f.remove_wallbox(4)  # gone already: nothing happens
    assert removed == [(2, second), (4, fourth)]
    assert ids(f.drivers) == ["LT000001", "LT000003", "LT000005"]
    assert second not in f.drivers
    f.add_wallbox(2, second.wallbox.model)
    assert ids(f.drivers) == ["LT000001", "LT000003", "LT000005", "LT000002"]
    assert f.drivers[-1] is not second  # a new wallbox under the old number
    assert len(f.drivers) == 4 == len(f.wallboxes)


def test_every_wallbox_can_leave_in_any_order() -> None:
    f = fleet(300)
    order = list(range(300, 0, -2)) + list(range(1, 300, 2))  # as Locust stops: last first
    gone: list[int] = []
    f.on_removed = lambda number, driver: gone.append(number)
    for number in order[:200]:
        f.remove_wallbox(number)
    left = sorted(set(range(1, 301)) - set(order[:200]))
    assert ids(f.drivers) == [f.charger_id(n) for n in left]
    for number in order[200:]:
        f.remove_wallbox(number)
    assert gone == order
    assert len(f.drivers) == 0 and list(f.drivers) == []
