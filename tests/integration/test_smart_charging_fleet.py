"""Smart Charging over real websockets: the reference CSMS throttles a small fleet."""

from __future__ import annotations

import asyncio
from typing import Any

from emulator.csms import ReferenceCsms
from emulator.protocol.codec import Call
from tests.integration.support import eventually, running_fleet, scenario

CHARGERS = 4
LIMIT_A = 10.0

TX_DEFAULT = {
    "connectorId": 0,
    "csChargingProfiles": {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": LIMIT_A}],
        },
    },
}


def currents(payload: dict[str, Any], measurand: str) -> list[float]:
    return [
        float(sampled["value"])
        for value in payload["meterValue"]
        for sampled in value["sampledValue"]
        if sampled.get("measurand") == measurand
    ]


def test_a_tx_default_profile_pushed_to_a_fleet_limits_the_meter_values_the_csms_receives() -> None:
    received: list[tuple[str, dict[str, Any]]] = []

    def record(charger_id: str, call: Call) -> None:
        if call.action == "MeterValues" and "transactionId" in call.payload:
            received.append((charger_id, call.payload))
        return None  # answer normally

    async def main() -> None:
        async with ReferenceCsms(misbehave=record) as csms:
            async with running_fleet(
                scenario(mode="remote-only", sample=4), csms.url, chargers=CHARGERS
            ) as (fleet, _):
                ids = [wb.charge_point_id for wb in fleet.wallboxes]
                await csms.wait_until(
                    lambda: all(cp in csms.chargers and csms.chargers[cp].booted for cp in ids), 10
                )
                answers = await csms.call_all("SetChargingProfile", TX_DEFAULT, charger_ids=ids)
                assert answers == {cp: {"status": "Accepted"} for cp in ids}
                for n, cp in enumerate(ids):
                    answer = await csms.call(
                        cp, "RemoteStartTransaction", {"idTag": f"DRIVER{n}", "connectorId": 1}
                    )
                    assert answer == {"status": "Accepted"}

                def two_samples_each() -> bool:
                    counts = {cp: 0 for cp in ids}
                    for cp, _payload in received:
                        counts[cp] += 1
                    return all(n >= 2 for n in counts.values())

                await eventually(two_samples_each, 20.0, "two MeterValues per charger")
                composite = await csms.call(
                    ids[0], "GetCompositeSchedule", {"connectorId": 1, "duration": 600}
                )
                assert composite["chargingSchedule"]["chargingSchedulePeriod"] == [
                    {"startPeriod": 0, "limit": LIMIT_A}
                ]
            assert csms.schema_violations == 0
        assert {cp for cp, _ in received} == set(ids)
        for cp, payload in received:
            offered = currents(payload, "Current.Offered")
            imported = currents(payload, "Current.Import")
            assert offered == [LIMIT_A], (cp, payload)
            assert imported and max(imported) <= LIMIT_A, (cp, payload)
        charging = [max(currents(p, "Current.Import")) for _, p in received]
        assert max(charging) == LIMIT_A, "the EVs (32 A) were held at the limit"

    asyncio.run(main())
