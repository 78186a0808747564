"""OCPP 1.6 security profiles on the charger side (OCPP 1.6 Security Whitepaper §2).

* profile 1: HTTP Basic authentication over ``ws://`` (username = charger id; the
  password from the identities file's row of the charger, else ``password_env`` or
  ``password_file``, the same for every charger);
* profile 2: TLS (``wss://``, the CSMS's certificate verified) + HTTP Basic;
* profile 3: TLS with a client certificate per charger (``<dir>/<charger id>.pem``,
  key inside it or beside it as ``<charger id>.key``), no password; once a charger has
  had a CertificateSigned accepted (the security extension, Security Whitepaper A02),
  its new certificate and key instead (:meth:`Credentials.install_client_certificate`),
  held in memory only.

A charger may raise its profile (ChangeConfiguration SecurityProfile, Security Whitepaper
A05): :attr:`Credentials.tls_for` builds the TLS context of profile 2 or 3 for it,
whatever profile the fleet starts at, from the scenario's ``ca_file`` (2 and 3) and
``client_cert_dir`` (3).  The charger accepts a raise only when the material is there
(:meth:`Credentials.raise_material`), so a scenario without it keeps the old answer:
Rejected.

Everything is resolved before the first connection, so a missing file, an unset
environment variable or a missing certificate is one clear error at start-up, never
a failure in the middle of a ramp.  Secrets are held in memory only: nothing here
logs, formats or reports them (``Credentials.__repr__`` hides the password).
"""

from __future__ import annotations

import os
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cryptography import x509

from emulator.fleet.scenario import Scenario


class SecurityConfigError(ValueError):
    """The scenario's [security] cannot be used as it stands (one line for the user)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    profile: int = 0
    password: str | None = field(default=None, repr=False)
    # Per charger (the identities file): charger id -> password, before ``password``.
    passwords: Mapping[str, str] | None = field(default=None, repr=False)
    ssl_for: Callable[[str], ssl.SSLContext] | None = field(default=None, repr=False)
    # Profile 3: whether a charger's own certificate has expired.  A CSMS that refuses a
    # client certificate just closes the TLS connection, so the charger diagnoses itself.
    cert_expired: Callable[[str], bool] | None = field(default=None, repr=False)
    # Charger id -> (certificate chain PEM, private key PEM) the charger got over OCPP
    # (Security Whitepaper A02); ``ssl_for`` presents it instead of the file's.
    own_certificates: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)
    # A SecurityProfile raise (A05): (charger id, profile 2 or 3, the charger's installed
    # CentralSystemRootCertificates PEM) -> a new TLS context for it.
    tls_for: Callable[[str, int, tuple[str, ...]], ssl.SSLContext] | None = field(
        default=None, repr=False
    )
    has_ca_file: bool = False
    has_client_certificates: bool = False

    def raise_material(self) -> dict[str, bool]:
        """What a charger may raise its profile with (the ChargerModel's ``fleet_*``
        fields, emulator.core.security_profile)."""
        return {
            "fleet_password": self.password is not None or bool(self.passwords),
            "fleet_ca": self.has_ca_file,
            "fleet_client_certificates": self.has_client_certificates,
        }

    def install_client_certificate(self, charger_id: str, chain: str, key: bytes) -> None:
        """The charger's certificate from now on (emulator.core.effects.ClientCertificate):
        its next profile-3 connection presents it."""
        self.own_certificates[charger_id] = (chain, key)

    def __repr__(self) -> str:  # never print a secret, even in a traceback
        return (
            f"Credentials(profile={self.profile}, password={'***' if self.password else None}, "
            f"passwords={len(self.passwords) if self.passwords else 0})"
        )


def _path(base: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base / path


def _password(scenario: Scenario, base: Path) -> str | None:
    sec = scenario.security
    if sec.password_env is not None:
        value = os.environ.get(sec.password_env)
        if not value:
            raise SecurityConfigError(
                f"security.password_env: the environment variable {sec.password_env} is not set"
            )
        return value
    if sec.password_file is not None:
        path = _path(base, sec.password_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SecurityConfigError(
                f"security.password_file: cannot read {path}: {exc.strerror or exc}"
            ) from None
        if not lines or not lines[0]:
            raise SecurityConfigError(f"security.password_file: {path} is empty")
        return lines[0]
    return scenario.fleet.basic_auth_password


def _passwords(scenario: Scenario) -> Mapping[str, str] | None:
    """The identities file's passwords; for profiles 1 and 2 every charger needs one,
    from the file or from ``password_env``/``password_file``."""
    sec, identities = scenario.security, scenario.identities
    passwords = identities.passwords if identities is not None and identities.passwords else None
    if sec.profile not in (1, 2):
        return passwords
    if sec.password_env is not None or sec.password_file is not None:
        return passwords
    if identities is None:
        raise SecurityConfigError(
            f"security.password_env: security profile {sec.profile} uses HTTP Basic "
            "authentication: expected password_env or password_file, or an identities "
            "file with a password column"
        )
    missing = identities.without_password()
    if missing:
        raise SecurityConfigError(
            f"security profile {sec.profile} uses HTTP Basic authentication, but the "
            f"identities file {identities.path} gives {len(missing)} of its "
            f"{len(identities)} chargers no password (the first: "
            f"{identities.ids[missing[0] - 1]}): fill its password column, or give "
            "password_env or password_file for the chargers without one"
        )
    return passwords


def _server_context(scenario: Scenario, base: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # whitepaper §2.3: TLS 1.2 or higher
    ca_file = scenario.security.ca_file
    if ca_file is not None:
        path = _path(base, ca_file)
        try:
            context.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise SecurityConfigError(f"security.ca_file: cannot load {path}: {exc}") from None
    return context


def resolve(scenario: Scenario, *, charger_ids: list[str], url: str) -> Credentials:
    """Check and load everything the scenario's security profile needs, and what a raise
    to a higher one would (the CA file, the client certificates)."""
    sec = scenario.security
    base = Path(scenario.base_dir)
    profile = sec.profile
    if profile in (2, 3) and not url.startswith("wss://"):
        raise SecurityConfigError(
            f"security profile {profile} needs TLS: the CSMS URL must start with wss://, got {url}"
        )
    password = _password(scenario, base) if profile in (0, 1, 2) else None
    passwords = _passwords(scenario) if profile in (0, 1, 2) else None
    ca_file = None if sec.ca_file is None else str(_path(base, sec.ca_file))
    context = _server_context(scenario, base) if ca_file or url.startswith("wss://") else None
    own: dict[str, tuple[str, bytes]] = {}
    client = (
        None
        if sec.client_cert_dir is None
        else _ClientCertificates(_path(base, sec.client_cert_dir), ca_file, own)
    )
    if client is not None:
        client.check(charger_ids)

    def tls_for(charger_id: str, new_profile: int, roots: tuple[str, ...]) -> ssl.SSLContext:
        if new_profile == 3:
            if client is None:
                raise SecurityConfigError("security.client_cert_dir: not given")
            raised = client.context(charger_id)
        else:
            raised = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
            raised.minimum_version = ssl.TLSVersion.TLSv1_2
        for root in roots:  # installed over OCPP (M05): trusted besides the CA file
            raised.load_verify_locations(cadata=root)
        return raised

    raised = partial(
        Credentials,
        tls_for=tls_for,
        has_ca_file=ca_file is not None,
        has_client_certificates=client is not None,
        own_certificates=own,
    )
    if not url.startswith("wss://"):
        return raised(profile=profile, password=password, passwords=passwords)
    assert context is not None
    if profile != 3:
        return raised(
            profile=profile, password=password, passwords=passwords, ssl_for=lambda _cp: context
        )
    assert client is not None  # checked by the scenario loader
    return raised(profile=3, ssl_for=client.context, cert_expired=client.expired)


class _ClientCertificates:
    """Profile 3's client certificates: ``<dir>/<charger id>.pem`` (key inside or in
    ``<charger id>.key``), or the one the charger got over OCPP (``own``)."""

    def __init__(
        self, folder: Path, ca_file: str | None, own: dict[str, tuple[str, bytes]]
    ) -> None:
        self.folder = folder
        self.ca_file = ca_file
        self.own = own

    def chain(self, charger_id: str) -> tuple[Path, Path | None]:
        cert = self.folder / f"{charger_id}.pem"
        key = self.folder / f"{charger_id}.key"
        if not cert.is_file():
            raise SecurityConfigError(
                f"security.client_cert_dir: no client certificate {cert} for charger {charger_id}"
            )
        return cert, key if key.is_file() else None

    def check(self, charger_ids: list[str]) -> None:
        """Every charger has its file; one loads (a broken key is a start-up error, not a
        connect failure)."""
        for charger_id in charger_ids:
            self.chain(charger_id)
        if charger_ids:
            try:
                self.context(charger_ids[0])
            except (OSError, ssl.SSLError) as exc:
                raise SecurityConfigError(
                    f"security.client_cert_dir: cannot load the certificate of "
                    f"{charger_ids[0]}: {exc}"
                ) from None

    def context(self, charger_id: str) -> ssl.SSLContext:
        # One context per charger: each presents its own certificate (profile 3).
        per_charger = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        per_charger.minimum_version = ssl.TLSVersion.TLSv1_2
        signed = self.own.get(charger_id)
        if signed is not None:
            load_chain_from_memory(per_charger, *signed)
            return per_charger
        cert, key = self.chain(charger_id)
        per_charger.load_cert_chain(str(cert), None if key is None else str(key))
        return per_charger

    def expired(self, charger_id: str) -> bool:
        signed = self.own.get(charger_id)
        if signed is not None:
            return _pem_expired(signed[0])
        cert, _ = self.chain(charger_id)
        try:
            # CPython's own PEM decoder (what ssl uses for getpeercert()).
            decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]
            return bool(ssl.cert_time_to_seconds(decoded["notAfter"]) < time.time())
        except (OSError, ValueError, KeyError, ssl.SSLError):
            return False


def load_chain_from_memory(context: ssl.SSLContext, chain: str, key: bytes) -> None:
    """``context.load_cert_chain`` for a chain and key held in memory: ``ssl`` reads only
    files, so they go through an anonymous in-memory file (Linux ``memfd``, never on a
    disk), else a private temporary file removed at once.  The key is never logged."""
    data = chain.encode("ascii") + b"\n" + key
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("ocpp-fleet-client", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as folder:  # pragma: no cover - not Linux
        path = Path(folder) / "client.pem"
        path.touch(mode=0o600)
        path.write_bytes(data)
        context.load_cert_chain(str(path))


def _pem_expired(chain: str) -> bool:
    try:
        leaf = x509.load_pem_x509_certificate(chain.encode("ascii"))
    except ValueError:
        return False
    return leaf.not_valid_after_utc.timestamp() < time.time()
