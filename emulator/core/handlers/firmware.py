"""The Firmware Management profile's CSMS calls (OCPP 1.6 §5.8, §5.19): GetDiagnostics
and UpdateFirmware.  The rules (FTP jobs, status notifications, the restart) are
emulator.core.firmware's; the transfers leave the core as effects.
"""

from __future__ import annotations

from typing import Any

from emulator.core.wallbox import Wallbox


def get_diagnostics(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    return wb.firmware.get_diagnostics(payload, now)


def update_firmware(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    return wb.firmware.update_firmware(payload, now)
