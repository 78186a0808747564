"""How a visit ends when the charger restarts under a driver."""

from __future__ import annotations

import msgspec

from emulator.core.model import ChargerModel
from emulator.fleet.scenario import Range, SessionSettings
from tests.fleet.simulate import QUIET_MODEL, InstantFleet

T0 = 1_767_225_600.0


def test_a_restart_while_the_driver_waits_to_plug_in_ends_the_visit() -> None:
    # Authorize first, then a long walk to the car: the restart comes in between.
    settings = msgspec.structs.replace(
        SessionSettings(),
        arrivals_per_hour=60.0,
        authorize_first_share=1.0,
        plug_in_delay=Range(200.0, 200.0),
        dwell_minutes=Range(30.0, 30.0),
        start_time="12:00",
    )
    model = ChargerModel(configuration={**QUIET_MODEL.configuration, "ConnectionTimeOut": "240"})
    fleet = InstantFleet(settings, count=1, now=T0, model=model)
    behaviour, wallbox = fleet.behaviours[0], fleet.wallboxes[0]
    while not behaviour.busy:
        fleet.run_until(fleet.now + 1.0)
    fleet.run_until(fleet.now + 10.0)
    assert behaviour.busy and not wallbox.connectors[1].plugged  # authorized, walking
    at = fleet.now
    wallbox.reboot(at)
    fleet.step(0, at)
    assert not behaviour.busy  # the driver gave up: the charger takes the next one
    fleet.run_until(at + 4 * 3600.0)
    assert len(behaviour.plans) >= 3
