"""The reference CSMS's side of the security whitepaper, over real websockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from emulator.csms import ReferenceCsms
from emulator.csms.certificate_authority import CertificateAuthority
from tests.csms.test_certificate_authority import csr_pem
from tests.csms.test_reference_csms import BOOT, CP, RawCharger, charger, run


async def booted(csms: ReferenceCsms, ws: RawCharger) -> None:
    assert (await ws.result("BootNotification", BOOT))["status"] == "Accepted"


async def answer_certificate_signed(ws: RawCharger, status: str = "Accepted") -> str:
    """Read the CertificateSigned.req that follows, answer ``status``; its chain."""
    call = await ws.answer_next_call({"status": status})
    assert call[2] == "CertificateSigned", call
    chain: str = call[3]["certificateChain"]
    return chain


def test_an_accepted_csr_is_followed_by_its_signed_chain() -> None:
    ca = CertificateAuthority.generate(validity=dt.timedelta(days=90))

    async def scenario(csms: ReferenceCsms) -> tuple[str, Any]:
        async with charger(csms) as ws:
            await booted(csms, ws)
            answer = await ws.result("SignCertificate", {"csr": csr_pem(CP)})
            assert answer == {"status": "Accepted"}
            chain = await answer_certificate_signed(ws)
            record = csms.chargers[CP]
            await csms.wait_until(lambda: bool(record.certificate_signed_answers), 2)
            return chain, record

    chain, record = run(scenario, certificate_authority=ca)
    leaf, root = x509.load_pem_x509_certificates(chain.encode())
    leaf.verify_directly_issued_by(ca.certificate)
    assert root == ca.certificate
    assert leaf.subject.rfc4514_string() == f"CN={CP},O=Example CPO"
    assert (record.csrs_received, record.csrs_rejected, record.certificates_issued) == (1, 0, 1)
    assert record.certificate_signed_answers == {"Accepted": 1}
    assert record.action_counts["SignCertificate"] == 1


def test_without_a_ca_given_the_csms_makes_one_on_the_first_csr() -> None:
    async def scenario(csms: ReferenceCsms) -> tuple[str, str]:
        async with charger(csms) as ws:
            await booted(csms, ws)
            await ws.result("SignCertificate", {"csr": csr_pem(CP)})
            chain = await answer_certificate_signed(ws, "Rejected")
            await csms.wait_until(lambda: bool(csms.chargers[CP].certificate_signed_answers), 2)
            assert csms.chargers[CP].certificate_signed_answers == {"Rejected": 1}
            return chain, csms.central.certificate_authority.root_pem

    chain, root_pem = run(scenario)
    leaf, _ = x509.load_pem_x509_certificates(chain.encode())
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(root_pem.encode()))


@pytest.mark.parametrize(
    ("csr", "reason"),
    [
        ("not a CSR", "not a PEM certificate signing request"),
        (csr_pem("CP000099"), "is not the charger's id"),
        (csr_pem(None), "no commonName"),
    ],
    ids=["garbage", "other-charger", "no-cn"],
)
def test_a_csr_the_ca_cannot_sign_is_rejected_and_nothing_follows(csr: str, reason: str) -> None:
    async def scenario(csms: ReferenceCsms) -> Any:
        async with charger(csms) as ws:
            await booted(csms, ws)
            assert await ws.result("SignCertificate", {"csr": csr}) == {"status": "Rejected"}
            assert await ws.nothing_within(0.3)
            return csms.chargers[CP]

    record = run(scenario)
    assert (record.csrs_received, record.csrs_rejected, record.certificates_issued) == (1, 1, 0)
    assert reason in (record.last_csr_rejection or "")
    assert record.certificate_signed_answers == {}


def test_a_certificate_signed_that_finds_the_charger_gone_is_counted() -> None:
    async def scenario(csms: ReferenceCsms) -> Any:
        async with charger(csms) as ws:
            await booted(csms, ws)
            await ws.result("SignCertificate", {"csr": csr_pem(CP)})
            call = await ws.recv()
            assert call[2] == "CertificateSigned"
            # Leave without answering: the CSMS's call fails as the connection closes.
        record = csms.chargers[CP]
        await csms.wait_until(lambda: bool(record.certificate_signed_answers), 5)
        return record

    record = run(scenario)
    assert record.certificate_signed_answers == {"not connected": 1}


def test_security_events_log_and_signed_firmware_statuses_are_answered_and_recorded() -> None:
    async def scenario(csms: ReferenceCsms) -> Any:
        async with charger(csms) as ws:
            await booted(csms, ws)
            now = "2026-12-01T12:00:00Z"
            for kind in ("StartupOfTheDevice", "ResetOrReboot", "StartupOfTheDevice"):
                event = {"type": kind, "timestamp": now, "techInfo": "secret-ish detail"}
                assert await ws.result("SecurityEventNotification", event) == {}
            for status in ("Uploading", "Uploaded"):
                payload = {"status": status, "requestId": 7}
                assert await ws.result("LogStatusNotification", payload) == {}
            for status in ("Downloading", "Downloaded", "SignatureVerified", "Installed"):
                payload = {"status": status, "requestId": 8}
                assert await ws.result("SignedFirmwareStatusNotification", payload) == {}
            return csms.chargers[CP]

    record = run(scenario)
    assert record.security_events == {"StartupOfTheDevice": 2, "ResetOrReboot": 1}
    assert (record.log_status, record.log_history) == ("Uploaded", ["Uploading", "Uploaded"])
    assert record.signed_firmware_history == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installed",
    ]
    assert record.firmware_status == "Installed"
    assert "secret-ish detail" not in repr(record)  # techInfo is not kept
    assert record.action_counts["SecurityEventNotification"] == 3
    assert record.schema_violations == 0


def test_an_invalid_security_event_is_a_callerror() -> None:
    async def scenario(csms: ReferenceCsms) -> list[Any]:
        async with charger(csms) as ws:
            await booted(csms, ws)
            return await ws.call("SecurityEventNotification", {"type": "StartupOfTheDevice"})

    reply = run(scenario)
    assert reply[0] == 4 and reply[2] == "ProtocolError", reply


def test_csrs_queue_with_every_other_call_under_a_service_time() -> None:
    """Two chargers' CSRs and heartbeats are served one at a time, in arrival order, and
    counted with everything else; each signed chain still follows its answer."""

    async def scenario(csms: ReferenceCsms) -> Any:
        async with charger(csms, "CPA") as a, charger(csms, "CPB") as b:
            await a.result("BootNotification", BOOT)
            await b.result("BootNotification", BOOT)
            await a.send_call("SignCertificate", {"csr": csr_pem("CPA")})
            await b.send_call("SignCertificate", {"csr": csr_pem("CPB")})
            await a.send_call("Heartbeat", {})
            first_a = await a.recv()
            first_b = await b.recv()
            assert first_a[2] == {"status": "Accepted"} and first_b[2] == {"status": "Accepted"}
            # a's CertificateSigned and its Heartbeat answer: both come, in either order.
            frames = [await a.recv(), await a.recv()]
            assert sorted(f[0] for f in frames) == [2, 3], frames
            return csms.served

    served = run(scenario, service_time=0.02)
    assert served.calls["SignCertificate"] == 2
    assert served.served == 5  # two boots, two CSRs, one heartbeat
    assert served.busy == pytest.approx(5 * 0.02)


def test_profile_3_trusts_the_certificates_its_ca_signs(tmp_path: Any) -> None:
    """With client certificates required, a charger connects with the certificate the
    CSMS's own CA has just signed (the CA's root is added to the TLS trust)."""
    import ssl

    import trustme
    from cryptography.hazmat.primitives.asymmetric import ec
    from websockets.asyncio.client import connect

    server_ca = trustme.CA()
    server_cert = server_ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    server_ca.configure_trust(context)  # some other client CA, as --client-ca gives

    key = ec.generate_private_key(ec.SECP256R1())

    async def scenario(csms: ReferenceCsms) -> str:
        chain = csms.central.certificate_authority.sign_csr(csr_pem(CP, key=key))
        (tmp_path / "cp.pem").write_text(chain)
        (tmp_path / "cp.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        client = ssl.create_default_context()
        server_ca.configure_trust(client)
        client.load_cert_chain(tmp_path / "cp.pem", tmp_path / "cp.key")
        async with connect(f"{csms.url}/{CP}", subprotocols=["ocpp1.6"], ssl=client) as ws:  # type: ignore[list-item]
            await ws.send(f'[2,"1","BootNotification",{_json(BOOT)}]')
            reply = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(reply, str)
        return reply

    reply = run(scenario, ssl=context)
    assert reply.startswith('[3,"1",{"status":"Accepted"')


def test_no_key_material_reaches_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    ca = CertificateAuthority.generate()
    key_line = (
        ca._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
        .splitlines()[1]
    )

    async def scenario(csms: ReferenceCsms) -> None:
        async with charger(csms) as ws:
            await booted(csms, ws)
            await ws.result("SignCertificate", {"csr": csr_pem(CP)})
            await answer_certificate_signed(ws)
            await csms.wait_until(lambda: bool(csms.chargers[CP].certificate_signed_answers), 2)

    with caplog.at_level(logging.DEBUG):
        run(scenario, certificate_authority=ca)
    assert caplog.records, "the CSMS logged nothing at DEBUG: the test cannot see a leak"
    assert key_line not in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()
