"""Transactions and the reasons they end (OCPP 1.6 §7.45 Reason)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_TRANSACTION_DATA = 100
"""StopTxn*Data readings a transaction keeps at most."""


class StopReason(StrEnum):
    EMERGENCY_STOP = "EmergencyStop"
    EV_DISCONNECTED = "EVDisconnected"
    HARD_RESET = "HardReset"
    LOCAL = "Local"
    OTHER = "Other"
    POWER_LOSS = "PowerLoss"
    REBOOT = "Reboot"
    REMOTE = "Remote"
    SOFT_RESET = "SoftReset"
    UNLOCK_COMMAND = "UnlockCommand"
    DE_AUTHORIZED = "DeAuthorized"


@dataclass(slots=True, eq=False, kw_only=True)
class Transaction:
    local_id: int  # this wallbox's own counter, before the CSMS assigns transactionId
    connector_id: int
    id_tag: str
    meter_start: int  # Wh, from the connector's energy register
    started_at: float
    reservation_id: int | None = None
    transaction_id: int | None = None  # from StartTransaction.conf
    id_tag_status: str | None = None
    meter_stop: int | None = None
    stopped_at: float | None = None
    stop_reason: StopReason | None = None
    energy_cap_wh: float | None = None  # MaxEnergyOnInvalidId after a non-Accepted start
    samples_sent: int = 0
    transaction_data: list[dict[str, Any]] = field(default_factory=list)  # StopTxn*Data readings
    stop_acknowledged: bool = False
    dropped: list[str] = field(default_factory=list)  # messages given up, with the rule
    extra: dict[str, object] = field(default_factory=dict)

    def keep_reading(self, reading: dict[str, Any]) -> None:
        """Keep a reading for StopTransaction's transactionData: at most
        MAX_TRANSACTION_DATA (the first, Transaction.Begin, and the newest), so a
        week-long session cannot grow a charger's memory."""
        data = self.transaction_data
        if len(data) >= MAX_TRANSACTION_DATA:
            del data[1]
        data.append(reading)

    @property
    def energy_wh(self) -> int | None:
        return None if self.meter_stop is None else self.meter_stop - self.meter_start
