"""The security extension's transfers over a real FTP server (pyftpdlib on 127.0.0.1):
the transport's digest and failure kinds, then a wallbox with ``security_extension``
in a fleet, driven by the reference CSMS: SignedUpdateFirmware (a real signature over
the served image) and GetLog (the security log stored on the server)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from emulator.core.firmware import TransferFailure
from emulator.core.wallbox import Wallbox
from emulator.csms import ReferenceCsms
from emulator.transport.transfers import FileTransfers, TransferError
from tests.core.signing import signing_certificate
from tests.integration.ftp_server import FtpServer
from tests.integration.support import eventually, running_fleet, scenario

IMAGE = bytes(range(256)) * 256  # 64 KiB
USERS = {"fw": "s3cr3t-pw", "logs": "l0gs-pw"}
SECURE = 2  # the fleet's charger number of the wallbox with the security extension


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "AC22-3P-1.10.0.bin").write_bytes(IMAGE)
    (tmp_path / "uploads").mkdir()
    return tmp_path


# ------------------------------------------------------------------ the FTP client


def test_a_download_hands_every_block_to_its_sink(ftp_root: Path) -> None:
    async def main() -> None:
        hasher = hashlib.sha256()
        with FtpServer(ftp_root, users=USERS) as ftp:
            url = ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin")
            assert await FileTransfers().download(url, sink=hasher.update) == "65536 bytes"
        assert hasher.digest() == hashlib.sha256(IMAGE).digest()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("path", "password", "failure"),
    [
        ("uploads/", "wrong-password", TransferFailure.PERMISSION_DENIED),  # 530
        ("no-such-dir/", "l0gs-pw", TransferFailure.PERMISSION_DENIED),  # 550 on STOR
    ],
    ids=["refused-login", "refused-file"],
)
def test_a_refused_upload_says_permission_denied(
    ftp_root: Path, path: str, password: str, failure: TransferFailure
) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            with pytest.raises(TransferError) as caught:
                await FileTransfers().upload(ftp.url("logs", password, path), "x.log", b"x\n")
        assert caught.value.failure is failure
        assert password not in str(caught.value)

    asyncio.run(main())


def test_a_location_the_charger_cannot_use_says_why() -> None:
    async def main() -> None:
        with pytest.raises(TransferError) as scheme:
            await FileTransfers().upload("sftp://127.0.0.1/uploads/", "x.log", b"x\n")
        assert scheme.value.failure is TransferFailure.NOT_SUPPORTED
        with pytest.raises(TransferError) as port:
            await FileTransfers().upload("ftp://127.0.0.1:99999/uploads/", "x.log", b"x\n")
        assert port.value.failure is TransferFailure.BAD_MESSAGE

    asyncio.run(main())


# ------------------------------------------------------------------ a wallbox


@asynccontextmanager
async def secure_wallbox(csms: ReferenceCsms) -> AsyncIterator[Wallbox]:
    """A running fleet's second wallbox, of the scenario's model with the security
    extension and a fast installation, booted at the reference CSMS."""
    async with running_fleet(scenario(mode="remote-only"), csms.url) as (fleet, _):
        cp = fleet.wallboxes[0].charge_point_id
        await csms.wait_until(lambda: cp in csms.chargers and csms.chargers[cp].booted, 10)
        model = dataclasses.replace(
            fleet.wallboxes[0].model, security_extension=True, firmware_install_seconds=0.2
        )
        wb = fleet.add_wallbox(SECURE, model).wallbox
        cp = wb.charge_point_id
        await csms.wait_until(lambda: cp in csms.chargers and csms.chargers[cp].booted, 10)
        yield wb


def firmware(location: str, signature: str, pem: str) -> dict[str, Any]:
    return {
        "location": location,
        "retrieveDateTime": "2020-01-01T00:00:00Z",  # past: at once
        "signingCertificate": pem,
        "signature": signature,
    }


def test_a_signed_firmware_is_downloaded_verified_and_installed(ftp_root: Path) -> None:
    signer = signing_certificate(key_type="rsa")

    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            async with ReferenceCsms() as csms, secure_wallbox(csms) as wb:
                cp = wb.charge_point_id
                location = ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin")
                payload = {
                    "requestId": 21,
                    "firmware": firmware(location, signer.sign(IMAGE), signer.pem),
                }
                answer = await csms.call(cp, "SignedUpdateFirmware", payload)
                assert answer == {"status": "Accepted"}
                record = csms.chargers[cp]
                await csms.wait_until(lambda: record.boot_count == 2, 20)
                assert record.boot_payload is not None
                assert record.boot_payload["firmwareVersion"] == "1.10.0"
                await eventually(
                    lambda: "FirmwareUpdated" in record.security_events,
                    10,
                    "the FirmwareUpdated security event",
                )
                # Downloading, Downloaded, SignatureVerified, Installing, InstallRebooting,
                # Installed: all sent, all answered.
                assert record.action_counts["SignedFirmwareStatusNotification"] == 6
                assert wb.firmware.signed_firmware_status() == {"status": "Idle"}
                assert ftp.stats.files_sent == 1
                assert csms.schema_violations == 0
                log = wb.firmware.log.render().decode()
                assert "s3cr3t-pw" not in log and "SignatureVerified" in log

    asyncio.run(main())


def test_a_tampered_image_ends_in_invalid_signature(ftp_root: Path) -> None:
    signer = signing_certificate()

    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            async with ReferenceCsms() as csms, secure_wallbox(csms) as wb:
                cp = wb.charge_point_id
                location = ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin")
                signature = signer.sign(IMAGE[:-1] + b"\x00")  # not what the server has
                payload = {"requestId": 9, "firmware": firmware(location, signature, signer.pem)}
                assert await csms.call(cp, "SignedUpdateFirmware", payload) == {
                    "status": "Accepted"
                }
                await eventually(lambda: wb.firmware.signed_update is None, 10, "the update to end")
                assert wb.firmware.signed_firmware_status() == {
                    "status": "InvalidSignature",
                    "requestId": 9,
                }
                record = csms.chargers[cp]
                await eventually(
                    lambda: record.action_counts.get("SecurityEventNotification") == 1,
                    10,
                    "the InvalidFirmwareSignature security event",
                )
                assert record.boot_count == 1 and wb.firmware_version == "1.09.0"
                assert ftp.stats.files_sent == 1

    asyncio.run(main())


def test_get_log_stores_the_security_log_on_the_server(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            async with ReferenceCsms() as csms, secure_wallbox(csms) as wb:
                cp = wb.charge_point_id
                bad = {"requestId": 1, "firmware": firmware("ftp://x/y.bin", "AA==", "no PEM")}
                answer = await csms.call(cp, "SignedUpdateFirmware", bad)
                assert answer == {"status": "InvalidCertificate"}
                payload = {
                    "logType": "SecurityLog",
                    "requestId": 77,
                    "log": {"remoteLocation": ftp.url("logs", "l0gs-pw", "uploads/")},
                }
                answer = await csms.call(cp, "GetLog", payload)
                assert answer["status"] == "Accepted"
                await eventually(lambda: wb.firmware.log_upload is None, 10, "the upload")
                record = csms.chargers[cp]
                await eventually(
                    lambda: record.action_counts.get("LogStatusNotification") == 2,
                    10,
                    "Uploading and Uploaded",
                )
        stored = (ftp_root / "uploads" / answer["filename"]).read_text()
        assert stored.splitlines()[-1].endswith(
            "InvalidFirmwareSigningCertificate not a PEM X.509 certificate"
        )
        assert "l0gs-pw" not in stored

    asyncio.run(main())


def test_a_get_log_to_a_server_that_refuses_reports_permission_denied_at_once(
    ftp_root: Path,
) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            async with ReferenceCsms() as csms, secure_wallbox(csms) as wb:
                cp = wb.charge_point_id
                payload = {
                    "logType": "DiagnosticsLog",
                    "requestId": 78,
                    "retries": 3,
                    "retryInterval": 1,
                    "log": {"remoteLocation": ftp.url("logs", "not-the-password", "uploads/")},
                }
                answer = await csms.call(cp, "GetLog", payload)
                assert answer["status"] == "Accepted"
                await eventually(lambda: wb.firmware.log_upload is None, 10, "the failure")
                # The job is gone with its first failure: no retry is left to come (a
                # refused password stays refused).
                log = wb.firmware.log.render().decode()
                assert log.count("log upload attempt") == 1
                assert "log upload 78 PermissionDenied" in log
                assert "not-the-password" not in log
        assert not list((ftp_root / "uploads").iterdir())

    asyncio.run(main())


def test_a_get_log_to_a_server_that_is_gone_is_retried_then_upload_failure(
    ftp_root: Path,
) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            gone = ftp.url("logs", "l0gs-pw", "uploads/")  # the port closes with the server
        async with ReferenceCsms() as csms, secure_wallbox(csms) as wb:
            cp = wb.charge_point_id
            payload = {
                "logType": "DiagnosticsLog",
                "requestId": 79,
                "retries": 1,
                "retryInterval": 1,
                "log": {"remoteLocation": gone},
            }
            assert (await csms.call(cp, "GetLog", payload))["status"] == "Accepted"
            await eventually(lambda: wb.firmware.log_upload is None, 15, "the failure")
            log = wb.firmware.log.render().decode()
            assert log.count("log upload attempt") == 2
            assert "log upload 79 UploadFailure" in log

    asyncio.run(main())
