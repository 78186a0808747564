"""The charger's certificates: its CSR and key, its signed chain, its root store.

OCPP 1.6 Security Whitepaper edition 3:

* A02/A03 (Update Charge Point Certificate): a new EC P-256 key per request (A02.FR.02,
  NIST SP 800-57 strength: A00.FR.501/503), a PKCS #10 CSR in PEM (A02.FR.03) with
  CN = the charger id and O = ``CpoName`` (A00.FR.511, A02.FR.13); the CertificateSigned
  chain is checked (A02.FR.06): it parses, its size is within
  ``CertificateSignedMaxChainSize`` (§7.3: the size of the ``certificateChain`` field, in
  characters), the leaf carries the pending CSR's key, the leaf is within its validity
  period at the charger's own time, each certificate is signed by the next one.  Else
  Rejected, discarded and an InvalidChargePointCertificate security event (A02.FR.07).
* M03/M04/M05 (Get/Delete/Install CA certificates): CentralSystemRootCertificate and
  ManufacturerRootCertificate, at most ``CertificateStoreMaxLength`` of them (M05.FR.03),
  each identified by its certificateHashData (§6.1, as OCSP's CertID, RFC 6960 §4.1.1).

Time: a certificate's validity is judged at the ``now`` the core is given (the charger's
own clock, what the emulator's clock says: a run that starts at an offset or runs
accelerated judges certificates in that time, as a charger whose clock says so would),
never by reading the system clock here.  A certificate whose notBefore is up to
:data:`CLOCK_SKEW` ahead of ``now`` is taken (a CA that signs at its own second, a
charger clock a little behind); A02.FR.08 lets a charger hold a not-yet-valid one.

Secrets: a private key lives in a :class:`PrivateKey` (its ``repr`` hides it); it leaves
the core only as :class:`emulator.core.effects.ClientCertificate`, for the TLS layer of
the same charger (A02.FR.05: never over OCPP).  Nothing here logs.

Memory: nothing is made before it is needed.  A charger with the extension that was
never asked for a CSR and never sent a certificate holds no object of this module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from itertools import pairwise
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

CLOCK_SKEW: Final = 300.0
"""Seconds a certificate's notBefore may be ahead of the charger's clock and still be
taken: a CA signing at its own second, a charger clock a little behind."""

HASH_ALGORITHMS: Final[dict[str, str]] = {
    "SHA256": "sha256",
    "SHA384": "sha384",
    "SHA512": "sha512",
}
"""HashAlgorithmEnumType (§6.12) -> hashlib name."""


class CertificateUse(StrEnum):
    """CertificateUseEnumType (§6.4): what InstallCertificate may install."""

    CENTRAL_SYSTEM_ROOT = "CentralSystemRootCertificate"
    MANUFACTURER_ROOT = "ManufacturerRootCertificate"


class CertificateProblem(ValueError):
    """A certificate the charger refuses; ``event`` is the security event to raise and the
    message its techInfo (no secret in it: certificates are public)."""

    def __init__(self, event: str, tech_info: str) -> None:
        super().__init__(tech_info)
        self.event = event
        self.tech_info = tech_info[:255]  # techInfo is string[0..255] (§5.15)


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A charger's own private key; never shown (A02.FR.05)."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)

    def pem(self) -> bytes:
        """PKCS #8 PEM, unencrypted: for the TLS context of this charger only."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_der(self) -> bytes:
        return _spki(self.key.public_key())


@dataclass(frozen=True, slots=True)
class Installed:
    """One root certificate in the store."""

    use: CertificateUse
    certificate: x509.Certificate


class CertificateStore:
    """One charger's certificates: made on first use (A02 or M05), kept across resets as
    the charger's flash keeps them."""

    __slots__ = ("client_chain", "client_key", "installed", "pending_key")

    def __init__(self) -> None:
        self.installed: list[Installed] = []
        self.pending_key: PrivateKey | None = None  # the key of the last CSR sent
        self.client_chain: str | None = None  # the accepted CertificateSigned chain (PEM)
        self.client_key: PrivateKey | None = None

    # ------------------------------------------------------------------ A02 / A03

    def new_csr(self, *, charger_id: str, cpo_name: str) -> str:
        """A new key pair (A02.FR.02) and its CSR in PEM (A02.FR.03, A02.FR.13).

        Raises CertificateProblem when X.509 cannot carry the names (a CN over 64
        characters)."""
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, charger_id),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, cpo_name),
                ]
            )
        except ValueError as exc:
            raise CertificateProblem("InvalidChargePointCertificate", f"CSR: {exc}") from None
        csr = (
            x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        )
        self.pending_key = PrivateKey(key)
        return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def accept_signed_chain(self, chain_pem: str, *, max_size: int, now: float) -> PrivateKey:
        """CertificateSigned (A02.FR.06): check ``chain_pem`` against the pending CSR; on
        success it becomes the charger's certificate and its key is returned.

        Raises CertificateProblem (InvalidChargePointCertificate) otherwise; the pending
        key stays, so a corrected chain for the same CSR may still come."""
        event = "InvalidChargePointCertificate"
        if len(chain_pem) > max_size:
            raise CertificateProblem(
                event,
                f"certificateChain of {len(chain_pem)} characters, over "
                f"CertificateSignedMaxChainSize {max_size}",
            )
        key = self.pending_key
        if key is None:
            raise CertificateProblem(event, "no certificate signing request is pending")
        chain = parse_pem_chain(chain_pem, event=event)
        leaf = chain[0]
        if _spki(leaf.public_key()) != key.public_der():
            raise CertificateProblem(event, "the certificate's key is not the CSR's key")
        check_validity(leaf, now, event=event)
        for child, issuer in pairwise(chain):
            try:
                child.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                raise CertificateProblem(
                    event, f"{child.subject.rfc4514_string()} is not signed by the next one"
                ) from None
        self.pending_key = None
        self.client_chain = chain_pem
        self.client_key = key
        return key

    # ------------------------------------------------------------------ M03 / M04 / M05

    def install(self, use: CertificateUse, pem: str, *, max_length: int, now: float) -> str:
        """InstallCertificate (M05): the InstallCertificate.conf status.

        Raises CertificateProblem for an invalid certificate (M05.FR.06: Rejected) and for
        a full store (M05.FR.03: Rejected)."""
        event = (
            "InvalidCentralSystemCertificate"
            if use is CertificateUse.CENTRAL_SYSTEM_ROOT
            else "InvalidFirmwareSigningCertificate"  # the manufacturer's hierarchy
        )
        chain = parse_pem_chain(pem, event=event)
        if len(chain) != 1:
            raise CertificateProblem(event, f"{use}: expected one certificate, got {len(chain)}")
        certificate = chain[0]
        check_validity(certificate, now, event=event)
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
            is_ca = constraints.value.ca
        except x509.ExtensionNotFound:
            is_ca = True  # a v1 root has no extensions
        if not is_ca:
            raise CertificateProblem(event, f"{use}: not a CA certificate")
        if any(i.use is use and i.certificate == certificate for i in self.installed):
            return "Accepted"  # installed already: nothing changes
        if len(self.installed) >= max_length:
            raise CertificateProblem(
                "MemoryExhaustion",
                f"certificate store full (CertificateStoreMaxLength {max_length})",
            )
        self.installed.append(Installed(use, certificate))
        return "Accepted"

    def hash_data(self, installed: Installed, algorithm: str = "SHA256") -> dict[str, str]:
        """certificateHashData (§6.1) of an installed certificate."""
        return certificate_hash_data(
            installed.certificate, self._issuer_of(installed.certificate), algorithm
        )

    def installed_ids(self, use: CertificateUse) -> list[dict[str, str]]:
        """GetInstalledCertificateIds (M03.FR.04): the hash data of every ``use`` one."""
        return [self.hash_data(i) for i in self.installed if i.use is use]

    def find(self, wanted: dict[str, str]) -> Installed | None:
        """The installed certificate whose certificateHashData is ``wanted`` (M04.FR.07:
        in the algorithm it names), compared as CiStrings (case-insensitive), the serial
        number without leading zeroes."""
        algorithm = wanted["hashAlgorithm"]
        want = {k: wanted[k].upper() for k in ("issuerNameHash", "issuerKeyHash")}
        want["serialNumber"] = wanted["serialNumber"].upper().lstrip("0") or "0"
        for installed in self.installed:
            have = self.hash_data(installed, algorithm)
            if all(have[k].upper() == v for k, v in want.items()):
                return installed
        return None

    def _issuer_of(self, certificate: x509.Certificate) -> x509.Certificate:
        """The certificate whose key signed ``certificate``: itself for a root, else one
        in the store; without one the certificate's own key is the best the charger has."""
        if certificate.issuer == certificate.subject:
            return certificate
        for installed in self.installed:
            candidate = installed.certificate
            if candidate.subject == certificate.issuer:
                try:
                    certificate.verify_directly_issued_by(candidate)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                return candidate
        return certificate


def parse_pem_chain(pem: str, *, event: str) -> list[x509.Certificate]:
    """The certificates of a PEM text, in order; CertificateProblem if there is none or one
    does not parse."""
    try:
        chain = x509.load_pem_x509_certificates(pem.encode("utf-8", "surrogateescape"))
    except ValueError:
        raise CertificateProblem(event, "malformed PEM certificate") from None
    return chain


def check_validity(certificate: x509.Certificate, now: float, *, event: str) -> None:
    """Within notBefore (less :data:`CLOCK_SKEW`) and notAfter at ``now`` (A02.FR.06)."""
    at = datetime.fromtimestamp(now, UTC)
    if at > certificate.not_valid_after_utc:
        raise CertificateProblem(
            event, f"certificate expired at {certificate.not_valid_after_utc.isoformat()}"
        )
    if (certificate.not_valid_before_utc - at).total_seconds() > CLOCK_SKEW:
        raise CertificateProblem(
            event, f"certificate not valid before {certificate.not_valid_before_utc.isoformat()}"
        )


def certificate_hash_data(
    certificate: x509.Certificate, issuer: x509.Certificate, algorithm: str = "SHA256"
) -> dict[str, str]:
    """CertificateHashDataType (§6.1) as OCSP's CertID (RFC 6960 §4.1.1): the hash of the
    DER of the certificate's issuer name, the hash of the issuer's public key (the BIT
    STRING's value of its subjectPublicKeyInfo, without tag, length and unused-bits
    count), and the serial number in hexadecimal without leading zeroes (``FFF``)."""
    name = HASH_ALGORITHMS[algorithm]
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": hashlib.new(name, certificate.issuer.public_bytes()).hexdigest(),
        "issuerKeyHash": hashlib.new(name, _key_bits(issuer.public_key())).hexdigest(),
        "serialNumber": f"{certificate.serial_number:X}",
    }


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_bits(public_key: CertificatePublicKeyTypes) -> bytes:
    """The subjectPublicKey BIT STRING's bytes of a SubjectPublicKeyInfo (RFC 5280 §4.1):
    SEQUENCE { AlgorithmIdentifier, BIT STRING }."""
    der = _spki(public_key)
    offset = _header(der, 0)[1]  # into the outer SEQUENCE
    length, start = _header(der, offset)  # the AlgorithmIdentifier
    offset = start + length
    if der[offset] != 0x03:  # BIT STRING
        raise ValueError("SubjectPublicKeyInfo without a BIT STRING")
    length, start = _header(der, offset)
    return der[start + 1 : start + length]  # after the unused-bits count


def _header(der: bytes, offset: int) -> tuple[int, int]:
    """(content length, content offset) of the DER element at ``offset``."""
    first = der[offset + 1]
    if first < 0x80:
        return first, offset + 2
    count = first & 0x7F
    return int.from_bytes(der[offset + 2 : offset + 2 + count], "big"), offset + 2 + count
