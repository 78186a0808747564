"""The security extension's firmware and log CALLs of the charger, sans I/O.

OCPP 1.6 Security Whitepaper (edition 3), on a charger model with ``security_extension``:

* SignedUpdateFirmware (L01): the signing certificate is checked before the answer
  (L01.FR.23: :func:`check_signing_certificate`); a bad one is answered
  ``InvalidCertificate`` with an InvalidFirmwareSigningCertificate security event
  (L01.FR.02, .24).  Otherwise ``Accepted`` (``AcceptedCanceled`` when it replaces an
  update under way, L01.FR.26; ``Rejected`` while one installs, L01.FR.27), then
  DownloadScheduled (a retrieveDateTime ahead), Downloading, Downloaded or, after the
  retries, DownloadFailed; the signature over the downloaded file (SHA256, the signing
  certificate's key: :func:`signature_verifies`) gives SignatureVerified or
  InvalidSignature with an InvalidFirmwareSignature security event (L01.FR.03, .04);
  then InstallScheduled (an installDateTime ahead, L01.FR.16), the wait for running
  transactions (L01.FR.06), Installing, InstallRebooting before the restart (L01.FR.15),
  and Installed after it with a FirmwareUpdated security event, or InstallationFailed.
  Every SignedFirmwareStatusNotification carries the request's requestId (L01.FR.10).
* GetLog (N01): the DiagnosticsLog (the charger's event log, whole UTC days as
  GetDiagnostics selects them) or the SecurityLog (:class:`SecurityLog`: the security
  events, N01.FR.05) is uploaded by FTP with the GetDiagnostics job machinery;
  LogStatusNotification Uploading, then Uploaded, or UploadFailure after the retries,
  or at once PermissionDenied / NotSupportedOperation / BadMessage when the server's
  answer says retrying cannot help (N01.FR.10); each with the requestId (N01.FR.07).
  A new GetLog while one uploads cancels it: ``AcceptedCanceled`` (N01.FR.11).

The emulated charger has no state that leads to DownloadPaused or
InstallVerificationFailed (:class:`SignedFirmwareStatus` names them for completeness),
and, like UpdateFirmware here, it does not set idle connectors Unavailable while it
waits for transactions to end (L01.FR.07).

:class:`SecureFirmwareManagement` adds these to
:class:`~emulator.core.firmware.FirmwareManagement` (a wallbox has one of them as
``wb.firmware``): the same clock, effects, restart and transfer outcomes.  Like it, this
module never touches a socket or a file: the download's SHA256 comes back from the
transport (``FtpDownload(digest=True)``, ``transfer_done(sha256=)``).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any, Final, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from emulator.core.firmware import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_INTERVAL,
    INSTALLING_ACK_WAIT,
    MAX_LINE_BYTES,
    CancelTransfer,
    DiagnosticsJob,
    FirmwareManagement,
    FtpDownload,
    TransferFailure,
    UpdatePhase,
    firmware_version_from,
)
from emulator.protocol.timefmt import parse_timestamp

SECURITY_LOG_LINES: Final = 200
"""The security log keeps the newest 200 events ("a rolling format", whitepaper A04.FR.04)."""
LOG_FILE_NAME_MAX: Final = 255  # GetLog.conf filename is string[0..255]
TECH_INFO_MAX: Final = 255  # SecurityEventNotification.req techInfo is string[0..255]


class SecurityHost(Protocol):
    """What the firmware jobs ask of their wallbox (emulator.core.wallbox.Wallbox).

    One reference to it, not two bound methods: ~130 bytes less for every wallbox.
    """

    def security_event(self, kind: str, now: float, tech_info: str | None = None) -> None:
        """Queue a SecurityEventNotification (whitepaper A04)."""

    def manufacturer_root_certificates(self) -> Sequence[x509.Certificate]:
        """The installed ManufacturerRootCertificates."""


# --------------------------------------------------------------------------- statuses


class SignedFirmwareStatus(StrEnum):
    """FirmwareStatusEnumType of SignedFirmwareStatusNotification (whitepaper §6.8)."""

    IDLE = "Idle"
    DOWNLOAD_SCHEDULED = "DownloadScheduled"
    DOWNLOADING = "Downloading"
    DOWNLOAD_PAUSED = "DownloadPaused"
    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    SIGNATURE_VERIFIED = "SignatureVerified"
    INVALID_SIGNATURE = "InvalidSignature"
    INSTALL_SCHEDULED = "InstallScheduled"
    INSTALLING = "Installing"
    INSTALL_REBOOTING = "InstallRebooting"
    INSTALLED = "Installed"
    INSTALLATION_FAILED = "InstallationFailed"
    INSTALL_VERIFICATION_FAILED = "InstallVerificationFailed"


class UploadLogStatus(StrEnum):
    """UploadLogStatusEnumType of LogStatusNotification (whitepaper §6.19)."""

    IDLE = "Idle"
    UPLOADING = "Uploading"
    UPLOADED = "Uploaded"
    UPLOAD_FAILURE = "UploadFailure"
    PERMISSION_DENIED = "PermissionDenied"
    NOT_SUPPORTED_OPERATION = "NotSupportedOperation"
    BAD_MESSAGE = "BadMessage"


FINAL_UPLOAD_FAILURES: Final[dict[TransferFailure, UploadLogStatus]] = {
    TransferFailure.PERMISSION_DENIED: UploadLogStatus.PERMISSION_DENIED,
    TransferFailure.NOT_SUPPORTED: UploadLogStatus.NOT_SUPPORTED_OPERATION,
    TransferFailure.BAD_MESSAGE: UploadLogStatus.BAD_MESSAGE,
}
"""Failures another attempt cannot mend: reported at once, by name (N01.FR.10)."""


# --------------------------------------------------------------------------- crypto


class CertificateProblem(Exception):
    """The firmware signing certificate is not acceptable; ``str()`` says why (for the
    security event's techInfo: certificates are public, nothing secret is in it)."""


def check_signing_certificate(
    pem: str, now: float, roots: Sequence[x509.Certificate]
) -> x509.Certificate:
    """The Firmware Signing certificate of a SignedUpdateFirmware.req, checked (L01.FR.23).

    It must be a PEM X.509 certificate, valid at ``now``, with an RSA or EC key that may
    sign (its KeyUsage, if any, allows digitalSignature), and issued directly by one of
    the installed ManufacturerRootCertificates ``roots`` (no intermediates: whitepaper L01
    remarks).  With no root installed there is nothing to chain to, and the certificate
    is taken on its own checks alone: a charger fresh from the factory is not bricked
    for firmware, and a test or scenario needs no InstallCertificate first.
    """
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("utf-8", "replace"))
    except ValueError:
        raise CertificateProblem("not a PEM X.509 certificate") from None
    if not certificate.not_valid_before_utc.timestamp() <= now:
        raise CertificateProblem("not valid yet")
    if now > certificate.not_valid_after_utc.timestamp():
        raise CertificateProblem("expired")
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateProblem("unreadable public key") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CertificateProblem("neither an RSA nor an EC key")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    except ValueError:  # a malformed or duplicated extension
        raise CertificateProblem("unreadable extensions") from None
    if usage is not None and not usage.digital_signature:
        raise CertificateProblem("its key usage does not allow signing")
    if roots and not any(_issued_by(certificate, root) for root in roots):
        raise CertificateProblem("not issued by an installed ManufacturerRootCertificate")
    return certificate


def _issued_by(certificate: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def signature_verifies(certificate: x509.Certificate, signature: bytes, sha256: bytes) -> bool:
    """Whether ``signature`` signs the file whose SHA256 is ``sha256`` (L01.FR.04).

    SHA256 with the signing certificate's key: ECDSA for an EC key; for an RSA key
    RSA-PSS (what L01.FR.04 names) or PKCS#1 v1.5 (what ``openssl dgst -sha256 -sign``
    makes, as manufacturers' tools do).  The whitepaper's "ECSchnorr" has no standard
    encoding; ECDSA is what 1.6 and 2.0.1 stacks use.
    """
    if len(sha256) != hashes.SHA256.digest_size:
        return False
    key = certificate.public_key()
    algorithm = Prehashed(hashes.SHA256())
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, sha256, ec.ECDSA(algorithm))
            return True
        if isinstance(key, rsa.RSAPublicKey):
            for scheme in (
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                padding.PKCS1v15(),
            ):
                try:
                    key.verify(signature, sha256, scheme, algorithm)
                    return True
                except InvalidSignature:
                    continue
    except (InvalidSignature, ValueError):
        return False
    return False


def _decode_signature(text: str) -> bytes | None:
    """The base64 signature of FirmwareType; None when it is not base64 (or empty)."""
    try:
        signature = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return signature or None


# --------------------------------------------------------------------------- security log


class SecurityLog:
    """The charger's security log (whitepaper A04.FR.04, N01.FR.05): one line per
    security event, the newest :data:`SECURITY_LOG_LINES` of them.

    Only the event's type and techInfo go in, which never hold a secret (whitepaper
    A01.FR.12: never the AuthorizationKey; never a private key).
    """

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: list[tuple[float, bytes]] = []

    def append(self, now: float, kind: str, tech_info: str | None) -> None:
        text = f"{_log_time(now)} {kind}" + ("" if not tech_info else f" {tech_info}")
        line = text.encode("ascii", "replace")[: MAX_LINE_BYTES - 1] + b"\n"
        if len(self._lines) >= SECURITY_LOG_LINES:
            del self._lines[0]
        self._lines.append((now, line))

    def render(self, oldest: float | None = None, latest: float | None = None) -> bytes:
        """The events between ``oldest`` and ``latest`` (inclusive), oldest first."""
        return b"".join(
            line
            for at, line in self._lines
            if (oldest is None or at >= oldest) and (latest is None or at <= latest)
        )

    def __len__(self) -> int:
        return len(self._lines)


def _log_time(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


# --------------------------------------------------------------------------- jobs


@dataclass(slots=True, kw_only=True)
class LogJob(DiagnosticsJob):
    """A GetLog upload: a diagnostics upload job with the request's id."""

    request_id: int
    log_type: str


@dataclass(slots=True, kw_only=True)
class SignedFirmwareJob:
    """One SignedUpdateFirmware, from its acceptance to Installed (or a failure)."""

    job_id: int
    request_id: int
    location: str = field(repr=False)  # may carry the FTP password
    certificate: x509.Certificate = field(repr=False)
    signature: bytes | None = field(repr=False)
    attempts_left: int
    retry_interval: int
    install_at: float | None
    fail_download: bool
    fail_install: bool
    phase: UpdatePhase
    next_at: float = 0.0
    attempt: int = 0
    # Installing, then InstallRebooting: each waits for its answer (or for
    # INSTALLING_ACK_WAIT), so that the restart does not drop it from the queue.
    rebooting: bool = False
    acked: bool = False


# --------------------------------------------------------------------------- the manager


class SecureFirmwareManagement(FirmwareManagement):
    """Firmware Management with the security extension's SignedUpdateFirmware and GetLog.

    ``host.security_event(kind, now, tech_info)`` queues a SecurityEventNotification;
    ``host.manufacturer_root_certificates()`` returns the installed
    ManufacturerRootCertificates (the certificate store's; empty: see
    :func:`check_signing_certificate`).  The rest is
    :class:`~emulator.core.firmware.FirmwareManagement`'s.  Nothing here costs a wallbox
    memory before its first request (the security log is made on its first event).
    """

    def __init__(self, *, host: SecurityHost, **base: Any) -> None:
        super().__init__(**base)
        self._host = host
        self.security_log: SecurityLog | None = None
        self.signed_update: SignedFirmwareJob | None = None
        self.log_upload: LogJob | None = None
        self._last_signed: tuple[SignedFirmwareStatus, int] | None = None

    @property
    def active(self) -> bool:
        return (
            self.diagnostics is not None
            or self.update is not None
            or self.signed_update is not None
            or self.log_upload is not None
        )

    def record_security_event(self, now: float, kind: str, tech_info: str | None) -> None:
        """Keep a security event in the security log (and a line in the diagnostics log)."""
        if self.security_log is None:
            self.security_log = SecurityLog()
        self.security_log.append(now, kind, tech_info)
        self.record(now, f"security event {kind}")

    def _security(self, kind: str, now: float, tech_info: str) -> None:
        self._host.security_event(kind, now, tech_info[:TECH_INFO_MAX])

    # ------------------------------------------------------------------ SignedUpdateFirmware

    def signed_update_firmware(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """Whitepaper L01 / §5.21: check the certificate, then accept and schedule."""
        firmware = payload["firmware"]
        try:
            certificate = check_signing_certificate(
                firmware["signingCertificate"], now, self._host.manufacturer_root_certificates()
            )
        except CertificateProblem as problem:
            self.record(now, f"SignedUpdateFirmware: signing certificate {problem}")
            self._security("InvalidFirmwareSigningCertificate", now, str(problem))
            return {"status": "InvalidCertificate"}
        try:
            retrieve_at = parse_timestamp(firmware["retrieveDateTime"])
            install_at = _optional_time(firmware.get("installDateTime"))
        except ValueError:  # only without the schema's format check
            self.record(now, "SignedUpdateFirmware rejected: a date-time is unreadable")
            return {"status": "Rejected"}
        installing = (UpdatePhase.INSTALLING, UpdatePhase.RESTARTING)
        old, legacy = self.signed_update, self.update
        if (old is not None and old.phase in installing) or (
            legacy is not None and legacy.phase in installing
        ):
            self.record(now, "SignedUpdateFirmware rejected: installing")
            return {"status": "Rejected"}  # cannot cancel an installation (L01.FR.27)
        status = "Accepted"
        if old is not None:
            if old.phase is UpdatePhase.DOWNLOADING:
                self._request(CancelTransfer(old.job_id))
            self.record(now, f"signed firmware update {old.request_id} canceled")
            status = "AcceptedCanceled"  # L01.FR.26
        # Two draws per request, always, as for UpdateFirmware (a seeded fleet replays).
        fail_download = bool(self.rng.random() < self.download_failure_share)
        fail_install = bool(self.rng.random() < self.install_failure_share)
        job = SignedFirmwareJob(
            job_id=self._job_id(),
            request_id=int(payload["requestId"]),
            location=firmware["location"],
            certificate=certificate,
            signature=_decode_signature(firmware["signature"]),
            attempts_left=1 + max(0, int(payload.get("retries", DEFAULT_RETRIES))),
            retry_interval=max(0, int(payload.get("retryInterval", DEFAULT_RETRY_INTERVAL))),
            install_at=install_at,
            fail_download=fail_download,
            fail_install=fail_install,
            phase=UpdatePhase.SCHEDULED,
            next_at=max(now, retrieve_at),
        )
        self.signed_update = job
        self.record(
            now, f"signed firmware update {job.request_id}: retrieve at {_log_time(job.next_at)}"
        )
        if retrieve_at > now:
            self._send_signed(SignedFirmwareStatus.DOWNLOAD_SCHEDULED, job, now)
        return {"status": status}

    def _send_signed(
        self,
        status: SignedFirmwareStatus,
        job: SignedFirmwareJob,
        now: float,
        on_done: Callable[[float], None] | None = None,
    ) -> None:
        self.record(now, f"signed firmware {job.request_id} {status}")
        self._last_signed = (status, job.request_id)
        payload = {"status": status.value, "requestId": job.request_id}
        if on_done is None:
            self._enqueue("SignedFirmwareStatusNotification", payload)
            return
        done = on_done  # runs when it was answered or given up
        self._enqueue(
            "SignedFirmwareStatusNotification",
            payload,
            on_result=lambda _result, at: done(at),
            on_failure=lambda _reason, at: done(at),
        )

    def signed_firmware_status(self) -> dict[str, Any]:
        """The payload of a triggered SignedFirmwareStatusNotification (ExtendedTriggerMessage
        FirmwareStatusNotification): the last status sent, with its requestId, or Idle
        when none was sent or the last was Installed (L01.FR.28, .29)."""
        last = self._last_signed
        if last is None or last[0] is SignedFirmwareStatus.INSTALLED:
            return {"status": SignedFirmwareStatus.IDLE.value}
        return {"status": last[0].value, "requestId": last[1]}

    def _signed_download(self, job: SignedFirmwareJob, now: float) -> None:
        if job.attempt == 0:
            self._send_signed(SignedFirmwareStatus.DOWNLOADING, job, now)
        job.attempts_left -= 1
        job.attempt += 1
        job.phase = UpdatePhase.DOWNLOADING
        self._request(FtpDownload(job.job_id, job.location, digest=True))

    def _signed_download_done(
        self, job: SignedFirmwareJob, ok: bool, detail: str, now: float, sha256: bytes | None
    ) -> None:
        failed = self._download_failed(job, ok, detail, now, "signed firmware")
        if failed is not None:
            if failed:
                self.signed_update = None
                self._send_signed(SignedFirmwareStatus.DOWNLOAD_FAILED, job, now)
            return
        self.record(now, f"signed firmware download done: {detail}")
        self._send_signed(SignedFirmwareStatus.DOWNLOADED, job, now)
        if (
            sha256 is None  # the transport did not hash it: nothing to verify against
            or job.signature is None
            or not signature_verifies(job.certificate, job.signature, sha256)
        ):
            self.signed_update = None
            self._send_signed(SignedFirmwareStatus.INVALID_SIGNATURE, job, now)
            self._security("InvalidFirmwareSignature", now, f"requestId {job.request_id}")
            return
        self._send_signed(SignedFirmwareStatus.SIGNATURE_VERIFIED, job, now)
        job.phase = UpdatePhase.DOWNLOADED
        job.next_at = now
        if job.install_at is not None and job.install_at > now:
            job.next_at = job.install_at
            self._send_signed(SignedFirmwareStatus.INSTALL_SCHEDULED, job, now)

    def _signed_install(self, job: SignedFirmwareJob, now: float) -> None:
        """installDateTime is due and no transaction runs (any more): install."""
        job.phase = UpdatePhase.INSTALLING
        job.next_at = now + self.install_seconds

        self._send_signed(SignedFirmwareStatus.INSTALLING, job, now, partial(_acked, job))

    def _signed_installed(self, job: SignedFirmwareJob, now: float) -> None:
        """Installing is done (and answered): InstallRebooting; once that is answered too,
        the restart (L01.FR.15: "before rebooting")."""
        if job.fail_install:
            self.signed_update = None
            self._send_signed(SignedFirmwareStatus.INSTALLATION_FAILED, job, now)
            return
        if not job.rebooting:
            job.rebooting, job.acked, job.next_at = True, False, now
            self._send_signed(
                SignedFirmwareStatus.INSTALL_REBOOTING, job, now, partial(_acked, job)
            )
            return
        job.phase = UpdatePhase.RESTARTING
        self._restart(now)

    # ------------------------------------------------------------------ GetLog

    def get_log(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """Whitepaper N01 / §5.9: answer the file name, then upload the log by FTP.

        Nothing to upload (no event in the period): Rejected, without a file name
        ("not present when no logging information is available").
        """
        log_type = payload["logType"]
        params = payload["log"]
        try:
            oldest = _optional_time(params.get("oldestTimestamp"))
            latest = _optional_time(params.get("latestTimestamp"))
        except ValueError:  # only without the schema's format check
            self.record(now, "GetLog rejected: a date-time is unreadable")
            return {"status": "Rejected"}
        if log_type == "SecurityLog":
            log = self.security_log
            data = b"" if log is None else log.render(oldest, latest)
        else:
            data = self.log.render(oldest, latest)
        self.record(now, f"GetLog {log_type}: {len(data)} bytes selected")
        if not data:
            return {"status": "Rejected"}
        status = "Accepted"
        old = self.log_upload
        if old is not None:
            if old.next_at is None:
                self._request(CancelTransfer(old.job_id))
            status = "AcceptedCanceled"  # N01.FR.11
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        kind = "security" if log_type == "SecurityLog" else "diagnostics"
        job = LogJob(
            job_id=self._job_id(),
            request_id=int(payload["requestId"]),
            log_type=log_type,
            location=params["remoteLocation"],
            file_name=f"{kind}-{self.charge_point_id}-{stamp}.log"[-LOG_FILE_NAME_MAX:],
            data=data,
            attempts_left=1 + max(0, int(payload.get("retries", DEFAULT_RETRIES))),
            retry_interval=max(0, int(payload.get("retryInterval", DEFAULT_RETRY_INTERVAL))),
        )
        self.log_upload = job
        self._send_log(UploadLogStatus.UPLOADING, job, now)
        self._upload(job, now)
        return {"status": status, "filename": job.file_name}

    def _send_log(self, status: UploadLogStatus, job: LogJob, now: float) -> None:
        self.record(now, f"log upload {job.request_id} {status}")
        self._enqueue(
            "LogStatusNotification", {"status": status.value, "requestId": job.request_id}
        )

    def log_status(self) -> dict[str, Any]:
        """The payload of a triggered LogStatusNotification (ExtendedTriggerMessage
        LogStatusNotification): Uploading with its requestId while a GetLog upload runs
        (or waits to retry), else Idle without one (N01.FR.12)."""
        job = self.log_upload
        if job is None:
            return {"status": UploadLogStatus.IDLE.value}
        return {"status": UploadLogStatus.UPLOADING.value, "requestId": job.request_id}

    def _log_upload_done(
        self, job: LogJob, ok: bool, detail: str, now: float, failure: TransferFailure | None
    ) -> None:
        if ok:
            self.record(now, f"log upload {job.file_name} done: {detail}")
            self.log_upload = None
            self._send_log(UploadLogStatus.UPLOADED, job, now)
            return
        self.record(now, f"log upload attempt {job.attempt} failed: {detail}")
        final = FINAL_UPLOAD_FAILURES.get(failure or TransferFailure.FAILED)
        if final is None and job.attempts_left > 0:
            job.next_at = now + job.retry_interval
            return
        self.log_upload = None
        self._send_log(final or UploadLogStatus.UPLOAD_FAILURE, job, now)

    # ------------------------------------------------------------------ transfers, time

    def transfer_done(
        self,
        job_id: int,
        ok: bool,
        detail: str,
        now: float,
        *,
        sha256: bytes | None = None,
        failure: TransferFailure | None = None,
    ) -> bool:
        upload = self.log_upload
        if upload is not None and upload.job_id == job_id and upload.next_at is None:
            self._log_upload_done(upload, ok, detail, now, failure)
            return True
        job = self.signed_update
        if job is not None and job.job_id == job_id and job.phase is UpdatePhase.DOWNLOADING:
            self._signed_download_done(job, ok, detail, now, sha256)
            return True
        return super().transfer_done(job_id, ok, detail, now, sha256=sha256, failure=failure)

    def next_deadline(self, *, busy: bool) -> float | None:
        times = [
            t for t in (super().next_deadline(busy=busy), self._own_deadline(busy)) if t is not None
        ]
        return min(times) if times else None

    def _own_deadline(self, busy: bool) -> float | None:
        times: list[float] = []
        upload = self.log_upload
        if upload is not None and upload.next_at is not None:
            times.append(upload.next_at)
        job = self.signed_update
        if job is not None:
            if job.phase in (UpdatePhase.SCHEDULED, UpdatePhase.RETRY_WAIT):
                times.append(job.next_at)
            elif job.phase is UpdatePhase.DOWNLOADED and not busy:
                times.append(job.next_at)  # installDateTime, or now
            elif job.phase is UpdatePhase.INSTALLING:
                times.append(job.next_at + (0.0 if job.acked else INSTALLING_ACK_WAIT))
        return min(times) if times else None

    def tick(self, now: float, *, busy: bool) -> None:
        super().tick(now, busy=busy)
        upload = self.log_upload
        if upload is not None and upload.next_at is not None and now >= upload.next_at:
            self._upload(upload, now)
        job = self.signed_update
        if job is None:
            return
        if job.phase in (UpdatePhase.SCHEDULED, UpdatePhase.RETRY_WAIT) and now >= job.next_at:
            self._signed_download(job, now)
        elif job.phase is UpdatePhase.DOWNLOADED and not busy and now >= job.next_at:
            self._signed_install(job, now)
        elif job.phase is UpdatePhase.INSTALLING and now >= job.next_at + (
            0.0 if job.acked else INSTALLING_ACK_WAIT
        ):
            self._signed_installed(job, now)

    def restarted(self, now: float, current_version: str) -> str | None:
        """As :meth:`FirmwareManagement.restarted`, for the GetLog upload (it fails) and
        the signed update (Installed after its own restart, with a FirmwareUpdated
        security event; a download or an installation under way fails; a scheduled
        download and a verified image survive)."""
        version = super().restarted(now, current_version)
        upload = self.log_upload
        if upload is not None:
            self.log_upload = None
            if upload.next_at is None:
                self._request(CancelTransfer(upload.job_id))
            self._send_log(UploadLogStatus.UPLOAD_FAILURE, upload, now)
        job = self.signed_update
        if job is None:
            return version
        if job.phase is UpdatePhase.RESTARTING:
            self.signed_update = None
            version = firmware_version_from(job.location, current_version)
            self.installed_version = version
            self.record(now, f"firmware version {version}")
            self._send_signed(SignedFirmwareStatus.INSTALLED, job, now)
            self._security("FirmwareUpdated", now, f"firmware {version}")
        elif job.phase in (UpdatePhase.DOWNLOADING, UpdatePhase.RETRY_WAIT):
            if job.phase is UpdatePhase.DOWNLOADING:
                self._request(CancelTransfer(job.job_id))
            self.signed_update = None
            self._send_signed(SignedFirmwareStatus.DOWNLOAD_FAILED, job, now)
        elif job.phase is UpdatePhase.INSTALLING:
            self.signed_update = None
            self._send_signed(SignedFirmwareStatus.INSTALLATION_FAILED, job, now)
        return version


def _acked(job: SignedFirmwareJob, _at: float) -> None:
    job.acked = True


def _optional_time(value: Any) -> float | None:
    """An optional date-time field; ValueError when it cannot be read."""
    return None if value is None else parse_timestamp(str(value))
