"""The Core profile's CSMS calls (OCPP 1.6 §5): availability, configuration, remote
start and stop, reset, unlock, DataTransfer, the authorization cache.

Each handler takes the wallbox, a schema-valid payload and the time, applies the
charger's rules through the wallbox's own methods and returns the answer payload; a
RemoteProtocolError becomes a CALLERROR.  The table of every CSMS call is
emulator.core.csms_calls.
"""

from __future__ import annotations

from typing import Any

from emulator.core.configuration import ConfigurationStatus
from emulator.core.effects import EventKind
from emulator.core.handlers.smart_charging import remote_start_profile
from emulator.core.model import Variant
from emulator.core.security_profile import change_security_profile
from emulator.core.status import Status
from emulator.core.transaction import StopReason
from emulator.core.wallbox import PHYSICS_STEP, SOFT_RESET_FLUSH_SECONDS, Wallbox
from emulator.protocol.errors import ErrorCode, RemoteProtocolError

VENDOR_ID = "ocpp-fleet"
"""DataTransfer vendorId this emulator answers (messageId "echo" returns the data)."""


def change_availability(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """OCPP 1.6 §5.2.  Inoperative while a connector is in use is Scheduled: it takes
    effect when the transaction (or the session being prepared) ends, connector 0's
    after every connector's.  A connector cannot be Operative while the charge point
    (connector 0) is, or is scheduled to become, Inoperative: that change is Rejected
    and the connector stays Unavailable."""
    connector_id = payload["connectorId"]
    operative = payload["type"] == "Operative"
    if wb.connector_or_none(connector_id) is None:
        return {"status": "Rejected"}
    station = wb.connectors[0]
    if (
        connector_id > 0
        and operative
        and (not station.operative or station.pending_operative is False)
    ):
        return {"status": "Rejected"}
    targets = wb.connectors if connector_id == 0 else [wb.connectors[connector_id]]
    scheduled = False
    for c in targets:
        if c.id == 0:
            continue  # connector 0 follows its connectors (below)
        # OCPP 1.6 §4.9 has no Preparing -> Unavailable (no B8), so like a running
        # transaction a session being prepared makes the change Scheduled; it applies
        # once the connector is free (as EVerest libocpp does).
        busy = c.transaction is not None or c.derive_status() is Status.PREPARING
        if busy and not operative:
            c.pending_operative = operative
            scheduled = True
        else:
            wb.set_operative(c, operative)
    if connector_id == 0:
        if scheduled:
            station.pending_operative = operative  # _station_change_due applies it
        else:
            wb.set_operative(station, operative)
    for c in targets:
        wb.refresh(c, now)
    return {"status": "Scheduled" if scheduled else "Accepted"}


def change_configuration(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    key, value = payload["key"], payload["value"]
    if key == "SecurityProfile" and wb.config.knows(key):
        # A raise checks what the new profile needs, reconnects, may fall back (A05).
        return {"status": change_security_profile(wb, value, now).value}
    status = wb.config.change(key, value)
    if status is ConfigurationStatus.ACCEPTED:
        if key == "AuthorizationKey":
            # Security Whitepaper §8: "keys or the security profile used, were changed"
            # (the key's name only: never its value, A01.FR.12).
            wb.security_event("ReconfigurationOfSecurityParameters", now, f"{key} changed")
        _apply_configuration(wb, key, now)
    return {"status": status.value}


def _apply_configuration(wb: Wallbox, key: str, now: float) -> None:
    """Configuration changes apply live (reference §3.2, OCPP 1.6 §5.3)."""
    if key == "WebSocketPingInterval" and wb.online:
        interval = wb.config.get_int(key)
        wb.next_ping_at = now + interval if interval else None
    elif key == "MeterValueSampleInterval":
        interval = wb.config.get_int(key)
        for c in wb.connectors:
            if c.transaction is not None:
                c.next_sample_at = now + (interval or PHYSICS_STEP)
    elif key == "ClockAlignedDataInterval":
        wb.schedule_aligned(now)
    elif key == "AuthorizationCacheEnabled" and not wb.config.get_bool(key):
        wb.auth.clear_cache()
    elif key == "AuthorizationKey":
        _new_password(wb, now)


def _new_password(wb: Wallbox, now: float) -> None:
    """OCPP 1.6 Security Whitepaper A01 (Update Charge Point Password for HTTP Basic
    Authentication).  The change goes into the charger's log without the key (A01.FR.11,
    A01.FR.12).  With the Basic password in use (security profile 1 or 2: A01's
    prerequisite), the charger then closes its connection once the Accepted is out and
    connects again at once with the new password (scenario steps 2-4), so the CSMS, which
    no longer accepts the old one (A01.FR.03), sees it now rather than at some later
    reconnect.  With profile 3 the key is stored and waits: the connection does not use it.
    """
    wb.log(now, "security: AuthorizationKey changed")
    if wb.config.get_int("SecurityProfile") in (1, 2):
        wb.reconnect()


def clear_cache(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    wb.auth.clear_cache()
    return {"status": "Accepted"}


def data_transfer(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    if payload["vendorId"] != VENDOR_ID:
        return {"status": "UnknownVendorId"}
    if payload.get("messageId") != "echo":
        return {"status": "UnknownMessageId"}
    answer: dict[str, Any] = {"status": "Accepted"}
    if "data" in payload:
        answer["data"] = payload["data"]
    return answer


def get_configuration(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    keys = payload.get("key")
    limit = wb.config.get_int("GetConfigurationMaxKeys")
    if keys is not None and len(keys) > limit:
        raise RemoteProtocolError(
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
            f"{len(keys)} keys requested; GetConfigurationMaxKeys is {limit}",
        )
    known, unknown = wb.config.get_configuration(keys or None)
    result: dict[str, Any] = {"configurationKey": [k.to_json() for k in known]}
    if unknown:
        result["unknownKey"] = unknown
    return result


def remote_start_transaction(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    connector_id = payload.get("connectorId", 1)
    id_tag = payload["idTag"]
    if not wb.accepted:
        # OCPP 1.6 §4.2.1: "While in pending state, the following Central System
        # initiated messages are not allowed: RemoteStartTransaction.req and
        # RemoteStopTransaction.req"; nor could the StartTransaction.req be sent.
        return {"status": "Rejected"}
    c = wb.connector_or_none(connector_id)
    if c is None or connector_id == 0 or not c.free or c.awaiting_authorization is not None:
        return {"status": "Rejected"}
    # On a reserved connector a tag whose parent is unknown is accepted only if the
    # Authorize.req that AuthorizeRemoteTxRequests sends can tell (OCPP 1.6 §5.13).
    asks = wb.config.get_bool("AuthorizeRemoteTxRequests")
    if wb.reservations.refuses(c.id, id_tag, wb.auth.known_parent(id_tag), asked=not asks):
        return {"status": "Rejected"}
    if "chargingProfile" in payload and not remote_start_profile(wb, c, id_tag, payload, now):
        return {"status": "Rejected"}  # its TxProfile breaks the charger's limits (§5.11)
    wb.emit(EventKind.REMOTE_START_ACCEPTED, c.id, id_tag)
    if wb.config.get_bool("AuthorizeRemoteTxRequests"):
        wb.authorize(c, id_tag, now, remote=True)
    else:
        wb.authorized(c, id_tag, now, remote=True)
    return {"status": "Accepted"}


def remote_stop_transaction(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    if not wb.accepted:
        return {"status": "Rejected"}  # not allowed while Pending (OCPP 1.6 §4.2.1)
    wanted = payload["transactionId"]
    for c in wb.connectors:
        tx = c.transaction
        if tx is not None and tx.transaction_id == wanted:
            wb.stop_transaction(c, StopReason.REMOTE, now)
            return {"status": "Accepted"}
    return {"status": "Rejected"}


def reset(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    # The answer goes out first; the restart happens on the next tick.
    if payload["type"] == "Hard":
        wb.reboot_deadline = now
        wb.hard_reset_pending = True
    else:
        _soft_reset(wb, now)
    return {"status": "Accepted"}


def _soft_reset(wb: Wallbox, now: float) -> None:
    """Reference §3.1 Reset: stop the transaction, then restart."""
    for c in wb.connectors:
        if c.transaction is not None:
            wb.stop_transaction(c, StopReason.SOFT_RESET, now)
    # Give the StopTransaction a chance to reach the CSMS before the restart;
    # it stays queued across the restart anyway.
    wb.reboot_deadline = now + SOFT_RESET_FLUSH_SECONDS


def unlock_connector(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    connector_id = payload["connectorId"]
    c = wb.connector_or_none(connector_id)
    if c is None or connector_id == 0:
        return {"status": "NotSupported"}
    if wb.model.variant is Variant.CABLE:
        # Reference §3.1: "If send the message to cable variants, the charger will do
        # nothing."  NotSupported is the OCPP answer that says exactly that.
        return {"status": "NotSupported"}
    if c.transaction is not None:
        wb.stop_transaction(c, StopReason.UNLOCK_COMMAND, now)
    c.locked = False
    return {"status": "Unlocked"}
