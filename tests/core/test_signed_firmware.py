"""SignedUpdateFirmware on a fake clock (OCPP 1.6 Security Whitepaper L01), with real
certificates and signatures (tests/core/signing.py)."""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Callable
from typing import Any, Literal

import pytest

from emulator.core.firmware import CancelTransfer, FtpDownload
from emulator.core.signed_firmware import (
    CertificateProblem,
    check_signing_certificate,
    signature_verifies,
)
from emulator.core.status import Status
from emulator.core.transaction import StopReason
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.timefmt import format_timestamp
from tests.core.conftest import T0, FakeCsms
from tests.core.signing import KeyType, Signer, manufacturer_root, signing_certificate

IMAGE = b"AC22-3P firmware 1.10.0\n" * 2000
LOCATION = "ftp://fw:secret@127.0.0.1:2121/images/AC22-3P-1.10.0.bin"
UTC = datetime.UTC

MakeCsms = Callable[..., FakeCsms]


@pytest.fixture
def ext(make_csms: MakeCsms) -> FakeCsms:
    """A charger model with the security extension, booted and idle; its power-on's
    StartupOfTheDevice event forgotten (tests/core/test_security_extension.py has it)."""
    csms = make_csms(security_extension=True, firmware_install_seconds=5.0)
    assert [p["type"] for p in csms.payloads("SecurityEventNotification")] == ["StartupOfTheDevice"]
    csms.sent = [s for s in csms.sent if s.action != "SecurityEventNotification"]
    return csms


def signed_update(
    csms: FakeCsms,
    signer: Signer | None = None,
    *,
    signature: str | None = None,
    request_id: int = 7,
    retrieve: float | None = None,
    install: float | None = None,
    **options: int,
) -> dict[str, Any]:
    signer = signer or signing_certificate()
    firmware = {
        "location": LOCATION,
        "retrieveDateTime": format_timestamp(csms.now if retrieve is None else retrieve),
        "signingCertificate": signer.pem,
        "signature": signer.sign(IMAGE) if signature is None else signature,
    }
    if install is not None:
        firmware["installDateTime"] = format_timestamp(install)
    return csms.call(
        "SignedUpdateFirmware", {"requestId": request_id, "firmware": firmware, **options}
    )


def statuses(csms: FakeCsms) -> list[str]:
    return [p["status"] for p in csms.payloads("SignedFirmwareStatusNotification")]


def request_ids(csms: FakeCsms) -> set[int]:
    return {p["requestId"] for p in csms.payloads("SignedFirmwareStatusNotification")}


LIFECYCLE = ("StartupOfTheDevice", "ResetOrReboot")  # every power-on and restart has them


def security_events(csms: FakeCsms) -> list[str]:
    """The security events the firmware work raised (not the power-on's and restarts')."""
    return [
        p["type"] for p in csms.payloads("SecurityEventNotification") if p["type"] not in LIFECYCLE
    ]


def download(csms: FakeCsms) -> FtpDownload:
    assert csms.transfers, "no transfer was asked for"
    transfer = csms.transfers[-1]
    assert isinstance(transfer, FtpDownload)
    return transfer


def deliver(csms: FakeCsms, data: bytes = IMAGE) -> None:
    """The transport downloaded ``data`` and reports its SHA256."""
    csms.finish_transfer(
        download(csms).job_id, detail=f"{len(data)} bytes", sha256=hashlib.sha256(data).digest()
    )


# ------------------------------------------------------------------ the happy path


@pytest.mark.parametrize(
    ("key_type", "scheme"), [("ec", "pkcs1"), ("rsa", "pkcs1"), ("rsa", "pss")]
)
def test_a_signed_update_is_verified_installed_and_reported_with_its_request_id(
    ext: FakeCsms, key_type: KeyType, scheme: Literal["pkcs1", "pss"]
) -> None:
    signer = signing_certificate(key_type=key_type)
    answer = signed_update(ext, signer, signature=signer.sign(IMAGE, scheme))
    assert answer == {"status": "Accepted"}
    transfer = download(ext)
    assert transfer == FtpDownload(transfer.job_id, LOCATION, digest=True)
    assert "secret" not in repr(transfer) and "secret" not in repr(ext.wb.firmware.signed_update)
    deliver(ext)
    assert statuses(ext) == ["Downloading", "Downloaded", "SignatureVerified", "Installing"]
    ext.advance(5 + 30 + ext.wb.reboot_seconds)
    assert statuses(ext) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    assert request_ids(ext) == {7}
    assert len(ext.reboots) == 1
    assert [b["firmwareVersion"] for b in ext.payloads("BootNotification")] == ["1.09.0", "1.10.0"]
    assert security_events(ext) == ["FirmwareUpdated"]
    installed = ext.sent_of("SignedFirmwareStatusNotification")[-1]
    boot = ext.sent_of("BootNotification")[-1]
    assert ext.sent.index(installed) > ext.sent.index(boot)
    assert ext.wb.firmware.signed_update is None and ext.wb.firmware_version == "1.10.0"


def test_retrieve_and_install_date_times_ahead_are_scheduled(ext: FakeCsms) -> None:
    answer = signed_update(ext, retrieve=T0 + 3600, install=T0 + 7200)
    assert answer == {"status": "Accepted"}
    assert statuses(ext) == ["DownloadScheduled"] and ext.transfers == []
    ext.advance(3599)
    assert ext.transfers == []
    ext.advance(1)
    deliver(ext)
    assert statuses(ext)[-2:] == ["SignatureVerified", "InstallScheduled"]
    ext.advance(7199 - ext.elapsed)
    assert statuses(ext)[-1] == "InstallScheduled" and ext.reboots == []
    ext.advance(1)
    assert statuses(ext)[-1] == "Installing"
    assert ext.sent_of("SignedFirmwareStatusNotification")[-1].at == T0 + 7200


def test_a_running_transaction_is_finished_before_installing(ext: FakeCsms) -> None:
    tx = ext.start_charging()
    signed_update(ext)
    deliver(ext)
    ext.advance(3600)
    assert statuses(ext)[-1] == "SignatureVerified"
    assert ext.status is Status.CHARGING and ext.reboots == []
    ext.unplug()
    assert tx.stop_reason is StopReason.EV_DISCONNECTED
    assert statuses(ext)[-1] == "Installing"


def test_a_model_can_make_the_installation_fail(make_csms: MakeCsms) -> None:
    csms = make_csms(security_extension=True, firmware_install_failure_share=1.0)
    signed_update(csms)
    deliver(csms)
    csms.advance(60)
    assert statuses(csms)[-2:] == ["Installing", "InstallationFailed"]
    assert csms.reboots == [] and security_events(csms) == []


# ------------------------------------------------------------------ the certificate


@pytest.mark.parametrize(
    ("make_pem", "reason"),
    [
        (lambda: "-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n", "PEM"),
        (lambda: "not a certificate at all", "PEM"),
        (
            lambda: signing_certificate(not_after=datetime.datetime(2025, 6, 1, tzinfo=UTC)).pem,
            "expired",
        ),
        (
            lambda: signing_certificate(not_before=datetime.datetime(2027, 1, 1, tzinfo=UTC)).pem,
            "not valid yet",
        ),
        (lambda: signing_certificate(digital_signature=False).pem, "key usage"),
    ],
    ids=["garbled-pem", "no-pem", "expired", "not-yet-valid", "no-signing-usage"],
)
def test_a_bad_signing_certificate_is_answered_invalid_certificate_with_a_security_event(
    ext: FakeCsms, make_pem: Callable[[], str], reason: str
) -> None:
    payload = {
        "requestId": 3,
        "firmware": {
            "location": LOCATION,
            "retrieveDateTime": format_timestamp(ext.now),
            "signingCertificate": make_pem(),
            "signature": signing_certificate().sign(IMAGE),
        },
    }
    answered_at = ext.now
    assert ext.call("SignedUpdateFirmware", payload) == {"status": "InvalidCertificate"}
    ext.advance(1)  # the event goes out with the transaction messages, after the answer
    (event,) = ext.payloads("SecurityEventNotification")
    assert event["type"] == "InvalidFirmwareSigningCertificate"
    assert reason in event["techInfo"] and event["timestamp"] == format_timestamp(answered_at)
    assert ext.transfers == [] and statuses(ext) == []
    assert ext.wb.firmware.signed_update is None
    security_log = ext.wb.firmware.security_log
    assert security_log is not None
    assert b"InvalidFirmwareSigningCertificate" in security_log.render()


def test_the_signing_certificate_must_be_issued_by_an_installed_manufacturer_root() -> None:
    ours, theirs = manufacturer_root(0), manufacturer_root(1)
    signer = signing_certificate(issuer=ours)
    assert check_signing_certificate(signer.pem, T0, [ours.certificate]).serial_number == (
        signer.certificate.serial_number
    )
    assert check_signing_certificate(signer.pem, T0, [theirs.certificate, ours.certificate])
    with pytest.raises(CertificateProblem, match="not issued by an installed"):
        check_signing_certificate(signer.pem, T0, [theirs.certificate])
    # No root installed: the certificate's own checks decide.
    assert check_signing_certificate(signing_certificate(issuer=theirs).pem, T0, [])


def test_a_signature_is_checked_over_the_digest_with_the_certificates_key() -> None:
    key_types: tuple[KeyType, ...] = ("ec", "rsa")
    for key_type in key_types:
        signer = signing_certificate(key_type=key_type)
        other = signing_certificate(key_type=key_type, number=1)
        digest = hashlib.sha256(IMAGE).digest()
        raw = base64.b64decode(signer.sign(IMAGE))
        assert signature_verifies(signer.certificate, raw, digest)
        assert not signature_verifies(other.certificate, raw, digest)
        tampered = hashlib.sha256(IMAGE + b"x").digest()
        assert not signature_verifies(signer.certificate, raw, tampered)
        assert not signature_verifies(signer.certificate, b"\x00" * 64, digest)
        assert not signature_verifies(signer.certificate, raw, digest[:16])


# ------------------------------------------------------------------ the signature


@pytest.mark.parametrize(
    "signature",
    [
        lambda: signing_certificate().sign(IMAGE + b"tampered"),
        lambda: signing_certificate(number=1).sign(IMAGE),  # another key
        lambda: "!!! not base64 !!!",
    ],
    ids=["other-data", "other-key", "not-base64"],
)
def test_a_signature_that_does_not_verify_ends_in_invalid_signature_with_a_security_event(
    ext: FakeCsms, signature: Callable[[], str]
) -> None:
    signer = signing_certificate()
    assert signed_update(ext, signer, signature=signature()) == {"status": "Accepted"}
    deliver(ext)
    ext.advance(600)
    assert statuses(ext) == ["Downloading", "Downloaded", "InvalidSignature"]
    assert request_ids(ext) == {7}
    assert security_events(ext) == ["InvalidFirmwareSignature"]
    assert ext.reboots == [] and ext.wb.firmware_version == "1.09.0"
    assert ext.wb.firmware.signed_update is None


def test_a_download_without_a_digest_cannot_be_verified(ext: FakeCsms) -> None:
    signed_update(ext)
    ext.finish_transfer(download(ext).job_id)  # a transport that did not hash the file
    ext.advance(1)
    assert statuses(ext)[-1] == "InvalidSignature"
    assert security_events(ext) == ["InvalidFirmwareSignature"]


# ------------------------------------------------------------------ failures, cancels


def test_a_failed_download_is_retried_after_retry_interval_then_download_failed(
    ext: FakeCsms,
) -> None:
    signed_update(ext, retries=2, retryInterval=30)
    for attempt in range(1, 4):
        assert len(ext.transfers) == attempt
        assert statuses(ext) == ["Downloading"]
        ext.finish_transfer(download(ext).job_id, ok=False, detail="RETR: 550 No such file")
        ext.advance(30)
    assert len(ext.transfers) == 3
    assert all(isinstance(t, FtpDownload) and t.digest for t in ext.transfers)
    assert statuses(ext) == ["Downloading", "DownloadFailed"]
    assert request_ids(ext) == {7}
    assert security_events(ext) == [] and ext.reboots == []


def test_retries_wait_retry_interval_between_attempts(ext: FakeCsms) -> None:
    signed_update(ext, retries=1, retryInterval=120)
    ext.finish_transfer(download(ext).job_id, ok=False, detail="connect: timed out")
    ext.advance(119)
    assert len(ext.transfers) == 1
    ext.advance(1)
    assert len(ext.transfers) == 2
    deliver(ext)
    assert statuses(ext) == ["Downloading", "Downloaded", "SignatureVerified", "Installing"]


def test_a_new_signed_update_cancels_the_running_one_accepted_canceled(ext: FakeCsms) -> None:
    signed_update(ext, request_id=7)
    first = download(ext)
    assert signed_update(ext, request_id=8) == {"status": "AcceptedCanceled"}
    second = download(ext)
    assert ext.transfers == [first, CancelTransfer(first.job_id), second]
    assert second.job_id != first.job_id
    ext.finish_transfer(first.job_id, sha256=hashlib.sha256(IMAGE).digest())  # abandoned
    assert statuses(ext) == ["Downloading", "Downloading"]
    deliver(ext)
    assert [p["requestId"] for p in ext.payloads("SignedFirmwareStatusNotification")] == [
        7,
        8,
        8,
        8,
        8,
    ]


def test_a_signed_update_while_one_installs_is_rejected(ext: FakeCsms) -> None:
    signed_update(ext, request_id=7)
    deliver(ext)
    assert statuses(ext)[-1] == "Installing"
    assert signed_update(ext, request_id=8) == {"status": "Rejected"}
    ext.advance(5 + 30 + ext.wb.reboot_seconds)
    assert statuses(ext)[-1] == "Installed" and request_ids(ext) == {7}


def test_a_reset_during_the_download_fails_it(ext: FakeCsms) -> None:
    signed_update(ext)
    job = download(ext)
    ext.call("Reset", {"type": "Soft"})
    ext.advance(10)
    assert CancelTransfer(job.job_id) in ext.transfers
    assert statuses(ext) == ["Downloading", "DownloadFailed"]
    assert ext.payloads("BootNotification")[-1]["firmwareVersion"] == "1.09.0"


# ------------------------------------------------------------------ trigger, flag


def test_the_triggered_status_is_the_last_sent_or_idle_after_installed(ext: FakeCsms) -> None:
    firmware = ext.wb.firmware
    assert firmware.signed_firmware_status() == {"status": "Idle"}
    signed_update(ext, request_id=11)
    assert firmware.signed_firmware_status() == {"status": "Downloading", "requestId": 11}
    deliver(ext)
    assert firmware.signed_firmware_status() == {"status": "Installing", "requestId": 11}
    ext.advance(5 + 30 + ext.wb.reboot_seconds)
    assert statuses(ext)[-1] == "Installed"
    assert firmware.signed_firmware_status() == {"status": "Idle"}  # L01.FR.28


def test_without_the_extension_signed_update_firmware_is_not_supported(csms: FakeCsms) -> None:
    signer = signing_certificate()
    payload = {
        "requestId": 1,
        "firmware": {
            "location": LOCATION,
            "retrieveDateTime": format_timestamp(csms.now),
            "signingCertificate": signer.pem,
            "signature": signer.sign(IMAGE),
        },
    }
    with pytest.raises(RemoteProtocolError) as refused:
        csms.call("SignedUpdateFirmware", payload)
    assert refused.value.code is ErrorCode.NOT_SUPPORTED
    assert csms.transfers == [] and csms.payloads("SecurityEventNotification") == []


def test_with_the_extension_the_unsigned_update_firmware_is_not_supported(ext: FakeCsms) -> None:
    payload = {"location": LOCATION, "retrieveDate": format_timestamp(ext.now)}
    with pytest.raises(RemoteProtocolError) as refused:
        ext.call("UpdateFirmware", payload)
    assert refused.value.code is ErrorCode.NOT_SUPPORTED  # L01.FR.20
    ext.advance(60)
    assert ext.transfers == [] and ext.wb.firmware.update is None
