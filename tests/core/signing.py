"""Real firmware signing material for tests: a manufacturer root, signing certificates
and signatures over an image, made with ``cryptography`` (no file, no fixture data).

The keys are made once per process (an RSA key costs ~0.1 s) and live only in memory.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from functools import cache
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Signer:
    """A firmware signing key with its certificate."""

    key: PrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, data: bytes, scheme: Literal["pkcs1", "pss"] = "pkcs1") -> str:
        """The base64 signature of ``data`` (SHA256; ECDSA, or RSA PKCS#1 v1.5 / PSS)."""
        key = self.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            raw = key.sign(data, ec.ECDSA(hashes.SHA256()))
        elif scheme == "pss":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            raw = key.sign(data, pss, hashes.SHA256())
        else:
            raw = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode()


@cache
def private_key(key_type: KeyType, number: int = 0) -> PrivateKey:
    """Key ``number`` of this type (distinct numbers give distinct keys)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACWallbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def manufacturer_root(number: int = 0) -> Signer:
    """A self-signed ManufacturerRootCertificate (EC), valid 2025-2036."""
    key = private_key("ec", 100 + number)
    name = _name(f"ACWallbox Root {number}")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1000 + number)
        .not_valid_before(datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2036, 1, 1, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Signer(key, certificate)


def signing_certificate(
    *,
    key_type: KeyType = "ec",
    issuer: Signer | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    digital_signature: bool = True,
    number: int = 0,
) -> Signer:
    """A Firmware Signing certificate issued by ``issuer`` (default: manufacturer root 0),
    valid 2025-2030 unless told otherwise."""
    issuer = issuer or manufacturer_root()
    key = private_key(key_type, number)
    usage = x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=not digital_signature,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(f"ACWallbox Firmware Signing {key_type} {number}"))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(not_after or datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
        .add_extension(usage, critical=True)
        .sign(issuer.key, hashes.SHA256())
    )
    return Signer(key, certificate)
