"""What the reference CSMS remembers: one record per charger and a transaction ledger.

Plain data with the few rules that need memory (transaction ids, idempotent
StartTransaction / StopTransaction); no I/O and no clock reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "ChargerRecord",
    "ConnectorStatus",
    "CsmsLedger",
    "StopOutcome",
    "TransactionRecord",
]

StopOutcome = Literal["stopped", "duplicate", "unknown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorStatus:
    """The last StatusNotification.req for one connector (OCPP 1.6 §4.9)."""

    status: str
    error_code: str
    info: str | None = None
    vendor_error_code: str | None = None
    timestamp: str | None = None


@dataclass(slots=True, kw_only=True)
class ChargerRecord:
    """Everything the CSMS knows about one charge point; kept after it disconnects."""

    charger_id: str
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    #: True once a BootNotification was answered "Accepted" (OCPP 1.6 §4.2).
    booted: bool = False
    registration_status: str | None = None
    boot_payload: dict[str, Any] | None = None
    boot_count: int = 0
    #: CALLs other than BootNotification received while not booted (1.6 §4.2 forbids them
    #: after Rejected, and Pending only allows answering the CSMS).
    calls_before_boot: int = 0
    last_heartbeat: datetime | None = None
    statuses: dict[int, ConnectorStatus] = field(default_factory=dict)
    #: Charger-initiated CALLs received, per action (including invalid ones).
    action_counts: dict[str, int] = field(default_factory=dict)
    #: CALLs answered with a CALLERROR because their payload failed the schema, or their
    #: action is unknown (NotImplemented) or not one a charger sends (NotSupported).
    schema_violations: int = 0
    last_violation: str | None = None
    #: Frames that are not OCPP-J at all (codec errors).
    frame_errors: int = 0
    #: CALLRESULT payloads to CSMS-initiated calls that failed the schema.
    response_violations: int = 0
    #: CALLRESULT / CALLERROR frames matching no pending CSMS call (e.g. after a timeout).
    unmatched_results: int = 0
    meter_values_count: int = 0
    #: Last Energy.Active.Import.Register per connector, in Wh.
    energy_register_wh: dict[int, float] = field(default_factory=dict)
    diagnostics_status: str | None = None
    diagnostics_history: list[str] = field(default_factory=list)
    firmware_status: str | None = None
    #: FirmwareStatusNotification and SignedFirmwareStatusNotification statuses, in order.
    firmware_history: list[str] = field(default_factory=list)
    # Security whitepaper (edition 3); no key, CSR or certificate is kept here.
    #: SignedFirmwareStatusNotification statuses only (L01), in order.
    signed_firmware_history: list[str] = field(default_factory=list)
    log_status: str | None = None
    #: LogStatusNotification statuses (N01), in order.
    log_history: list[str] = field(default_factory=list)
    #: SecurityEventNotification.req per event type (A04); techInfo is not kept.
    security_events: dict[str, int] = field(default_factory=dict)
    #: SignCertificate.req received, answered Rejected (the CA refused the CSR), signed.
    csrs_received: int = 0
    csrs_rejected: int = 0
    last_csr_rejection: str | None = None
    certificates_issued: int = 0
    #: The charger's answers to the CertificateSigned.req sent after a signed CSR: its
    #: status, or what went wrong ("CALLERROR <code>", "not connected", "timeout").
    certificate_signed_answers: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class TransactionRecord:
    """One transaction as the CSMS saw it (StartTransaction / StopTransaction, 1.6 §4.8, §4.10)."""

    transaction_id: int
    charger_id: str
    connector_id: int
    id_tag: str
    meter_start: int
    start_timestamp: str
    reservation_id: int | None = None
    meter_stop: int | None = None
    stop_timestamp: str | None = None
    stop_id_tag: str | None = None
    reason: str | None = None
    transaction_data: list[dict[str, Any]] | None = None
    meter_values_count: int = 0
    last_energy_wh: float | None = None
    start_duplicates: int = 0
    stop_duplicates: int = 0

    @property
    def stopped(self) -> bool:
        return self.meter_stop is not None

    @property
    def energy_wh(self) -> float | None:
        """meterStop - meterStart once stopped, else from the last register reading."""
        if self.meter_stop is not None:
            return float(self.meter_stop - self.meter_start)
        if self.last_energy_wh is not None:
            return self.last_energy_wh - self.meter_start
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "transactionId": self.transaction_id,
            "chargerId": self.charger_id,
            "connectorId": self.connector_id,
            "idTag": self.id_tag,
            "meterStart": self.meter_start,
            "startTimestamp": self.start_timestamp,
            "reservationId": self.reservation_id,
            "meterStop": self.meter_stop,
            "stopTimestamp": self.stop_timestamp,
            "stopIdTag": self.stop_id_tag,
            "reason": self.reason,
            "transactionData": self.transaction_data,
            "meterValuesCount": self.meter_values_count,
            "energyWh": self.energy_wh,
            "startDuplicates": self.start_duplicates,
            "stopDuplicates": self.stop_duplicates,
        }


_StartKey = tuple[str, int, str, str, int]


class CsmsLedger:
    """Transactions, with the idempotency a charger's retransmissions rely on.

    OCPP 1.6 "Transaction-Related Messages": a charger that got no answer retransmits
    StartTransaction / StopTransaction / transaction MeterValues until they are delivered. A StartTransaction with the same charger, connectorId,
    idTag, timestamp and meterStart as a recorded one is that retransmission: it gets the
    same transactionId back and is counted in :attr:`duplicate_starts`. A StopTransaction
    for an already stopped transaction counts in :attr:`duplicate_stops`; one for an id we
    never issued (or issued to another charger) in :attr:`unknown_stops`.
    """

    __slots__ = (
        "_next_id",
        "_open",
        "_start_keys",
        "duplicate_starts",
        "duplicate_stops",
        "overlapping_starts",
        "transactions",
        "unknown_stops",
    )

    def __init__(self, *, first_transaction_id: int = 1) -> None:
        self.transactions: dict[int, TransactionRecord] = {}
        self.duplicate_starts = 0
        self.duplicate_stops = 0
        self.unknown_stops = 0
        #: New starts on a connector whose previous transaction was never stopped.
        self.overlapping_starts = 0
        self._next_id = first_transaction_id
        self._start_keys: dict[_StartKey, int] = {}
        self._open: dict[tuple[str, int], int] = {}

    def start(self, charger_id: str, payload: dict[str, Any]) -> tuple[TransactionRecord, bool]:
        """Record a (schema-valid) StartTransaction.req; return it and whether a duplicate."""
        connector_id: int = payload["connectorId"]
        key = (
            charger_id,
            connector_id,
            payload["idTag"],
            payload["timestamp"],
            payload["meterStart"],
        )
        known = self._start_keys.get(key)
        if known is not None:
            tx = self.transactions[known]
            tx.start_duplicates += 1
            self.duplicate_starts += 1
            return tx, True
        if (charger_id, connector_id) in self._open:
            self.overlapping_starts += 1
        tx = TransactionRecord(
            transaction_id=self._next_id,
            charger_id=charger_id,
            connector_id=connector_id,
            id_tag=payload["idTag"],
            meter_start=payload["meterStart"],
            start_timestamp=payload["timestamp"],
            reservation_id=payload.get("reservationId"),
        )
        self._next_id += 1
        self.transactions[tx.transaction_id] = tx
        self._start_keys[key] = tx.transaction_id
        self._open[(charger_id, connector_id)] = tx.transaction_id
        return tx, False

    def stop(self, charger_id: str, payload: dict[str, Any]) -> StopOutcome:
        """Record a (schema-valid) StopTransaction.req."""
        tx = self.transactions.get(payload["transactionId"])
        if tx is None or tx.charger_id != charger_id:
            self.unknown_stops += 1
            return "unknown"
        if tx.stopped:
            tx.stop_duplicates += 1
            self.duplicate_stops += 1
            return "duplicate"
        tx.meter_stop = payload["meterStop"]
        tx.stop_timestamp = payload["timestamp"]
        tx.stop_id_tag = payload.get("idTag")
        tx.reason = payload.get("reason")
        tx.transaction_data = payload.get("transactionData")
        key = (charger_id, tx.connector_id)
        if self._open.get(key) == tx.transaction_id:
            del self._open[key]
        return "stopped"

    def meter_values(
        self, charger_id: str, transaction_id: int, energy_wh: float | None
    ) -> TransactionRecord | None:
        """Count a MeterValues.req that names ``transaction_id``; None if unknown."""
        tx = self.transactions.get(transaction_id)
        if tx is None or tx.charger_id != charger_id:
            return None
        tx.meter_values_count += 1
        if energy_wh is not None:
            tx.last_energy_wh = energy_wh
        return tx

    @property
    def energy_wh(self) -> float:
        """Energy over all transactions whose energy is known."""
        return sum((e for tx in self.transactions.values() if (e := tx.energy_wh) is not None), 0.0)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary (orjson or json can dump it as is)."""
        txs = self.transactions.values()
        return {
            "transactions": [tx.to_json() for tx in txs],
            "count": len(self.transactions),
            "open": sum(1 for tx in txs if not tx.stopped),
            "energyWh": self.energy_wh,
            "duplicateStarts": self.duplicate_starts,
            "duplicateStops": self.duplicate_stops,
            "unknownStops": self.unknown_stops,
            "overlappingStarts": self.overlapping_starts,
        }
