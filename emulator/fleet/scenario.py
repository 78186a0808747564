"""Scenario files: a TOML description of a fleet, validated into typed, frozen objects.

A scenario says which charger models a fleet mixes and in what shares, how the fleet
connects, and how its drivers behave.  ``docs/scenarios.md`` documents every field.

Validation happens in two passes, both of which raise one :class:`ScenarioError` naming
the file, the field path and what was expected:

1. msgspec converts the parsed TOML into the structs below (types, unknown fields,
   numeric and length constraints).  Its messages are rewritten from the struct types
   themselves, so they read the same for every field and carry the offending value.
2. :func:`_check` does what a type can't say: ranges with min <= max, unique names,
   known feature profiles, OCPP string lengths of configuration keys and idTags.

Adding a field later means adding it to a struct (with a default, so old files still
load) and a line to ``docs/scenarios.md``; the error messages need no change.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec import Meta

from emulator.core.configuration import Configuration, ConfigurationValueError
from emulator.core.model import ALL_PROFILES, ChargerModel, FirmwareStatusSet, Variant
from emulator.fleet.identities import (
    Cards,
    Identities,
    IdentityFileError,
    read_cards,
    read_identities,
)
from emulator.fleet.scenario_errors import explain, show, toml_message
from emulator.transport.connection import DEFAULT_TRANSPORT, TRANSPORTS, Transport

__all__ = [
    "CsmsOperation",
    "CsmsSettings",
    "FleetSettings",
    "IdTagPool",
    "ModelSpec",
    "Range",
    "Scenario",
    "ScenarioError",
    "SessionMode",
    "SessionSettings",
    "SloSettings",
    "load_scenario",
    "parse_scenario",
    "parse_start_time",
]

# OCPP 1.6 §7 types: BootNotification.req chargePointVendor/Model are CiString20Type,
# firmwareVersion CiString50Type; ChangeConfiguration.req key is CiString50Type and
# value CiString500Type; IdToken is CiString20Type.
_VENDOR_MAX = 20
_MODEL_MAX = 20
_FIRMWARE_MAX = 50
_CONFIG_KEY_MAX = 50
_CONFIG_VALUE_MAX = 500
_ID_TAG_MAX = 20
_ID_TAG_DIGITS = 5
# The charge point identity ends the websocket URL path; keep it to unreserved URL
# characters (RFC 3986 §2.3) so no charger id needs percent-encoding.
_ID_PREFIX_PATTERN = r"^[A-Za-z0-9._~-]*$"
_ID_PREFIX_MAX = 40

NonNegative = Annotated[float, Meta(ge=0)]
Positive = Annotated[float, Meta(gt=0)]
Share = Annotated[float, Meta(gt=0)]
Probability = Annotated[float, Meta(ge=0, le=1)]
TagStatus = Literal["Accepted", "Blocked", "Expired", "Invalid"]
DayProfile = Literal["flat", "home", "workplace", "public"]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
ConfigValue = str | int | bool


DEFAULT_START_TIME = "00:00"
DEFAULT_CHARGERS = 10
_START_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def parse_start_time(text: str) -> float | None:
    """``"HH:MM"`` (00:00 to 23:59) as seconds after midnight, ``"now"`` as None.

    Raises ValueError with the expectation and the value (``sessions.start_time``,
    ``--start-time``)."""
    if text == "now":
        return None
    match = _START_TIME.match(text)
    if match is None:
        raise ValueError(f'expected "HH:MM" (00:00 to 23:59) or "now", got {show(text)}')
    return int(match[1]) * 3600.0 + int(match[2]) * 60.0


class ScenarioError(ValueError):
    """A scenario file can't be used; ``str(error)`` is the whole message for the user.

    ``source`` is the file (or the ``source`` given to :func:`parse_scenario`) and
    ``field`` the dotted path of the offending field, or None for file-level errors.
    """

    def __init__(self, message: str, *, source: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.field = field


class SessionMode(StrEnum):
    """Who starts charging sessions."""

    RANDOM = "random"  # drivers arrive on their own (Poisson), plus remote starts
    REMOTE_ONLY = "remote-only"  # only RemoteStartTransaction starts a session


class Range(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A ``[min, max]`` pair; values are drawn uniformly from it.

    ``[x, x]`` is the fixed value x.  ``[inf, inf]`` means "unbounded" where a field
    allows it (``sessions.energy_kwh``).
    """

    low: NonNegative
    high: NonNegative

    def sample(self, rng: np.random.Generator) -> float:
        """One uniform draw; a fixed range returns its value without using ``rng``."""
        if self.low == self.high:
            return self.low
        return float(rng.uniform(self.low, self.high))


class FleetSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[fleet]``: identities and connection behaviour shared by all chargers."""

    id_prefix: Annotated[
        str,
        Meta(
            pattern=_ID_PREFIX_PATTERN,
            max_length=_ID_PREFIX_MAX,
            extra={
                "expected": f"a string of at most {_ID_PREFIX_MAX} characters from A-Za-z0-9._~-"
            },
        ),
    ] = "CP"
    # None: every row of the identities file, else 10 (Scenario.fleet_size)
    chargers: Annotated[int, Meta(ge=1)] | None = None
    # A CSV of charger ids, passwords and models (emulator.fleet.identities), relative to
    # the scenario file; --identities replaces it.
    identities: str | None = None
    boot_on_reconnect: bool = False
    connect_timeout: Positive = 30.0
    # One connection attempt (TCP, TLS, the HTTP upgrade) that takes longer is abandoned
    # and retried with backoff.
    handshake_timeout: Positive = 30.0
    response_timeout: Positive = 30.0
    ramp_per_second: Positive = 50.0
    basic_auth_password: str | None = None
    # At the end of a run (duration, Ctrl-C, SIGTERM): "stop" ends running transactions
    # (reason Local) and delivers their StopTransaction; "leave" hands them over open, as
    # chargers that keep charging while the generator is replaced (rolling restarts).
    shutdown_transactions: Literal["stop", "leave"] = "stop"
    shutdown_drain_seconds: Annotated[float, Meta(ge=0, le=600)] = 10.0
    # Firmware Management: FTP sessions (diagnostics uploads, firmware downloads) open
    # at once in the whole fleet; more wait for a free one.
    max_transfers: Annotated[int, Meta(ge=1)] = 64
    # Unique ids of the CALLs the wallboxes send: random UUID4 strings (what many chargers
    # send) or a counter per wallbox ("1", "2", ...: exposes a CSMS that correlates answers
    # by id across chargers).
    message_ids: Literal["uuid", "counter"] = "uuid"
    # What pumps the websocket bytes (emulator.transport.connection): the same OCPP over
    # either; picows costs less CPU and memory per wallbox (docs/loadtest.md).
    transport: Transport = DEFAULT_TRANSPORT

    def charger_id(self, index: int) -> str:
        """Charge point identity of the ``index``-th charger (1-based)."""
        if index < 1:
            raise ValueError(f"charger index starts at 1, got {index}")
        return f"{self.id_prefix}{index:06d}"


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[models]]``: one kind of charger and its share of the fleet.

    Defaults equal :class:`~emulator.core.model.ChargerModel`'s (a test keeps them so).
    """

    name: NonEmptyStr = "ac-wallbox"
    share: Share = 1.0
    vendor: Annotated[str, Meta(min_length=1, max_length=_VENDOR_MAX)] = "ACWallbox"
    model: Annotated[str, Meta(min_length=1, max_length=_MODEL_MAX)] = "AC22-3P"
    firmware_version: Annotated[str, Meta(max_length=_FIRMWARE_MAX)] = "1.09.0"
    variant: Variant = Variant.SOCKET
    phases: Literal[1, 3] = 3
    max_current: Positive = 32.0
    nominal_voltage: Positive = 230.0
    profiles: Annotated[tuple[str, ...], Meta(min_length=1)] = ALL_PROFILES
    offline_local_list_only: bool = True
    firmware_statuses: FirmwareStatusSet = FirmwareStatusSet.OCPP
    firmware_download_failure_share: Probability = 0.0
    firmware_install_failure_share: Probability = 0.0
    firmware_install_seconds: Annotated[float, Meta(ge=0, le=3600)] = 5.0
    # The OCPP 1.6 Security Whitepaper's messages (emulator.core.model.ChargerModel).
    security_extension: bool = False
    configuration: dict[str, ConfigValue] = {}

    def configuration_strings(self) -> dict[str, str]:
        """Configuration overrides as OCPP strings (booleans as ``true``/``false``)."""
        return {key: _config_string(value) for key, value in self.configuration.items()}

    def to_charger_model(self) -> ChargerModel:
        return ChargerModel(
            name=self.name,
            vendor=self.vendor,
            model=self.model,
            firmware_version=self.firmware_version,
            variant=self.variant,
            phases=self.phases,
            max_current=self.max_current,
            nominal_voltage=self.nominal_voltage,
            profiles=tuple(self.profiles),
            configuration=self.configuration_strings(),
            offline_local_list_only=self.offline_local_list_only,
            firmware_statuses=self.firmware_statuses,
            firmware_download_failure_share=self.firmware_download_failure_share,
            firmware_install_failure_share=self.firmware_install_failure_share,
            firmware_install_seconds=self.firmware_install_seconds,
            security_extension=self.security_extension,
        )


class IdTagPool(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[sessions.id_tags]]``: tags ``f"{prefix}{n:05d}"`` for n in 0..count-1, or the
    cards of a file (``file``: a :class:`CardPool` per status once the scenario is loaded)."""

    prefix: str = "TAG"
    count: Annotated[int, Meta(ge=1)] = 100
    share: Share = 1.0
    # What the embedded reference CSMS answers for these tags (a real CSMS decides itself).
    status: TagStatus = "Accepted"
    # A CSV of cards (emulator.fleet.identities), relative to the scenario file.
    file: str | None = None

    def tag(self, n: int) -> str:
        return f"{self.prefix}{n:0{_ID_TAG_DIGITS}d}"

    def index(self, tag: str) -> int | None:
        """The ``n`` of ``tag(n)``, or None when the tag is not one of this pool's."""
        digits = tag[len(self.prefix) :]
        if tag.startswith(self.prefix) and digits.isdigit() and int(digits) < self.count:
            return int(digits)
        return None


class CardPool(IdTagPool, frozen=True, kw_only=True):
    """The cards of one status from a cards file: ``tag(n)`` is the n-th of them."""

    cards: tuple[str, ...] = ()

    def tag(self, n: int) -> str:
        return self.cards[n]

    def index(self, tag: str) -> int | None:
        try:
            return self.cards.index(tag)  # only when a drawn card is taken (TagRegistry)
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"CardPool({self.file!r}, status={self.status!r}, {self.count} cards)"


class EvSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[sessions.evs]]``: one kind of EV in the catalogue, chosen by share."""

    name: NonEmptyStr
    share: Share = 1.0
    battery_kwh: Positive = 60.0
    phases: Literal[1, 2, 3] = 3
    max_current: Positive = 16.0
    min_current: Positive = 6.0
    arrival_soc: Range = Range(0.2, 0.6)
    target_soc: Range = Range(0.8, 1.0)
    taper_from: Annotated[float, Meta(gt=0, le=1)] = 0.8


class SessionSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[sessions]``: how drivers and EVs behave."""

    mode: SessionMode = SessionMode.RANDOM
    arrivals_per_hour: NonNegative = 1.0
    plug_in_delay: Range = Range(0.5, 2.0)
    energy_kwh: Range = Range(5.0, 30.0)
    idle_after_full: Range = Range(0.0, 600.0)
    authorize_first_share: Probability = 0.5
    stop_by_tag_share: Probability = 0.3
    id_tags: Annotated[tuple[IdTagPool, ...], Meta(min_length=1)] = (IdTagPool(),)
    profile: DayProfile = "flat"
    utc_offset_hours: Annotated[float, Meta(ge=-12, le=14)] = 0.0
    time_compression: Annotated[float, Meta(ge=1, le=1440)] = 1.0
    dwell_minutes: Range | None = None
    no_show_share: Probability = 0.0
    evs: tuple[EvSpec, ...] = ()
    # The local (virtual) time of day at which the arrival profile starts: "HH:MM", or
    # "now" for the wall-clock time of day (shifted by utc_offset_hours).
    start_time: str = DEFAULT_START_TIME
    # Begin every charger in a state drawn from the stationary distribution at the start
    # time (emulator.fleet.stationary) instead of idle.
    warm_start: bool = False
    # Draw tags with replacement: one card may then be in visits at two chargers at once
    # (a CSMS answers ConcurrentTx). False: a card in a visit is not drawn again.
    shared_tags: bool = False

    @property
    def start_seconds(self) -> float | None:
        """``start_time`` as seconds after local midnight; None for "now"."""
        return parse_start_time(self.start_time)

    def draw_id_tag(self, rng: np.random.Generator, *, accepted_only: bool = False) -> str:
        """A tag from a pool chosen by share, uniform within the pool (``accepted_only``:
        among the pools the embedded CSMS accepts, when there are any)."""
        pools = self.id_tags
        if accepted_only:
            pools = tuple(p for p in pools if p.status == "Accepted") or pools
        if len(pools) == 1:
            pool = pools[0]
        else:
            shares = np.array([p.share for p in pools])
            pool = pools[int(rng.choice(len(pools), p=shares / shares.sum()))]
        return pool.tag(int(rng.integers(pool.count)))


class CsmsOperation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[csms.operations]]``: a CALL the embedded reference CSMS sends during the run
    (an :class:`emulator.csms.operations.ScheduledCall`, run by its ``OperationSchedule``)."""

    at: NonNegative  # seconds after the run starts
    action: NonEmptyStr  # a CSMS-initiated OCPP 1.6 action
    payload: dict[str, Any] = {}
    # "all", "K/N" (the K-th of N parts), a share in (0, 1], or an array of charger numbers/ids.
    target: str | float | tuple[int | str, ...] = "all"
    every: Positive | None = None  # repeat every so many seconds until the run ends


class CsmsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[csms]``: what the embedded reference CSMS does on its own during the run."""

    operations: tuple[CsmsOperation, ...] = ()


class SecuritySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[security]``: OCPP 1.6 security profiles (OCPP 1.6 Security Whitepaper §2).

    Secrets never sit in the scenario: passwords come from an environment variable or a
    file, keys from files; paths are relative to the scenario file.
    """

    profile: Literal[0, 1, 2, 3] = 0
    password_env: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    client_cert_dir: str | None = None


class FaultSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[faults]``: seeded fault injection; every rate is per charger."""

    disconnects_per_hour: NonNegative = 0.0
    blackout_share: Probability = 0.0
    blackout_at: NonNegative = 0.0
    blackout_seconds: NonNegative = 0.0
    reboots_per_hour: NonNegative = 0.0
    power_losses_per_hour: NonNegative = 0.0
    power_loss_seconds: Range = Range(5.0, 30.0)
    connector_faults_per_hour: NonNegative = 0.0
    connector_fault_seconds: Range = Range(30.0, 300.0)
    connector_fault_codes: tuple[str, ...] = (
        "GroundFailure",
        "OverCurrentFailure",
        "HighTemperature",
    )
    added_latency: Range = Range(0.0, 0.0)
    clock_skew_seconds: NonNegative = 0.0  # each clock off by uniform(-x, +x)
    # Faults of the embedded reference CSMS (a real CSMS brings its own):
    csms_restart_at: NonNegative = 0.0
    csms_restart_seconds: NonNegative = 0.0
    csms_callerror_share: Probability = 0.0
    csms_silence_share: Probability = 0.0
    csms_delay: Range = Range(0.0, 0.0)


class SloSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[slo]``: pass/fail rules for a run (docs/slo.md), kept as written.

    They are parsed where they are judged (``ocpp-fleet run``, Locust), which name this
    file and ``slo.rules[i]`` in their errors: the fleet package knows no metrics."""

    rules: tuple[str, ...] = ()


class Scenario(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A validated scenario: what :func:`load_scenario` returns."""

    name: str
    description: str = ""
    seed: int | None = None
    fleet: FleetSettings = FleetSettings()
    models: tuple[ModelSpec, ...] = (ModelSpec(),)
    sessions: SessionSettings = SessionSettings()
    csms: CsmsSettings = CsmsSettings()
    security: SecuritySettings = SecuritySettings()
    faults: FaultSettings = FaultSettings()
    slo: SloSettings = SloSettings()
    base_dir: str = "."  # the scenario file's folder: relative paths start here
    # The chargers of fleet.identities or --identities, read and checked.
    identities: Identities | None = None

    @property
    def fleet_size(self) -> int:
        """``fleet.chargers``, else every row of the identities file, else 10."""
        if self.fleet.chargers is not None:
            return self.fleet.chargers
        return len(self.identities) if self.identities is not None else DEFAULT_CHARGERS

    def with_identities(self, path: str) -> Scenario:
        """This scenario with the chargers of the identities file ``path`` (relative to
        the working directory: ``--identities``).  Raises ValueError (one line)."""
        try:
            identities = read_identities(path, models=[m.name for m in self.models])
        except IdentityFileError as exc:
            raise ValueError(str(exc)) from None
        _check_fleet_size(self.fleet.chargers, identities)
        return msgspec.structs.replace(self, identities=identities)

    def with_start_time(self, start_time: str) -> Scenario:
        """This scenario with ``sessions.start_time`` replaced (``--start-time``).

        Raises ValueError for a value :func:`parse_start_time` refuses."""
        parse_start_time(start_time)
        sessions = msgspec.structs.replace(self.sessions, start_time=start_time)
        return msgspec.structs.replace(self, sessions=sessions)

    def with_id_prefix(self, id_prefix: str) -> Scenario:
        """This scenario with ``fleet.id_prefix`` replaced (``--id-prefix``).

        Raises ValueError naming what a prefix may hold, as ``[fleet] id_prefix`` does,
        or that an identities file names the chargers."""
        if self.identities is not None:
            raise ValueError(
                f"the identities file {self.identities.path} names the chargers: "
                "give an id prefix or an identities file, not both"
            )
        if len(id_prefix) > _ID_PREFIX_MAX or not re.match(_ID_PREFIX_PATTERN, id_prefix):
            raise ValueError(
                f"expected a string of at most {_ID_PREFIX_MAX} characters from "
                f"A-Za-z0-9._~-, got {id_prefix!r}"
            )
        fleet = msgspec.structs.replace(self.fleet, id_prefix=id_prefix)
        return msgspec.structs.replace(self, fleet=fleet)

    def with_transport(self, transport: str) -> Scenario:
        """This scenario with ``fleet.transport`` replaced (``--transport``).

        Raises ValueError naming the transports there are."""
        if transport not in TRANSPORTS:
            raise ValueError(f"expected one of {', '.join(TRANSPORTS)}, got {transport!r}")
        fleet = msgspec.structs.replace(self.fleet, transport=transport)
        return msgspec.structs.replace(self, fleet=fleet)

    def charger_id(self, index: int) -> str:
        """Charge point identity of the ``index``-th charger (1-based): row ``index`` of
        the identities file, else ``fleet.id_prefix`` and the number.  ValueError past
        the file's rows."""
        if self.identities is not None:
            return self.identities.charger_id(index)
        return self.fleet.charger_id(index)

    def model_counts(self, count: int) -> list[int]:
        """Split ``count`` chargers over :attr:`models` by share (largest remainder).

        Exact (shares are turned into fractions, no float rounding), and ties go to the
        model listed first, so the split depends only on the file.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        shares = [Fraction(m.share) for m in self.models]
        total = sum(shares, Fraction(0))
        quotas = [share * count / total for share in shares]
        counts = [math.floor(q) for q in quotas]
        left = count - sum(counts)
        by_remainder = sorted(range(len(quotas)), key=lambda i: (counts[i] - quotas[i], i))
        for i in by_remainder[:left]:
            counts[i] += 1
        return counts

    def csms_id_tags(self) -> dict[str, str]:
        """idTag -> status for the embedded reference CSMS (non-Accepted pools only)."""
        table: dict[str, str] = {}
        for pool in self.sessions.id_tags:
            if pool.status != "Accepted":
                table.update((pool.tag(n), pool.status) for n in range(pool.count))
        return table

    def pick_models(self, count: int, rng: np.random.Generator) -> list[ChargerModel]:
        """The model of each of ``count`` chargers: :meth:`model_counts`, shuffled by ``rng``.

        Chargers of one model share one (frozen) :class:`ChargerModel` instance.
        """
        pool: list[ChargerModel] = []
        for spec, n in zip(self.models, self.model_counts(count), strict=True):
            pool.extend([spec.to_charger_model()] * n)
        return [pool[i] for i in rng.permutation(count)]


# --------------------------------------------------------------------------- the file


class _ScenarioTable(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: NonEmptyStr
    description: str = ""
    seed: Annotated[int, Meta(ge=0)] | None = None


class _Document(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The file's top level; an unknown table here is an error like any unknown key."""

    scenario: _ScenarioTable
    fleet: FleetSettings = FleetSettings()
    models: Annotated[tuple[ModelSpec, ...], Meta(min_length=1)] = (ModelSpec(),)
    sessions: SessionSettings = SessionSettings()
    csms: CsmsSettings = CsmsSettings()
    security: SecuritySettings = SecuritySettings()
    faults: FaultSettings = FaultSettings()
    slo: SloSettings = SloSettings()


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file and the files it names (identities, cards); any
    problem raises one :class:`ScenarioError`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(
            f"{source}: cannot read: {exc.strerror or exc}", source=source
        ) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{source}: not UTF-8 text (byte {exc.start}): TOML files are UTF-8",
            source=source,
        ) from None
    return parse_scenario(text, source=source, base_dir=str(Path(path).resolve().parent))


def parse_scenario(text: str, *, source: str, base_dir: str = ".") -> Scenario:
    """Validate a scenario given as TOML text; ``source`` names it in error messages and
    the files it names are read relative to ``base_dir``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(toml_message(str(exc), text, source), source=source) from None
    try:
        document = msgspec.convert(raw, _Document)
    except msgspec.ValidationError as exc:
        field, problem = explain(str(exc), raw, _Document)
        raise ScenarioError(f"{source}: {field}: {problem}", source=source, field=field) from None
    first = next(
        itertools.chain(_check(document), _check_security(document), _check_card_files(raw)),
        None,
    )
    if first is not None:
        field, what = first
        raise ScenarioError(f"{source}: {field}: {what}", source=source, field=field)
    base = Path(base_dir)
    identities = None
    try:
        if document.fleet.identities is not None:
            identities = read_identities(
                base / document.fleet.identities, models=[m.name for m in document.models]
            )
            _check_fleet_size(document.fleet.chargers, identities)
    except (IdentityFileError, ValueError) as exc:
        raise ScenarioError(
            f"{source}: fleet.identities: {exc}", source=source, field="fleet.identities"
        ) from None
    sessions = _with_card_files(document.sessions, base, source)
    return Scenario(
        name=document.scenario.name,
        description=document.scenario.description,
        seed=document.scenario.seed,
        fleet=document.fleet,
        models=document.models,
        sessions=sessions,
        csms=document.csms,
        security=document.security,
        faults=document.faults,
        slo=document.slo,
        base_dir=base_dir,
        identities=identities,
    )


def _check_configuration(
    at: str, spec: ModelSpec, security_profile: int
) -> Iterator[tuple[str, str]]:
    """The model's configuration as its charger would take it (every value checked as a
    ChangeConfiguration would be), so a value it refuses is this error, not a failure when
    the first wallbox is made."""
    try:
        Configuration(
            profiles=tuple(spec.profiles),
            overrides=spec.configuration_strings(),
            security_profile=security_profile,
            security_extension=spec.security_extension,
        )
    except ConfigurationValueError as exc:
        yield f"{at}.configuration", str(exc)


def _check_fleet_size(chargers: int | None, identities: Identities) -> None:
    if chargers is not None and chargers > len(identities):
        raise ValueError(
            f"fleet.chargers is {chargers}, but the identities file {identities.path} has "
            f"{len(identities)} rows"
        )


def _check_card_files(raw: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """A pool of cards from a file has no prefix, count or status of its own."""
    sessions = raw.get("sessions")
    pools = sessions.get("id_tags", []) if isinstance(sessions, Mapping) else []
    for i, pool in enumerate(pools if isinstance(pools, list) else []):
        if isinstance(pool, Mapping) and "file" in pool:
            for key in ("prefix", "count", "status"):
                if key in pool:
                    yield (
                        f"sessions.id_tags[{i}].{key}",
                        "a pool with a file takes its cards (and their status column) from "
                        f"the file: give file or {key}, not both",
                    )


def _with_card_files(sessions: SessionSettings, base: Path, source: str) -> SessionSettings:
    """``sessions`` with each pool that names a file replaced by a :class:`CardPool` per
    status of its cards (the pool's share split by their counts).  Raises ScenarioError
    for a bad file or a card that two pools hold."""
    if all(pool.file is None for pool in sessions.id_tags):
        return sessions
    pools: list[IdTagPool] = []
    owner: dict[str, str] = {}  # upper-cased card -> the file that holds it
    # The prefix pools, each with its prefix as written and an upper-cased copy of it:
    # cards compare case-insensitively.
    prefixed = [
        (p.prefix, msgspec.structs.replace(p, prefix=p.prefix.upper()))
        for p in sessions.id_tags
        if p.file is None
    ]
    for i, pool in enumerate(sessions.id_tags):
        if pool.file is None:
            pools.append(pool)
            continue
        at = f"sessions.id_tags[{i}].file"
        try:
            cards = read_cards(base / pool.file)
            _check_card_owners(cards, owner, prefixed)
        except (IdentityFileError, ValueError) as exc:
            raise ScenarioError(f"{source}: {at}: {exc}", source=source, field=at) from None
        pools.extend(_card_pools(pool, cards))
    return msgspec.structs.replace(sessions, id_tags=tuple(pools))


def _card_pools(pool: IdTagPool, cards: Cards) -> list[IdTagPool]:
    total = len(cards)
    return [
        CardPool(
            prefix="",
            count=len(tags),
            share=pool.share * len(tags) / total,
            status=status,  # type: ignore[arg-type]  # checked by read_cards
            file=cards.path,
            cards=tags,
        )
        for status, tags in cards.by_status.items()
    ]


def _check_card_owners(
    cards: Cards, owner: dict[str, str], prefixed: Sequence[tuple[str, IdTagPool]]
) -> None:
    for tags in cards.by_status.values():
        for tag in tags:
            key = tag.upper()
            other = owner.get(key) or next(
                (
                    f"the pool with prefix {prefix!r}"
                    for prefix, upper in prefixed
                    if upper.index(key) is not None
                ),
                None,
            )
            if other is not None:
                raise ValueError(f"card {tag!r} of {cards.path} is also in {other}")
            owner[key] = cards.path


def _config_string(value: ConfigValue) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    return str(value)


# ------------------------------------------------------------------ semantic checks


def _check_security(doc: _Document) -> Iterator[tuple[str, str]]:
    sec = doc.security
    if sec.password_env is not None and sec.password_file is not None:
        yield "security.password_file", "expected either password_env or password_file, not both"
    # Profiles 1 and 2 need a password for every charger: from here or from the
    # identities file (which --identities may give), checked by emulator.fleet.security.
    has_password = sec.password_env is not None or sec.password_file is not None
    if sec.profile == 3 and sec.client_cert_dir is None:
        yield "security.client_cert_dir", "security profile 3 expected a client certificate folder"
    if sec.profile == 0 and (has_password or sec.client_cert_dir is not None):
        yield "security.profile", "expected 1, 2 or 3 when credentials are given, got 0"
    if doc.fleet.basic_auth_password is not None and has_password:
        yield "fleet.basic_auth_password", "expected one password source: [security] or this"


def _check(doc: _Document) -> Iterator[tuple[str, str]]:
    """Yield (field path, problem) for what the types can't express, in file order."""
    seen_models: dict[str, int] = {}
    for i, spec in enumerate(doc.models):
        at = f"models[{i}]"
        if spec.name in seen_models:
            yield (
                f"{at}.name",
                f"expected a name no other model has, got {show(spec.name)} "
                f"(also models[{seen_models[spec.name]}])",
            )
        seen_models.setdefault(spec.name, i)
        yield from _check_profiles(f"{at}.profiles", spec.profiles)
        for key, value in spec.configuration.items():
            if not 1 <= len(key) <= _CONFIG_KEY_MAX:
                yield (
                    f"{at}.configuration",
                    f"expected keys of 1 to {_CONFIG_KEY_MAX} characters (OCPP CiString50), "
                    f"got {show(key)}",
                )
            elif len(_config_string(value)) > _CONFIG_VALUE_MAX:
                yield (
                    f"{at}.configuration.{key}",
                    f"expected at most {_CONFIG_VALUE_MAX} characters (OCPP CiString500), "
                    f"got {len(_config_string(value))}",
                )
        yield from _check_configuration(at, spec, doc.security.profile)

    for at, number in (
        ("fleet.connect_timeout", doc.fleet.connect_timeout),
        ("fleet.handshake_timeout", doc.fleet.handshake_timeout),
        ("fleet.response_timeout", doc.fleet.response_timeout),
        ("sessions.arrivals_per_hour", doc.sessions.arrivals_per_hour),
    ):
        if not math.isfinite(number):
            yield at, f"expected a finite number, got {show(number)}"

    sessions = doc.sessions
    for name, span in (
        ("plug_in_delay", sessions.plug_in_delay),
        ("energy_kwh", sessions.energy_kwh),
        ("idle_after_full", sessions.idle_after_full),
    ):
        at = f"sessions.{name}"
        unbounded_ok = name == "energy_kwh"  # [inf, inf]: an EV that never gets full
        if span.low > span.high:
            yield at, f"expected [min, max] with min <= max, got {show(span)}"
        elif not (math.isfinite(span.high) or (unbounded_ok and math.isinf(span.low))):
            what = (
                "finite numbers, or [inf, inf] for no limit" if unbounded_ok else "finite numbers"
            )
            yield at, f"expected {what}, got {show(span)}"
        elif unbounded_ok and span.low <= 0:
            yield at, f"expected energies > 0 kWh, got {show(span)}"

    try:
        parse_start_time(sessions.start_time)
    except ValueError as exc:
        yield "sessions.start_time", str(exc)

    seen_prefixes: dict[str, int] = {}
    for i, pool in enumerate(sessions.id_tags):
        if pool.file is not None:
            continue  # its cards are checked as the file is read
        at = f"sessions.id_tags[{i}]"
        longest = len(pool.tag(pool.count - 1))
        if pool.prefix in seen_prefixes:
            yield (
                f"{at}.prefix",
                f"expected a prefix no other pool has, got {show(pool.prefix)} "
                f"(also sessions.id_tags[{seen_prefixes[pool.prefix]}])",
            )
        elif longest > _ID_TAG_MAX:
            yield (
                f"{at}.prefix",
                f"expected tags of at most {_ID_TAG_MAX} characters (OCPP IdToken), "
                f"got {show(pool.prefix)} making {show(pool.tag(pool.count - 1))}",
            )
        seen_prefixes.setdefault(pool.prefix, i)
    yield from _check_csms(doc.csms)


def _check_csms(csms: CsmsSettings) -> Iterator[tuple[str, str]]:
    """``[[csms.operations]]``: a known CSMS action, a payload its OCPP 1.6 schema accepts
    (relative times filled in as if sent now), a target that can name chargers."""
    from emulator.csms.operations import fleet_part, materialize, with_placeholders
    from emulator.protocol.errors import RemoteProtocolError
    from emulator.protocol.schemas import CSMS_INITIATED, SchemaRegistry

    registry: SchemaRegistry | None = None
    for i, op in enumerate(csms.operations):
        at = f"csms.operations[{i}]"
        for name, number in (("at", op.at), ("every", op.every)):
            if number is not None and not math.isfinite(number):
                yield f"{at}.{name}", f"expected a finite number, got {show(number)}"
        if op.action not in CSMS_INITIATED:
            close = difflib.get_close_matches(op.action, sorted(CSMS_INITIATED), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            yield (
                f"{at}.action",
                f"expected an action the CSMS sends (OCPP 1.6 §5), got {show(op.action)}{hint}",
            )
            continue
        try:
            payload = with_placeholders(op.action, materialize(op.payload, 0.0))
        except ValueError as exc:
            yield f"{at}.payload", str(exc)
            continue
        registry = registry or SchemaRegistry()
        try:
            registry.validate_request(op.action, payload)
        except RemoteProtocolError as exc:
            problem = exc.description.removeprefix(f"{op.action}.req: ")
            yield f"{at}.payload", f"{problem} (the OCPP 1.6 {op.action}.req schema)"
        target = op.target
        expected = (
            'expected "all", a share from 0 to 1, or an array of charger numbers or ids, '
            'or "K/N" (the K-th of N parts of the fleet)'
        )
        if isinstance(target, str):
            if target != "all" and fleet_part(target) is None:
                yield f"{at}.target", f"{expected}, got {show(target)}"
        elif isinstance(target, float):
            if not 0 < target <= 1:
                hint = f" (charger numbers go in an array: [{target:g}])" if target > 1 else ""
                yield f"{at}.target", f"{expected}, got {show(target)}{hint}"
        elif not target:
            yield f"{at}.target", f"{expected}, got []"
        else:
            for j, item in enumerate(target):
                if (isinstance(item, int) and item < 1) or item == "":
                    yield (
                        f"{at}.target[{j}]",
                        f"expected a charger number >= 1 or a charger id, got {show(item)}",
                    )


def _check_profiles(at: str, profiles: Sequence[str]) -> Iterator[tuple[str, str]]:
    known = ", ".join(show(p) for p in ALL_PROFILES)
    seen: set[str] = set()
    for j, profile in enumerate(profiles):
        if profile not in ALL_PROFILES:
            yield f"{at}[{j}]", f"expected one of {known}, got {show(profile)}"
        elif profile in seen:
            yield f"{at}[{j}]", f"expected each profile once, got {show(profile)} again"
        seen.add(profile)
    if "Core" not in profiles:
        yield at, f'expected a list that includes "Core" (mandatory), got {show(profiles)}'
