"""GetLog on a fake clock (OCPP 1.6 Security Whitepaper N01): the security and the
diagnostics log uploaded by FTP, LogStatusNotification with the request's id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from emulator.core.firmware import CancelTransfer, FtpUpload, TransferFailure
from emulator.core.signed_firmware import SECURITY_LOG_LINES, SecurityLog
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.timefmt import format_timestamp
from tests.core.conftest import T0, FakeCsms

UPLOAD_TO = "ftp://logs:secret@127.0.0.1:2121/uploads/"

MakeCsms = Callable[..., FakeCsms]


@pytest.fixture
def ext(make_csms: MakeCsms) -> FakeCsms:
    """A charger model with the security extension, booted and idle; its power-on's
    StartupOfTheDevice event forgotten (tests/core/test_security_extension.py has it)."""
    csms = make_csms(security_extension=True)
    assert [p["type"] for p in csms.payloads("SecurityEventNotification")] == ["StartupOfTheDevice"]
    csms.sent = [s for s in csms.sent if s.action != "SecurityEventNotification"]
    return csms


def get_log(
    csms: FakeCsms,
    log_type: str = "SecurityLog",
    *,
    request_id: int = 5,
    oldest: float | None = None,
    latest: float | None = None,
    **options: int,
) -> dict[str, Any]:
    log: dict[str, Any] = {"remoteLocation": UPLOAD_TO}
    if oldest is not None:
        log["oldestTimestamp"] = format_timestamp(oldest)
    if latest is not None:
        log["latestTimestamp"] = format_timestamp(latest)
    payload = {"logType": log_type, "requestId": request_id, "log": log, **options}
    return csms.call("GetLog", payload)


def log_statuses(csms: FakeCsms) -> list[tuple[str, int | None]]:
    return [(p["status"], p.get("requestId")) for p in csms.payloads("LogStatusNotification")]


def upload(csms: FakeCsms) -> FtpUpload:
    assert csms.transfers, "no transfer was asked for"
    transfer = csms.transfers[-1]
    assert isinstance(transfer, FtpUpload)
    return transfer


def some_security_events(csms: FakeCsms) -> None:
    csms.wb.security_event("SettingSystemTime", csms.now, "clock stepped 12 s")
    csms.advance(60)
    csms.wb.security_event("ReconfigurationOfSecurityParameters", csms.now, "SecurityProfile 2")
    csms.advance(60)


# ------------------------------------------------------------------ uploads


def test_get_log_uploads_the_security_log_and_reports_uploading_then_uploaded(
    ext: FakeCsms,
) -> None:
    some_security_events(ext)
    answer = get_log(ext, request_id=42)
    assert answer["status"] == "Accepted"
    assert answer["filename"].startswith("security-CP-TEST-0001-") and len(answer["filename"]) < 255
    job = upload(ext)
    assert (job.url, job.filename) == (UPLOAD_TO, answer["filename"])
    lines = job.data.decode().splitlines()
    assert lines == [
        "2026-01-01T00:00:00Z StartupOfTheDevice",
        "2026-01-01T00:00:00Z SettingSystemTime clock stepped 12 s",
        "2026-01-01T00:01:00Z ReconfigurationOfSecurityParameters SecurityProfile 2",
    ]
    assert "secret" not in repr(job)
    assert log_statuses(ext) == [("Uploading", 42)]
    assert ext.wb.firmware.log_status() == {"status": "Uploading", "requestId": 42}
    ext.finish_transfer(job.job_id, detail="120 bytes stored")
    assert log_statuses(ext) == [("Uploading", 42), ("Uploaded", 42)]
    assert ext.wb.firmware.log_status() == {"status": "Idle"}


def test_get_log_uploads_the_diagnostics_log(ext: FakeCsms) -> None:
    answer = get_log(ext, "DiagnosticsLog", oldest=T0, latest=T0)
    assert answer["status"] == "Accepted" and answer["filename"].startswith("diagnostics-")
    data = upload(ext).data
    assert b" boot Accepted\n" in data
    assert data.endswith(b" csms GetLog\n")  # the file is made on request
    ext.finish_transfer(upload(ext).job_id)
    assert log_statuses(ext) == [("Uploading", 5), ("Uploaded", 5)]


def test_oldest_and_latest_timestamps_select_security_events(ext: FakeCsms) -> None:
    some_security_events(ext)
    get_log(ext, oldest=T0 + 30, latest=T0 + 90)
    assert upload(ext).data.decode().splitlines() == [
        "2026-01-01T00:01:00Z ReconfigurationOfSecurityParameters SecurityProfile 2"
    ]


def test_get_log_without_log_lines_in_the_period_is_rejected_without_a_file(
    ext: FakeCsms,
) -> None:
    # Only the power-on's StartupOfTheDevice so far, at T0: none in a period after it.
    assert get_log(ext, oldest=T0 + 1) == {"status": "Rejected"}
    some_security_events(ext)
    assert get_log(ext, oldest=T0 + 3600) == {"status": "Rejected"}
    assert ext.transfers == [] and log_statuses(ext) == []


def test_the_security_log_keeps_the_newest_events() -> None:
    log = SecurityLog()
    for i in range(SECURITY_LOG_LINES + 50):
        log.append(T0 + i, "InvalidMessages", f"message {i}")
    lines = log.render().decode().splitlines()
    assert len(log) == len(lines) == SECURITY_LOG_LINES
    assert lines[0].endswith(" message 50") and lines[-1].endswith(
        f" message {SECURITY_LOG_LINES + 49}"
    )
    log.append(T0, "TamperDetectionActivated", "x" * 400)
    assert len(log.render().splitlines()[-1]) < 160  # a line is cut, never a day


# ------------------------------------------------------------------ failures


def test_a_failed_upload_is_retried_after_retry_interval_then_upload_failure(
    ext: FakeCsms,
) -> None:
    some_security_events(ext)
    get_log(ext, retries=2, retryInterval=30)
    for attempt in range(1, 4):
        assert len(ext.transfers) == attempt
        ext.finish_transfer(upload(ext).job_id, ok=False, detail="connect: timed out")
        ext.advance(29)
        assert len(ext.transfers) == attempt
        ext.advance(1)
    assert len(ext.transfers) == 3
    assert log_statuses(ext) == [("Uploading", 5), ("UploadFailure", 5)]
    assert ext.wb.firmware.log_status() == {"status": "Idle"}


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (TransferFailure.PERMISSION_DENIED, "PermissionDenied"),
        (TransferFailure.NOT_SUPPORTED, "NotSupportedOperation"),
        (TransferFailure.BAD_MESSAGE, "BadMessage"),
    ],
)
def test_a_failure_a_retry_cannot_mend_is_reported_at_once_by_name(
    ext: FakeCsms, failure: TransferFailure, status: str
) -> None:
    some_security_events(ext)
    get_log(ext, retries=3, retryInterval=10)
    ext.finish_transfer(upload(ext).job_id, ok=False, detail="login: 530", failure=failure)
    ext.advance(600)
    assert len(ext.transfers) == 1
    assert log_statuses(ext) == [("Uploading", 5), (status, 5)]


def test_a_new_get_log_cancels_the_running_upload_accepted_canceled(ext: FakeCsms) -> None:
    some_security_events(ext)
    first = get_log(ext, request_id=1)
    old = upload(ext)
    second = get_log(ext, "DiagnosticsLog", request_id=2)
    assert first["status"] == "Accepted" and second["status"] == "AcceptedCanceled"
    new = upload(ext)
    assert ext.transfers == [old, CancelTransfer(old.job_id), new]
    ext.finish_transfer(old.job_id)  # the abandoned one: ignored
    assert log_statuses(ext) == [("Uploading", 1), ("Uploading", 2)]
    ext.finish_transfer(new.job_id)
    assert log_statuses(ext)[-1] == ("Uploaded", 2)


def test_a_new_get_log_while_one_waits_to_retry_replaces_it(ext: FakeCsms) -> None:
    some_security_events(ext)
    get_log(ext, request_id=1, retries=1, retryInterval=300)
    ext.finish_transfer(upload(ext).job_id, ok=False, detail="connect: timed out")
    assert get_log(ext, request_id=2)["status"] == "AcceptedCanceled"
    assert not any(isinstance(t, CancelTransfer) for t in ext.transfers)  # none ran
    ext.finish_transfer(upload(ext).job_id)
    ext.advance(600)
    assert len(ext.transfers) == 2  # the replaced one never retried
    assert log_statuses(ext) == [("Uploading", 1), ("Uploading", 2), ("Uploaded", 2)]


def test_a_restart_abandons_a_running_upload(ext: FakeCsms) -> None:
    some_security_events(ext)
    get_log(ext)
    job = upload(ext)
    ext.call("Reset", {"type": "Hard"})
    ext.advance(10)
    assert CancelTransfer(job.job_id) in ext.transfers
    assert log_statuses(ext) == [("Uploading", 5), ("UploadFailure", 5)]


# ------------------------------------------------------------------ the flag


def test_without_the_extension_get_log_is_not_supported_and_no_event_is_kept(
    csms: FakeCsms,
) -> None:
    csms.wb.security_event("SettingSystemTime", csms.now, "clock stepped")
    assert csms.wb.firmware.security_log is None
    assert csms.payloads("SecurityEventNotification") == []
    with pytest.raises(RemoteProtocolError) as refused:
        get_log(csms)
    assert refused.value.code is ErrorCode.NOT_SUPPORTED
    assert csms.transfers == []


def test_a_security_event_is_sent_and_kept(ext: FakeCsms) -> None:
    ext.wb.security_event("SettingSystemTime", ext.now, "clock stepped 12 s")
    ext.advance(1)
    assert ext.payloads("SecurityEventNotification") == [
        {
            "type": "SettingSystemTime",
            "timestamp": format_timestamp(T0),
            "techInfo": "clock stepped 12 s",
        }
    ]
