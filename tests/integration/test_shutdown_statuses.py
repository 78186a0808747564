"""At the end of a run the CSMS learns the connector states the shutdown stop left behind:
the StatusNotification after the StopTransaction is delivered within the drain time."""

from __future__ import annotations

import asyncio

from emulator.csms import ReferenceCsms
from emulator.fleet.ledger import compare, fleet_ledger
from tests.integration.support import eventually, running_fleet, scenario


def test_the_status_after_a_shutdown_stop_reaches_the_csms() -> None:
    async def main() -> None:
        async with ReferenceCsms() as csms:
            # EVs that never get full: every wallbox is charging when the run ends.
            sc = scenario(arrivals=36000.0, energy="[inf, inf]", sample=0)
            async with running_fleet(sc, csms.url, chargers=3) as (fleet, _):
                await eventually(
                    lambda: all(
                        csms.chargers.get(d.wallbox.charge_point_id) is not None
                        and csms.chargers[d.wallbox.charge_point_id].statuses.get(1) is not None
                        and csms.chargers[d.wallbox.charge_point_id].statuses[1].status
                        == "Charging"
                        for d in fleet.drivers
                    ),
                    15.0,
                    "every connector Charging at the CSMS",
                )
            # The fleet has stopped: transactions ended with reason Local, and the CSMS
            # knows each connector is Finishing (cable still in), not Charging any more.
            for driver in fleet.drivers:
                record = csms.chargers[driver.wallbox.charge_point_id]
                assert record.statuses[1].status == "Finishing", record.statuses
                assert driver.wallbox.connectors[1].reported is not None
                assert record.statuses[1].status == driver.wallbox.connectors[1].reported
                assert not driver.wallbox.outbox.has_queued("StatusNotification")
            comparison = compare(fleet_ledger(fleet.wallboxes), csms.ledger.to_json())
            assert comparison.consistent, comparison.discrepancies

    asyncio.run(main())
