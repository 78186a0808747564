"""The Local Auth List Management profile's CSMS calls (OCPP 1.6 §5.10, §5.15), within
the reference charger's limits (emulator.core.authorization)."""

from __future__ import annotations

from typing import Any

from emulator.core.authorization import UpdateStatus
from emulator.core.wallbox import Wallbox


def get_local_list_version(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """OCPP 1.6 §5.10: 0 for an empty list, -1 while LocalAuthListEnabled is false."""
    return {"listVersion": wb.auth.list_version()}


def send_local_list(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """OCPP 1.6 §5.15 within the reference limits (authorization.Authorizer.update_list)."""
    status = wb.auth.update_list(
        update_type=payload["updateType"],
        version=payload["listVersion"],
        entries=payload.get("localAuthorizationList", []),
    )
    if status is UpdateStatus.ACCEPTED:
        wb.log(
            now,
            f"local list {payload['updateType']} version {wb.auth.local_list_version}, "
            f"{len(wb.auth.local_list)} idTags",
        )
    else:
        wb.log(now, f"local list {status}: {wb.auth.last_list_failure}")
    return {"status": status.value}
