"""Firmware Management on a fake clock: GetDiagnostics, UpdateFirmware (reference §3.1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emulator.core.firmware import (
    DAY,
    MAX_BYTES_PER_DAY,
    MAX_DAYS,
    MAX_LINES_PER_DAY,
    CancelTransfer,
    DiagnosticsLog,
    FtpDownload,
    FtpUpload,
    firmware_version_from,
    redact_url,
)
from emulator.core.model import FirmwareStatusSet
from emulator.core.status import Status
from emulator.core.transaction import StopReason
from emulator.protocol.timefmt import format_timestamp
from tests.core.conftest import T0, FakeCsms

UPLOAD_TO = "ftp://diag:secret@127.0.0.1:2121/uploads/"
FIRMWARE = "ftp://fw:secret@127.0.0.1:2121/images/AC22-3P-1.10.0.bin"


def diagnostics_statuses(csms: FakeCsms) -> list[str]:
    return [p["status"] for p in csms.payloads("DiagnosticsStatusNotification")]


def firmware_statuses(csms: FakeCsms) -> list[str]:
    return [p["status"] for p in csms.payloads("FirmwareStatusNotification")]


def last_transfer(csms: FakeCsms) -> FtpUpload | FtpDownload | CancelTransfer:
    assert csms.transfers, "no transfer was asked for"
    transfer: FtpUpload | FtpDownload | CancelTransfer = csms.transfers[-1]
    return transfer


def update_firmware(csms: FakeCsms, *, at: float | None = None, **options: int) -> None:
    payload = {
        "location": FIRMWARE,
        "retrieveDate": format_timestamp(csms.now if at is None else at),
        **options,
    }
    assert csms.call("UpdateFirmware", payload) == {}


# ------------------------------------------------------------------ the log


def test_a_day_of_the_log_keeps_at_most_300_lines() -> None:
    log = DiagnosticsLog()
    for i in range(1000):
        log.append(T0 + i, f"event {i}")
    lines = log.day_lines(int(T0 // DAY))
    assert len(lines) == MAX_LINES_PER_DAY
    assert lines[-1].endswith(b" event 999\n") and lines[0].endswith(b" event 700\n")


def test_a_day_of_the_log_stays_below_25_kb() -> None:
    log = DiagnosticsLog()
    for i in range(300):
        log.append(T0 + i, f"event {i} " + "x" * 200)  # cut to 160 bytes a line
    day = int(T0 // DAY)
    assert log.day_bytes(day) == sum(len(line) for line in log.day_lines(day))
    assert log.day_bytes(day) < MAX_BYTES_PER_DAY
    assert all(len(line) <= 160 for line in log.day_lines(day))
    assert len(log.day_lines(day)) < MAX_LINES_PER_DAY  # the byte limit bit first


def test_the_log_keeps_seven_days() -> None:
    log = DiagnosticsLog()
    for d in range(10):
        log.append(T0 + d * DAY + 60, f"day {d}")
    assert log.days() == [int(T0 // DAY) + d for d in range(3, 10)]
    assert len(log.days()) == MAX_DAYS
    log.append(T0 + 60, "a clock stepped back a week")  # older than the window: ignored
    assert len(log.days()) == MAX_DAYS


def test_the_wallbox_logs_its_own_events(csms: FakeCsms) -> None:
    csms.start_charging()
    csms.unplug()
    text = csms.wb.firmware.log.render().decode()
    for expected in (
        "power on, firmware 1.09.0",
        "websocket connected",
        "boot Accepted",
        "connector 1 Charging",
        "transaction start connector 1",
        "transaction stop connector 1 EVDisconnected",
    ):
        assert expected in text
    assert text.startswith("2026-01-01T00:00:00Z ")


# ------------------------------------------------------------------ GetDiagnostics


def test_get_diagnostics_uploads_the_log_and_reports_uploading_then_uploaded(
    csms: FakeCsms,
) -> None:
    csms.start_charging()
    answer = csms.call("GetDiagnostics", {"location": UPLOAD_TO})
    assert answer == {"fileName": "diagnostics-CP-TEST-0001-20260101T000000Z.log"}
    upload = last_transfer(csms)
    assert isinstance(upload, FtpUpload)
    assert upload.url == UPLOAD_TO and upload.filename == answer["fileName"]
    assert upload.data == csms.wb.firmware.log.render(None, None)[: len(upload.data)]
    assert b"transaction start" in upload.data
    assert diagnostics_statuses(csms) == ["Uploading"]
    csms.finish_transfer(upload.job_id)
    assert diagnostics_statuses(csms) == ["Uploading", "Uploaded"]


def test_triggered_diagnostics_status_is_idle_unless_an_upload_runs(csms: FakeCsms) -> None:
    trigger = {"requestedMessage": "DiagnosticsStatusNotification"}
    assert csms.call("TriggerMessage", trigger) == {"status": "Accepted"}
    assert diagnostics_statuses(csms) == ["Idle"]
    csms.call("GetDiagnostics", {"location": UPLOAD_TO})
    csms.call("TriggerMessage", trigger)
    assert diagnostics_statuses(csms) == ["Idle", "Uploading", "Uploading"]
    csms.finish_transfer(last_transfer(csms).job_id)
    csms.call("TriggerMessage", trigger)
    assert diagnostics_statuses(csms)[-2:] == ["Uploaded", "Idle"]


def test_start_and_stop_time_select_whole_days(csms: FakeCsms) -> None:
    for day in range(3):
        csms.run_until(T0 + day * DAY + 3600)
        csms.start_charging()
        csms.unplug()
    log = csms.wb.firmware.log
    second_day = int(T0 // DAY) + 1
    csms.call(
        "GetDiagnostics",
        {
            "location": UPLOAD_TO,
            "startTime": format_timestamp(T0 + DAY + 7200),  # within the second day
            "stopTime": format_timestamp(T0 + DAY + 7300),
        },
    )
    upload = last_transfer(csms)
    assert isinstance(upload, FtpUpload)
    assert upload.data == b"".join(log.day_lines(second_day))
    assert all(line.startswith(b"2026-01-02T") for line in upload.data.splitlines())


def test_get_diagnostics_without_log_lines_in_the_period_answers_no_file(
    csms: FakeCsms,
) -> None:
    answer = csms.call(
        "GetDiagnostics",
        {"location": UPLOAD_TO, "startTime": format_timestamp(T0 + 30 * DAY)},
    )
    assert answer == {}
    assert csms.transfers == [] and diagnostics_statuses(csms) == []


def test_a_failed_upload_is_retried_after_retry_interval_then_fails(csms: FakeCsms) -> None:
    csms.call("GetDiagnostics", {"location": UPLOAD_TO, "retries": 2, "retryInterval": 30})
    started = csms.now
    for attempt in range(3):
        upload = last_transfer(csms)
        assert isinstance(upload, FtpUpload)
        assert len(csms.transfers) == attempt + 1
        assert csms.now == started + 30 * attempt
        csms.finish_transfer(upload.job_id, ok=False, detail="login: 530 Login incorrect.")
        if attempt < 2:
            csms.advance(29)
            assert len(csms.transfers) == attempt + 1, "not before retryInterval"
            csms.advance(1)
    assert diagnostics_statuses(csms) == ["Uploading", "UploadFailed"]
    assert b"diagnostics upload attempt 3 failed: login: 530" in csms.wb.firmware.log.render()


def test_a_restart_abandons_a_running_upload(csms: FakeCsms) -> None:
    csms.call("GetDiagnostics", {"location": UPLOAD_TO})
    upload = last_transfer(csms)
    csms.call("Reset", {"type": "Hard"})
    csms.advance(10)
    assert last_transfer(csms) == CancelTransfer(upload.job_id)
    assert diagnostics_statuses(csms) == ["Uploading", "UploadFailed"]
    csms.finish_transfer(upload.job_id)  # a late outcome of an abandoned job: ignored
    assert diagnostics_statuses(csms) == ["Uploading", "UploadFailed"]


# ------------------------------------------------------------------ UpdateFirmware


def test_firmware_version_comes_from_the_file_name() -> None:
    assert firmware_version_from(FIRMWARE, "1.09.0") == "1.10.0"
    assert firmware_version_from("ftp://h/fw_2.0.0-rc1.img", "1") == "2.0.0-rc1"
    assert firmware_version_from("ftp://h/AC22-v3.1.4-beta.tar.gz", "1") == "3.1.4-beta"
    assert firmware_version_from("ftp://h/nightly.bin", "1.09.0") == "nightly"
    assert firmware_version_from("ftp://h/", "1.09.0") == "1.09.0-update"
    assert len(firmware_version_from("ftp://h/" + "x" * 80, "1")) == 50


def test_urls_are_shown_without_their_password() -> None:
    assert redact_url(FIRMWARE) == "ftp://fw:***@127.0.0.1:2121/images/AC22-3P-1.10.0.bin"
    assert redact_url("ftp://127.0.0.1/x") == "ftp://127.0.0.1/x"
    assert "secret" not in repr(FtpDownload(1, FIRMWARE))
    assert "secret" not in repr(FtpUpload(1, UPLOAD_TO, "f", b"x" * 10))


def test_update_firmware_downloads_at_retrieve_date_installs_and_reboots_with_the_new_version(
    make_csms: Callable[..., FakeCsms],
) -> None:
    csms = make_csms(firmware_install_seconds=5.0)
    update_firmware(csms, at=T0 + 600)
    csms.advance(599)
    assert csms.transfers == [] and firmware_statuses(csms) == []
    csms.advance(1)
    download = last_transfer(csms)
    assert download == FtpDownload(download.job_id, FIRMWARE)
    assert firmware_statuses(csms) == ["Downloading"]
    csms.advance(3)
    csms.finish_transfer(download.job_id, detail="4096 bytes")
    assert firmware_statuses(csms) == ["Downloading", "Downloaded", "Installing"]
    installing_at = csms.now
    csms.advance(4.9)
    assert csms.reboots == []
    csms.advance(0.1)
    assert csms.reboots == [installing_at + 5.0]
    csms.advance(csms.wb.reboot_seconds)
    boots = csms.payloads("BootNotification")
    assert [b["firmwareVersion"] for b in boots] == ["1.09.0", "1.10.0"]
    assert firmware_statuses(csms) == ["Downloading", "Downloaded", "Installing", "Installed"]
    installed = csms.sent_of("FirmwareStatusNotification")[-1]
    boot = csms.sent_of("BootNotification")[-1]
    assert installed.at >= boot.at and csms.sent.index(installed) > csms.sent.index(boot)
    assert csms.wb.firmware_version == "1.10.0"


def test_triggered_firmware_status_is_idle_unless_an_update_runs(
    make_csms: Callable[..., FakeCsms],
) -> None:
    csms = make_csms(firmware_install_seconds=5.0)
    trigger = {"requestedMessage": "FirmwareStatusNotification"}
    csms.call("TriggerMessage", trigger)
    update_firmware(csms, at=T0 + 60)
    csms.call("TriggerMessage", trigger)  # scheduled, nothing runs yet
    assert firmware_statuses(csms) == ["Idle", "Idle"]
    csms.advance(60)
    csms.call("TriggerMessage", trigger)
    assert firmware_statuses(csms)[-1] == "Downloading"
    csms.plug_in()  # keeps the charger from installing: a transaction is about to start
    csms.present("ALICE")
    csms.finish_transfer(last_transfer(csms).job_id)
    csms.call("TriggerMessage", trigger)
    assert firmware_statuses(csms)[-2:] == ["Downloaded", "Downloaded"]
    csms.unplug()
    csms.call("TriggerMessage", trigger)
    assert firmware_statuses(csms)[-2:] == ["Installing", "Installing"]
    csms.advance(5 + csms.wb.reboot_seconds)
    csms.call("TriggerMessage", trigger)
    assert firmware_statuses(csms)[-2:] == ["Installed", "Idle"]


def test_a_running_transaction_is_finished_before_installing(
    make_csms: Callable[..., FakeCsms],
) -> None:
    csms = make_csms(firmware_install_seconds=1.0)
    tx = csms.start_charging()
    update_firmware(csms)
    csms.finish_transfer(last_transfer(csms).job_id)
    csms.advance(3600)
    assert firmware_statuses(csms) == ["Downloading", "Downloaded"]
    assert csms.status is Status.CHARGING and csms.reboots == []
    csms.unplug()
    assert tx.stop_reason is StopReason.EV_DISCONNECTED
    assert firmware_statuses(csms)[-1] == "Installing"
    csms.advance(1 + csms.wb.reboot_seconds)
    assert firmware_statuses(csms)[-1] == "Installed"
    assert csms.payloads("BootNotification")[-1]["firmwareVersion"] == "1.10.0"


def test_download_retries_then_download_failed(csms: FakeCsms) -> None:
    update_firmware(csms, retries=1, retryInterval=120)
    first = last_transfer(csms)
    csms.finish_transfer(first.job_id, ok=False, detail="RETR: 550 No such file")
    csms.advance(119)
    assert len(csms.transfers) == 1
    csms.advance(1)
    assert len(csms.transfers) == 2 and isinstance(last_transfer(csms), FtpDownload)
    csms.finish_transfer(first.job_id, ok=False, detail="RETR: 550 No such file")
    assert firmware_statuses(csms) == ["Downloading", "DownloadFailed"]
    assert csms.wb.firmware_version == "1.09.0" and csms.reboots == []


def test_the_reference_status_set_reports_only_what_the_document_lists(
    make_csms: Callable[..., FakeCsms],
) -> None:
    csms = make_csms(firmware_statuses=FirmwareStatusSet.REFERENCE, firmware_install_seconds=1.0)
    update_firmware(csms)
    csms.finish_transfer(last_transfer(csms).job_id)
    csms.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    csms.advance(1 + csms.wb.reboot_seconds)
    assert firmware_statuses(csms) == ["Downloading", "Downloading", "Installed"]
    assert csms.payloads("BootNotification")[-1]["firmwareVersion"] == "1.10.0"


def test_a_model_can_make_installation_fail(make_csms: Callable[..., FakeCsms]) -> None:
    csms = make_csms(firmware_install_failure_share=1.0, firmware_install_seconds=2.0)
    update_firmware(csms)
    csms.finish_transfer(last_transfer(csms).job_id)
    csms.advance(60)
    assert firmware_statuses(csms) == [
        "Downloading",
        "Downloaded",
        "Installing",
        "InstallationFailed",
    ]
    assert csms.reboots == [] and csms.wb.firmware_version == "1.09.0"


def test_a_model_can_make_downloads_fail_after_their_retries(
    make_csms: Callable[..., FakeCsms],
) -> None:
    csms = make_csms(firmware_download_failure_share=1.0)
    update_firmware(csms, retries=2, retryInterval=10)
    for _ in range(3):
        csms.finish_transfer(last_transfer(csms).job_id, detail="4096 bytes")
        csms.advance(10)
    assert len(csms.transfers) == 3
    assert firmware_statuses(csms) == ["Downloading", "DownloadFailed"]
    assert b"checksum mismatch" in csms.wb.firmware.log.render()


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_failure_draws_come_from_the_wallbox_seed(
    make_csms: Callable[..., FakeCsms], share: float
) -> None:
    outcomes = []
    for _ in range(2):
        csms = make_csms(firmware_install_failure_share=share, seed=7)
        update_firmware(csms)
        assert csms.wb.firmware.update is not None
        outcomes.append(csms.wb.firmware.update.fail_install)
    assert outcomes[0] == outcomes[1]
    if share in (0.0, 1.0):
        assert outcomes[0] is (share == 1.0)


def test_a_new_update_replaces_a_running_download(csms: FakeCsms) -> None:
    update_firmware(csms)
    first = last_transfer(csms)
    update_firmware(csms)
    assert csms.transfers[-2:] == [CancelTransfer(first.job_id), csms.transfers[-1]]
    second = last_transfer(csms)
    assert isinstance(second, FtpDownload) and second.job_id != first.job_id
    csms.finish_transfer(first.job_id)  # the abandoned one: ignored
    assert firmware_statuses(csms) == ["Downloading", "Downloading"]
    csms.finish_transfer(second.job_id)
    assert firmware_statuses(csms)[-1] == "Installing"


def test_a_reset_during_the_download_fails_it(csms: FakeCsms) -> None:
    update_firmware(csms)
    download = last_transfer(csms)
    csms.call("Reset", {"type": "Soft"})
    csms.advance(10)
    assert CancelTransfer(download.job_id) in csms.transfers
    assert firmware_statuses(csms) == ["Downloading", "DownloadFailed"]
    assert csms.payloads("BootNotification")[-1]["firmwareVersion"] == "1.09.0"
