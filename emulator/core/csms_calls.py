"""Every CSMS-initiated call the charger answers: one literal table, by feature profile.

``CSMS_CALLS[action] = (feature profile, handler)``; a handler is
``handler(wallbox, payload, now) -> answer payload`` and lives with its profile in
emulator.core.handlers.  :func:`answer_call` is the only dispatch: it refuses what the
charger cannot answer (a Rejected registration, an unknown action, a profile the model
does not have) with the CALLERROR OCPP-J 1.6 §4.2.3 names, and otherwise calls the
handler.  The charger link (emulator.core.link) calls it after the schema check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from emulator.core.handlers import (
    core,
    firmware,
    local_list,
    remote_trigger,
    reservation,
    security,
    smart_charging,
)
from emulator.core.wallbox import Wallbox
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.schemas import CSMS_SECURITY_EXTENSION

Handler = Callable[[Wallbox, dict[str, Any], float], dict[str, Any]]

SECURITY_EXTENSION: Final = "Security"
"""The "profile" of the Security Whitepaper's calls: answered when the charger model has
``security_extension`` (it is no feature profile of OCPP 1.6 §3.1, so it is not in the
model's ``profiles``)."""

CSMS_CALLS: Final[dict[str, tuple[str, Handler]]] = {
    "ChangeAvailability": ("Core", core.change_availability),
    "ChangeConfiguration": ("Core", core.change_configuration),
    "ClearCache": ("Core", core.clear_cache),
    "DataTransfer": ("Core", core.data_transfer),
    "GetConfiguration": ("Core", core.get_configuration),
    "RemoteStartTransaction": ("Core", core.remote_start_transaction),
    "RemoteStopTransaction": ("Core", core.remote_stop_transaction),
    "Reset": ("Core", core.reset),
    "UnlockConnector": ("Core", core.unlock_connector),
    "GetDiagnostics": ("FirmwareManagement", firmware.get_diagnostics),
    "UpdateFirmware": ("FirmwareManagement", firmware.update_firmware),
    # OCPP 1.6 Security Whitepaper (answered only by a model with security_extension)
    "GetLog": ("FirmwareManagement", firmware.get_log),
    "SignedUpdateFirmware": ("FirmwareManagement", firmware.signed_update_firmware),
    "GetLocalListVersion": ("LocalAuthListManagement", local_list.get_local_list_version),
    "SendLocalList": ("LocalAuthListManagement", local_list.send_local_list),
    "CancelReservation": ("Reservation", reservation.cancel_reservation),
    "ReserveNow": ("Reservation", reservation.reserve_now),
    "ClearChargingProfile": ("SmartCharging", smart_charging.clear_charging_profile),
    "GetCompositeSchedule": ("SmartCharging", smart_charging.get_composite_schedule),
    "SetChargingProfile": ("SmartCharging", smart_charging.set_charging_profile),
    "TriggerMessage": ("RemoteTrigger", remote_trigger.trigger_message),
    "CertificateSigned": (SECURITY_EXTENSION, security.certificate_signed),
    "DeleteCertificate": (SECURITY_EXTENSION, security.delete_certificate),
    "ExtendedTriggerMessage": (SECURITY_EXTENSION, security.extended_trigger_message),
    "GetInstalledCertificateIds": (SECURITY_EXTENSION, security.get_installed_certificate_ids),
    "InstallCertificate": (SECURITY_EXTENSION, security.install_certificate),
}
"""Action -> (feature profile of OCPP 1.6 §3.1, handler)."""

PROFILE_OF_ACTION: Final[dict[str, str]] = {
    action: profile for action, (profile, _handler) in CSMS_CALLS.items()
}
"""CSMS-initiated actions of OCPP 1.6 by feature profile (metrics group by it)."""


def answer_call(wb: Wallbox, action: str, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """Answer a schema-valid CSMS-initiated CALL; raises RemoteProtocolError for a CALLERROR."""
    wb.last_activity = now
    if wb.registration == "Rejected":
        raise RemoteProtocolError(ErrorCode.SECURITY_ERROR, "BootNotification was Rejected")
    entry = CSMS_CALLS.get(action)
    if action in CSMS_SECURITY_EXTENSION and (entry is None or not wb.model.security_extension):
        # known to OCPP 1.6, not to this charger (a model without the security extension)
        raise RemoteProtocolError(
            ErrorCode.NOT_SUPPORTED, f"{action} is not supported by this charger"
        )
    if entry is None:
        raise RemoteProtocolError(ErrorCode.NOT_IMPLEMENTED, f"unknown action {action}")
    profile, handler = entry
    if profile != SECURITY_EXTENSION and profile not in wb.config.profiles:
        raise RemoteProtocolError(
            ErrorCode.NOT_SUPPORTED, f"feature profile {profile} is not supported"
        )
    wb.log(now, f"csms {action}")
    return handler(wb, payload, now)


def answer_schema_violation(
    wb: Wallbox, action: str, violation: RemoteProtocolError
) -> dict[str, Any] | None:
    """The charger's own answer to a schema violation, where it has one (else CALLERROR).

    Reference §3.1 SendLocalList: "each ID tag with max 20 characters" is one of the
    list limits the charger answers with ``Failed``, like 5 tags per message and 20 in
    total, rather than refusing the frame.
    """
    field = str(violation.details.get("field", ""))
    if (
        action == "SendLocalList"
        and violation.details.get("rule") == "maxLength"
        and field.endswith(("idTag", "parentIdTag"))
        and "LocalAuthListManagement" in wb.config.profiles
        and wb.config.get_bool("LocalAuthListEnabled")
    ):
        return {"status": "Failed"}
    return None
