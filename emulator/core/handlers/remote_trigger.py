"""The Remote Trigger profile's CSMS call: TriggerMessage (OCPP 1.6 §5.17)."""

from __future__ import annotations

from typing import Any

from emulator.core.connector import Connector
from emulator.core.status import status_payload
from emulator.core.wallbox import Wallbox


def trigger_message(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """OCPP 1.6 §5.17; reference §3.1 lists all six MessageTriggers as supported.

    The answer goes out first, then the message (the transport sends a CALLRESULT
    before the next CALL).  A connectorId that does not exist is Rejected; one that
    is not relevant (BootNotification, Heartbeat, the status notifications of Firmware
    Management) is ignored, as §5.17 says.  Without connectorId a StatusNotification
    is sent for connector 0 and every connector, a MeterValues for every connector
    (connectorId 0 too: the charger has no meter of its own besides the connector's).
    While the registration is Pending every trigger is Accepted and its message goes
    out: triggered messages are the ones §4.2.1 lets a Pending charger send ("unless it
    has been instructed by the Central System to do so with a TriggerMessage.req"); the
    outbox lets them (and only them, besides BootNotification) pass.  A message already
    waiting to be sent complies with the request ("MAY be considered as complying") and
    is not doubled.
    """
    requested = payload["requestedMessage"]
    connector_id = payload.get("connectorId")
    if connector_id is not None and wb.connector_or_none(connector_id) is None:
        return {"status": "Rejected"}
    if requested in ("DiagnosticsStatusNotification", "FirmwareStatusNotification") and (
        "FirmwareManagement" not in wb.config.profiles
    ):
        return {"status": "NotImplemented"}  # a charger model without that profile
    if requested == "BootNotification":
        if not wb.outbox.has_queued("BootNotification"):
            wb.send_boot(now)
    elif requested == "Heartbeat":
        if not wb.outbox.has_queued("Heartbeat"):
            wb.outbox.add("Heartbeat", {}, triggered=True)
    elif requested == "StatusNotification":
        targets = wb.connectors if connector_id is None else [wb.connectors[connector_id]]
        for c in targets:
            _send_current_status(wb, c, now)
    elif requested == "MeterValues":
        # "SHOULD return the most recent measurements for all measurands configured in
        # configuration key MeterValuesSampledData" (§5.17); the register if none is.
        measurands = wb.config.get_list("MeterValuesSampledData") or [
            "Energy.Active.Import.Register"
        ]
        targets = wb.connectors[1:] if not connector_id else [wb.connectors[connector_id]]
        for c in targets:
            wb.read_meter(c, now)
            wb.meter_values(c, measurands, "Trigger", now)
    elif requested == "DiagnosticsStatusNotification":
        # Idle unless an upload runs (OCPP 1.6 §4.4; emulator.core.firmware).
        status = wb.firmware.diagnostics_status()
        wb.outbox.add("DiagnosticsStatusNotification", {"status": status}, triggered=True)
    elif requested == "FirmwareStatusNotification":
        # Idle unless an update runs (OCPP 1.6 §4.5; emulator.core.firmware).
        status = wb.firmware.firmware_status()
        wb.outbox.add("FirmwareStatusNotification", {"status": status}, triggered=True)
    else:
        return {"status": "NotImplemented"}
    wb.log(now, f"trigger {requested} connector {connector_id}")
    return {"status": "Accepted"}


def _send_current_status(wb: Wallbox, c: Connector, now: float) -> None:
    """A StatusNotification of the status last reported, not a change (no event);
    triggered, so it goes out while the registration is Pending too."""
    status = c.reported
    if status is None:
        wb.refresh(c, now)
        return
    wb.outbox.add(
        "StatusNotification", status_payload(c.id, c.error_code, status, now), triggered=True
    )
