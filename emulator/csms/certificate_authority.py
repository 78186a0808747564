"""The reference CSMS's certificate authority: signs chargers' CSRs and firmware.

OCPP 1.6 Security Whitepaper (edition 3) A02/A03: a charger sends a PEM CSR
(SignCertificate.req), the CSMS answers Accepted if it can process it (A02.FR.11) and
later sends the signed certificate in CertificateSigned.req.  The CPO may act as the CA
(A00.FR.601; A02 remark: "the CA Server may be a local server"), which is what this is:
one root (made here, or loaded from the files of the user's CA) in memory.

:meth:`CertificateAuthority.check_csr` is the CA's check of the CSR (A02 remark: "the
applicable Certification Authority SHALL check the information in the CSR"): it parses,
its signature verifies, its key is strong enough (A00.FR.501-503) and its subject has a
commonName (A00.FR.511), the charger's id when one is expected.  Each failure is a
:class:`CsrRejected` whose message names the problem and never carries key material.

L01 (secure firmware update): :meth:`CertificateAuthority.sign_firmware` signs a
firmware file with a Firmware Signing key whose certificate this root issued, ECDSA P-256
with SHA256 (A00.FR.505, A00.FR.506), base64 of the DER signature, as
SignedUpdateFirmware.req's ``firmware.signature`` wants.  The root then doubles as the
Manufacturer root certificate a charger verifies the signing certificate against.

Secrets: the private keys live only in this object; ``repr`` shows the subject, the
root's serial and the validity, never a key, and nothing here logs.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEFAULT_VALIDITY",
    "CertificateAuthority",
    "CsrRejected",
    "FirmwareSignature",
    "certificate_hash_data",
]

#: How long a charger certificate signed here is valid by default.
DEFAULT_VALIDITY: Final = dt.timedelta(days=365)
#: A root made here lives long enough for any run.
_ROOT_VALIDITY: Final = dt.timedelta(days=3650)
#: Certificates start a little in the past, so a charger whose clock is a minute behind
#: may use them at once (A02.FR.08: it switches once "Not valid before" has passed).
_BACKDATE: Final = dt.timedelta(minutes=5)
_MIN_RSA_BITS: Final = 2048  # A00.FR.502
_MIN_EC_BITS: Final = 224  # A00.FR.503
_HASHES: Final[dict[str, hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256(),
    "SHA384": hashes.SHA384(),
    "SHA512": hashes.SHA512(),
}

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CsrRejected(ValueError):
    """A CSR the CA will not sign; the message says why (no key material in it)."""


@dataclass(frozen=True, slots=True)
class FirmwareSignature:
    """SignedUpdateFirmware.req's ``firmware.signingCertificate`` and ``firmware.signature``."""

    signing_certificate: str  # PEM
    signature: str  # base64 of the signature over the whole firmware file (L01.FR.04)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _serial() -> int:
    # RFC 5280 §4.1.2.2: positive, at most 20 octets; 159 random bits leave the top bit 0.
    return secrets.randbits(159) | 1


def certificate_hash_data(
    certificate_pem: str, hash_algorithm: str = "SHA256", *, issuer_pem: str | None = None
) -> dict[str, str]:
    """The whitepaper's CertificateHashDataType (§6.1) of a certificate, as DeleteCertificate.req
    names one: the hash of the issuer's DER name, of the issuer's public key and the serial
    in hex without leading zeroes, computed as an OCSP request does (RFC 6960 §4.1.1).

    ``issuer_pem``: the issuer's certificate; without it the certificate must be a root
    (self-signed), which is what InstallCertificate installs.  Raises ValueError otherwise.
    """
    algorithm = _HASHES.get(hash_algorithm)
    if algorithm is None:
        raise ValueError(f"hash_algorithm must be one of {sorted(_HASHES)}, got {hash_algorithm!r}")
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
    if issuer_pem is None:
        if certificate.issuer != certificate.subject:
            raise ValueError("without issuer_pem the certificate must be self-signed (a root)")
        issuer = certificate
    else:
        issuer = x509.load_pem_x509_certificate(issuer_pem.encode("ascii"))
    request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, algorithm).build()
    return {
        "hashAlgorithm": hash_algorithm,
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": f"{request.serial_number:X}",
    }


class CertificateAuthority:
    """A CPO root that signs charger CSRs (A02/A03) and firmware (L01).

    Make one with :meth:`generate` (an ECDSA P-256 root made now) or :meth:`from_files`
    (the user's CA certificate and key, e.g. the CA behind ``--client-ca``, so renewed
    certificates pass the CSMS's own TLS check).  ``validity`` is how long a charger
    certificate signed here lasts; ``clock`` gives the current time (tests pass one).
    """

    __slots__ = ("_clock", "_firmware", "_key", "certificate", "validity")

    def __init__(
        self,
        *,
        certificate: x509.Certificate,
        private_key: SigningKey,
        validity: dt.timedelta = DEFAULT_VALIDITY,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        if validity <= dt.timedelta(0):
            raise ValueError(f"validity must be positive, got {validity}")
        ours = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if ours != theirs:
            raise ValueError("the CA's private key does not belong to its certificate")
        self.certificate = certificate
        self.validity = validity
        self._key = private_key
        self._clock = clock
        self._firmware: tuple[ec.EllipticCurvePrivateKey, str] | None = None

    def __repr__(self) -> str:
        return (
            f"CertificateAuthority(subject={self.certificate.subject.rfc4514_string()!r}, "
            f"serial={self.certificate.serial_number:X}, validity={self.validity})"
        )

    @classmethod
    def generate(
        cls,
        *,
        organization: str = "ocpp-fleet",
        common_name: str = "ocpp-fleet reference CSMS root CA",
        validity: dt.timedelta = DEFAULT_VALIDITY,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> CertificateAuthority:
        """A new self-signed ECDSA P-256 root, valid for ten years from now."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = clock()
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _ROOT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate=certificate, private_key=key, validity=validity, clock=clock)

    @classmethod
    def from_files(
        cls,
        certfile: Path,
        keyfile: Path,
        *,
        password: bytes | None = None,
        validity: dt.timedelta = DEFAULT_VALIDITY,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> CertificateAuthority:
        """The CA whose PEM certificate and PEM private key (ECDSA or RSA) are in these files.

        Raises ValueError naming the file (never its content) if either cannot be used."""
        try:
            certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{certfile}: not a PEM certificate ({type(exc).__name__})") from None
        try:
            key = serialization.load_pem_private_key(keyfile.read_bytes(), password=password)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # The key's text must not reach the message: name the file only.
            raise ValueError(
                f"{keyfile}: not a usable PEM private key ({type(exc).__name__})"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"{keyfile}: expected an ECDSA or RSA key")
        return cls(certificate=certificate, private_key=key, validity=validity, clock=clock)

    # -- what a charger may see ------------------------------------------------------

    @property
    def root_pem(self) -> str:
        """The CA certificate (PEM): what InstallCertificate installs as a root."""
        return _pem(self.certificate)

    # -- CSRs ------------------------------------------------------------------------

    def check_csr(
        self, csr_pem: str, *, expected_cn: str | None = None
    ) -> x509.CertificateSigningRequest:
        """The CSR if this CA will sign it, else :class:`CsrRejected` saying why."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("utf-8", "replace"))
        except ValueError:
            raise CsrRejected("not a PEM certificate signing request") from None
        try:
            public_key = csr.public_key()
            signed = csr.is_signature_valid
        except (ValueError, UnsupportedAlgorithm):
            raise CsrRejected("the CSR's key or signature algorithm is not supported") from None
        if not signed:
            raise CsrRejected("the CSR's signature does not verify")
        if isinstance(public_key, rsa.RSAPublicKey):
            if public_key.key_size < _MIN_RSA_BITS:
                raise CsrRejected(f"an RSA key of {public_key.key_size} bits (at least 2048)")
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if public_key.curve.key_size < _MIN_EC_BITS:
                raise CsrRejected(f"an EC key of {public_key.curve.key_size} bits (at least 224)")
        else:
            raise CsrRejected("the CSR's key is neither RSA nor EC")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(names[0].value) if names else ""
        if not common_name:
            raise CsrRejected("the CSR's subject has no commonName (A00.FR.511)")
        if expected_cn is not None and common_name != expected_cn:
            raise CsrRejected(
                f"the CSR's commonName {common_name!r} is not the charger's id {expected_cn!r}"
            )
        return csr

    def sign(self, csr: x509.CertificateSigningRequest) -> x509.Certificate:
        """A charger certificate for a CSR :meth:`check_csr` accepted: the CSR's subject
        and key, valid from now (backdated 5 minutes) for :attr:`validity`, a TLS client
        certificate (A00.FR.512) without subjectAltName (A00.FR.511)."""
        now = self._clock()
        public = csr.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
        issuer_key = self.certificate.public_key()
        assert isinstance(issuer_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
        return (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + self.validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(key_agreement=isinstance(public, ec.EllipticCurvePublicKey)),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    def certificate_chain(self, certificate: x509.Certificate) -> str:
        """CertificateSigned.req's ``certificateChain``: the charger's certificate, then
        the CA's (PEM, one after the other)."""
        return _pem(certificate) + self.root_pem

    def sign_csr(self, csr_pem: str, *, expected_cn: str | None = None) -> str:
        """:meth:`check_csr`, :meth:`sign` and :meth:`certificate_chain` in one step."""
        return self.certificate_chain(self.sign(self.check_csr(csr_pem, expected_cn=expected_cn)))

    # -- firmware --------------------------------------------------------------------

    @property
    def firmware_signing_certificate(self) -> str:
        """The Firmware Signing certificate (PEM), issued by this CA, made on first use."""
        return self._firmware_signer()[1]

    def sign_firmware(self, firmware: bytes) -> FirmwareSignature:
        """The signing certificate and the base64 ECDSA-SHA256 signature over ``firmware``,
        the whole file (L01.FR.04)."""
        key, certificate = self._firmware_signer()
        signature = key.sign(firmware, ec.ECDSA(hashes.SHA256()))
        return FirmwareSignature(
            signing_certificate=certificate, signature=base64.b64encode(signature).decode("ascii")
        )

    def _firmware_signer(self) -> tuple[ec.EllipticCurvePrivateKey, str]:
        if self._firmware is None:
            key = ec.generate_private_key(ec.SECP256R1())
            now = self._clock()
            organization = self.certificate.subject.get_attributes_for_oid(
                NameOID.ORGANIZATION_NAME
            )
            subject = x509.Name(
                [
                    *(
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(o.value))
                        for o in organization
                    ),
                    x509.NameAttribute(NameOID.COMMON_NAME, "ocpp-fleet firmware signing"),
                ]
            )
            issuer_key = self.certificate.public_key()
            assert isinstance(issuer_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
            certificate = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(self.certificate.subject)
                .public_key(key.public_key())
                .serial_number(_serial())
                .not_valid_before(now - _BACKDATE)
                .not_valid_after(now + _ROOT_VALIDITY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_key_usage(), critical=True)
                .add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
                )
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
                )
                .sign(self._key, hashes.SHA256())
            )
            self._firmware = (key, _pem(certificate))
        return self._firmware


def _key_usage(*, cert_sign: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
