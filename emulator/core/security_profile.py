"""Raising the charger's security profile, and falling back when it cannot connect.

OCPP 1.6 Security Whitepaper (edition 3) A05, "Upgrade Charge Point Security Profile",
and §7.6 SecurityProfile:

* a value lower than or equal to the current one is Rejected (A05.FR.01; the key's own
  check, emulator.core.configuration);
* a raise is Rejected when the charger lacks what the new profile needs: for 1 and 2 a
  Basic password (A05.FR.02: AuthorizationKey, or the password the fleet gives the
  charger), for 2 and 3 a CentralSystemRootCertificate (A05.FR.03: one installed over
  OCPP, or the fleet's CA file), for 3 a client certificate (A05.FR.04: one accepted over
  CertificateSigned, or the factory one of the fleet's ``client_cert_dir``);
* an accepted raise is ReconfigurationOfSecurityParameters (§8), the answer goes out,
  then the charger disconnects and connects with the new profile (A05.FR.05-07:
  :class:`~emulator.core.effects.UseSecurityProfile`);
* when :data:`FALLBACK_AFTER_ATTEMPTS` connection attempts in a row fail with the new
  profile, the charger falls back to its previous profile and its connection settings,
  SecurityProfile reads the old value again (A05.FR.08, "Error handling": "to prevent that
  the Charge Point will become unable to reconnect to the Central System on its own"), and
  the change is logged and raised as ReconfigurationOfSecurityParameters (the whitepaper
  names no event of its own for a fallback; §8 describes that one as "the security profile
  used, were changed").  The first successful connection confirms the new profile.

The core only decides; the transport (emulator.transport.driver) builds the URL, TLS
context and credentials of a profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.hazmat.primitives import serialization

from emulator.core.certificates import CertificateStore, CertificateUse
from emulator.core.configuration import Configuration, ConfigurationStatus
from emulator.core.effects import UseSecurityProfile
from emulator.core.model import ChargerModel

KEY: Final = "SecurityProfile"

FALLBACK_AFTER_ATTEMPTS: Final = 3
"""Failed connection attempts with a raised profile before the charger falls back.

The whitepaper leaves the number open (A05.FR.08 "was unable to connect").  Three, as the
default that OCPP 2.0.1 chargers commonly give ``NetworkProfileConnectionAttempts``, the
key with which 2.0.1 (B10, the same fallback) bounds it: with the driver's backoff (full
jitter, 1 s doubling) the third attempt comes within ~3 s of the first, so a raise the
CSMS cannot serve costs seconds offline, while one lost attempt (a CSMS restart, a dropped
SYN) does not undo a raise that works."""


@dataclass(slots=True)
class ProfileRaise:
    """A raise accepted, not yet confirmed by a connection with the new profile."""

    previous: int
    new: int
    failed_attempts: int = 0


class Wallbox(Protocol):
    """What a raise needs of the charger (emulator.core.wallbox.Wallbox; a protocol, so
    this module does not import the wallbox that calls it)."""

    model: ChargerModel
    config: Configuration
    certificates: CertificateStore | None
    profile_raise: ProfileRaise | None

    def log(self, now: float, text: str) -> None: ...

    def security_event(self, kind: str, now: float, tech_info: str | None = None) -> None: ...

    def request(self, effect: UseSecurityProfile) -> None: ...


def missing_prerequisite(wb: Wallbox, new: int) -> str | None:
    """What the charger lacks for profile ``new`` (A05.FR.02-04), or None."""
    model = wb.model
    store = wb.certificates
    if new in (1, 2) and wb.config.authorization_key is None and not model.fleet_password:
        return "no AuthorizationKey and no password for Basic authentication (A05.FR.02)"
    if new in (2, 3) and not (model.fleet_ca or central_system_roots(wb)):
        return "no CentralSystemRootCertificate installed and no CA file (A05.FR.03)"
    has_own = store is not None and store.client_chain is not None
    if new == 3 and not (has_own or model.fleet_client_certificates):
        return "no charge point certificate (A05.FR.04)"
    return None


def central_system_roots(wb: Wallbox) -> tuple[str, ...]:
    """The charger's installed CentralSystemRootCertificates, PEM."""
    store = wb.certificates
    if store is None:
        return ()
    return tuple(
        i.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        for i in store.installed
        if i.use is CertificateUse.CENTRAL_SYSTEM_ROOT
    )


def change_security_profile(wb: Wallbox, value: str, now: float) -> ConfigurationStatus:
    """ChangeConfiguration SecurityProfile: the answer's status (A05.FR.01-05)."""
    config = wb.config
    previous = config.get_int(KEY)
    status = config.change(KEY, value)
    if status is not ConfigurationStatus.ACCEPTED:
        wb.log(now, f"security: SecurityProfile change Rejected ({config.last_rejection})")
        return status
    new = config.get_int(KEY)
    missing = missing_prerequisite(wb, new)
    if missing is not None:
        config.restore(KEY, str(previous))
        config.last_rejection = f"{KEY}: {missing}"
        wb.log(now, f"security: SecurityProfile {new} Rejected: {missing}")
        return ConfigurationStatus.REJECTED
    wb.security_event(
        "ReconfigurationOfSecurityParameters",
        now,
        f"SecurityProfile changed from {previous} to {new}",
    )
    wb.log(now, f"security: SecurityProfile raised from {previous} to {new}, reconnecting")
    wb.profile_raise = ProfileRaise(previous=previous, new=new)
    wb.request(UseSecurityProfile(new, central_system_roots(wb)))
    return ConfigurationStatus.ACCEPTED


def connected(wb: Wallbox, now: float) -> None:
    """A connection succeeded: a raise in progress is confirmed (A05's postcondition)."""
    pending = wb.profile_raise
    if pending is not None:
        wb.profile_raise = None
        wb.log(now, f"security: connected with SecurityProfile {pending.new}")


def connect_failed(wb: Wallbox, now: float) -> None:
    """A connection attempt failed: after :data:`FALLBACK_AFTER_ATTEMPTS` in a row with a
    raised profile, fall back to the previous one (A05.FR.08)."""
    pending = wb.profile_raise
    if pending is None:
        return
    pending.failed_attempts += 1
    if pending.failed_attempts < FALLBACK_AFTER_ATTEMPTS:
        return
    wb.profile_raise = None
    wb.config.restore(KEY, str(pending.previous))
    info = (
        f"SecurityProfile fell back from {pending.new} to {pending.previous} after "
        f"{pending.failed_attempts} failed connection attempts"
    )
    wb.log(now, f"security: {info}")
    wb.security_event("ReconfigurationOfSecurityParameters", now, info)
    wb.request(UseSecurityProfile(pending.previous, central_system_roots(wb)))
