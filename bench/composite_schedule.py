"""What a GetCompositeSchedule costs for the longest duration a CSMS may ask, next to one day.

    .venv/bin/python bench/composite_schedule.py [--rounds 7]

A CSMS may ask for a composite schedule of 2^31 - 1 seconds (the schema's integer).  A
charger answers for at most 7 days and ``ChargingScheduleMaxPeriods`` periods
(``SmartCharging.composite``: "the work is proportional to the schedule within the
horizon, not to the duration asked for"), so the longest request must cost about what a
one-day request costs.  This computes, alternately, ``--rounds`` times, the composite of
a daily recurring profile of 14 periods (the reference charger's maximum) and of no
profile at all, for 2^31 - 1 s and for one day, and prints the milliseconds of CPU of each
(best and median of 100 calls a round) and the ratio longest / one day.  Printed, never
asserted: the tests check the schedules, not their cost.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine

from emulator.core.smart_charging import (
    ConnectorState,
    RateUnit,
    Site,
    SmartCharging,
    capabilities,
)
from emulator.protocol.timefmt import format_timestamp

DAY = 86_400
LONGEST = 2_147_483_647
NOW = 1_767_225_600.0  # a UTC midnight
CALLS = 100
SITE = Site(max_current=32.0, voltage=230.0)
IDLE = ConnectorState(transaction=None, phases=3)


def daily_profile(periods: int) -> dict[str, Any]:
    """A TxDefaultProfile recurring daily, a period every 100 minutes, from yesterday."""
    return {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Recurring",
        "recurrencyKind": "Daily",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": format_timestamp(NOW - DAY),
            "chargingSchedulePeriod": [
                {"startPeriod": k * 6000, "limit": 6.0 + k} for k in range(periods)
            ],
        },
    }


def charger(periods: int) -> SmartCharging:
    smart = SmartCharging()
    if periods:
        caps = capabilities(
            max_stack_level=10,
            max_periods=14,
            max_installed=10,
            allowed_units=("Current", "Power"),
            connectors=1,
        )
        installed = smart.set_profile(
            1, daily_profile(periods), now=NOW, caps=caps, transaction=None
        )
        assert installed, smart.last_rejection
    return smart


def cost(smart: SmartCharging, duration: int) -> float:
    """Seconds of CPU per composite schedule of connector 1."""
    began = time.process_time()
    for _ in range(CALLS):
        smart.composite(
            1,
            now=NOW,
            duration=duration,
            unit=RateUnit.A,
            site=SITE,
            connectors={0: IDLE, 1: IDLE},
            max_periods=14,
        )
    return (time.process_time() - began) / CALLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds of each measurement")
    rounds = parser.parse_args().rounds
    print(machine())
    for label, periods in (("14 daily periods", 14), ("no profile", 0)):
        smart = charger(periods)
        longest: list[float] = []
        one_day: list[float] = []
        for _ in range(rounds):  # alternated, so that both see the same machine load
            longest.append(cost(smart, LONGEST))
            one_day.append(cost(smart, DAY))
        longest.sort()
        one_day.sort()
        middle = rounds // 2
        print(
            f"{label}: 2^31 - 1 s best {longest[0] * 1e3:.3f} ms, median "
            f"{longest[middle] * 1e3:.3f} ms; one day best {one_day[0] * 1e3:.3f} ms, "
            f"median {one_day[middle] * 1e3:.3f} ms CPU; "
            f"longest / one day (medians): {longest[middle] / one_day[middle]:.2f}x"
        )


if __name__ == "__main__":
    main()
