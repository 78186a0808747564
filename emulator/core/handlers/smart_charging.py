"""The Smart Charging profile's CSMS calls (OCPP 1.6 §5.5, §5.7, §5.16) and the charging
profile of a RemoteStartTransaction (§5.11).  The profile stack and the composite
schedule are emulator.core.smart_charging's; the wallbox re-derives its draw whenever
the limit may change (``smart_reevaluate``)."""

from __future__ import annotations

from typing import Any

from emulator.core.connector import Connector
from emulator.core.smart_charging import Purpose, RateUnit
from emulator.core.wallbox import Wallbox


def set_charging_profile(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    connector_id = payload["connectorId"]
    c = wb.connector_or_none(connector_id)
    _sync(wb, now)
    accepted = wb.smart_charging.set_profile(
        connector_id,
        payload["csChargingProfiles"],
        now=now,
        caps=wb.smart_caps(),
        transaction=c.transaction if c is not None and c.id > 0 else None,
    )
    if not accepted:
        wb.log(now, f"SetChargingProfile Rejected: {wb.smart_charging.last_rejection}")
        return {"status": "Rejected"}
    wb.smart_reevaluate(now)
    return {"status": "Accepted"}


def clear_charging_profile(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    _sync(wb, now)
    purpose = payload.get("chargingProfilePurpose")
    removed = wb.smart_charging.clear(
        profile_id=payload.get("id"),
        connector_id=payload.get("connectorId"),
        purpose=None if purpose is None else Purpose(purpose),
        stack_level=payload.get("stackLevel"),
    )
    if not removed:
        return {"status": "Unknown"}  # §7.15: no profile matched
    wb.smart_reevaluate(now)
    return {"status": "Accepted"}


def get_composite_schedule(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    connector_id = payload["connectorId"]
    duration = payload["duration"]
    unit = RateUnit(payload.get("chargingRateUnit", RateUnit.A))
    if (
        wb.connector_or_none(connector_id) is None  # §5.7: unknown connector
        or duration < 0
        or unit not in wb.smart_caps().units
    ):
        return {"status": "Rejected"}
    _sync(wb, now)
    schedule = wb.smart_charging.composite(
        connector_id,
        now=now,
        duration=duration,
        unit=unit,
        site=wb.smart_site(),
        connectors={c.id: wb.smart_state(c) for c in wb.connectors},
        # Bounded like the charger's memory: at most 7 days, and as many periods as
        # a charging schedule may have (reference §3.2.1 ChargingScheduleMaxPeriods).
        max_periods=wb.config.get_int("ChargingScheduleMaxPeriods"),
    )
    return schedule.to_json()


def remote_start_profile(
    wb: Wallbox, c: Connector, id_tag: str, payload: dict[str, Any], now: float
) -> bool:
    """RemoteStartTransaction's chargingProfile (§5.11): kept for the transaction this
    start produces; False if it breaks the charger's limits."""
    if "SmartCharging" not in wb.config.profiles:
        return True  # §5.11: without Smart Charging the profile "SHOULD be ignored"
    # The start may wait for an Authorize.conf and then for the cable.
    expires_at = now + wb.outbox.response_timeout + wb.config.get_int("ConnectionTimeOut")
    accepted = wb.smart_charging.remote_start(
        c.id,
        id_tag,
        payload["chargingProfile"],
        now=now,
        caps=wb.smart_caps(),
        expires_at=expires_at,
    )
    if not accepted:
        wb.log(now, f"RemoteStartTransaction profile: {wb.smart_charging.last_rejection}")
    return accepted


def _sync(wb: Wallbox, now: float) -> None:
    """TxProfiles of ended transactions go; a remote start's profile joins its one."""
    caps = wb.smart_caps()
    for c in wb.connectors[1:]:
        wb.smart_charging.sync_transaction(c.id, c.transaction, now, caps)
