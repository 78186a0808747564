"""A small fleet for the metrics tests: built, never started (nothing connects)."""

from __future__ import annotations

from collections.abc import Callable

from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import parse_scenario
from emulator.metrics import NullReporter

SCENARIO = """
[scenario]
name = "unit"

[[models]]
name = "socket"
variant = "socket"
phases = 3
max_current = 32.0
"""


def make_fleet(chargers: int, clock: Callable[[], float] = lambda: 1_800_000_000.0) -> Fleet:
    return Fleet(
        scenario=parse_scenario(SCENARIO, source="<unit>"),
        csms_url="ws://127.0.0.1:9/ocpp",
        chargers=chargers,
        seed=1,
        reporter=NullReporter(),
        clock=clock,
    )
