"""Scenario operations for the security whitepaper's CSMS calls: builders, checks before
the run, what the CSMS fills in, fleet parts, and the certificate-renewal scenario."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from emulator.csms import ReferenceCsms
from emulator.csms.certificate_authority import CertificateAuthority, certificate_hash_data
from emulator.csms.firmware_source import FirmwareFetchError, fetch_firmware
from emulator.csms.operations import (
    OperationSchedule,
    certificate_signed,
    csms_fills,
    delete_certificate,
    extended_trigger_message,
    fill_in,
    fleet_part,
    get_installed_certificate_ids,
    get_log,
    install_certificate,
    select_targets,
    signed_update_firmware,
    with_placeholders,
)
from emulator.fleet.scenario import ScenarioError, load_scenario, parse_scenario
from emulator.protocol.schemas import SchemaRegistry
from tests.csms.test_reference_csms import BOOT, charger
from tests.integration.ftp_server import FtpServer

ROOT = Path(__file__).resolve().parents[2]
HEADER = '[scenario]\nname = "x"\n'
SOURCE = "scenarios/sec.toml"
NOW = 1_767_225_600.0
HASH = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "ab",
    "issuerKeyHash": "cd",
    "serialNumber": "1",
}


def error(snippet: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(HEADER + "[[csms.operations]]\nat = 1\n" + snippet + "\n", source=SOURCE)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_every_builder_makes_a_payload_its_schema_accepts() -> None:
    registry = SchemaRegistry()
    ca = CertificateAuthority.generate()
    signed = ca.sign_firmware(b"firmware")
    requests = [
        extended_trigger_message("SignChargePointCertificate"),
        extended_trigger_message("MeterValues", connector_id=1),
        certificate_signed(ca.root_pem),
        install_certificate("ManufacturerRootCertificate", ca.root_pem),
        delete_certificate(certificate_hash_data(ca.root_pem)),
        get_installed_certificate_ids("CentralSystemRootCertificate"),
        signed_update_firmware(
            request_id=1,
            location="ftp://fw:pw@127.0.0.1/fw.bin",
            retrieve=NOW,
            install=NOW + 60,
            signing_certificate=signed.signing_certificate,
            signature=signed.signature,
            retries=2,
            retry_interval=30,
        ),
        get_log(
            log_type="SecurityLog",
            request_id=2,
            location="ftp://u:p@127.0.0.1/logs/",
            oldest=NOW - 3600,
            latest=NOW,
        ),
    ]
    for action, payload in requests:
        registry.validate_request(action, payload)
    assert [r.action for r in requests] == [
        "ExtendedTriggerMessage",
        "ExtendedTriggerMessage",
        "CertificateSigned",
        "InstallCertificate",
        "DeleteCertificate",
        "GetInstalledCertificateIds",
        "SignedUpdateFirmware",
        "GetLog",
    ]


GOOD = [
    'action = "ExtendedTriggerMessage"\npayload = { requestedMessage = "SignChargePointCertificate" }',
    'action = "CertificateSigned"\npayload = { certificateChain = "-----BEGIN CERTIFICATE-----" }',
    'action = "InstallCertificate"\npayload = { certificateType = "CentralSystemRootCertificate" }',
    'action = "InstallCertificate"\n'
    'payload = { certificateType = "ManufacturerRootCertificate", certificate = "PEM" }',
    'action = "DeleteCertificate"',
    'action = "GetInstalledCertificateIds"\n'
    'payload = { certificateType = "ManufacturerRootCertificate" }',
    'action = "SignedUpdateFirmware"\n'
    'payload = { requestId = 1, firmware = { location = "ftp://h/fw.bin", '
    'retrieveDateTime = "now+60", installDateTime = "now+600" } }',
    'action = "SignedUpdateFirmware"\n'
    'payload = { requestId = 1, firmware = { location = "ftp://h/fw.bin", '
    'retrieveDateTime = "now", signingCertificate = "PEM", signature = "c2ln" } }',
    'action = "GetLog"\npayload = { logType = "DiagnosticsLog", requestId = 3, '
    'log = { remoteLocation = "ftp://u:p@h/logs/", oldestTimestamp = "now-3600" } }',
]


@pytest.mark.parametrize(
    "snippet", GOOD, ids=[g.split("\n")[0][10:-1] + str(i) for i, g in enumerate(GOOD)]
)
def test_a_security_operation_with_a_good_payload_loads(snippet: str) -> None:
    scenario = parse_scenario(
        HEADER + "[[csms.operations]]\nat = 1\n" + snippet + "\n", source=SOURCE
    )
    assert len(scenario.csms.operations) == 1


# fmt: off
BAD = [
    ('action = "ExtendedTriggerMessage"\npayload = { requestedMessage = "SignCertificate" }',
     "requestedMessage: must be one of", "ExtendedTriggerMessage.req"),
    ('action = "ExtendedTriggerMessage"\npayload = { requestedMessage = "Heartbeat", connectorId = "1" }',
     "connectorId: must be integer", "ExtendedTriggerMessage.req"),
    ('action = "CertificateSigned"', "certificateChain: required field missing",
     "CertificateSigned.req"),
    ('action = "InstallCertificate"\npayload = { certificateType = "ChargePointCertificate" }',
     "certificateType: must be one of", "InstallCertificate.req"),
    ('action = "InstallCertificate"\npayload = { certificate = "PEM" }',
     "certificateType: required field missing", "InstallCertificate.req"),
    ('action = "DeleteCertificate"\npayload = { certificateHashData = { hashAlgorithm = "MD5", '
     'issuerNameHash = "a", issuerKeyHash = "b", serialNumber = "1" } }',
     "certificateHashData.hashAlgorithm: must be one of", "DeleteCertificate.req"),
    ('action = "GetInstalledCertificateIds"', "certificateType: required field missing",
     "GetInstalledCertificateIds.req"),
    ('action = "SignedUpdateFirmware"\npayload = { firmware = { location = "ftp://h/f", '
     'retrieveDateTime = "now" } }', "requestId: required field missing", "SignedUpdateFirmware.req"),
    ('action = "SignedUpdateFirmware"\npayload = { requestId = 1, firmware = { location = "ftp://h/f", '
     'retrieveDateTime = "tomorrow" } }', "firmware.retrieveDateTime: must be date-time", ""),
    ('action = "SignedUpdateFirmware"\npayload = { requestId = 1, firmware = { location = "ftp://h/f", '
     'retrieveDateTime = "now", signature = "c2ln" } }',
     "firmware.signingCertificate: give it with firmware.signature, or leave both out", ""),
    ('action = "GetLog"\npayload = { logType = "SecurityLog", requestId = 1 }',
     "log: required field missing", "GetLog.req"),
    ('action = "GetLog"\npayload = { logType = "AuditLog", requestId = 1, log = { remoteLocation = "ftp://h/" } }',
     "logType: must be one of", "GetLog.req"),
    ('action = "GetLog"\npayload = { logType = "SecurityLog", requestId = 1, '
     'log = { remoteLocation = "ftp://h/", latestTimestamp = "now+later" } }',
     "latestTimestamp: expected now, now+SECONDS or now-SECONDS", "'now+later'"),
]
# fmt: on


@pytest.mark.parametrize(("snippet", "expected", "got"), BAD, ids=[b[1][:40] for b in BAD])
def test_a_bad_security_operation_names_the_field_and_the_schema(
    snippet: str, expected: str, got: str
) -> None:
    message = error(snippet)
    assert message.startswith(f"{SOURCE}: csms.operations[0].payload: {expected}"), message
    assert got in message, message


def test_a_bad_security_operation_is_exit_2_before_the_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "bad.toml"
    path.write_text(HEADER + '[[csms.operations]]\nat = 1\naction = "GetInstalledCertificateIds"\n')
    done = subprocess.run(
        [sys.executable, "-m", "emulator.cli", "run", "--scenario", str(path), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    assert "csms.operations[0].payload: certificateType: required field missing" in done.stderr


# -- fleet parts -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 10, 1003])
def test_the_n_parts_of_a_fleet_are_disjoint_and_cover_it(size: int) -> None:
    import numpy as np

    ids = [f"CP{n:06d}" for n in range(1, size + 1)]
    rng = np.random.default_rng(1)
    parts = [select_targets(f"{k}/10", ids, rng) for k in range(1, 11)]
    assert [i for part in parts for i in part] == ids
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("text", ["0/10", "11/10", "1/0", "a/b", "1/", "/2", "1/2/3"])
def test_a_target_that_is_not_a_fleet_part_is_refused(text: str) -> None:
    assert fleet_part(text) is None
    message = error(f'action = "GetLocalListVersion"\ntarget = "{text}"')
    assert message.startswith(f"{SOURCE}: csms.operations[0].target: expected"), message
    assert '"K/N"' in message


# -- what the CSMS fills in ----------------------------------------------------------------


def test_placeholders_stand_in_only_where_the_csms_fills_in() -> None:
    firmware = {"location": "ftp://h/f", "retrieveDateTime": "now"}
    assert csms_fills("SignedUpdateFirmware", {"requestId": 1, "firmware": firmware}) == [
        "firmware.signingCertificate",
        "firmware.signature",
    ]
    assert csms_fills("InstallCertificate", {"certificateType": "X", "certificate": "P"}) == []
    assert csms_fills("DeleteCertificate", {"certificateHashData": HASH}) == []
    assert csms_fills("ExtendedTriggerMessage", {"requestedMessage": "Heartbeat"}) == []
    given = {"certificateType": "CentralSystemRootCertificate"}
    assert with_placeholders("InstallCertificate", given) == {**given, "certificate": "-"}
    assert given == {"certificateType": "CentralSystemRootCertificate"}  # not changed


def test_the_csms_fills_in_its_root_and_its_hash_data() -> None:
    ca = CertificateAuthority.generate()
    install = asyncio.run(
        fill_in("InstallCertificate", {"certificateType": "CentralSystemRootCertificate"}, ca)
    )
    assert install["certificate"] == ca.root_pem
    delete = asyncio.run(fill_in("DeleteCertificate", {}, ca))
    assert delete["certificateHashData"] == certificate_hash_data(ca.root_pem)
    given = {"certificateHashData": HASH}
    assert asyncio.run(fill_in("DeleteCertificate", given, ca)) == given


def test_the_csms_signs_the_firmware_it_downloads_from_the_location(tmp_path: Path) -> None:
    firmware = bytes(range(256)) * 300
    (tmp_path / "fw.bin").write_bytes(firmware)
    ca = CertificateAuthority.generate()
    with FtpServer(tmp_path, users={"fw": "s3cret"}) as ftp:
        location = ftp.url("fw", "s3cret", "fw.bin")
        payload = {"requestId": 4, "firmware": {"location": location, "retrieveDateTime": "x"}}
        filled = asyncio.run(fill_in("SignedUpdateFirmware", payload, ca))
    signed = filled["firmware"]
    assert signed["location"] == location and filled["requestId"] == 4
    certificate = x509.load_pem_x509_certificate(signed["signingCertificate"].encode())
    certificate.verify_directly_issued_by(ca.certificate)
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(signed["signature"]), firmware, ec.ECDSA(hashes.SHA256()))


def test_a_firmware_that_cannot_be_downloaded_is_an_error_without_the_password(
    tmp_path: Path,
) -> None:
    with FtpServer(tmp_path, users={"fw": "s3cret"}) as ftp:
        for url in (ftp.url("fw", "s3cret", "missing.bin"), ftp.url("fw", "wrong", "fw.bin")):
            with pytest.raises(FirmwareFetchError) as info:
                asyncio.run(fetch_firmware(url, timeout=10))
            assert "s3cret" not in str(info.value) and "wrong" not in str(info.value)
            assert f"127.0.0.1:{ftp.port}" in str(info.value)
    with pytest.raises(FirmwareFetchError, match="expected ftp://host/path"):
        asyncio.run(fetch_firmware("https://example.invalid/fw.bin"))


def test_a_schedule_sends_what_the_csms_filled_in_and_counts_a_failed_fill_in() -> None:
    """InstallCertificate without a certificate reaches a real charger with the CSMS's root;
    a SignedUpdateFirmware whose firmware cannot be fetched is counted, not sent."""

    class Op:
        def __init__(self, at: float, action: str, payload: dict[str, Any]) -> None:
            self.at, self.action, self.payload = at, action, payload
            self.target: str = "all"
            self.every: float | None = None

    firmware = {"location": "ftp://127.0.0.1:1/fw.bin", "retrieveDateTime": "now"}
    operations = [
        Op(0.0, "InstallCertificate", {"certificateType": "CentralSystemRootCertificate"}),
        Op(0.2, "SignedUpdateFirmware", {"requestId": 9, "firmware": firmware}),
    ]

    async def scenario() -> tuple[list[Any], OperationSchedule, str]:
        async with asyncio.timeout(20), ReferenceCsms() as csms, charger(csms, "CP1") as ws:
            await ws.result("BootNotification", BOOT)
            schedule = OperationSchedule(
                csms=csms, operations=operations, charger_ids=["CP1"], seed=1
            )
            schedule.start()
            call = await ws.answer_next_call({"status": "Accepted"})
            await csms.wait_until(lambda: schedule.outcomes[1].runs == 1, 15)
            await schedule.stop()
            return call, schedule, csms.central.certificate_authority.root_pem

    call, schedule, root = asyncio.run(scenario())
    assert call[2:] == [
        "InstallCertificate",
        {"certificateType": "CentralSystemRootCertificate", "certificate": root},
    ]
    install, update = schedule.outcomes
    assert dict(install.answers) == {"Accepted": 1}
    (label,) = update.answers
    assert label.startswith("not sent: 127.0.0.1:1/fw.bin: connect"), label


# -- the load case ---------------------------------------------------------------------------


def test_the_renewal_scenario_asks_every_charger_once_in_ten_waves() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "certificate-renewal.toml")
    triggers = [op for op in scenario.csms.operations if op.action == "ExtendedTriggerMessage"]
    assert [op.target for op in triggers] == [f"{k}/10" for k in range(1, 11)]
    assert {op.payload["requestedMessage"] for op in triggers} == {"SignChargePointCertificate"}
    assert [op.at for op in triggers] == [30.0 + 10 * k for k in range(10)]
    assert all(op.every is None for op in triggers)
    install = scenario.csms.operations[0]
    assert (install.action, csms_fills(install.action, install.payload)) == (
        "InstallCertificate",
        ["certificate"],
    )


def test_the_renewal_scenario_loads_with_its_security_extension_models() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "certificate-renewal.toml")
    assert all(getattr(model, "security_extension", False) for model in scenario.models)


# -- ocpp-fleet csms: the CA's options -----------------------------------------------------


def csms_cli(*args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "emulator.cli", "csms", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_the_csms_ca_key_needs_its_certificate(tmp_path: Path) -> None:
    result = csms_cli("--ca-key", str(tmp_path / "ca.key"))
    assert result.returncode == 2, result.stderr
    assert "--ca-key needs --client-ca" in result.stderr and "Traceback" not in result.stderr


def test_a_csms_ca_key_that_is_not_a_key_is_named_without_its_content(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "ca.key").write_text("-----BEGIN PRIVATE KEY-----\nZG9ub3RwcmludA==\n")
    result = csms_cli(
        "--certfile",
        str(tmp_path / "server.pem"),
        "--client-ca",
        str(tmp_path / "ca.pem"),
        "--ca-key",
        str(tmp_path / "ca.key"),
    )
    assert result.returncode == 2, result.stderr
    assert "cannot use the CA:" in result.stderr and "ca.key" in result.stderr
    assert "ZG9ub3RwcmludA" not in result.stderr + result.stdout
