"""Configuration keys of the reference wallbox (reference document §3.2).

Every key of §3.2.1 "Supported keys" and §3.2.2 "To be supported keys" is a
:class:`KeySpec` below with its type, access, default, range and quirk.  Keys of
§3.2.3 "Not supported keys", keys of switched-off feature profiles and every
other name answer ``NotSupported`` (ChangeConfiguration) or land in
``unknownKey`` (GetConfiguration).

Where the document misspells a standard OCPP 1.6 key (``MeterValuesSampleInterval``
beside ``MeterValueSampleInterval``, ``MeterValuesAligned-DataMaxLength``,
``MeterVaues-SampledDataMaxLength``), the standard name is the key and the rules
of both rows apply to it; the misspelt names are unknown, as on a standard
charger.

Quirks kept on purpose, because a CSMS talks to the real charger:

* ``ClockAlignedDataInterval`` defaults to 15 although its range is 0, 30–86399:
  the charger reports 15, and refuses 15 in a ChangeConfiguration.
* ``HeartbeatInterval`` below 10 is accepted, reported as set, and run as 10.
* ``MeterValueSampleInterval`` 1–3 is rejected; 0 switches sampled data off.
* ``ResetRetries`` accepts only 0.
* ``ConnectorPhaseRotation`` defaults to the literal ``False``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from emulator.protocol.authorization_key import REDACTED, key_bytes, key_refusal

SAMPLED_MEASURANDS: frozenset[str] = frozenset(
    {
        "Current.Import",
        "Current.Offered",
        "Energy.Active.Import.Register",
        "Power.Active.Import",
        "Voltage",
    }
)
"""Reference §3.2.1 MeterValuesSampledData "Supported value"."""

ALIGNED_MEASURANDS: frozenset[str] = SAMPLED_MEASURANDS | {
    "Energy.Active.Import.Interval",
    "Power.Offered",
}
"""Reference §3.2.1 MeterValuesAlignedData "Supported value"."""

PHASE_ROTATIONS: frozenset[str] = frozenset(
    {"NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR"}
)

NOT_SUPPORTED_KEYS: frozenset[str] = frozenset(
    {
        "MinimumStatusDuration",
        "BlinkRepeat",
        "ConnectorPhaseRotationMaxLength",
        "LightIntensity",
        "ConnectorSwitch3to1PhaseSupported",
    }
)
"""Reference §3.2.3: known to OCPP, not supported by the charger."""


class KeyType(StrEnum):
    INTEGER = "integer"
    BOOLEAN = "boolean"
    CSL = "CSL"
    STRING = "string"


class ConfigurationStatus(StrEnum):
    """ChangeConfiguration.conf status (OCPP 1.6 §6.10)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REBOOT_REQUIRED = "RebootRequired"
    NOT_SUPPORTED = "NotSupported"


class ConfigurationValueError(ValueError):
    """A value the charger refuses (answered ``Rejected``)."""


Check = Callable[[str, "Configuration"], str]
"""Validates a raw value against the current configuration; returns the canonical value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    name: str
    type: KeyType
    readonly: bool
    default: str
    profile: str = "Core"
    check: Check | None = None


_ASCII_SPACE = " \t\r\n"
"""What a value may be padded with.  Only ASCII: ``str.strip()`` also removes e.g. U+00A0."""

_ASCII_INT = re.compile(r"[+-]?[0-9]+")
"""An integer as the charger reads one: ASCII digits only (``str.isdigit()`` accepts "²",
which ``int()`` refuses, and ``int()`` accepts "٣" and "３")."""


def _parse_int(raw: str) -> int:
    text = raw.strip(_ASCII_SPACE)
    if _ASCII_INT.fullmatch(text) is None:
        raise ConfigurationValueError(f"{raw!r} is not an integer")
    try:
        return int(text)
    except ValueError as exc:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise ConfigurationValueError(f"{raw!r} is too long") from exc


def _parse_bool(raw: str) -> bool:
    text = raw.strip(_ASCII_SPACE)
    if not text.isascii():
        raise ConfigurationValueError(f"{raw!r} is not a boolean (true or false)")
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ConfigurationValueError(f"{raw!r} is not a boolean (true or false)")


def _split_csl(raw: str) -> list[str]:
    if not raw.strip(_ASCII_SPACE):
        return []
    items = [item.strip(_ASCII_SPACE) for item in raw.split(",")]
    if any(not item for item in items):
        raise ConfigurationValueError(f"{raw!r} has an empty item")
    return items


def int_range(*ranges: tuple[int, int]) -> Check:
    """Accept integers inside any of the inclusive ranges (0-only ranges allowed)."""

    def check(raw: str, _config: Configuration) -> str:
        value = _parse_int(raw)
        if not any(low <= value <= high for low, high in ranges):
            allowed = ", ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)
            raise ConfigurationValueError(f"{value} is outside {allowed}")
        return str(value)

    return check


def boolean(raw: str, _config: Configuration) -> str:
    return "true" if _parse_bool(raw) else "false"


def measurand_list(allowed: frozenset[str], max_length_key: str | None, fallback_max: int) -> Check:
    """A CSL of measurands from ``allowed``, at most ``<max_length_key>`` items."""

    def check(raw: str, config: Configuration) -> str:
        items = _split_csl(raw)
        bad = [item for item in items if item not in allowed]
        if bad:
            raise ConfigurationValueError(f"unsupported measurand(s) {', '.join(bad)}")
        if len(set(items)) != len(items):
            raise ConfigurationValueError("duplicate measurand")
        limit = config.get_int(max_length_key) if max_length_key else fallback_max
        if len(items) > limit:
            raise ConfigurationValueError(f"{len(items)} items, at most {limit}")
        return ",".join(items)

    return check


def phase_rotation(raw: str, config: Configuration) -> str:
    """OCPP 1.6 §9.1.9: ``<connectorId>.<rotation>`` items, e.g. ``0.RST,1.RST``."""
    items = _split_csl(raw)
    connectors = config.get_int("NumberOfConnectors")
    for item in items:
        connector, _, rotation = item.partition(".")
        number = connector.lstrip("0") or "0"  # ASCII digits only: "²".isdigit() is true
        if (
            not (connector.isascii() and connector.isdigit())
            or len(number) > 9
            or int(number) > connectors
            or rotation not in PHASE_ROTATIONS
        ):
            raise ConfigurationValueError(f"{item!r} is not <connector>.<rotation>")
    return ",".join(items)


def _raise_only(raw: str, config: Configuration) -> str:
    """SecurityProfile may only be raised, up to 3 (Security Whitepaper §7.6; A05.FR.01:
    a value "lower or equal to the current value" is Rejected).  What the new profile
    needs is checked by the charger (emulator.core.security_profile)."""
    value = _parse_int(raw)
    current = config.get_int("SecurityProfile")
    if not current < value <= 3:
        raise ConfigurationValueError(
            f"{value}: the profile can only be raised, from {current} to at most 3"
        )
    return str(value)


def _authorization_key(raw: str) -> str:
    """AuthorizationKey (Security Whitepaper §7.2, A00.FR.205): 32 to 40 hexadecimal digits
    (an even number), or 16 to 20 characters of plain text, which many CSMSs send and real
    chargers take (emulator.protocol.authorization_key).  Stored as sent; the password is
    :attr:`Configuration.authorization_key`.

    Both forms are accepted here, as the lenient charger does: that a plain-text key is the
    CSMS's deviation, counted and refused under --strict-csms, is the charger link's
    business (it knows the CSMS and the run's leniency; the configuration does not).  The
    reason of a refusal never contains the value (A01.FR.12)."""
    refusal = key_refusal(raw)
    if refusal:
        raise ConfigurationValueError(refusal)
    return raw


def _cpo_name(raw: str) -> str:
    """CpoName (Security Whitepaper §7.5): the O (organizationName) RDN of the CSR, so at
    most 64 characters (RFC 5280 ub-organization-name); empty: not set (A02's
    prerequisite "CpoName MUST be set" then refuses a SignChargePointCertificate)."""
    if len(raw) > 64:
        raise ConfigurationValueError(f"{len(raw)} characters, at most 64 (X.509 O)")
    return raw


def _chain_size(raw: str) -> str:
    """CertificateSignedMaxChainSize (Security Whitepaper §7.3): "a maximum limit of
    10.000 characters"."""
    value = _parse_int(raw)
    if not 0 <= value <= 10_000:
        raise ConfigurationValueError(f"{value} is outside 0-10000")
    return str(value)


WRITE_ONLY_KEYS: frozenset[str] = frozenset({"AuthorizationKey"})
"""Never reported by GetConfiguration (Security Whitepaper §7.2: write-only), and shown as
``***`` wherever the configuration is shown (a secret: A01.FR.12)."""


_SAMPLED_DEFAULT = (
    "Energy.Active.Import.Register,Current.Import,Power.Active.Import,Current.Offered,Voltage"
)
_ALIGNED_DEFAULT = (
    "Current.Import,Current.Offered,Energy.Active.Import.Register,Power.Active.Import,Voltage"
)

INT, B, C = KeyType.INTEGER, KeyType.BOOLEAN, KeyType.CSL

KEY_SPECS: tuple[KeySpec, ...] = (
    # --- Core profile, reference §3.2.1 ---
    KeySpec(
        name="ClockAlignedDataInterval",
        type=INT,
        readonly=False,
        default="15",
        check=int_range((0, 0), (30, 86399)),
    ),
    KeySpec(
        name="ConnectionTimeOut", type=INT, readonly=False, default="60", check=int_range((10, 240))
    ),
    KeySpec(name="GetConfigurationMaxKeys", type=INT, readonly=True, default="10"),
    KeySpec(
        name="HeartbeatInterval",
        type=INT,
        readonly=False,
        default="60",
        check=int_range((0, 2**31 - 1)),
    ),
    KeySpec(
        name="MeterValuesAlignedData",
        type=C,
        readonly=False,
        default=_ALIGNED_DEFAULT,
        check=measurand_list(ALIGNED_MEASURANDS, "MeterValuesAlignedDataMaxLength", 5),
    ),
    KeySpec(name="MeterValuesAlignedDataMaxLength", type=INT, readonly=True, default="5"),
    KeySpec(
        name="MeterValueSampleInterval",
        type=INT,
        readonly=False,
        default="60",
        check=int_range((0, 0), (4, 65534)),
    ),
    KeySpec(name="LocalAuthorizeOffline", type=B, readonly=False, default="true", check=boolean),
    KeySpec(name="LocalPreAuthorize", type=B, readonly=False, default="true", check=boolean),
    KeySpec(name="NumberOfConnectors", type=INT, readonly=True, default="1"),
    KeySpec(
        name="SupportedFeatureProfiles",
        type=C,
        readonly=True,
        default="Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
    ),
    KeySpec(
        name="WebSocketPingInterval",
        type=INT,
        readonly=False,
        default="60",
        check=int_range((0, 0), (10, 65535)),
    ),
    KeySpec(
        name="AllowOfflineTxForUnknownId", type=B, readonly=False, default="false", check=boolean
    ),
    KeySpec(
        name="AuthorizeRemoteTxRequests", type=B, readonly=False, default="true", check=boolean
    ),
    KeySpec(name="ResetRetries", type=INT, readonly=False, default="0", check=int_range((0, 0))),
    KeySpec(
        name="TransactionMessageAttempts",
        type=INT,
        readonly=False,
        default="6",
        check=int_range((1, 100)),
    ),
    KeySpec(
        name="TransactionMessageRetryInterval",
        type=INT,
        readonly=False,
        default="10",
        check=int_range((0, 86400)),
    ),
    KeySpec(
        name="MaxEnergyOnInvalidId",
        type=INT,
        readonly=False,
        default="0",
        check=int_range((0, 2**31 - 1)),
    ),
    KeySpec(
        name="StopTransactionOnInvalidId", type=B, readonly=False, default="true", check=boolean
    ),
    KeySpec(
        name="MeterValuesSampledData",
        type=C,
        readonly=False,
        default=_SAMPLED_DEFAULT,
        check=measurand_list(SAMPLED_MEASURANDS, "MeterValuesSampledDataMaxLength", 5),
    ),
    KeySpec(
        name="AuthorizationCacheEnabled", type=B, readonly=False, default="true", check=boolean
    ),
    KeySpec(name="MeterValuesSampledDataMaxLength", type=INT, readonly=True, default="5"),
    KeySpec(name="SupportedFeatureProfilesMaxLength", type=INT, readonly=True, default="6"),
    KeySpec(
        name="ConnectorPhaseRotation", type=C, readonly=False, default="False", check=phase_rotation
    ),
    KeySpec(
        name="StopTransactionOnEVSideDisconnect",
        type=B,
        readonly=False,
        default="true",
        check=boolean,
    ),
    KeySpec(
        name="UnlockConnectorOnEVSideDisconnect",
        type=B,
        readonly=False,
        default="true",
        check=boolean,
    ),
    # --- Core profile, reference §3.2.2 "to be supported" (defaults "Unknown" there) ---
    KeySpec(
        name="StopTxnAlignedData",
        type=C,
        readonly=False,
        default="",
        check=measurand_list(ALIGNED_MEASURANDS, None, 5),
    ),
    KeySpec(
        name="StopTxnSampledData",
        type=C,
        readonly=False,
        default="",
        check=measurand_list(SAMPLED_MEASURANDS, "StopTxnSampledDataMaxLength", 5),
    ),
    KeySpec(name="StopTxnSampledDataMaxLength", type=INT, readonly=True, default="5"),
    # --- Local Auth List Management ---
    KeySpec(
        name="LocalAuthListEnabled",
        type=B,
        readonly=False,
        default="true",
        profile="LocalAuthListManagement",
        check=boolean,
    ),
    KeySpec(
        name="LocalAuthListMaxLength",
        type=INT,
        readonly=True,
        default="20",
        profile="LocalAuthListManagement",
    ),
    KeySpec(
        name="SendLocalListMaxLength",
        type=INT,
        readonly=True,
        default="5",
        profile="LocalAuthListManagement",
    ),
    # --- Smart Charging ---
    KeySpec(
        name="ChargeProfileMaxStackLevel",
        type=INT,
        readonly=True,
        default="1",
        profile="SmartCharging",
    ),
    KeySpec(
        name="ChargingScheduleAllowedChargingRateUnit",
        type=C,
        readonly=True,
        default="Current,Power",
        profile="SmartCharging",
    ),
    KeySpec(
        name="ChargingScheduleMaxPeriods",
        type=INT,
        readonly=True,
        default="14",
        profile="SmartCharging",
    ),
    KeySpec(
        name="MaxChargingProfilesInstalled",
        type=INT,
        readonly=True,
        default="1",
        profile="SmartCharging",
    ),
    # --- Security (OCPP 1.6 Security Whitepaper §2; present with a security profile) ---
    KeySpec(
        name="SecurityProfile",
        type=INT,
        readonly=False,
        default="0",
        profile="Security",
        check=lambda raw, config: _raise_only(raw, config),
    ),
    KeySpec(
        name="AuthorizationKey",
        type=KeyType.STRING,
        readonly=False,
        default="",
        profile="Security",
        check=lambda raw, _config: _authorization_key(raw),
    ),
    # --- Security extension (OCPP 1.6 Security Whitepaper §7; with security_extension) ---
    KeySpec(
        name="CpoName",
        type=KeyType.STRING,
        readonly=False,
        default="",
        profile="SecurityExtension",
        check=lambda raw, _config: _cpo_name(raw),
    ),
    KeySpec(
        name="CertificateSignedMaxChainSize",
        type=INT,
        readonly=True,
        default="10000",
        profile="SecurityExtension",
        check=lambda raw, _config: _chain_size(raw),
    ),
    KeySpec(
        name="CertificateStoreMaxLength",
        type=INT,
        readonly=True,
        default="10",
        profile="SecurityExtension",
        check=int_range((0, 1000)),
    ),
    KeySpec(
        name="AdditionalRootCertificateCheck",
        type=B,
        readonly=True,
        default="false",
        profile="SecurityExtension",
        check=boolean,
    ),
    # --- Reservation ---
    KeySpec(
        name="ReserveConnectorZeroSupported",
        type=B,
        readonly=True,
        default="true",
        profile="Reservation",
    ),
)

SPECS_BY_NAME: Mapping[str, KeySpec] = {spec.name: spec for spec in KEY_SPECS}

# Start-up configurations by (profiles, overrides, read-only overrides, security profile,
# security extension): one per model of a scenario.  Their dicts are shared, never changed.
_TEMPLATES: dict[
    tuple[tuple[str, ...], tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], int, bool],
    Configuration,
] = {}
_MAX_TEMPLATES = 256


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    readonly: bool
    value: str

    def to_json(self) -> dict[str, object]:
        return {"key": self.key, "readonly": self.readonly, "value": self.value}


class Configuration:
    """The key/value store of one wallbox; survives resets like the charger's flash.

    Wallboxes of one model start from the same values, so they share one template's
    spec and value dicts (~2 KiB per wallbox otherwise); a wallbox keeps only the keys
    it changed (a BootNotification interval, a ChangeConfiguration) in a dict of its own.
    """

    __slots__ = ("_changed", "_own", "_profiles", "_specs", "_values", "last_rejection")
    _profiles: tuple[str, ...]
    _specs: dict[str, KeySpec]
    _values: dict[str, str]

    def __init__(
        self,
        *,
        profiles: Iterable[str],
        overrides: Mapping[str, str] | None = None,
        readonly_overrides: Mapping[str, str] | None = None,
        security_profile: int = 0,
        security_extension: bool = False,
    ) -> None:
        """``security_extension``: the Security Whitepaper's keys (CpoName, the certificate
        store's limits) and SecurityProfile / AuthorizationKey even without a profile."""
        key = (
            tuple(profiles),
            tuple((overrides or {}).items()),
            tuple((readonly_overrides or {}).items()),
            security_profile,
            security_extension,
        )
        template = _TEMPLATES.get(key)
        if template is None:
            template = Configuration._build(*key)
            if len(_TEMPLATES) >= _MAX_TEMPLATES:
                _TEMPLATES.clear()  # many distinct models (tests): start over, stay bounded
            _TEMPLATES[key] = template
        self._profiles = template._profiles
        self._specs = template._specs
        self._values = template._values  # the template's: never changed
        self._own = False
        self._changed: dict[str, str] | None = None  # keys changed since, and their values
        self.last_rejection = ""  # why the last change was Rejected, for logs and errors

    @staticmethod
    def _build(
        profiles: tuple[str, ...],
        overrides: tuple[tuple[str, str], ...],
        readonly_overrides: tuple[tuple[str, str], ...],
        security_profile: int,
        security_extension: bool,
    ) -> Configuration:
        self = object.__new__(Configuration)
        self._profiles = profiles
        self.last_rejection = ""
        with_security: tuple[str, ...] = ("Security",) if security_profile > 0 else ()
        if security_extension:
            with_security = ("Security", "SecurityExtension")
        self._specs = {
            name: s
            for name, s in SPECS_BY_NAME.items()
            if s.profile in profiles or s.profile in with_security
        }
        self._values = {name: s.default for name, s in self._specs.items()}
        self._own = True  # a template being built writes its own values
        self._changed = None
        self._values["SupportedFeatureProfiles"] = ",".join(profiles)
        if security_profile > 0:
            self._values["SecurityProfile"] = str(security_profile)
        for key, value in readonly_overrides:
            if key not in self._specs:
                raise KeyError(key)
            self._values[key] = value
        for key, value in overrides:
            status = self.change(key, value, allow_readonly=False)
            if status is not ConfigurationStatus.ACCEPTED:
                shown = REDACTED if key in WRITE_ONLY_KEYS else repr(value)
                raise ConfigurationValueError(
                    f"configuration {key} = {shown}: the charger answers {status}"
                    + (f" ({self.last_rejection})" if self.last_rejection else "")
                )
        return self

    @property
    def profiles(self) -> tuple[str, ...]:
        return self._profiles

    @property
    def authorization_key(self) -> bytes | None:
        """The Basic-auth password AuthorizationKey stands for, if it is set: the bytes of
        its hexadecimal digits, or the UTF-8 bytes of a plain-text key (Security Whitepaper
        §7.2; emulator.protocol.authorization_key)."""
        if not self.knows("AuthorizationKey"):
            return None
        value = self.get("AuthorizationKey")
        return key_bytes(value) if value else None

    def knows(self, key: str) -> bool:
        return key in self._specs

    def get(self, key: str) -> str:
        changed = self._changed
        if changed is not None:
            value = changed.get(key)
            if value is not None:
                return value
        return self._values[key]

    def get_int(self, key: str) -> int:
        return int(self.get(key))

    def get_bool(self, key: str) -> bool:
        return self.get(key) == "true"

    def get_list(self, key: str) -> list[str]:
        raw = self.get(key)
        return [item for item in (part.strip() for part in raw.split(",")) if item]

    def change(self, key: str, value: str, *, allow_readonly: bool = False) -> ConfigurationStatus:
        """ChangeConfiguration (OCPP 1.6 §5.3): applies at once, survives resets."""
        spec = self._specs.get(key)
        if spec is None:
            return ConfigurationStatus.NOT_SUPPORTED
        if spec.readonly and not allow_readonly:
            self.last_rejection = f"{key} is read-only"
            return ConfigurationStatus.REJECTED
        try:
            canonical = spec.check(value, self) if spec.check else value
        except ConfigurationValueError as exc:
            self.last_rejection = f"{key}: {exc}"
            return ConfigurationStatus.REJECTED
        self.restore(key, canonical)
        return ConfigurationStatus.ACCEPTED

    def restore(self, key: str, value: str) -> None:
        """Set ``key`` back to ``value`` without ChangeConfiguration's checks: a value the
        charger itself decides (a SecurityProfile raise it refuses or falls back from,
        Security Whitepaper A05.FR.02-04 and A05.FR.08)."""
        if self._own:
            self._values[key] = value
        elif value == self._values[key]:
            if self._changed is not None:
                self._changed.pop(key, None)
        elif self._changed is None:
            self._changed = {key: value}
        else:
            self._changed[key] = value

    def get_configuration(self, keys: Iterable[str] | None) -> tuple[list[KeyValue], list[str]]:
        """GetConfiguration (OCPP 1.6 §5.8): known keys, then unknown ones."""
        names = list(self._specs) if keys is None else list(keys)
        known: list[KeyValue] = []
        unknown: list[str] = []
        for name in names:
            if name in WRITE_ONLY_KEYS and name in self._specs:
                continue  # neither known nor unknown: it exists, but is never read back
            spec = self._specs.get(name)
            if spec is None:
                unknown.append(name)
            else:
                known.append(KeyValue(name, spec.readonly, self.get(name)))
        return known, unknown

    def snapshot(self) -> dict[str, str]:
        """Every key and its value, write-only keys that are set shown as ``***``."""
        values = self._values | self._changed if self._changed else dict(self._values)
        for key in WRITE_ONLY_KEYS:
            if values.get(key):
                values[key] = REDACTED
        return values

    # --- effective values, with the reference document's quirks ---

    @property
    def heartbeat_interval(self) -> int:
        """Reference §3.2.1: "less than 10, the AC charger will accept but execute 10"."""
        return max(10, self.get_int("HeartbeatInterval"))


def markdown_table() -> str:
    """The key table of docs/reference-charger.md, generated so it cannot drift."""
    rows = ["| Key | Profile | Type | Access | Default |", "|---|---|---|---|---|"]
    for spec in KEY_SPECS:
        access = "W" if spec.name in WRITE_ONLY_KEYS else "R" if spec.readonly else "RW"
        default = f"`{spec.default}`" if spec.default else "(empty)"
        rows.append(f"| `{spec.name}` | {spec.profile} | {spec.type} | {access} | {default} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
