"""A CSMS built on the mobilityhouse ``ocpp`` library, with its schema validation on.

    python tests/compat/ocpp_lib_csms.py [--port 0] [--host 127.0.0.1]

One ``ocpp.v16.ChargePoint`` per websocket (``websockets.serve``, subprotocol ``ocpp1.6``,
charger id = the last path segment).  It answers every charger-initiated call of OCPP 1.6
(BootNotification Accepted with a ``currentTime`` that carries an offset, StartTransaction
with ids from a counter, every idTag Accepted) and, once a charger is booted, sends it the
CSMS calls of ``SEQUENCE`` followed by a RemoteStartTransaction / RemoteStopTransaction.

Validation: the library validates every CALL it receives and every CALLRESULT it sends
(``@on(..., skip_schema_validation=False)``, the default) and every CALL it sends and
CALLRESULT it receives (``call(..., skip_schema_validation=False)``, the default), with
the OCPP 1.6 JSON schemas it ships (Draft 4, ``additionalProperties: false``; it does not
check ``format``, so timestamps are checked as strings only).  ``main`` refuses to start if
a handler skips validation.

With ``--security`` it also works the OCPP 1.6 security whitepaper's extension (the
``ocpp`` package ships its schemas and validates them like the rest): it answers
SignCertificate by signing the CSR with its own CA (made at start, ECDSA P-256, with
``cryptography``; not ocpp-fleet's) and sending CertificateSigned, answers
SecurityEventNotification, SignedFirmwareStatusNotification and LogStatusNotification, and
after ``SEQUENCE`` sends ``security_sequence``: InstallCertificate of its root,
GetInstalledCertificateIds, ExtendedTriggerMessage of every requestedMessage (with
SignChargePointCertificate it waits for the CSR and its CertificateSigned), GetLog to its
own FTP server (pyftpdlib, 127.0.0.1), SignedUpdateFirmware of a file on that server
signed by its CA, retrieved an hour later (no reboot during the run), and DeleteCertificate
of the root it installed.  Extra events: ``csr`` (SignCertificate: its CN and whether it
was signed), ``security_event`` (the type), ``log_status``, ``signed_firmware_status``.

Everything it sees is printed on stdout, one JSON object a line (``"event"`` says what):
``listening`` (the port), ``connected``, ``disconnected``, ``call`` (a charger's CALL),
``boot``, ``start``, ``stop``, ``csms_call`` (one of our calls and its outcome: ``ok``,
``callerror``, ``invalid`` (the answer failed validation), ``timeout``, ``disconnected``,
``error``), ``sequence_done``, and the failures the test counts: ``validation_failure``
(the library refused a frame), ``callerror_sent`` (any CALLERROR we answered with),
``bad_message`` (a frame that is not OCPP-J).  SIGTERM stops it: ``stopped``, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import decimal
import itertools
import json
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.messages import MessageType, unpack
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.datatypes import (
    CertificateHashData,
    ChargingProfile,
    ChargingSchedule,
    ChargingSchedulePeriod,
    Firmware,
    IdTagInfo,
    LogParameters,
)
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    AvailabilityType,
    CertificateUse,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingRateUnitType,
    DataTransferStatus,
    GenericStatus,
    Log,
    MessageTrigger,
    RegistrationStatus,
)
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

HEARTBEAT_INTERVAL = 10
CALL_TIMEOUT = 10.0
#: How long the CSMS keeps trying to start a remote transaction on a charger whose
#: connector is busy with a driver's session; the fleet's run lasts longer than this.
REMOTE_START_WITHIN = 9.0
PROFILE_ID = 77
#: A limit that is a multiple of 0.1 as a decimal but not in binary floating point
#: (10.1 / 0.1 == 100.99999999999999): the charger's GetCompositeSchedule answer carries it
#: back, and a validator that checks ``multipleOf`` by float division refuses it.
PROFILE_LIMIT = 10.1

#: ExtendedTriggerMessage's requestedMessage values (security whitepaper §6.16).
EXTENDED_TRIGGERS = (
    MessageTrigger.boot_notification,
    MessageTrigger.log_status_notification,
    MessageTrigger.firmware_status_notification,
    MessageTrigger.heartbeat,
    MessageTrigger.meter_values,
    MessageTrigger.sign_charge_point_certificate,
    MessageTrigger.status_notification,
)
FIRMWARE = b"compat firmware image\n" * 512

_transaction_ids = itertools.count(1)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=_json_default), flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"not JSON: {value!r}")


def _code(exc: Exception) -> str:
    return str(getattr(exc, "code", type(exc).__name__))


def now_with_offset() -> str:
    """``2026-12-02T02:16:23.123456+00:00``: an explicit offset, not ``Z``."""
    return datetime.now(UTC).isoformat()


class CompatCa:
    """A CPO root made at start, signing CSRs and firmware (independent of ocpp-fleet's)."""

    def __init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "compat CSMS root")])
        now = datetime.now(UTC)
        self.root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.signer_key = ec.generate_private_key(ec.SECP256R1())
        self.signer = self.issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "compat firmware signing")]),
            self.signer_key.public_key(),
        )

    def issue(self, subject: Any, public_key: Any) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.root.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    def sign_csr(self, csr_pem: str) -> tuple[str | None, str]:
        """(the PEM chain, the CN) or (None, why) for a CSR that does not verify."""
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError:
            return None, "unparsable"
        if not csr.is_signature_valid:
            return None, "bad signature"
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(names[0].value) if names else ""
        return pem(self.issue(csr.subject, csr.public_key())) + pem(self.root), common_name

    def sign_firmware(self, data: bytes) -> str:
        import base64

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return base64.b64encode(self.signer_key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def pem(certificate: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return str(certificate.public_bytes(serialization.Encoding.PEM).decode())


class FtpSite:
    """A pyftpdlib server on 127.0.0.1 in a thread: log uploads land, firmware is fetched."""

    def __init__(self, root: str) -> None:
        import threading

        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import FTPServer

        Path(root, "logs").mkdir(exist_ok=True)  # where GetLog uploads go
        authorizer = DummyAuthorizer()
        authorizer.add_user("compat", "compat-pw", root, perm="elradfmwMT")
        handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "banner": "compat"})
        self._server = FTPServer(("127.0.0.1", 0), handler)
        self.port = self._server.socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._server.ioloop.loop(timeout=0.05, blocking=False)
        self._server.close_all()

    def url(self, path: str) -> str:
        return f"ftp://compat:compat-pw@127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Security:
    """What ``--security`` adds: the CA and the FTP site every connection shares."""

    def __init__(self, root: str) -> None:
        with open(f"{root}/firmware.bin", "wb") as out:
            out.write(FIRMWARE)
        self.ca = CompatCa()
        self.ftp = FtpSite(root)


class CompatChargePoint(ChargePoint):
    """The CSMS's side of one charger's connection."""

    security: Security | None = None  # set by main with --security

    def __init__(self, charger_id: str, connection: ServerConnection) -> None:
        super().__init__(charger_id, connection, response_timeout=CALL_TIMEOUT)
        self._chains: asyncio.Queue[str] = asyncio.Queue()
        self.certificate_signed: asyncio.Task[Any] | None = None
        self._answers: dict[str, Any] = {}  # raw CALLRESULT payloads by unique id
        self._sent: set[str] = set()  # unique ids of the CALLs we sent
        self._remote_starts: dict[str, asyncio.Future[int]] = {}
        self.sequence: asyncio.Task[None] | None = None

    # -------------------------------------------------------------- frames and failures

    async def route_message(self, raw_msg: str | bytes) -> None:
        try:
            msg = unpack(raw_msg)
        except OCPPError as exc:
            emit("bad_message", charger=self.id, error=type(exc).__name__, detail=str(exc)[:500])
        else:
            if msg.message_type_id == MessageType.Call:
                emit("call", charger=self.id, action=msg.action)
            elif msg.message_type_id == MessageType.CallResult:
                self._answers[msg.unique_id] = msg.payload
        await super().route_message(raw_msg)

    async def _handle_call(self, msg: Any) -> Any:
        # The library raises OCPPError for a CALL that fails its schema (or a response of
        # ours that does), before or after our handler; route_message answers CALLERROR.
        try:
            return await super()._handle_call(msg)
        except OCPPError as exc:
            emit(
                "validation_failure",
                charger=self.id,
                action=msg.action,
                message_type="CALL",
                direction="inbound",
                error=_code(exc),
                detail=str(exc)[:500],
            )
            raise

    async def _send(self, message: str) -> None:
        frame = json.loads(message)
        if frame[0] == MessageType.Call:
            self._sent.add(frame[1])
        elif frame[0] == MessageType.CallError:
            emit("callerror_sent", charger=self.id, code=frame[2], description=frame[3][:500])
        await super()._send(message)

    # ------------------------------------------------------------ charger-initiated calls

    @on(Action.boot_notification)
    async def on_boot(self, charge_point_vendor: str, charge_point_model: str, **kw: Any) -> Any:
        emit("boot", charger=self.id, vendor=charge_point_vendor, model=charge_point_model)
        if self.sequence is None:
            self.sequence = asyncio.create_task(self.run_sequence())
        return call_result.BootNotification(
            current_time=now_with_offset(),
            interval=HEARTBEAT_INTERVAL,
            status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kw: Any) -> Any:
        return call_result.Heartbeat(current_time=now_with_offset())

    @on(Action.status_notification)
    async def on_status(self, **kw: Any) -> Any:
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **kw: Any) -> Any:
        return call_result.Authorize(id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted))

    @on(Action.start_transaction)
    async def on_start(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kw: Any
    ) -> Any:
        transaction_id = next(_transaction_ids)
        emit(
            "start",
            charger=self.id,
            transactionId=transaction_id,
            connectorId=connector_id,
            idTag=id_tag,
            meterStart=meter_start,
            timestamp=timestamp,
        )
        waiting = self._remote_starts.pop(id_tag, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(transaction_id)
        return call_result.StartTransaction(
            transaction_id=transaction_id,
            id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted),
        )

    @on(Action.meter_values)
    async def on_meter_values(self, **kw: Any) -> Any:
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop(self, transaction_id: int, meter_stop: int, timestamp: str, **kw: Any) -> Any:
        emit(
            "stop",
            charger=self.id,
            transactionId=transaction_id,
            meterStop=meter_stop,
            timestamp=timestamp,
            reason=kw.get("reason", "Local"),
        )
        return call_result.StopTransaction(
            id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted)
        )

    @on(Action.data_transfer)
    async def on_data_transfer(self, **kw: Any) -> Any:
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status(self, **kw: Any) -> Any:
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, **kw: Any) -> Any:
        return call_result.FirmwareStatusNotification()

    # ------------------------------------------------------- security whitepaper (edition 3)

    @on(Action.sign_certificate)
    async def on_sign_certificate(self, csr: str, **kw: Any) -> Any:
        if self.security is None:
            emit("csr", charger=self.id, signed=False, cn=None)
            return call_result.SignCertificate(status=GenericStatus.rejected)
        chain, common_name = self.security.ca.sign_csr(csr)
        emit("csr", charger=self.id, signed=chain is not None, cn=common_name)
        if chain is None:
            return call_result.SignCertificate(status=GenericStatus.rejected)
        self._chains.put_nowait(chain)
        return call_result.SignCertificate(status=GenericStatus.accepted)

    @on(Action.security_event_notification)
    async def on_security_event(self, type: str, timestamp: str, **kw: Any) -> Any:
        emit("security_event", charger=self.id, type=type)
        return call_result.SecurityEventNotification()

    @on(Action.log_status_notification)
    async def on_log_status(self, status: str, **kw: Any) -> Any:
        emit("log_status", charger=self.id, status=status, requestId=kw.get("request_id"))
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    async def on_signed_firmware_status(self, status: str, **kw: Any) -> Any:
        emit("signed_firmware_status", charger=self.id, status=status)
        return call_result.SignedFirmwareStatusNotification()

    async def run_security_sequence(self) -> None:
        """The extension's CSMS calls, each once (ExtendedTriggerMessage once per value)."""
        assert self.security is not None
        ca, ftp = self.security.ca, self.security.ftp
        root = pem(ca.root)
        root_type = CertificateUse.central_system_root_certificate
        await self.ask(call.InstallCertificate(certificate_type=root_type, certificate=root))
        installed = await self.ask(call.GetInstalledCertificateIds(certificate_type=root_type))
        for requested in EXTENDED_TRIGGERS:
            answer = await self.ask(call.ExtendedTriggerMessage(requested_message=requested))
            if requested == MessageTrigger.sign_charge_point_certificate and answer:
                try:  # A02: the CSR follows the answer; its chain goes back signed
                    chain = await asyncio.wait_for(self._chains.get(), CALL_TIMEOUT)
                except TimeoutError:
                    emit("csr_missing", charger=self.id)
                else:
                    await self.ask(call.CertificateSigned(certificate_chain=chain))
        now = datetime.now(UTC)
        await self.ask(
            call.GetLog(
                log=LogParameters(remote_location=ftp.url("logs/")),
                log_type=Log.security_log,
                request_id=41,
            )
        )
        await self.ask(
            call.SignedUpdateFirmware(
                request_id=42,
                firmware=Firmware(
                    location=ftp.url("firmware.bin"),
                    retrieve_date_time=(now + timedelta(hours=1)).isoformat(),
                    signing_certificate=pem(ca.signer),
                    signature=ca.sign_firmware(FIRMWARE),
                ),
            )
        )
        ours = _hash_data_of(root, (installed or {}).get("certificateHashData") or [])
        if ours is not None:
            await self.ask(call.DeleteCertificate(certificate_hash_data=ours))
        else:
            emit("installed_root_missing", charger=self.id, installed=installed)

    # --------------------------------------------------------------- CSMS-initiated calls

    async def ask(self, payload: Any) -> dict[str, Any] | None:
        """Send one CALL; emit its outcome; the charger's answer if it validated."""
        action = type(payload).__name__
        unique_id = str(uuid.uuid4())
        try:
            await self.call(payload, suppress=False, unique_id=unique_id)
        except OCPPError as exc:
            raw = self._answers.pop(unique_id, None)
            if unique_id not in self._sent:  # our own CALL failed validation: not sent
                emit(
                    "validation_failure",
                    charger=self.id,
                    action=action,
                    message_type="CALL",
                    direction="outbound",
                    error=_code(exc),
                    detail=str(exc)[:500],
                )
                emit("csms_call", charger=self.id, action=action, outcome="error", error=_code(exc))
            elif raw is None:  # a CALLERROR from the charger
                emit(
                    "csms_call",
                    charger=self.id,
                    action=action,
                    outcome="callerror",
                    error=_code(exc),
                    detail=str(exc)[:500],
                )
            else:  # its CALLRESULT failed the library's validation
                emit(
                    "validation_failure",
                    charger=self.id,
                    action=action,
                    message_type="CALLRESULT",
                    direction="inbound",
                    error=_code(exc),
                    detail=str(exc)[:500],
                    payload=raw,
                )
                emit(
                    "csms_call", charger=self.id, action=action, outcome="invalid", error=_code(exc)
                )
            return None
        except TimeoutError:
            emit("csms_call", charger=self.id, action=action, outcome="timeout")
            return None
        except ConnectionClosed:
            emit("csms_call", charger=self.id, action=action, outcome="disconnected")
            return None
        except Exception as exc:  # e.g. an answer the library cannot map to its dataclass
            emit(
                "csms_call",
                charger=self.id,
                action=action,
                outcome="error",
                error=type(exc).__name__,
                detail=str(exc)[:500],
            )
            return None
        answer: dict[str, Any] = self._answers.pop(unique_id)
        emit("csms_call", charger=self.id, action=action, outcome="ok", response=answer)
        return answer

    async def run_sequence(self) -> None:
        # Let the charger finish its boot (its first StatusNotifications) first.
        await asyncio.sleep(0.5)
        with contextlib.suppress(ConnectionClosed):
            for payload in sequence():
                await self.ask(payload)
            if self.security is not None:
                await self.run_security_sequence()
            transaction_id = await self.remote_start()
            if transaction_id is not None:
                await asyncio.sleep(1.0)
                await self.ask(call.RemoteStopTransaction(transaction_id=transaction_id))
            emit("sequence_done", charger=self.id, remoteTransactionId=transaction_id)

    async def remote_start(self) -> int | None:
        """RemoteStartTransaction until the charger accepts one (its connector may be busy
        with a driver); the id of the transaction it started, None if none did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REMOTE_START_WITHIN
        attempt = 0
        while loop.time() < deadline:
            attempt += 1
            id_tag = f"REMOTE{attempt}"
            started: asyncio.Future[int] = loop.create_future()
            self._remote_starts[id_tag] = started
            answer = await self.ask(call.RemoteStartTransaction(id_tag=id_tag, connector_id=1))
            if answer is not None and answer.get("status") == "Accepted":
                try:
                    return await asyncio.wait_for(started, max(0.1, deadline - loop.time()))
                except TimeoutError:
                    return None
                finally:
                    self._remote_starts.pop(id_tag, None)
            self._remote_starts.pop(id_tag, None)
            await asyncio.sleep(1.0)
        return None


def sequence() -> list[Any]:
    """The CSMS calls every booted charger gets, in this order (all leave the run as it
    was: configuration set to what it is, a profile set and cleared)."""
    return [
        call.GetConfiguration(),
        call.GetConfiguration(key=["HeartbeatInterval", "MeterValueSampleInterval", "NoSuchKey"]),
        call.ChangeConfiguration(key="MeterValueSampleInterval", value="5"),
        call.ChangeAvailability(connector_id=0, type=AvailabilityType.operative),
        call.TriggerMessage(requested_message=MessageTrigger.status_notification, connector_id=1),
        call.TriggerMessage(requested_message=MessageTrigger.heartbeat),
        call.ClearCache(),
        call.GetLocalListVersion(),
        call.DataTransfer(vendor_id="org.example.compat", message_id="ping", data="hello"),
        call.SetChargingProfile(
            connector_id=0,
            cs_charging_profiles=ChargingProfile(
                charging_profile_id=PROFILE_ID,
                stack_level=0,
                charging_profile_purpose=ChargingProfilePurposeType.charge_point_max_profile,
                charging_profile_kind=ChargingProfileKindType.absolute,
                charging_schedule=ChargingSchedule(
                    charging_rate_unit=ChargingRateUnitType.amps,
                    charging_schedule_period=[
                        ChargingSchedulePeriod(start_period=0, limit=PROFILE_LIMIT)
                    ],
                    start_schedule=now_with_offset(),
                ),
            ),
        ),
        call.GetCompositeSchedule(
            connector_id=0, duration=300, charging_rate_unit=ChargingRateUnitType.amps
        ),
        call.ClearChargingProfile(id=PROFILE_ID),
    ]


def _hash_data_of(root_pem: str, listed: list[dict[str, Any]]) -> CertificateHashData | None:
    """The charger's hash data of our root, found by its serial number (M04.FR.07: delete
    with the hash algorithm it was installed with, so take the charger's entry as is)."""
    from cryptography import x509

    serial = f"{x509.load_pem_x509_certificate(root_pem.encode()).serial_number:X}"
    for entry in listed:
        if str(entry.get("serialNumber", "")).upper().lstrip("0") == serial.lstrip("0"):
            return CertificateHashData(
                hash_algorithm=entry["hashAlgorithm"],
                issuer_name_hash=entry["issuerNameHash"],
                issuer_key_hash=entry["issuerKeyHash"],
                serial_number=entry["serialNumber"],
            )
    return None


def check_validation_is_on() -> None:
    """Refuse to run if any handler was registered with ``skip_schema_validation``."""
    for name in dir(CompatChargePoint):
        handler = getattr(CompatChargePoint, name)
        if hasattr(handler, "_on_action") and handler._skip_schema_validation:
            raise SystemExit(f"{name} skips schema validation")


async def handle(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else "/"
    charger_id = path.rstrip("/").rsplit("/", 1)[-1] or "(none)"
    emit("connected", charger=charger_id, protocol=ws.subprotocol)
    if ws.subprotocol != "ocpp1.6":
        await ws.close(1002, "ocpp1.6 required")
        return
    cp = CompatChargePoint(charger_id, ws)
    try:
        await cp.start()
    except ConnectionClosed as exc:
        emit("disconnected", charger=charger_id, code=exc.rcvd.code if exc.rcvd else None)
    finally:
        if cp.sequence is not None and not cp.sequence.done():
            cp.sequence.cancel()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--security", action="store_true", help="also drive the security whitepaper's calls"
    )
    args = parser.parse_args()
    check_validation_is_on()
    site = None
    if args.security:
        import tempfile

        site = tempfile.TemporaryDirectory(prefix="compat-ftp-")
        CompatChargePoint.security = Security(site.name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        handle, args.host, args.port, subprotocols=["ocpp1.6"], compression=None
    ) as server:
        emit("listening", port=server.sockets[0].getsockname()[1])
        await stop.wait()
    if CompatChargePoint.security is not None:
        CompatChargePoint.security.ftp.close()
    if site is not None:
        site.cleanup()
    emit("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
