"""Firmware Management over a real FTP server (pyftpdlib on 127.0.0.1).

First the transport's FTP client on its own (upload, refused login, missing file, a
connection dropped mid-transfer, the concurrency bound), then wallboxes of a fleet
against the reference CSMS: GetDiagnostics and UpdateFirmware end to end.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import msgspec
import pytest

from emulator.core.firmware import DAY, MAX_BYTES_PER_DAY
from emulator.csms import ReferenceCsms
from emulator.csms.operations import get_diagnostics, update_firmware
from emulator.fleet.scenario import Scenario
from emulator.transport.transfers import FileTransfers, FtpLocation, TransferError
from tests.integration.ftp_server import FtpServer
from tests.integration.support import eventually, running_fleet, scenario

IMAGE = bytes(range(256)) * 256  # 64 KiB
USERS = {"fw": "s3cr3t-pw", "diag": "d1ag-pw"}


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "AC22-3P-1.10.0.bin").write_bytes(IMAGE)
    (tmp_path / "uploads").mkdir()
    return tmp_path


def with_firmware_options(base: Scenario, **fields: object) -> Scenario:
    model = msgspec.structs.replace(base.models[0], **fields)
    return msgspec.structs.replace(base, models=(model,))


# ------------------------------------------------------------------ the FTP client


def test_an_upload_stores_the_file(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            detail = await FileTransfers().upload(
                ftp.url("diag", "d1ag-pw", "uploads/"), "diag.log", b"line 1\nline 2\n"
            )
        assert detail == "14 bytes stored as /uploads/diag.log"
        assert (ftp_root / "uploads" / "diag.log").read_bytes() == b"line 1\nline 2\n"

    asyncio.run(main())


def test_a_download_counts_the_whole_file(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            url = ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin")
            assert await FileTransfers().download(url) == f"{len(IMAGE)} bytes"
            assert ftp.stats.files_sent == 1

    asyncio.run(main())


def test_a_refused_login_fails_without_showing_the_password(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            url = ftp.url("fw", "wrong-password", "images/AC22-3P-1.10.0.bin")
            with pytest.raises(TransferError) as caught:
                await FileTransfers().download(url)
        assert str(caught.value).startswith("login: 530")
        assert "wrong-password" not in str(caught.value)
        assert "wrong-password" not in repr(FtpLocation.parse(url))

    asyncio.run(main())


def test_a_missing_file_fails(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            with pytest.raises(TransferError, match=r"^RETR: 550"):
                await FileTransfers().download(ftp.url("fw", "s3cr3t-pw", "images/nope.bin"))

    asyncio.run(main())


def test_a_connection_dropped_mid_transfer_fails(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS, drop_after=10_000) as ftp:
            url = ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin")
            with pytest.raises(TransferError, match=r"^RETR: connection lost"):
                await FileTransfers(idle_timeout=5.0).download(url)

    asyncio.run(main())


def test_a_server_that_is_not_there_fails(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            url = ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin")
        with pytest.raises(TransferError, match=r"^connect: "):
            await FileTransfers(connect_timeout=2.0).download(url)
        with pytest.raises(TransferError, match="unsupported scheme 'http'"):
            await FileTransfers().download("http://127.0.0.1/x.bin")

    asyncio.run(main())


def test_concurrent_transfers_share_a_bounded_number_of_sessions(ftp_root: Path) -> None:
    async def main() -> None:
        transfers = FileTransfers(max_concurrent=4)
        with FtpServer(ftp_root, users=USERS) as ftp:
            url = ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin")
            async with asyncio.timeout(30):
                results = await asyncio.gather(*(transfers.download(url) for _ in range(24)))
            assert results == [f"{len(IMAGE)} bytes"] * 24
            assert ftp.stats.files_sent == 24
            assert ftp.stats.peak_open <= 4
        assert transfers.peak_active == 4 and transfers.active == 0
        assert transfers.completed == 24 and transfers.failed == 0

    asyncio.run(main())


# ------------------------------------------------------------------ wallboxes


def test_get_diagnostics_uploads_the_log_of_the_selected_day(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            async with ReferenceCsms() as csms:
                async with running_fleet(scenario(mode="remote-only"), csms.url) as (fleet, _):
                    wb = fleet.wallboxes[0]
                    cp = wb.charge_point_id
                    await csms.wait_until(
                        lambda: cp in csms.chargers and csms.chargers[cp].booted, 10
                    )
                    now = time.time()
                    location = ftp.url("diag", "d1ag-pw", "uploads")  # a directory
                    answer = await csms.call(
                        cp, *get_diagnostics(location, start_time=now, stop_time=now)
                    )
                    record = csms.chargers[cp]
                    await csms.wait_until(lambda: record.diagnostics_status == "Uploaded", 10)
                    assert record.diagnostics_history == ["Uploading", "Uploaded"]
                    day_log = b"".join(wb.firmware.log.day_lines(int(now // DAY)))
        stored = (ftp_root / "uploads" / answer["fileName"]).read_bytes()
        assert day_log.startswith(stored)
        assert 0 < len(stored) < MAX_BYTES_PER_DAY
        assert b" boot Accepted\n" in stored
        assert stored.endswith(b" csms GetDiagnostics\n")  # the file is made on request

    asyncio.run(main())


def test_a_refused_upload_is_retried_after_retry_interval_then_fails(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS) as ftp:
            async with ReferenceCsms() as csms:
                async with running_fleet(scenario(mode="remote-only"), csms.url) as (fleet, _):
                    cp = fleet.wallboxes[0].charge_point_id
                    await csms.wait_until(
                        lambda: cp in csms.chargers and csms.chargers[cp].booted, 10
                    )
                    await csms.call(
                        cp,
                        "GetDiagnostics",
                        {
                            "location": ftp.url("diag", "not-the-password", "uploads/"),
                            "retries": 2,
                            "retryInterval": 1,
                        },
                    )
                    record = csms.chargers[cp]
                    await csms.wait_until(lambda: record.diagnostics_status == "UploadFailed", 10)
                    # The FTP server's thread counts a refused login after it has answered
                    # 530: the charger may report UploadFailed first.
                    await eventually(lambda: len(ftp.stats.failed_logins) >= 3, 5.0, "3 logins")
            assert record.diagnostics_history == ["Uploading", "UploadFailed"]
            failed = ftp.stats.failed_logins
            assert len(failed) == 3
            # retryInterval 1 s: a lower bound only, which a loaded machine can only exceed.
            assert all(b - a >= 0.9 for a, b in itertools.pairwise(failed))
        assert not list((ftp_root / "uploads").iterdir())

    asyncio.run(main())


@pytest.mark.parametrize(
    ("path", "server_options"),
    [
        ("images/missing-1.10.0.bin", {}),
        ("images/AC22-3P-1.10.0.bin", {"drop_after": 20_000}),
    ],
    ids=["missing-file", "dropped-mid-transfer"],
)
def test_a_failed_firmware_download_is_retried_then_reported(
    ftp_root: Path, path: str, server_options: dict[str, int]
) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS, **server_options) as ftp:
            async with ReferenceCsms() as csms:
                async with running_fleet(scenario(mode="remote-only"), csms.url) as (fleet, _):
                    wb = fleet.wallboxes[0]
                    cp = wb.charge_point_id
                    await csms.wait_until(
                        lambda: cp in csms.chargers and csms.chargers[cp].booted, 10
                    )
                    await csms.call(
                        cp,
                        "UpdateFirmware",
                        {
                            "location": ftp.url("fw", "s3cr3t-pw", path),
                            "retrieveDate": "2020-01-01T00:00:00Z",  # past: at once
                            "retries": 1,
                            "retryInterval": 1,
                        },
                    )
                    record = csms.chargers[cp]
                    await csms.wait_until(lambda: record.firmware_status == "DownloadFailed", 15)
                    assert record.firmware_history == ["Downloading", "DownloadFailed"]
                    assert record.boot_count == 1 and wb.firmware_version == "1.09.0"
                    log = wb.firmware.log.render().decode()
                    assert log.count("firmware download attempt") == 2
                    assert "s3cr3t-pw" not in log
            if "drop_after" in server_options:
                assert ftp.stats.incomplete_sends == 2

    asyncio.run(main())


def test_the_wallbox_keeps_serving_ocpp_while_a_slow_download_runs(ftp_root: Path) -> None:
    async def main() -> None:
        fast_install = with_firmware_options(
            scenario(mode="remote-only"), firmware_install_seconds=0.2
        )
        with FtpServer(ftp_root, users=USERS, rate=16 * 1024) as ftp:  # 64 KiB in ~4 s
            async with ReferenceCsms() as csms:
                async with running_fleet(fast_install, csms.url) as (fleet, _):
                    wb = fleet.wallboxes[0]
                    cp = wb.charge_point_id
                    await csms.wait_until(
                        lambda: cp in csms.chargers and csms.chargers[cp].booted, 10
                    )
                    await csms.call(
                        cp,
                        "UpdateFirmware",
                        {
                            "location": ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin"),
                            "retrieveDate": "2020-01-01T00:00:00Z",
                        },
                    )
                    record = csms.chargers[cp]
                    await csms.wait_until(lambda: record.firmware_status == "Downloading", 5)
                    # The CSMS, the fleet and this test share one event loop: had the download
                    # held it, no call would be answered before the whole file was sent.  Five
                    # calls take ~0.5 s of the download's ~4 s, a margin a loaded machine
                    # does not eat.
                    for _ in range(5):
                        await csms.call(cp, "GetConfiguration", {"key": ["HeartbeatInterval"]})
                        assert ftp.stats.files_sent == 0, "answered only after the download"
                        await asyncio.sleep(0.1)
                    assert record.firmware_status == "Downloading", "still downloading"
                    await csms.wait_until(lambda: record.firmware_status == "Installed", 20)
                    assert record.boot_payload is not None
                    assert record.boot_payload["firmwareVersion"] == "1.10.0"

    asyncio.run(main())


def test_stopping_the_fleet_cancels_and_awaits_running_transfers(ftp_root: Path) -> None:
    async def main() -> None:
        with FtpServer(ftp_root, users=USERS, rate=8 * 1024) as ftp:  # 64 KiB in ~8 s
            async with ReferenceCsms() as csms:
                async with running_fleet(scenario(mode="remote-only"), csms.url, chargers=3) as (
                    fleet,
                    _,
                ):
                    ids = [wb.charge_point_id for wb in fleet.wallboxes]
                    await csms.wait_until(
                        lambda: all(i in csms.chargers and csms.chargers[i].booted for i in ids), 10
                    )
                    location = ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin")
                    await csms.call_all(*update_firmware(location, time.time()))
                    await csms.wait_until(lambda: fleet.transfers.active == 3, 5)
            # Cancelled, not waited for (each download needs ~8 s): none finished.
            assert fleet.transfers.active == 0 and fleet.transfers.completed == 0
            assert ftp.stats.files_sent == 0
            assert all(not d._transfer_tasks and not d._abandoned for d in fleet.drivers)
            leftovers = [t for t in asyncio.all_tasks() if "-transfer-" in t.get_name()]
            assert leftovers == []

    asyncio.run(main())


# ------------------------------------------------------------------ a fleet roll-out


def test_a_200_wallbox_firmware_rollout_from_the_reference_csms(ftp_root: Path) -> None:
    chargers = 200
    charging = 10  # these are in a transaction when the image arrives: they install after it
    failure_share = 0.1

    async def main() -> None:
        base = scenario(mode="remote-only", energy="[inf, inf]")
        rollout = with_firmware_options(
            base, firmware_install_failure_share=failure_share, firmware_install_seconds=0.5
        )
        rollout = msgspec.structs.replace(
            rollout, fleet=msgspec.structs.replace(rollout.fleet, max_transfers=32)
        )
        with FtpServer(ftp_root, users=USERS) as ftp:
            async with ReferenceCsms() as csms:
                async with running_fleet(rollout, csms.url, chargers=chargers, seed=3) as (
                    fleet,
                    _,
                ):
                    ids = [wb.charge_point_id for wb in fleet.wallboxes]
                    by_id = {wb.charge_point_id: wb for wb in fleet.wallboxes}
                    await csms.wait_until(
                        lambda: all(i in csms.chargers and csms.chargers[i].booted for i in ids), 20
                    )
                    busy = ids[:charging]
                    started = await csms.call_all(
                        "RemoteStartTransaction",
                        {"idTag": "DRIVER", "connectorId": 1},
                        charger_ids=busy,
                    )
                    assert all(a == {"status": "Accepted"} for a in started.values())
                    await csms.wait_until(
                        lambda: all(by_id[i].connectors[1].transaction is not None for i in busy),
                        10,
                    )

                    answers = await csms.call_all(
                        *update_firmware(
                            ftp.url("fw", "s3cr3t-pw", "images/AC22-3P-1.10.0.bin"),
                            time.time(),
                            retries=2,
                            retry_interval=1,
                        )
                    )
                    assert answers == {i: {} for i in ids}
                    draws: dict[str, bool] = {}
                    for wb in fleet.wallboxes:
                        assert wb.firmware.update is not None
                        draws[wb.charge_point_id] = wb.firmware.update.fail_install

                    def settled(group: list[str]) -> bool:
                        return all(
                            csms.chargers[i].firmware_status in ("Installed", "InstallationFailed")
                            for i in group
                        )

                    await csms.wait_until(lambda: settled(ids[charging:]), 30)
                    # The ten still charge: their image waits for the transaction to end.
                    assert all(csms.chargers[i].firmware_status == "Downloaded" for i in busy)
                    for i in busy:
                        tx = by_id[i].connectors[1].transaction
                        assert tx is not None and tx.transaction_id is not None
                        await csms.call(
                            i, "RemoteStopTransaction", {"transactionId": tx.transaction_id}
                        )
                    await csms.wait_until(lambda: settled(busy), 20)
                    assert fleet.transfers.peak_active <= 32
                    assert fleet.transfers.completed == chargers
        assert ftp.stats.files_sent == chargers and ftp.stats.peak_open <= 32
        failed = {i for i in ids if csms.chargers[i].firmware_status == "InstallationFailed"}
        assert failed == {i for i, fails in draws.items() if fails}
        assert abs(len(failed) - failure_share * chargers) <= 12  # binomial, about 3 sigma
        for i in ids:
            record = csms.chargers[i]
            assert record.boot_payload is not None
            outcome = "InstallationFailed" if i in failed else "Installed"
            assert record.firmware_history == ["Downloading", "Downloaded", "Installing", outcome]
            assert record.boot_count == (1 if i in failed else 2)
            version = "1.09.0" if i in failed else "1.10.0"
            assert record.boot_payload["firmwareVersion"] == version
        stops = {t["chargerId"]: t["reason"] for t in csms.ledger.to_json()["transactions"]}
        assert stops == {i: "Remote" for i in busy}, "each transaction ended before installing"
        assert csms.schema_violations == 0

    asyncio.run(main())
