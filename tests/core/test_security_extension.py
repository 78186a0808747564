"""The OCPP 1.6 Security Whitepaper's messages on the charger (model.security_extension):
security events, ExtendedTriggerMessage, the CSR and CertificateSigned, the root store.

Certificates are real: a CA made here with ``cryptography`` signs the charger's own CSR;
the certificateHashData is checked against ``cryptography``'s OCSP CertID.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from emulator.core.effects import ClientCertificate
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from tests.core.conftest import T0, FakeCsms

MakeCsms = Callable[..., FakeCsms]
NOW = dt.datetime.fromtimestamp(T0, dt.UTC)
CPO = "Fleet CPO"
SECURE = {"ClockAlignedDataInterval": "0", "CpoName": CPO}


# ---------------------------------------------------------------- a small CA


class Ca:
    """A CA certificate and its key (EC P-256), optionally signed by a parent CA."""

    def __init__(
        self,
        name: str = "Test CPO Root",
        *,
        parent: Ca | None = None,
        not_before: dt.datetime = NOW - dt.timedelta(days=1),
        not_after: dt.datetime = NOW + dt.timedelta(days=365),
        ca: bool = True,
    ) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer = subject if parent is None else parent.cert.subject
        signer = self.key if parent is None else parent.key
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(
        self,
        csr_pem: str,
        *,
        not_before: dt.datetime = NOW - dt.timedelta(minutes=1),
        not_after: dt.datetime = NOW + dt.timedelta(days=365),
        public_key: Any = None,
    ) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key or csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def root() -> Ca:
    return Ca()


@pytest.fixture
def secure(make_csms: MakeCsms) -> FakeCsms:
    """A booted charger with the extension and CpoName set; its CSMS accepts CSRs."""
    csms = make_csms(security_extension=True, config=SECURE)
    csms.answer("SignCertificate", {"status": "Accepted"})
    return csms


def events(csms: FakeCsms) -> list[str]:
    return [p["type"] for p in csms.payloads("SecurityEventNotification")]


def request_csr(csms: FakeCsms) -> str:
    answer = csms.call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
    assert answer == {"status": "Accepted"}
    csr: str = csms.payloads("SignCertificate")[-1]["csr"]
    return csr


def client_certificates(csms: FakeCsms) -> list[ClientCertificate]:
    return [e for e in csms.transfers if isinstance(e, ClientCertificate)]


# ---------------------------------------------------------------- switched off

OFF_ACTIONS = {
    "CertificateSigned": {"certificateChain": "x"},
    "DeleteCertificate": {
        "certificateHashData": {
            "hashAlgorithm": "SHA256",
            "issuerNameHash": "00",
            "issuerKeyHash": "00",
            "serialNumber": "1",
        }
    },
    "ExtendedTriggerMessage": {"requestedMessage": "Heartbeat"},
    "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
    "InstallCertificate": {"certificateType": "CentralSystemRootCertificate", "certificate": "x"},
}


@pytest.mark.parametrize("action", sorted(OFF_ACTIONS))
def test_without_the_extension_its_calls_are_not_supported(csms: FakeCsms, action: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        csms.call(action, OFF_ACTIONS[action])
    assert caught.value.code is ErrorCode.NOT_SUPPORTED


def test_without_the_extension_no_security_event_and_no_new_key(csms: FakeCsms) -> None:
    csms.call("Reset", {"type": "Soft"})
    csms.advance(60)
    csms.wb.security_event("TamperDetectionActivated", csms.now)
    csms.wb.connect_failed("http_401", csms.now)
    csms.advance(60)
    assert events(csms) == []
    assert csms.call("GetConfiguration", {"key": ["CpoName"]})["unknownKey"] == ["CpoName"]


@pytest.mark.parametrize("action", sorted(OFF_ACTIONS))
def test_with_the_extension_its_calls_are_answered(secure: FakeCsms, action: str) -> None:
    answer = secure.call(action, OFF_ACTIONS[action])
    assert "status" in answer


# ---------------------------------------------------------------- security events


def test_startup_of_the_device_is_sent_once_the_boot_is_accepted(secure: FakeCsms) -> None:
    assert secure.actions()[0] == "BootNotification"
    (startup,) = secure.payloads("SecurityEventNotification")
    assert startup == {"type": "StartupOfTheDevice", "timestamp": "2026-01-01T00:00:00.000Z"}


def test_a_reset_is_reset_or_reboot_and_a_power_loss_a_startup(secure: FakeCsms) -> None:
    secure.call("Reset", {"type": "Hard"})
    secure.advance(60)
    assert events(secure) == ["StartupOfTheDevice", "ResetOrReboot"]
    secure.wb.power_loss(secure.now, outage=120)
    secure.advance(300)
    assert events(secure)[-1] == "StartupOfTheDevice"


def test_events_made_offline_are_kept_and_sent_after_the_reconnect(secure: FakeCsms) -> None:
    secure.disconnect()
    for kind in ("TamperDetectionActivated", "MemoryExhaustion"):
        secure.wb.security_event(kind, secure.now, "test")
        secure.advance(600)
    assert events(secure) == ["StartupOfTheDevice"]
    secure.connect()
    secure.advance(5)
    assert events(secure)[1:] == ["TamperDetectionActivated", "MemoryExhaustion"]
    assert secure.payloads("SecurityEventNotification")[1]["techInfo"] == "test"


def test_an_event_the_csms_fails_to_process_is_resent(secure: FakeCsms) -> None:
    secure.answer_next("SecurityEventNotification", secure.error())
    secure.wb.security_event("TamperDetectionActivated", secure.now)
    secure.advance(3600)
    assert events(secure).count("TamperDetectionActivated") == 2


def test_a_401_at_the_handshake_is_one_event_per_failing_run(secure: FakeCsms) -> None:
    secure.disconnect()
    for _ in range(5):
        secure.wb.connect_failed("http_401", secure.now)
        secure.wb.connect_failed("refused", secure.now)
    secure.wb.connect_failed("tls_unknown_ca", secure.now)
    secure.connect()
    secure.advance(5)
    assert events(secure)[1:] == [
        "FailedToAuthenticationAtCentralSystem",
        "InvalidCentralSystemCertificate",
    ]
    assert secure.payloads("SecurityEventNotification")[1]["techInfo"] == "http_401"
    secure.disconnect()
    secure.wb.connect_failed("http_401", secure.now)  # a new run after a connection
    secure.connect()
    secure.advance(5)
    assert events(secure)[-1] == "FailedToAuthenticationAtCentralSystem"


def test_a_new_authorization_key_is_a_reconfiguration_without_the_key(secure: FakeCsms) -> None:
    key = "0123456789abcdef0123456789abcdef"
    assert secure.change_configuration("AuthorizationKey", key) == "Accepted"
    secure.advance(5)
    (event,) = [
        p for p in secure.payloads("SecurityEventNotification") if p["type"] != "StartupOfTheDevice"
    ]
    assert event["type"] == "ReconfigurationOfSecurityParameters"
    assert key not in str(event)
    assert key not in secure.wb.firmware.log.render(None, None).decode()


# ---------------------------------------------------------------- configuration


def test_the_whitepaper_keys_are_there_with_their_access(secure: FakeCsms) -> None:
    keys = secure.get_configuration()
    assert {k: (v["readonly"], v["value"]) for k, v in keys.items() if k in KEYS} == KEYS
    assert "AuthorizationKey" not in keys  # write-only
    assert secure.change_configuration("CertificateStoreMaxLength", "50") == "Rejected"
    assert secure.change_configuration("CpoName", "C" * 65) == "Rejected"
    assert secure.change_configuration("CpoName", "Other CPO") == "Accepted"


KEYS = {
    "SecurityProfile": (False, "0"),
    "CpoName": (False, CPO),
    "CertificateSignedMaxChainSize": (True, "10000"),
    "CertificateStoreMaxLength": (True, "10"),
    "AdditionalRootCertificateCheck": (True, "false"),
}


def test_without_the_extension_the_keys_are_unknown(csms: FakeCsms) -> None:
    answer = csms.call("GetConfiguration", {"key": sorted(KEYS)})
    assert sorted(answer["unknownKey"]) == sorted(KEYS)


# ---------------------------------------------------------------- ExtendedTriggerMessage

TRIGGERED = {
    "BootNotification": ("BootNotification", None),
    "Heartbeat": ("Heartbeat", {}),
    "MeterValues": ("MeterValues", None),
    "StatusNotification": ("StatusNotification", None),
    "FirmwareStatusNotification": ("SignedFirmwareStatusNotification", {"status": "Idle"}),
    "LogStatusNotification": ("LogStatusNotification", {"status": "Idle"}),
    "SignChargePointCertificate": ("SignCertificate", None),
}


@pytest.mark.parametrize("requested", sorted(TRIGGERED))
def test_every_requested_message_is_sent(secure: FakeCsms, requested: str) -> None:
    action, payload = TRIGGERED[requested]
    before = len(secure.sent_of(action))
    answer = secure.call("ExtendedTriggerMessage", {"requestedMessage": requested})
    assert answer == {"status": "Accepted"}
    sent = secure.payloads(action)
    assert len(sent) == before + (2 if requested == "StatusNotification" else 1)
    if payload is not None:
        assert sent[-1] == payload


def test_a_connector_that_does_not_exist_is_rejected(secure: FakeCsms) -> None:
    payload = {"requestedMessage": "StatusNotification", "connectorId": 7}
    assert secure.call("ExtendedTriggerMessage", payload) == {"status": "Rejected"}


def test_sign_charge_point_certificate_needs_a_cpo_name(make_csms: MakeCsms) -> None:
    csms = make_csms(security_extension=True)
    payload = {"requestedMessage": "SignChargePointCertificate"}
    assert csms.call("ExtendedTriggerMessage", payload) == {"status": "Rejected"}
    assert csms.sent_of("SignCertificate") == []
    assert csms.wb.certificates is None  # no key made


def test_the_csr_names_the_charger_and_the_cpo_with_a_new_p256_key(secure: FakeCsms) -> None:
    assert secure.wb.certificates is None  # nothing made before it is needed
    first = x509.load_pem_x509_csr(request_csr(secure).encode())
    assert first.is_signature_valid
    assert first.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP-TEST-0001"
    assert first.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CPO
    key = first.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    second = x509.load_pem_x509_csr(request_csr(secure).encode())
    assert second.public_key() != first.public_key()  # A02.FR.02: a new pair each time


# ---------------------------------------------------------------- CertificateSigned


def test_a_signed_certificate_is_accepted_and_handed_to_the_tls_layer(
    secure: FakeCsms, root: Ca
) -> None:
    chain = root.sign(request_csr(secure)) + root.pem
    assert secure.call("CertificateSigned", {"certificateChain": chain}) == {"status": "Accepted"}
    (effect,) = client_certificates(secure)
    assert effect.certificate_chain == chain
    assert "PRIVATE" not in repr(effect)
    key = serialization.load_pem_private_key(effect.private_key, None)
    leaf = x509.load_pem_x509_certificate(chain.encode())
    assert key.public_key() == leaf.public_key()
    secure.advance(5)
    assert events(secure)[-1] == "ReconfigurationOfSecurityParameters"
    # The key never went over OCPP nor into the charger's log (A02.FR.05).
    log = secure.wb.firmware.log.render(None, None).decode()
    assert "PRIVATE" not in log and all("PRIVATE" not in str(s.payload) for s in secure.sent)


def _wrong_key(secure: FakeCsms, root: Ca) -> str:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    return root.sign(request_csr(secure), public_key=other)


def _expired(secure: FakeCsms, root: Ca) -> str:
    old = NOW - dt.timedelta(days=30)
    return root.sign(request_csr(secure), not_before=old, not_after=NOW - dt.timedelta(days=1))


def _not_yet_valid(secure: FakeCsms, root: Ca) -> str:
    return root.sign(request_csr(secure), not_before=NOW + dt.timedelta(days=1))


def _malformed(secure: FakeCsms, root: Ca) -> str:
    request_csr(secure)
    return "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"


def _not_pem(secure: FakeCsms, root: Ca) -> str:
    request_csr(secure)
    return "hello"


def _wrong_issuer(secure: FakeCsms, root: Ca) -> str:
    return root.sign(request_csr(secure)) + Ca("Someone Else").pem


def _no_csr(secure: FakeCsms, root: Ca) -> str:
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CP-TEST-0001")])
    )
    pem = csr.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return root.sign(pem.public_bytes(serialization.Encoding.PEM).decode())


BAD_CHAINS = {
    "wrong key": _wrong_key,
    "expired": _expired,
    "not yet valid": _not_yet_valid,
    "malformed PEM": _malformed,
    "not PEM at all": _not_pem,
    "a chain that does not link": _wrong_issuer,
    "no CSR pending": _no_csr,
}


@pytest.mark.parametrize("case", sorted(BAD_CHAINS))
def test_a_bad_chain_is_rejected_with_an_event(secure: FakeCsms, root: Ca, case: str) -> None:
    chain = BAD_CHAINS[case](secure, root)
    assert secure.call("CertificateSigned", {"certificateChain": chain}) == {"status": "Rejected"}
    secure.advance(5)
    assert events(secure)[-1] == "InvalidChargePointCertificate"
    assert client_certificates(secure) == []


def test_a_chain_over_the_maximum_size_is_rejected(secure: FakeCsms, root: Ca) -> None:
    chain = root.sign(request_csr(secure)) + root.pem
    chain += " " * (10_001 - len(chain))  # over CertificateSignedMaxChainSize
    assert secure.dispatch("CertificateSigned", {"certificateChain": chain}) == {
        "status": "Rejected"
    }
    secure.advance(5)
    (event,) = [p for p in secure.payloads("SecurityEventNotification") if "techInfo" in p]
    assert "CertificateSignedMaxChainSize 10000" in event["techInfo"]


def test_a_rejected_csr_leaves_no_pending_key(secure: FakeCsms, root: Ca) -> None:
    secure.answer_next("SignCertificate", {"status": "Rejected"})
    csr = request_csr(secure)
    assert secure.call("CertificateSigned", {"certificateChain": root.sign(csr)}) == {
        "status": "Rejected"
    }


# ---------------------------------------------------------------- the root store


def install(csms: FakeCsms, ca: Ca, kind: str = "CentralSystemRootCertificate") -> str:
    answer = csms.call("InstallCertificate", {"certificateType": kind, "certificate": ca.pem})
    status: str = answer["status"]
    return status


def cert_id(cert: x509.Certificate, issuer: x509.Certificate) -> dict[str, str]:
    """What OpenSSL's OCSP CertID says (cryptography's OCSP request builder)."""
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": f"{request.serial_number:X}",
    }


def test_installed_roots_are_listed_with_their_ocsp_hash_data(secure: FakeCsms, root: Ca) -> None:
    sub = Ca("Test CPO Sub-CA", parent=root)
    maker = Ca("Maker Root")
    assert install(secure, root) == "Accepted"
    assert install(secure, sub) == "Accepted"
    assert install(secure, maker, "ManufacturerRootCertificate") == "Accepted"
    answer = secure.call(
        "GetInstalledCertificateIds", {"certificateType": "CentralSystemRootCertificate"}
    )
    assert answer == {
        "status": "Accepted",
        "certificateHashData": [cert_id(root.cert, root.cert), cert_id(sub.cert, root.cert)],
    }
    answer = secure.call(
        "GetInstalledCertificateIds", {"certificateType": "ManufacturerRootCertificate"}
    )
    assert answer["certificateHashData"] == [cert_id(maker.cert, maker.cert)]


def test_an_empty_store_is_not_found(secure: FakeCsms) -> None:
    payload = {"certificateType": "ManufacturerRootCertificate"}
    assert secure.call("GetInstalledCertificateIds", payload) == {"status": "NotFound"}


def test_installing_the_same_root_twice_keeps_one(secure: FakeCsms, root: Ca) -> None:
    assert install(secure, root) == install(secure, root) == "Accepted"
    payload = {"certificateType": "CentralSystemRootCertificate"}
    assert len(secure.call("GetInstalledCertificateIds", payload)["certificateHashData"]) == 1


def test_a_full_store_rejects_the_next_root_with_an_event(secure: FakeCsms) -> None:
    for n in range(10):  # CertificateStoreMaxLength
        assert install(secure, Ca(f"Root {n}")) == "Accepted"
    assert install(secure, Ca("One too many")) == "Rejected"
    secure.advance(5)
    assert events(secure)[-1] == "MemoryExhaustion"


BAD_ROOTS: dict[str, Callable[[], str]] = {
    "malformed": lambda: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "expired": lambda: Ca(not_after=NOW - dt.timedelta(days=1)).pem,
    "not a CA": lambda: Ca(ca=False).pem,
    "two certificates": lambda: Ca().pem + Ca().pem,
}


@pytest.mark.parametrize("case", sorted(BAD_ROOTS))
@pytest.mark.parametrize(
    ("kind", "event"),
    [
        ("CentralSystemRootCertificate", "InvalidCentralSystemCertificate"),
        ("ManufacturerRootCertificate", "InvalidFirmwareSigningCertificate"),
    ],
)
def test_a_bad_root_is_rejected_with_an_event(
    secure: FakeCsms, case: str, kind: str, event: str
) -> None:
    payload = {"certificateType": kind, "certificate": BAD_ROOTS[case]()}
    assert secure.call("InstallCertificate", payload) == {"status": "Rejected"}
    secure.advance(5)
    assert events(secure)[-1] == event
    ids = secure.call("GetInstalledCertificateIds", {"certificateType": kind})
    assert ids == {"status": "NotFound"}


def test_a_root_is_deleted_by_its_hash_data(secure: FakeCsms, root: Ca) -> None:
    other = Ca("Second Root")
    install(secure, root)
    install(secure, other)
    wanted = cert_id(root.cert, root.cert)
    wanted["issuerNameHash"] = wanted["issuerNameHash"].upper()  # CiString: any case
    assert secure.call("DeleteCertificate", {"certificateHashData": wanted}) == {
        "status": "Accepted"
    }
    assert secure.call("DeleteCertificate", {"certificateHashData": wanted}) == {
        "status": "NotFound"
    }
    payload = {"certificateType": "CentralSystemRootCertificate"}
    assert secure.call("GetInstalledCertificateIds", payload)["certificateHashData"] == [
        cert_id(other.cert, other.cert)
    ]


def test_a_root_is_found_in_the_algorithm_the_csms_names(secure: FakeCsms, root: Ca) -> None:
    install(secure, root)
    request = ocsp.OCSPRequestBuilder().add_certificate(root.cert, root.cert, hashes.SHA384())
    built = request.build()
    wanted = {
        "hashAlgorithm": "SHA384",
        "issuerNameHash": built.issuer_name_hash.hex(),
        "issuerKeyHash": built.issuer_key_hash.hex(),
        "serialNumber": f"{built.serial_number:X}",
    }
    assert secure.call("DeleteCertificate", {"certificateHashData": wanted}) == {
        "status": "Accepted"
    }


def test_the_last_central_system_root_in_use_is_not_deleted(make_csms: MakeCsms, root: Ca) -> None:
    csms = make_csms(security_extension=True, security_profile=2, config=SECURE)
    install(csms, root)
    wanted = cert_id(root.cert, root.cert)
    assert csms.call("DeleteCertificate", {"certificateHashData": wanted}) == {"status": "Failed"}
    maker = Ca("Maker Root")
    install(csms, maker, "ManufacturerRootCertificate")
    last_maker = {"certificateHashData": cert_id(maker.cert, maker.cert)}
    assert csms.call("DeleteCertificate", last_maker) == {"status": "Accepted"}


def test_the_charge_point_certificate_cannot_be_deleted(secure: FakeCsms, root: Ca) -> None:
    chain = root.sign(request_csr(secure))
    assert secure.call("CertificateSigned", {"certificateChain": chain})["status"] == "Accepted"
    leaf = x509.load_pem_x509_certificate(chain.encode())
    payload = {"certificateHashData": cert_id(leaf, root.cert)}
    assert secure.call("DeleteCertificate", payload) == {"status": "NotFound"}  # M04.FR.05
