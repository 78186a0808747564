"""The Firmware Management profile's CSMS calls (OCPP 1.6 §5.8, §5.19): GetDiagnostics
and UpdateFirmware, and the security extension's GetLog and SignedUpdateFirmware
(OCPP 1.6 Security Whitepaper N01, L01).  The rules (FTP jobs, status notifications, the
restart) are emulator.core.firmware's and emulator.core.signed_firmware's; the
transfers leave the core as effects.
"""

from __future__ import annotations

from typing import Any

from emulator.core.wallbox import Wallbox
from emulator.protocol.errors import ErrorCode, RemoteProtocolError


def get_diagnostics(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    return wb.firmware.get_diagnostics(payload, now)


def update_firmware(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    if wb.model.security_extension:
        # Security whitepaper L01.FR.20: a charger that takes signed firmware answers
        # the unsigned UpdateFirmware.req NotSupported and does not start an update.
        raise RemoteProtocolError(
            ErrorCode.NOT_SUPPORTED, "UpdateFirmware: this charger takes SignedUpdateFirmware"
        )
    return wb.firmware.update_firmware(payload, now)


def signed_update_firmware(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    return wb.firmware.signed_update_firmware(payload, now)


def get_log(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    return wb.firmware.get_log(payload, now)
