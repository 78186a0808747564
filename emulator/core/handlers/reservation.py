"""The Reservation profile's CSMS calls (OCPP 1.6 §5.1, §5.13); the answers are worked
out in emulator.core.reservation, the Reserved status by the wallbox's refresh."""

from __future__ import annotations

import math
from typing import Any

from emulator.core.reservation import Reservation
from emulator.core.wallbox import Wallbox
from emulator.protocol.timefmt import parse_timestamp


def reserve_now(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """OCPP 1.6 §5.13; the answers are worked out in emulator.core.reservation."""
    try:
        expiry = parse_timestamp(payload["expiryDate"])
    except ValueError:
        expiry = -math.inf  # unreadable (the schema checks the format): refused below
    if expiry <= now:
        # A reservation that would end before it began holds nothing: refused.
        return {"status": "Rejected"}
    request = Reservation(
        reservation_id=payload["reservationId"],
        connector_id=payload["connectorId"],
        id_tag=payload["idTag"],
        parent_id_tag=payload.get("parentIdTag"),
        expiry=expiry,
    )
    zero_supported = wb.config.knows("ReserveConnectorZeroSupported") and (
        wb.config.get_bool("ReserveConnectorZeroSupported")
    )
    status = wb.reservations.reserve(request, wb.connectors, zero_supported=zero_supported)
    wb.log(
        now,
        f"reservation {request.reservation_id} connector {request.connector_id} "
        f"for {request.id_tag}: {status}",
    )
    wb.reservations_changed(now)
    return {"status": status.value}


def cancel_reservation(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """OCPP 1.6 §5.1: Accepted for a reservation this charger has, else Rejected."""
    if not wb.reservations.cancel(payload["reservationId"]):
        return {"status": "Rejected"}
    wb.log(now, f"reservation {payload['reservationId']} cancelled")
    wb.reservations_changed(now)
    return {"status": "Accepted"}
