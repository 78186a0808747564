"""The reference CSMS's CA: CSRs checked and signed (A02/A03), firmware signed (L01)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulator.csms.certificate_authority import (
    CertificateAuthority,
    CsrRejected,
    certificate_hash_data,
)

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def csr_pem(
    common_name: str | None = "CP000001",
    *,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    organization: str = "Example CPO",
) -> str:
    """A CSR as a charger makes one (A02.FR.03, A02.FR.13)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)]
    if common_name is not None:
        names.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate(validity=dt.timedelta(days=30), clock=lambda: NOW)


def test_a_signed_chain_is_the_charger_certificate_then_the_root_and_verifies(
    ca: CertificateAuthority,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    chain = ca.sign_csr(csr_pem(key=key), expected_cn="CP000001")
    leaf, root = x509.load_pem_x509_certificates(chain.encode())
    assert root == ca.certificate
    leaf.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    assert leaf.public_key() == key.public_key()  # the CSR's key, not one of ours
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP000001"
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "Example CPO"
    )
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(days=30)
    assert leaf.not_valid_before_utc < NOW  # usable at once by a charger a bit behind
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    with pytest.raises(x509.ExtensionNotFound):  # A00.FR.511: no subjectAltName
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_two_certificates_get_different_serials(ca: CertificateAuthority) -> None:
    first, _ = x509.load_pem_x509_certificates(ca.sign_csr(csr_pem()).encode())
    second, _ = x509.load_pem_x509_certificates(ca.sign_csr(csr_pem()).encode())
    assert first.serial_number != second.serial_number


def test_an_rsa_csr_of_2048_bits_is_signed(ca: CertificateAuthority) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf, _ = x509.load_pem_x509_certificates(ca.sign_csr(csr_pem(key=key)).encode())
    assert leaf.public_key() == key.public_key()


def tampered_csr() -> str:
    """A CSR whose subject was changed after it was signed."""
    der = bytearray(
        x509.load_pem_x509_csr(csr_pem("CP000001").encode()).public_bytes(
            serialization.Encoding.DER
        )
    )
    at = der.index(b"CP000001")
    der[at : at + 8] = b"CP000002"
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


BAD = [
    ("garbage", "not a PEM certificate signing request"),
    ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
     "not a PEM certificate signing request"),
    ("tampered", "signature does not verify"),
    ("no-cn", "no commonName"),
    ("other-cn", "is not the charger's id 'CP000001'"),
    ("weak-rsa", "an RSA key of 1024 bits"),
    ("weak-ec", "an EC key of 192 bits"),
]  # fmt: skip


def bad_csr(kind: str) -> str:
    if kind == "tampered":
        return tampered_csr()
    if kind == "no-cn":
        return csr_pem(None)
    if kind == "other-cn":
        return csr_pem("CP000002")
    if kind == "weak-rsa":
        return csr_pem(key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    if kind == "weak-ec":
        return csr_pem(key=ec.generate_private_key(ec.SECP192R1()))
    return kind


@pytest.mark.parametrize(("kind", "reason"), BAD, ids=[b[1][:30] for b in BAD])
def test_a_csr_the_ca_cannot_sign_is_rejected_with_the_reason(
    ca: CertificateAuthority, kind: str, reason: str
) -> None:
    with pytest.raises(CsrRejected, match=reason) as info:
        ca.check_csr(bad_csr(kind), expected_cn="CP000001")
    assert "PRIVATE" not in str(info.value)


def test_the_firmware_signature_verifies_with_the_signing_certificate_issued_by_the_root(
    ca: CertificateAuthority,
) -> None:
    firmware = b"\x7fELF firmware image" * 1000
    signed = ca.sign_firmware(firmware)
    signing = x509.load_pem_x509_certificate(signed.signing_certificate.encode())
    signing.verify_directly_issued_by(ca.certificate)
    usage = signing.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CODE_SIGNING in usage
    public = signing.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signature = base64.b64decode(signed.signature, validate=True)
    public.verify(signature, firmware, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(signature, firmware + b"!", ec.ECDSA(hashes.SHA256()))
    assert ca.sign_firmware(b"other").signing_certificate == signed.signing_certificate


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
def test_certificate_hash_data_is_what_an_ocsp_request_names(
    ca: CertificateAuthority, algorithm: str
) -> None:
    data = certificate_hash_data(ca.root_pem, algorithm)
    chosen = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(ca.certificate, ca.certificate, chosen[algorithm])
        .build()
    )
    assert data == {
        "hashAlgorithm": algorithm,
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": f"{ca.certificate.serial_number:X}",
    }
    assert not data["serialNumber"].startswith("0")


def test_hash_data_of_a_certificate_that_is_not_a_root_needs_its_issuer(
    ca: CertificateAuthority,
) -> None:
    leaf_pem = ca.sign_csr(csr_pem()).split("-----END CERTIFICATE-----")[0]
    leaf_pem += "-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError, match="self-signed"):
        certificate_hash_data(leaf_pem)
    data = certificate_hash_data(leaf_pem, issuer_pem=ca.root_pem)
    assert data["issuerNameHash"] == certificate_hash_data(ca.root_pem)["issuerNameHash"]


def test_a_ca_loads_from_files_and_its_repr_shows_no_key(tmp_path: Path) -> None:
    made = CertificateAuthority.generate()
    key_pem = made._key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "ca.pem").write_text(made.root_pem)
    (tmp_path / "ca.key").write_bytes(key_pem)
    loaded = CertificateAuthority.from_files(tmp_path / "ca.pem", tmp_path / "ca.key")
    leaf, _root = x509.load_pem_x509_certificates(loaded.sign_csr(csr_pem()).encode())
    leaf.verify_directly_issued_by(made.certificate)
    text = repr(loaded)
    assert "CertificateAuthority(subject=" in text
    assert "PRIVATE" not in text and key_pem.decode().splitlines()[1] not in text


def test_a_key_file_that_is_not_a_key_is_named_without_its_content(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(CertificateAuthority.generate().root_pem)
    (tmp_path / "ca.key").write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n")
    with pytest.raises(ValueError, match=r"ca\.key: not a usable PEM private key") as info:
        CertificateAuthority.from_files(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert "c2VjcmV0" not in str(info.value)


def test_a_key_that_does_not_belong_to_the_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(CertificateAuthority.generate().root_pem)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "ca.key").write_bytes(other)
    with pytest.raises(ValueError, match="does not belong"):
        CertificateAuthority.from_files(tmp_path / "ca.pem", tmp_path / "ca.key")
