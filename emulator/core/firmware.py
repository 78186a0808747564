"""Firmware Management: GetDiagnostics and UpdateFirmware of the reference charger, sans I/O.

Reference §3.1, Firmware Management profile:

* GetDiagnostics — "Supports 7-day logs with 300 lines/less than 25kb per day. Charger
  uploads the files by FTP."  Every wallbox keeps a :class:`DiagnosticsLog` of its own
  events; the request's ``startTime``/``stopTime`` select whole UTC days of it.
* DiagnosticsStatusNotification — Uploading, Uploaded, UploadFailed, and Idle (OCPP 1.6
  §4.4: Idle only in answer to a TriggerMessage).
* UpdateFirmware — "Charger downloads the file by FTP".
* FirmwareStatusNotification — the document lists Downloading, Installed, DownloadFailed
  and InstallationFailed.  OCPP 1.6 §4.5 also has Downloaded and Installing; which set a
  charger sends is a model option (:class:`~emulator.core.model.FirmwareStatusSet`).

This module never touches a socket or a clock: it asks the transport for a file transfer
with an effect (:class:`FtpUpload`, :class:`FtpDownload`, :class:`CancelTransfer`) and is
told the outcome with :meth:`FirmwareManagement.transfer_done`.  Retries wait
``retryInterval`` between attempts; ``retries`` counts the attempts *after* the first
(OCPP 1.6 §6.29/§6.61 leave the default to the charger: :data:`DEFAULT_RETRIES`).

An update waits for every running transaction to end before it installs (like the
reference charger); after installing, the wallbox restarts and its next
BootNotification carries the new firmwareVersion (:func:`firmware_version_from`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit

import numpy as np

from emulator.core.model import FirmwareStatusSet
from emulator.protocol.timefmt import parse_timestamp

DAY: Final = 86_400
MAX_DAYS: Final = 7
"""Reference §3.1 GetDiagnostics: "Supports 7-day logs"."""
MAX_LINES_PER_DAY: Final = 300
"""Reference §3.1 GetDiagnostics: "300 lines ... per day"."""
MAX_BYTES_PER_DAY: Final = 25_000
"""Reference §3.1 GetDiagnostics: "less than 25kb per day" (a day stays below this)."""
MAX_LINE_BYTES: Final = 160
"""A longer event text is cut, so that one line can never crowd out a day."""

DEFAULT_RETRIES: Final = 1
"""Retries after the first attempt when a request has no ``retries`` (OCPP: charger's choice)."""
DEFAULT_RETRY_INTERVAL: Final = 60
"""Seconds between attempts when a request has no ``retryInterval``."""
INSTALLING_ACK_WAIT: Final = 30.0
"""How long the restart after installing waits for the Installing notification's answer."""
FIRMWARE_VERSION_MAX: Final = 50  # BootNotification.req firmwareVersion is CiString50


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True, repr=False)
class FtpUpload:
    """Upload ``data`` as ``filename`` into the directory ``url`` (ftp://user:pass@host/dir)."""

    job_id: int
    url: str
    filename: str
    data: bytes

    def __repr__(self) -> str:  # never show the password or the whole file
        url = redact_url(self.url)
        return f"FtpUpload({self.job_id}, {url!r}, {self.filename!r}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True, repr=False)
class FtpDownload:
    """Download the file at ``url`` (ftp://user:pass@host/path/file).

    ``digest``: the transport hashes the file as it arrives and reports its SHA256 with
    ``transfer_done(..., sha256=)`` (a signed firmware's signature is checked over it,
    emulator.core.signed_firmware); the bytes themselves are never kept.
    """

    job_id: int
    url: str
    digest: bool = False

    def __repr__(self) -> str:
        return f"FtpDownload({self.job_id}, {redact_url(self.url)!r}, digest={self.digest})"


@dataclass(frozen=True, slots=True)
class CancelTransfer:
    """Abandon the transfer of ``job_id`` (a new request replaced it, or the charger restarted)."""

    job_id: int


TransferEffect = FtpUpload | FtpDownload | CancelTransfer


class TransferFailure(StrEnum):
    """Why a transfer failed, as the transport classifies it (``transfer_done(failure=)``).

    GetLog's LogStatusNotification names the reason "as precise as possible"
    (security whitepaper N01.FR.10); GetDiagnostics and the downloads only see a failure.
    """

    FAILED = "failed"  # timed out, connection lost, any other refusal: worth a retry
    PERMISSION_DENIED = "permission_denied"  # the login or the file was refused (530, 550)
    NOT_SUPPORTED = "not_supported"  # a scheme or command the other side lacks (502)
    BAD_MESSAGE = "bad_message"  # the location cannot be parsed, the reply is garbled


def redact_url(url: str) -> str:
    """``ftp://user:secret@host/x`` → ``ftp://user:***@host/x`` (for logs and reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{netloc[2]}").geturl()


# --------------------------------------------------------------------------- the log


def _log_time(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


class DiagnosticsLog:
    """The charger's rolling event log: one bounded list of lines per UTC day.

    At most :data:`MAX_DAYS` days (the newest day and the six before it), each at most
    :data:`MAX_LINES_PER_DAY` lines and below :data:`MAX_BYTES_PER_DAY` bytes: when a
    day is full, its oldest lines go.  Worst case 7 × 25 KB of text (about 250 KB of
    memory with the per-line overhead) per wallbox; a day with a few sessions is a few KB.
    """

    __slots__ = ("_bytes", "_days")

    def __init__(self) -> None:
        self._days: dict[int, list[bytes]] = {}  # a list: a deque's block is ~0.6 KiB
        self._bytes: dict[int, int] = {}

    def append(self, now: float, text: str) -> None:
        day = int(now // DAY)
        lines = self._days.get(day)
        if lines is None:
            if self._days and day <= max(self._days) - MAX_DAYS:
                return  # older than the window (a clock stepped back a week)
            lines = self._days[day] = []
            self._bytes[day] = 0
            for old in [d for d in self._days if d <= max(self._days) - MAX_DAYS]:
                del self._days[old], self._bytes[old]
        line = f"{_log_time(now)} {text}".encode("ascii", "replace")[: MAX_LINE_BYTES - 1] + b"\n"
        size = self._bytes[day] + len(line)
        drop = 0
        while drop < len(lines) and (
            len(lines) - drop >= MAX_LINES_PER_DAY or size >= MAX_BYTES_PER_DAY
        ):
            size -= len(lines[drop])
            drop += 1
        if drop:
            del lines[:drop]
        lines.append(line)
        self._bytes[day] = size

    def days(self, start: float | None = None, stop: float | None = None) -> list[int]:
        """Days (``int(t // 86400)``) with lines that overlap ``[start, stop]``, oldest first."""
        first = -(10**12) if start is None else int(start // DAY)
        last = 10**12 if stop is None else int(stop // DAY)
        return sorted(d for d in self._days if first <= d <= last and self._days[d])

    def day_lines(self, day: int) -> list[bytes]:
        return list(self._days.get(day, ()))

    def day_bytes(self, day: int) -> int:
        return self._bytes.get(day, 0)

    def render(self, start: float | None = None, stop: float | None = None) -> bytes:
        """The diagnostics file: the lines of the selected days, oldest first."""
        return b"".join(b"".join(self._days[d]) for d in self.days(start, stop))


# --------------------------------------------------------------------------- versions

_VERSION = re.compile(r"\d+(?:\.\d+)+(?:-[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)?")
_EXTENSIONS = (".tar.gz", ".bin", ".img", ".hex", ".fw", ".zip", ".gz", ".tgz", ".swu", ".pkg")


def firmware_version_from(location: str, current: str) -> str:
    """The firmwareVersion after installing the file at ``location``.

    The rule: the file name (last path segment, without a known extension such as
    ``.bin``); its last dotted version number if it has one (``AC22-3P-1.10.2.bin`` →
    ``1.10.2``, ``fw_2.0.0-rc1.img`` → ``2.0.0-rc1``), otherwise the name itself
    (``nightly.bin`` → ``nightly``); a location without a file name gives
    ``<current>-update``.  Cut to 50 characters (CiString50).
    """
    name = unquote(urlsplit(location).path.rstrip("/").rpartition("/")[2])
    lowered = name.lower()
    for extension in _EXTENSIONS:
        if lowered.endswith(extension):
            name = name[: -len(extension)]
            break
    versions = _VERSION.findall(name)
    version = versions[-1] if versions else name
    return (version or f"{current}-update")[:FIRMWARE_VERSION_MAX]


# --------------------------------------------------------------------------- jobs


class DiagnosticsStatus(StrEnum):
    IDLE = "Idle"
    UPLOADING = "Uploading"
    UPLOADED = "Uploaded"
    UPLOAD_FAILED = "UploadFailed"


class FirmwareStatus(StrEnum):
    IDLE = "Idle"
    DOWNLOADING = "Downloading"
    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    INSTALLING = "Installing"
    INSTALLED = "Installed"
    INSTALLATION_FAILED = "InstallationFailed"


REFERENCE_FIRMWARE_STATUSES: Final = frozenset(
    {
        FirmwareStatus.DOWNLOADING,
        FirmwareStatus.INSTALLED,
        FirmwareStatus.DOWNLOAD_FAILED,
        FirmwareStatus.INSTALLATION_FAILED,
    }
)
"""Reference §3.1 FirmwareStatusNotification: "Charger will response the status: ..."."""


class UpdatePhase(StrEnum):
    SCHEDULED = "scheduled"  # waiting for retrieveDate
    DOWNLOADING = "downloading"  # a transfer runs
    RETRY_WAIT = "retry_wait"  # an attempt failed, the next one waits retryInterval
    DOWNLOADED = "downloaded"  # waiting for the running transactions to end
    INSTALLING = "installing"
    RESTARTING = "restarting"  # installed; the restart has been asked for


@dataclass(slots=True, kw_only=True)
class DiagnosticsJob:
    job_id: int
    location: str
    file_name: str
    data: bytes = field(repr=False)
    attempts_left: int
    retry_interval: int
    attempt: int = 0
    next_at: float | None = None  # None while a transfer runs


@dataclass(slots=True, kw_only=True)
class FirmwareJob:
    job_id: int
    location: str
    attempts_left: int
    retry_interval: int
    fail_download: bool
    fail_install: bool
    phase: UpdatePhase
    next_at: float = 0.0
    attempt: int = 0
    installing_acked: bool = False


class RetryingDownload(Protocol):
    """What :meth:`FirmwareManagement._download_failed` needs of a download job."""

    attempt: int
    attempts_left: int
    retry_interval: int
    fail_download: bool
    phase: UpdatePhase
    next_at: float


Enqueue = Callable[..., None]
"""Queue a charger-initiated CALL: ``enqueue(action, payload, on_result=, on_failure=)``
(emulator.core.outbox.Outbox.add)."""


class FirmwareManagement:
    """GetDiagnostics and UpdateFirmware state for one wallbox.

    The wallbox feeds it the CSMS calls, the transfer outcomes and its restarts, asks it
    for :meth:`next_deadline` and calls :meth:`tick`; ``busy`` tells whether a
    transaction runs.  ``enqueue`` queues a notification, ``request`` passes an effect to
    the transport, ``restart`` asks the wallbox to restart after installing.
    """

    def __init__(
        self,
        *,
        charge_point_id: str,
        statuses: FirmwareStatusSet,
        download_failure_share: float,
        install_failure_share: float,
        install_seconds: float,
        rng: np.random.Generator,
        enqueue: Enqueue,
        request: Callable[[TransferEffect], None],
        restart: Callable[[float], None],
    ) -> None:
        self.charge_point_id = charge_point_id
        self.statuses = statuses
        self.download_failure_share = download_failure_share
        self.install_failure_share = install_failure_share
        self.install_seconds = install_seconds
        self.rng = rng
        self._enqueue = enqueue
        self._request = request
        self._restart = restart
        self.log = DiagnosticsLog()
        self.diagnostics: DiagnosticsJob | None = None
        self.update: FirmwareJob | None = None
        self.installed_version: str | None = None  # set when the restart after installing ran
        self.history: list[str] = []  # FirmwareStatusNotification statuses sent (tests)
        self._jobs = 0
        self._last_firmware = FirmwareStatus.IDLE  # last reported (reference trigger)

    @property
    def active(self) -> bool:
        """Whether an upload or an update is under way (the wallbox's hot path checks this)."""
        return self.diagnostics is not None or self.update is not None

    # ------------------------------------------------------------------ log

    def record(self, now: float, text: str) -> None:
        """Add a line to the diagnostics log."""
        self.log.append(now, text)

    def _job_id(self) -> int:
        self._jobs += 1
        return self._jobs

    # ------------------------------------------------------------------ GetDiagnostics

    def get_diagnostics(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """OCPP 1.6 §5.9: answer the file name, then upload it (reference: by FTP)."""
        start = _optional_time(payload.get("startTime"))
        stop = _optional_time(payload.get("stopTime"))
        data = self.log.render(start, stop)
        self.record(now, f"diagnostics: {len(data)} bytes selected")
        if not data:
            return {}  # "not present when no diagnostic information is available"
        old = self.diagnostics
        if old is not None:
            self._request(CancelTransfer(old.job_id))  # the new request replaces it
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        job = DiagnosticsJob(
            job_id=self._job_id(),
            location=payload["location"],
            file_name=f"diagnostics-{self.charge_point_id}-{stamp}.log",
            data=data,
            attempts_left=1 + max(0, int(payload.get("retries", DEFAULT_RETRIES))),
            retry_interval=max(0, int(payload.get("retryInterval", DEFAULT_RETRY_INTERVAL))),
        )
        self.diagnostics = job
        self._send_diagnostics(DiagnosticsStatus.UPLOADING, now)
        self._upload(job, now)
        return {"fileName": job.file_name}

    def _upload(self, job: DiagnosticsJob, now: float) -> None:
        job.attempts_left -= 1
        job.attempt += 1
        job.next_at = None
        self._request(FtpUpload(job.job_id, job.location, job.file_name, job.data))

    def _send_diagnostics(self, status: DiagnosticsStatus, now: float) -> None:
        self.record(now, f"diagnostics {status}")
        self._enqueue("DiagnosticsStatusNotification", {"status": status.value})

    def diagnostics_status(self) -> str:
        """What a triggered DiagnosticsStatusNotification reports (OCPP 1.6 §4.4)."""
        return (
            DiagnosticsStatus.IDLE if self.diagnostics is None else DiagnosticsStatus.UPLOADING
        ).value

    # ------------------------------------------------------------------ UpdateFirmware

    def update_firmware(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """OCPP 1.6 §5.19: accept, then download at retrieveDate (reference: by FTP)."""
        location = payload["location"]
        old = self.update
        if old is not None and old.phase in (UpdatePhase.INSTALLING, UpdatePhase.RESTARTING):
            self.record(now, "csms UpdateFirmware ignored: installing")
            return {}
        try:
            retrieve_at = parse_timestamp(payload["retrieveDate"])
        except ValueError:
            # Only reachable without the schema's format check (every schema-valid
            # dateTime parses, leap seconds too): not knowing when it may download, the
            # charger does not; UpdateFirmware.conf has nothing to refuse with.
            self.record(now, "csms UpdateFirmware ignored: retrieveDate unreadable")
            return {}
        if old is not None and old.phase is UpdatePhase.DOWNLOADING:
            self._request(CancelTransfer(old.job_id))
        # Two draws per request, always, so a seeded fleet replays the same outcomes.
        fail_download = bool(self.rng.random() < self.download_failure_share)
        fail_install = bool(self.rng.random() < self.install_failure_share)
        self.update = FirmwareJob(
            job_id=self._job_id(),
            location=location,
            attempts_left=1 + max(0, int(payload.get("retries", DEFAULT_RETRIES))),
            retry_interval=max(0, int(payload.get("retryInterval", DEFAULT_RETRY_INTERVAL))),
            fail_download=fail_download,
            fail_install=fail_install,
            phase=UpdatePhase.SCHEDULED,
            next_at=max(now, retrieve_at),
        )
        self.record(now, f"firmware update: retrieve at {_log_time(max(now, retrieve_at))}")
        return {}

    def _download(self, job: FirmwareJob, now: float) -> None:
        if job.attempt == 0:
            self._send_firmware(FirmwareStatus.DOWNLOADING, now)
        job.attempts_left -= 1
        job.attempt += 1
        job.phase = UpdatePhase.DOWNLOADING
        self._request(FtpDownload(job.job_id, job.location))

    def _send_firmware(
        self,
        status: FirmwareStatus,
        now: float,
        on_done: Callable[[float], None] | None = None,
    ) -> bool:
        """Report ``status`` if this charger model reports it; True if it was queued."""
        self.record(now, f"firmware {status}")
        if (
            self.statuses is FirmwareStatusSet.REFERENCE
            and status not in REFERENCE_FIRMWARE_STATUSES
        ):
            return False
        self._last_firmware = status
        self.history.append(status.value)
        payload = {"status": status.value}
        if on_done is None:
            self._enqueue("FirmwareStatusNotification", payload)
        else:  # the callback runs when it was answered or given up
            done = on_done
            self._enqueue(
                "FirmwareStatusNotification",
                payload,
                on_result=lambda _result, at: done(at),
                on_failure=lambda _reason, at: done(at),
            )
        return True

    def firmware_status(self) -> str:
        """What a triggered FirmwareStatusNotification reports (OCPP 1.6 §4.5).

        Idle unless an update is under way (a scheduled one has not started yet); then
        its current status, or with the reference status set the last one it reported.
        """
        job = self.update
        if job is None or job.phase is UpdatePhase.SCHEDULED:
            return FirmwareStatus.IDLE.value
        if self.statuses is FirmwareStatusSet.REFERENCE:
            return self._last_firmware.value
        if job.phase in (UpdatePhase.DOWNLOADING, UpdatePhase.RETRY_WAIT):
            return FirmwareStatus.DOWNLOADING.value
        if job.phase is UpdatePhase.DOWNLOADED:
            return FirmwareStatus.DOWNLOADED.value
        return FirmwareStatus.INSTALLING.value

    # ------------------------------------------------------------------ transfers

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
        """The transport finished the transfer of ``job_id``; False for an unknown job.

        ``sha256`` (a download asked with ``digest``) and ``failure`` serve the security
        extension's jobs (emulator.core.signed_firmware); these jobs have no use for them.
        """
        diagnostics = self.diagnostics
        if diagnostics is not None and diagnostics.job_id == job_id and diagnostics.next_at is None:
            self._upload_done(diagnostics, ok, detail, now)
            return True
        job = self.update
        if job is not None and job.job_id == job_id and job.phase is UpdatePhase.DOWNLOADING:
            self._download_done(job, ok, detail, now)
            return True
        return False

    def _upload_done(self, job: DiagnosticsJob, ok: bool, detail: str, now: float) -> None:
        if ok:
            self.record(now, f"diagnostics upload {job.file_name} done: {detail}")
            self.diagnostics = None
            self._send_diagnostics(DiagnosticsStatus.UPLOADED, now)
            return
        self.record(now, f"diagnostics upload attempt {job.attempt} failed: {detail}")
        if job.attempts_left > 0:
            job.next_at = now + job.retry_interval
            return
        self.diagnostics = None
        self._send_diagnostics(DiagnosticsStatus.UPLOAD_FAILED, now)

    def _download_failed(
        self, job: RetryingDownload, ok: bool, detail: str, now: float, what: str
    ) -> bool | None:
        """A download of ``job`` (an UpdateFirmware or a SignedUpdateFirmware, ``what`` in
        the log) ended: None when it succeeded, False when it failed and a retry is
        scheduled after ``retryInterval``, True when it failed with no attempt left.  A
        model's ``firmware_download_failure_share`` fails a download that arrived."""
        if ok and job.fail_download:
            ok, detail = False, f"{detail}; image rejected (checksum mismatch)"
        if ok:
            return None
        self.record(now, f"{what} download attempt {job.attempt} failed: {detail}")
        if job.attempts_left > 0:
            job.phase = UpdatePhase.RETRY_WAIT
            job.next_at = now + job.retry_interval
            return False
        return True

    def _download_done(self, job: FirmwareJob, ok: bool, detail: str, now: float) -> None:
        failed = self._download_failed(job, ok, detail, now, "firmware")
        if failed is not None:
            if failed:
                self.update = None
                self._send_firmware(FirmwareStatus.DOWNLOAD_FAILED, now)
            return
        self.record(now, f"firmware download done: {detail}")
        job.phase = UpdatePhase.DOWNLOADED
        job.next_at = now
        self._send_firmware(FirmwareStatus.DOWNLOADED, now)

    # ------------------------------------------------------------------ time

    def next_deadline(self, *, busy: bool) -> float | None:
        times: list[float] = []
        diagnostics = self.diagnostics
        if diagnostics is not None and diagnostics.next_at is not None:
            times.append(diagnostics.next_at)
        job = self.update
        if job is not None:
            if job.phase in (UpdatePhase.SCHEDULED, UpdatePhase.RETRY_WAIT):
                times.append(job.next_at)
            elif job.phase is UpdatePhase.DOWNLOADED and not busy:
                times.append(job.next_at)  # in the past: install now
            elif job.phase is UpdatePhase.INSTALLING:
                wait = 0.0 if job.installing_acked else INSTALLING_ACK_WAIT
                times.append(job.next_at + wait)
        return min(times) if times else None

    def tick(self, now: float, *, busy: bool) -> None:
        diagnostics = self.diagnostics
        if diagnostics is not None and diagnostics.next_at is not None:
            if now >= diagnostics.next_at:
                self._upload(diagnostics, now)
        job = self.update
        if job is None:
            return
        if job.phase in (UpdatePhase.SCHEDULED, UpdatePhase.RETRY_WAIT) and now >= job.next_at:
            self._download(job, now)
        elif job.phase is UpdatePhase.DOWNLOADED and not busy:
            self._install(job, now)
        elif job.phase is UpdatePhase.INSTALLING and now >= job.next_at + (
            0.0 if job.installing_acked else INSTALLING_ACK_WAIT
        ):
            self._installed(job, now)

    def _install(self, job: FirmwareJob, now: float) -> None:
        """No transaction runs (any more): install (OCPP 1.6 §4.5 Installing)."""
        job.phase = UpdatePhase.INSTALLING
        job.next_at = now + self.install_seconds

        def acked(_at: float) -> None:
            job.installing_acked = True

        if not self._send_firmware(FirmwareStatus.INSTALLING, now, acked):
            job.installing_acked = True

    def _installed(self, job: FirmwareJob, now: float) -> None:
        if job.fail_install:
            self.update = None
            self._send_firmware(FirmwareStatus.INSTALLATION_FAILED, now)
            return
        job.phase = UpdatePhase.RESTARTING
        self.record(now, "firmware installed: restarting")
        self._restart(now)

    # ------------------------------------------------------------------ restarts

    def restarted(self, now: float, current_version: str) -> str | None:
        """The wallbox restarted (its queued notifications are gone); returns the new
        firmwareVersion when this restart completes an installation.

        A restart in the middle of a transfer abandons it (the job fails and says so after
        the boot); a scheduled update and a downloaded image survive it, as in flash.
        """
        self.record(now, "restart")
        diagnostics = self.diagnostics
        if diagnostics is not None:
            self.diagnostics = None
            if diagnostics.next_at is None:
                self._request(CancelTransfer(diagnostics.job_id))
            self._send_diagnostics(DiagnosticsStatus.UPLOAD_FAILED, now)
        job = self.update
        if job is None:
            return None
        if job.phase is UpdatePhase.RESTARTING:
            self.update = None
            version = firmware_version_from(job.location, current_version)
            self.installed_version = version
            self.record(now, f"firmware version {version}")
            self._send_firmware(FirmwareStatus.INSTALLED, now)
            return version
        if job.phase in (UpdatePhase.DOWNLOADING, UpdatePhase.RETRY_WAIT):
            if job.phase is UpdatePhase.DOWNLOADING:
                self._request(CancelTransfer(job.job_id))
            self.update = None
            self._send_firmware(FirmwareStatus.DOWNLOAD_FAILED, now)
        elif job.phase is UpdatePhase.INSTALLING:
            self.update = None
            self._send_firmware(FirmwareStatus.INSTALLATION_FAILED, now)
        return None


def _optional_time(value: Any) -> float | None:
    """GetDiagnostics startTime / stopTime; one the charger cannot read is treated as
    absent (every schema-valid dateTime parses, so only without the format check)."""
    if value is None:
        return None
    try:
        return parse_timestamp(str(value))
    except ValueError:
        return None
