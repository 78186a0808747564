"""The reference CSMS's answers to charger-initiated CALLs, without I/O.

:class:`CentralSystem` takes a decoded :class:`~emulator.protocol.codec.Call` and returns
the CALLRESULT payload, or raises :class:`~emulator.protocol.errors.RemoteProtocolError`
with the CALLERROR to send; the clock is injected. The websocket layer is
:mod:`emulator.csms.server`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from emulator.csms.certificate_authority import CertificateAuthority, CsrRejected
from emulator.csms.records import ChargerRecord, ConnectorStatus, CsmsLedger
from emulator.protocol.codec import Call
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.schemas import SchemaRegistry

__all__ = [
    "AUTHORIZATION_STATUSES",
    "REGISTRATION_STATUSES",
    "CentralSystem",
    "DataTransferHandler",
    "IdTagEntry",
    "energy_register_wh",
    "format_datetime",
    "utc_now",
]

#: OCPP 1.6 AuthorizationStatus.
AUTHORIZATION_STATUSES: Final = frozenset(
    {"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"}
)
#: OCPP 1.6 RegistrationStatus.
REGISTRATION_STATUSES: Final = frozenset({"Accepted", "Pending", "Rejected"})
_ENERGY_REGISTER: Final = "Energy.Active.Import.Register"

#: ``(charger_id, DataTransfer.req payload) -> DataTransfer.conf payload``.
DataTransferHandler = Callable[[str, dict[str, Any]], dict[str, Any]]
#: An id_tags value: an AuthorizationStatus, or a whole IdTagInfo object (with expiryDate,
#: parentIdTag) answered as is.
IdTagEntry = str | Mapping[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_datetime(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a ``Z``, as OCPP 1.6 dateTime."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CentralSystem:
    """Answers every charger-initiated OCPP 1.6 CALL and records what it learns.

    ``id_tags`` maps idTag -> AuthorizationStatus (or a full IdTagInfo object); idTags are
    CiString20, compared case-insensitively. Tags not in the table get
    ``unknown_tag_status``. ``data_transfer_vendors`` maps vendorId -> handler; other
    vendors get ``UnknownVendorId`` (1.6 §4.3). ``boot_status``, ``heartbeat_interval``
    and ``unknown_tag_status`` are plain attributes a test may change between messages.

    Security whitepaper (edition 3): SignCertificate is checked and signed by
    ``certificate_authority`` (one is generated on the first CSR if none is given): a CSR
    it accepts is answered Accepted and the signed chain waits in :meth:`take_follow_ups`
    for the websocket layer to send as CertificateSigned.req (A02/A03 steps 4-8); one it
    cannot process is answered Rejected (A02.FR.12).  SecurityEventNotification,
    LogStatusNotification and SignedFirmwareStatusNotification are answered ``{}`` and
    recorded (event types and statuses only: techInfo is not kept).
    """

    def __init__(
        self,
        *,
        registry: SchemaRegistry | None = None,
        heartbeat_interval: int = 60,
        boot_status: str = "Accepted",
        id_tags: Mapping[str, IdTagEntry] | None = None,
        unknown_tag_status: str = "Accepted",
        data_transfer_vendors: Mapping[str, DataTransferHandler] | None = None,
        first_transaction_id: int = 1,
        certificate_authority: CertificateAuthority | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if boot_status not in REGISTRATION_STATUSES:
            raise ValueError(f"boot_status must be one of {sorted(REGISTRATION_STATUSES)}")
        if unknown_tag_status not in AUTHORIZATION_STATUSES:
            raise ValueError(f"unknown_tag_status must be one of {sorted(AUTHORIZATION_STATUSES)}")
        self.registry = registry if registry is not None else SchemaRegistry()
        self.heartbeat_interval = heartbeat_interval
        self.boot_status = boot_status
        self.unknown_tag_status = unknown_tag_status
        self.chargers: dict[str, ChargerRecord] = {}
        self.ledger = CsmsLedger(first_transaction_id=first_transaction_id)
        self._id_tags = {
            tag.upper(): _id_tag_info(tag, entry) for tag, entry in (id_tags or {}).items()
        }
        self._vendors = dict(data_transfer_vendors or {})
        self._clock = clock
        self._authority = certificate_authority
        # CSMS-initiated CALLs a charger's CALL calls for (CertificateSigned after an
        # Accepted SignCertificate), by charger id, until the server takes them.
        self._follow_ups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._charger_actions = self.registry.known_actions("charger")
        self._handlers: dict[str, Callable[[ChargerRecord, dict[str, Any]], dict[str, Any]]] = {
            "Authorize": self._authorize,
            "BootNotification": self._boot_notification,
            "DataTransfer": self._data_transfer,
            "DiagnosticsStatusNotification": self._diagnostics_status_notification,
            "FirmwareStatusNotification": self._firmware_status_notification,
            "Heartbeat": self._heartbeat,
            "MeterValues": self._meter_values,
            "StartTransaction": self._start_transaction,
            "StatusNotification": self._status_notification,
            "StopTransaction": self._stop_transaction,
            "LogStatusNotification": self._log_status_notification,
            "SecurityEventNotification": self._security_event_notification,
            "SignedFirmwareStatusNotification": self._signed_firmware_status_notification,
            "SignCertificate": self._sign_certificate,
        }

    @property
    def certificate_authority(self) -> CertificateAuthority:
        """The CA that signs CSRs; made on first use when none was given (an ECDSA P-256
        key takes about a millisecond, but a CSMS that never sees a CSR needs none)."""
        if self._authority is None:
            self._authority = CertificateAuthority.generate()
        return self._authority

    def take_follow_ups(self, charger_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The CSMS-initiated CALLs (action, payload) owed to ``charger_id`` now, oldest
        first; each is returned once."""
        return self._follow_ups.pop(charger_id, [])

    # -- connection bookkeeping ------------------------------------------------------

    def record(self, charger_id: str) -> ChargerRecord:
        """The record for ``charger_id``, created on first sight."""
        record = self.chargers.get(charger_id)
        if record is None:
            record = self.chargers[charger_id] = ChargerRecord(charger_id=charger_id)
        return record

    def connected(self, charger_id: str) -> ChargerRecord:
        record = self.record(charger_id)
        record.connected = True
        record.connects += 1
        return record

    def disconnected(self, charger_id: str, *, replaced: bool = False) -> None:
        """Count a closed connection; ``replaced`` if a newer one is already open."""
        record = self.record(charger_id)
        record.connected = replaced
        record.disconnects += 1

    # -- CALLs -----------------------------------------------------------------------

    def count_call(self, record: ChargerRecord, call: Call) -> None:
        """Count a CALL that is answered without being processed (e.g. misbehaviour)."""
        counts = record.action_counts
        counts[call.action] = counts.get(call.action, 0) + 1

    def handle_call(self, charger_id: str, call: Call) -> dict[str, Any]:
        """Process one charger-initiated CALL and return the CALLRESULT payload.

        Raises :class:`RemoteProtocolError`: ``NotImplemented`` for an action without a
        1.6 schema, ``NotSupported`` for a 1.6 action a charger does not send (e.g.
        Reset), else the schema's code (see :mod:`emulator.protocol.schemas`).
        """
        record = self.record(charger_id)
        action = call.action
        self.count_call(record, call)
        handler = self._handlers.get(action)
        try:
            if handler is None:
                if action in self.registry.known_actions():
                    raise RemoteProtocolError(
                        ErrorCode.NOT_SUPPORTED, f"{action} is sent by a CSMS, not to one"
                    )
                raise RemoteProtocolError(ErrorCode.NOT_IMPLEMENTED, f"unknown action {action!r}")
            self.registry.validate_request(action, call.payload)
        except RemoteProtocolError as exc:
            record.schema_violations += 1
            record.last_violation = f"{exc.code}: {exc.description}"
            raise
        if not record.booted and action != "BootNotification":
            record.calls_before_boot += 1
        return handler(record, call.payload)

    def _now(self) -> str:
        return format_datetime(self._clock())

    def _id_tag_info(self, id_tag: str) -> dict[str, Any]:
        info = self._id_tags.get(id_tag.upper())
        return {"status": self.unknown_tag_status} if info is None else dict(info)

    def _boot_notification(self, record: ChargerRecord, payload: dict[str, Any]) -> dict[str, Any]:
        status = self.boot_status
        record.boot_payload = payload
        record.boot_count += 1
        record.registration_status = status
        record.booted = status == "Accepted"
        return {"status": status, "currentTime": self._now(), "interval": self.heartbeat_interval}

    def _heartbeat(self, record: ChargerRecord, payload: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        record.last_heartbeat = now
        return {"currentTime": format_datetime(now)}

    def _authorize(self, record: ChargerRecord, payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTagInfo": self._id_tag_info(payload["idTag"])}

    def _start_transaction(self, record: ChargerRecord, payload: dict[str, Any]) -> dict[str, Any]:
        tx, _duplicate = self.ledger.start(record.charger_id, payload)
        return {"transactionId": tx.transaction_id, "idTagInfo": self._id_tag_info(tx.id_tag)}

    def _stop_transaction(self, record: ChargerRecord, payload: dict[str, Any]) -> dict[str, Any]:
        self.ledger.stop(record.charger_id, payload)
        id_tag = payload.get("idTag")
        return {} if id_tag is None else {"idTagInfo": self._id_tag_info(id_tag)}

    def _meter_values(self, record: ChargerRecord, payload: dict[str, Any]) -> dict[str, Any]:
        record.meter_values_count += 1
        energy = energy_register_wh(payload["meterValue"])
        if energy is not None:
            record.energy_register_wh[payload["connectorId"]] = energy
        transaction_id = payload.get("transactionId")
        if transaction_id is not None:
            self.ledger.meter_values(record.charger_id, transaction_id, energy)
        return {}

    def _status_notification(
        self, record: ChargerRecord, payload: dict[str, Any]
    ) -> dict[str, Any]:
        record.statuses[payload["connectorId"]] = ConnectorStatus(
            status=payload["status"],
            error_code=payload["errorCode"],
            info=payload.get("info"),
            vendor_error_code=payload.get("vendorErrorCode"),
            timestamp=payload.get("timestamp"),
        )
        return {}

    def _data_transfer(self, record: ChargerRecord, payload: dict[str, Any]) -> dict[str, Any]:
        handler = self._vendors.get(payload["vendorId"])
        if handler is None:
            return {"status": "UnknownVendorId"}
        return handler(record.charger_id, payload)

    def _diagnostics_status_notification(
        self, record: ChargerRecord, payload: dict[str, Any]
    ) -> dict[str, Any]:
        record.diagnostics_status = payload["status"]
        record.diagnostics_history.append(payload["status"])
        return {}

    def _firmware_status_notification(
        self, record: ChargerRecord, payload: dict[str, Any]
    ) -> dict[str, Any]:
        record.firmware_status = payload["status"]
        record.firmware_history.append(payload["status"])
        return {}

    # -- security whitepaper ---------------------------------------------------------

    def _sign_certificate(self, record: ChargerRecord, payload: dict[str, Any]) -> dict[str, Any]:
        """A02/A03: check and sign the CSR now (the CA's time is part of this CALL's
        service), answer Accepted and owe the charger a CertificateSigned.req."""
        record.csrs_received += 1
        try:
            chain = self.certificate_authority.sign_csr(
                payload["csr"], expected_cn=record.charger_id
            )
        except CsrRejected as exc:
            record.csrs_rejected += 1
            record.last_csr_rejection = str(exc)
            return {"status": "Rejected"}
        record.certificates_issued += 1
        self._follow_ups.setdefault(record.charger_id, []).append(
            ("CertificateSigned", {"certificateChain": chain})
        )
        return {"status": "Accepted"}

    def _security_event_notification(
        self, record: ChargerRecord, payload: dict[str, Any]
    ) -> dict[str, Any]:
        events = record.security_events
        events[payload["type"]] = events.get(payload["type"], 0) + 1
        return {}

    def _log_status_notification(
        self, record: ChargerRecord, payload: dict[str, Any]
    ) -> dict[str, Any]:
        record.log_status = payload["status"]
        record.log_history.append(payload["status"])
        return {}

    def _signed_firmware_status_notification(
        self, record: ChargerRecord, payload: dict[str, Any]
    ) -> dict[str, Any]:
        record.signed_firmware_history.append(payload["status"])
        return self._firmware_status_notification(record, payload)


def _id_tag_info(tag: str, entry: IdTagEntry) -> dict[str, Any]:
    info = {"status": entry} if isinstance(entry, str) else dict(entry)
    if info.get("status") not in AUTHORIZATION_STATUSES:
        raise ValueError(
            f"id_tags[{tag!r}]: status must be one of {sorted(AUTHORIZATION_STATUSES)}"
        )
    return info


def energy_register_wh(meter_values: list[dict[str, Any]]) -> float | None:
    """The last total Energy.Active.Import.Register in ``meterValue``, in Wh, if any.

    OCPP 1.6 SampledValue: measurand defaults to Energy.Active.Import.Register and
    unit to Wh. Per-phase readings and SignedData are skipped.
    """
    last: float | None = None
    for meter_value in meter_values:
        for sampled in meter_value["sampledValue"]:
            if sampled.get("measurand", _ENERGY_REGISTER) != _ENERGY_REGISTER:
                continue
            if "phase" in sampled or sampled.get("format") == "SignedData":
                continue
            try:
                value = float(sampled["value"])
            except ValueError:
                continue
            last = value * 1000.0 if sampled.get("unit") == "kWh" else value
    return last
