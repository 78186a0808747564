"""Smart Charging of the reference charger: charging profiles and the composite schedule.

Pure: no I/O, no clock reads; every function takes the time it is asked about.  The
wallbox (``emulator.core.wallbox``, section "Smart Charging") feeds it the CSMS's
SetChargingProfile / ClearChargingProfile / GetCompositeSchedule and asks it, at every
change of the draw, what a connector may offer now and when that can change next.

The rules, with the OCPP 1.6 (edition 2) sections they come from:

* **Purposes** (§3.13.1): ChargePointMaxProfile only on connector 0; TxDefaultProfile on
  connector 0 (all connectors) or one connector; TxProfile only on a connector with a
  transaction (Rejected otherwise), for that transaction only, gone when it ends.
* **Stacking** (§3.13.2): within a purpose the profile with the highest stackLevel that
  is valid (validFrom/validTo) *and whose schedule covers the instant* leads; after a
  schedule's ``duration`` a lower level (or nothing) takes over (§5.16 notes).  A
  connector's own TxDefaultProfile replaces the connector-0 one at the same stackLevel
  (§3.13.1).  A profile with the same chargingProfileId, or the same
  stackLevel/purpose on the same connector, replaces the installed one (§3.13.2,
  §5.16.3).
* **Combining** (§3.13.3): a TxProfile overrules the TxDefaultProfile; the limit is the
  lowest of the ChargePointMaxProfile, the Tx(Default) profile and the charger's own
  maximum current.
* **Kinds** (§7.10, §7.13): Absolute from ``startSchedule`` (absent: from when the
  charger installed it); Recurring Daily/Weekly from ``startSchedule`` (required),
  periods beyond the recurrence not executed (§5.16); Relative from the start of the
  connector's transaction (without one: from the instant asked about, so the composite
  shows what a transaction starting now would get).
* **Units** (§7.11): limits are kept in A per phase.  A W limit is divided by the
  nominal voltage and the phases the connector actually uses (charger ∧ EV).  The
  reference charger cannot switch phases (ConnectorSwitch3to1PhaseSupported is not
  supported, reference §3.2.3), so ``numberPhases`` is validated (1-3) but cannot make it
  charge on fewer phases; dividing by the phases in use keeps the power within the limit.
* **minChargingRate** (§7.13): below the EV's minimum rate of the leading Tx(Default)
  schedule the charger offers nothing (charging there "is inefficient").
* Limits leave the charger with one decimal (the schema's ``multipleOf: 0.1``), rounded
  *down*: a reported or offered limit never exceeds the exact one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from emulator.core.authorization import same_tag
from emulator.core.transaction import Transaction
from emulator.protocol.timefmt import format_timestamp, parse_timestamp

DEFAULT_NUMBER_PHASES: Final = 3
"""§7.11 W / §7.14 numberPhases: "if absent, 3 SHALL be assumed"."""

NEXT_CHANGE_HORIZON: Final = 8 * 86400.0
"""How far ahead :meth:`SmartCharging.next_change` looks at a Recurring schedule."""

COMPOSITE_HORIZON: Final = 7 * 86400
"""How far ahead GetCompositeSchedule plans (one weekly recurrence, so every schedule the
charger holds shows its whole pattern): a longer ``duration`` is answered for 7 days, and
the answer's ``duration`` says so.  A charger's memory is limited, and the work must not
grow with the duration asked for (2147483647 s of a Daily profile is 24,855 days)."""


class Purpose(StrEnum):
    """ChargingProfilePurposeType (§7.9)."""

    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


class Kind(StrEnum):
    """ChargingProfileKindType (§7.10)."""

    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"


class Recurrency(StrEnum):
    """RecurrencyKindType (§7.44), with the length of one recurrence in seconds."""

    DAILY = "Daily"
    WEEKLY = "Weekly"

    @property
    def seconds(self) -> float:
        return 86400.0 if self is Recurrency.DAILY else 7 * 86400.0


class RateUnit(StrEnum):
    """ChargingRateUnitType (§7.11)."""

    A = "A"
    W = "W"


UNIT_OF_KEY: Final[Mapping[str, RateUnit]] = {"Current": RateUnit.A, "Power": RateUnit.W}
"""ChargingScheduleAllowedChargingRateUnit values (§9.4) and the unit each allows."""


class ProfileError(ValueError):
    """A profile the charger refuses; the message says why (for logs and tests)."""


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    """ChargingSchedulePeriod (§7.14): from ``start`` seconds into the schedule."""

    start: int
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargingSchedule:
    """ChargingSchedule (§7.13); ``start`` is startSchedule in epoch seconds."""

    unit: RateUnit
    periods: tuple[SchedulePeriod, ...]
    duration: int | None = None
    start: float | None = None
    min_rate: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChargingSchedule:
        return cls(
            unit=RateUnit(data["chargingRateUnit"]),
            periods=tuple(
                SchedulePeriod(
                    start=int(p["startPeriod"]),
                    limit=float(p["limit"]),
                    number_phases=p.get("numberPhases"),
                )
                for p in data["chargingSchedulePeriod"]
            ),
            duration=data.get("duration"),
            start=_time(data, "startSchedule"),
            min_rate=None
            if data.get("minChargingRate") is None
            else float(data["minChargingRate"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargingProfile:
    """ChargingProfile (§7.8), timestamps as epoch seconds."""

    id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedule: ChargingSchedule
    recurrency: Recurrency | None = None
    valid_from: float | None = None
    valid_to: float | None = None
    transaction_id: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChargingProfile:
        """Parse a schema-valid csChargingProfiles / chargingProfile object."""
        recurrency = data.get("recurrencyKind")
        return cls(
            id=int(data["chargingProfileId"]),
            stack_level=int(data["stackLevel"]),
            purpose=Purpose(data["chargingProfilePurpose"]),
            kind=Kind(data["chargingProfileKind"]),
            recurrency=None if recurrency is None else Recurrency(recurrency),
            valid_from=_time(data, "validFrom"),
            valid_to=_time(data, "validTo"),
            transaction_id=data.get("transactionId"),
            schedule=ChargingSchedule.from_json(data["chargingSchedule"]),
        )


def _time(data: Mapping[str, Any], key: str) -> float | None:
    text = data.get(key)
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise ProfileError(f"{key}: {text!r} is not a dateTime") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What the charger accepts: the §3.13.5 configuration keys and its connectors.

    ``max_installed`` (MaxChargingProfilesInstalled) counts per connector and purpose:
    the reference document sets it "same as ChargeProfileMaxStackLevel", whose own
    description is "the max allowed number of installed charging schedules per Charging
    Purposes" (docs/reference-charger.md, Smart Charging).
    """

    max_stack_level: int
    max_periods: int
    max_installed: int
    units: frozenset[RateUnit]
    connectors: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Installed:
    """A profile on the charger: where, since when, and (TxProfile) for which transaction."""

    profile: ChargingProfile
    connector_id: int
    installed_at: float
    transaction: int | None = None  # the wallbox's Transaction.local_id (TxProfile only)


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    """The electrical facts a limit is computed with."""

    max_current: float  # A per phase: the charger's own maximum
    voltage: float  # nominal phase voltage (§7.11: "the set voltage for the area")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorState:
    """What a connector's limit depends on besides the profiles."""

    transaction: Transaction | None
    phases: int  # phases in use: the charger's, and the EV's when one is plugged in


@dataclass(frozen=True, slots=True)
class CompositePeriod:
    start: int
    limit: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CompositeSchedule:
    """GetCompositeSchedule.conf's schedule (§6.22), limits already with one decimal."""

    connector_id: int
    start: float
    duration: int
    unit: RateUnit
    periods: tuple[CompositePeriod, ...]
    min_rate: float | None = None

    def to_json(self) -> dict[str, Any]:
        start = format_timestamp(self.start)
        schedule: dict[str, Any] = {
            "duration": self.duration,
            "startSchedule": start,
            "chargingRateUnit": self.unit.value,
            "chargingSchedulePeriod": [
                {"startPeriod": p.start, "limit": p.limit} for p in self.periods
            ],
        }
        if self.min_rate is not None:
            schedule["minChargingRate"] = self.min_rate
        return {
            "status": "Accepted",
            "connectorId": self.connector_id,
            "scheduleStart": start,
            "chargingSchedule": schedule,
        }


def one_decimal_down(value: float) -> float:
    """Round a limit down to 0.1 for the wire (``multipleOf: 0.1``, never above the limit).

    The epsilon keeps an exact limit exact (16 A from 11040 W / 690 V stays 16.0).
    """
    return max(0.0, math.floor(value * 10.0 + 1e-6) / 10.0)


@dataclass(slots=True, kw_only=True)
class _PendingRemoteStart:
    """RemoteStartTransaction's TxProfile, waiting for the transaction it belongs to."""

    id_tag: str
    profile: ChargingProfile
    received_at: float
    expires_at: float


# --------------------------------------------------------------------------- the store


@dataclass(slots=True)
class SmartCharging:
    """The charging profiles of one charger and what they allow (OCPP 1.6 §3.13).

    Installed ChargePointMax and TxDefault profiles live until cleared or replaced, across
    resets (the charger keeps them with its configuration); a TxProfile lives as long as
    its transaction (:meth:`sync_transaction` drops it once the connector's transaction
    is another one, or none).
    """

    installed: list[Installed] = field(default_factory=list)
    last_rejection: str = ""
    # Earliest instant after the last evaluation at which a connector's limit may change.
    next_change_by_connector: dict[int, float] = field(default_factory=dict)
    _pending: dict[int, _PendingRemoteStart] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        """Nothing installed or waiting: every limit is the charger's own maximum."""
        return not self.installed and not self._pending

    @property
    def next_change_at(self) -> float | None:
        values = self.next_change_by_connector.values()
        return min(values) if values else None

    # ------------------------------------------------------------ SetChargingProfile

    def set_profile(
        self,
        connector_id: int,
        data: Mapping[str, Any],
        *,
        now: float,
        caps: Capabilities,
        transaction: Transaction | None,
    ) -> bool:
        """SetChargingProfile.req (§5.16): install, or refuse with :attr:`last_rejection`."""
        try:
            profile = ChargingProfile.from_json(data)
            self._check_target(profile, connector_id, caps, transaction)
            _check_profile(profile, caps)
            self._install(
                Installed(
                    profile=profile,
                    connector_id=connector_id,
                    installed_at=now,
                    transaction=transaction.local_id
                    if profile.purpose is Purpose.TX and transaction is not None
                    else None,
                ),
                caps,
            )
        except ProfileError as exc:
            self.last_rejection = str(exc)
            return False
        self.last_rejection = ""
        return True

    def _check_target(
        self,
        profile: ChargingProfile,
        connector_id: int,
        caps: Capabilities,
        transaction: Transaction | None,
    ) -> None:
        if not 0 <= connector_id <= caps.connectors:
            raise ProfileError(f"connector {connector_id} does not exist")
        purpose = profile.purpose
        if purpose is Purpose.CHARGE_POINT_MAX and connector_id != 0:
            raise ProfileError("ChargePointMaxProfile only on connector 0 (§3.13.1)")
        if profile.transaction_id is not None and purpose is not Purpose.TX:
            raise ProfileError("transactionId only with a TxProfile (§7.8)")
        if purpose is Purpose.TX:
            if connector_id == 0:
                raise ProfileError("TxProfile only on a connector > 0 (§3.13.1)")
            if transaction is None:
                raise ProfileError(f"TxProfile: no transaction on connector {connector_id}")
            wanted = profile.transaction_id
            if wanted is not None and wanted != transaction.transaction_id:
                raise ProfileError(
                    f"TxProfile for transaction {wanted}; connector {connector_id} runs "
                    f"{transaction.transaction_id}"
                )

    def _install(self, new: Installed, caps: Capabilities) -> None:
        """Replace per §3.13.2 / §5.16.3, then enforce MaxChargingProfilesInstalled."""
        p = new.profile
        kept = [
            i
            for i in self.installed
            if i.profile.id != p.id
            and not (
                i.connector_id == new.connector_id
                and i.profile.purpose is p.purpose
                and i.profile.stack_level == p.stack_level
            )
        ]
        same_slot = sum(
            1 for i in kept if i.connector_id == new.connector_id and i.profile.purpose is p.purpose
        )
        if same_slot >= caps.max_installed:
            raise ProfileError(
                f"MaxChargingProfilesInstalled ({caps.max_installed}) {p.purpose} profiles "
                f"already on connector {new.connector_id}"
            )
        kept.append(new)
        self.installed = kept

    # ------------------------------------------------------------ RemoteStartTransaction

    def remote_start(
        self,
        connector_id: int,
        id_tag: str,
        data: Mapping[str, Any],
        *,
        now: float,
        caps: Capabilities,
        expires_at: float,
    ) -> bool:
        """RemoteStartTransaction.req's chargingProfile (§5.11, §5.16.2): keep it for the
        transaction this start produces; False (and :attr:`last_rejection`) if invalid."""
        try:
            profile = ChargingProfile.from_json(data)
            if profile.purpose is not Purpose.TX:
                raise ProfileError("RemoteStartTransaction's profile must be a TxProfile (§5.11)")
            if profile.transaction_id is not None:
                raise ProfileError("RemoteStartTransaction's profile has a transactionId (§5.16.2)")
            if not 1 <= connector_id <= caps.connectors:
                raise ProfileError(f"connector {connector_id} does not exist")
            _check_profile(profile, caps)
        except ProfileError as exc:
            self.last_rejection = str(exc)
            return False
        self.last_rejection = ""
        self._pending[connector_id] = _PendingRemoteStart(
            id_tag=id_tag, profile=profile, received_at=now, expires_at=expires_at
        )
        return True

    def sync_transaction(
        self, connector_id: int, transaction: Transaction | None, now: float, caps: Capabilities
    ) -> None:
        """The connector's transaction is ``transaction`` now: TxProfiles of any other are
        gone (§3.13.1 "after the transaction is stopped, the profile SHOULD be deleted"), and
        a RemoteStartTransaction profile joins the transaction it started (§5.16.2)."""
        key = None if transaction is None else transaction.local_id
        if any(
            i.connector_id == connector_id
            and i.profile.purpose is Purpose.TX
            and i.transaction != key
            for i in self.installed
        ):
            self.installed = [
                i
                for i in self.installed
                if not (
                    i.connector_id == connector_id
                    and i.profile.purpose is Purpose.TX
                    and i.transaction != key
                )
            ]
        pending = self._pending.get(connector_id)
        if pending is None:
            return
        if transaction is None:
            if now > pending.expires_at:
                del self._pending[connector_id]
            return
        del self._pending[connector_id]  # a transaction started: this start or another
        if (
            same_tag(transaction.id_tag, pending.id_tag)
            and pending.received_at <= transaction.started_at <= pending.expires_at
        ):
            try:
                self._install(
                    Installed(
                        profile=pending.profile,
                        connector_id=connector_id,
                        installed_at=transaction.started_at,
                        transaction=transaction.local_id,
                    ),
                    caps,
                )
            except ProfileError as exc:  # pragma: no cover - a new transaction has no TxProfile
                self.last_rejection = str(exc)

    # ------------------------------------------------------------ ClearChargingProfile

    def clear(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> bool:
        """ClearChargingProfile.req (§5.5, §6.13): True if anything was removed.

        With ``id`` exactly that profile goes (the other fields are not consulted, §6.13:
        "either a specific charging profile (denoted by id) or a selection ... that match
        with the values of the optional connectorId, stackLevel and chargingProfilePurpose");
        without, every profile matching all fields given (none given: all of them).
        """

        def doomed(i: Installed) -> bool:
            if profile_id is not None:
                return i.profile.id == profile_id
            return (
                (connector_id is None or i.connector_id == connector_id)
                and (purpose is None or i.profile.purpose is purpose)
                and (stack_level is None or i.profile.stack_level == stack_level)
            )

        kept = [i for i in self.installed if not doomed(i)]
        removed = len(kept) != len(self.installed)
        self.installed = kept
        return removed

    # ------------------------------------------------------------ limits

    def limit(self, connector_id: int, t: float, *, state: ConnectorState, site: Site) -> float:
        """The exact limit (A per phase) for ``connector_id`` at ``t`` (§3.13.3).

        Relative schedules run from the transaction's start, or from ``t`` without one.
        """
        tx = state.transaction
        relative_start = t if tx is None else tx.started_at
        return self._limit_at(connector_id, t, state, site, relative_start)

    def offered_until_change(
        self, connector_id: int, now: float, *, state: ConnectorState, site: Site
    ) -> float:
        """:meth:`offered` at ``now``, noting when it may change next (``next_change_at``)."""
        change_at = self.next_change(connector_id, now, state=state)
        if change_at is None:
            self.next_change_by_connector.pop(connector_id, None)
        else:
            self.next_change_by_connector[connector_id] = change_at
        return self.offered(connector_id, now, state=state, site=site)

    def offered(self, connector_id: int, t: float, *, state: ConnectorState, site: Site) -> float:
        """What the connector offers at ``t``: :meth:`limit` with one decimal, rounded down."""
        return one_decimal_down(self.limit(connector_id, t, state=state, site=site))

    def _limit_at(
        self,
        connector_id: int,
        t: float,
        state: ConnectorState,
        site: Site,
        relative_start: float,
    ) -> float:
        tx = state.transaction
        cp_max = self._leading(Purpose.CHARGE_POINT_MAX, (0,), t, None, relative_start)
        tx_lead = None
        if tx is not None:
            tx_lead = self._leading(Purpose.TX, (connector_id,), t, tx.local_id, relative_start)
        if tx_lead is None:  # §3.13.1: a TxProfile overrules the TxDefaultProfile
            tx_lead = self._leading(Purpose.TX_DEFAULT, (0, connector_id), t, None, relative_start)
        amps = site.max_current
        for lead in (cp_max, tx_lead):
            if lead is not None:
                schedule, period = lead
                amps = min(amps, _amps(period.limit, schedule.unit, state.phases, site))
        if tx_lead is not None:
            schedule, _ = tx_lead
            if schedule.min_rate is not None:
                minimum = _amps(schedule.min_rate, schedule.unit, state.phases, site)
                if amps < minimum - 1e-9:
                    amps = 0.0  # §7.13 minChargingRate: below it the EV cannot charge well
        return max(0.0, amps)

    def _leading(
        self,
        purpose: Purpose,
        connector_ids: tuple[int, ...],
        t: float,
        transaction: int | None,
        relative_start: float | None,
    ) -> tuple[ChargingSchedule, SchedulePeriod] | None:
        """§3.13.2: the highest stackLevel valid at ``t`` whose schedule says something then;
        at equal level a connector's own profile before connector 0's (§3.13.1)."""
        best: tuple[ChargingSchedule, SchedulePeriod] | None = None
        best_rank = (-1, False)
        for i in self.installed:
            profile = i.profile
            if profile.purpose is not purpose or i.connector_id not in connector_ids:
                continue
            if purpose is Purpose.TX and i.transaction != transaction:
                continue
            rank = (profile.stack_level, i.connector_id != 0)
            if rank <= best_rank:
                continue
            period = _period_at(i, t, relative_start)
            if period is not None:
                best, best_rank = (profile.schedule, period), rank
        return best

    def _relevant(self, connector_id: int, transaction: Transaction | None) -> Iterator[Installed]:
        key = None if transaction is None else transaction.local_id
        for i in self.installed:
            purpose = i.profile.purpose
            if purpose is Purpose.CHARGE_POINT_MAX or (
                purpose is Purpose.TX_DEFAULT and i.connector_id in (0, connector_id)
            ):
                yield i
            elif purpose is Purpose.TX and i.connector_id == connector_id and i.transaction == key:
                yield i

    def next_change(self, connector_id: int, now: float, *, state: ConnectorState) -> float | None:
        """The first instant after ``now`` at which the connector's limit may change.

        A Relative schedule without a transaction always sits at its first period (it
        starts whenever one is asked about), so only its validity bounds count then.
        """
        tx = state.transaction
        relative_start = None if tx is None else tx.started_at
        times = [
            at
            for i in self._relevant(connector_id, tx)
            for at in _breakpoints(i, now, now + NEXT_CHANGE_HORIZON, relative_start)
        ]
        return min(times) if times else None

    # ------------------------------------------------------------ GetCompositeSchedule

    def composite(
        self,
        connector_id: int,
        *,
        now: float,
        duration: int,
        unit: RateUnit,
        site: Site,
        connectors: Mapping[int, ConnectorState],
        max_periods: int | None = None,
    ) -> CompositeSchedule:
        """GetCompositeSchedule (§5.7): the limit from ``now`` for ``duration`` seconds,
        periods merged, in ``unit``.

        Connector 0 reports what the whole charger may draw from the grid: the sum over
        its connectors, never above the ChargePointMaxProfile (§3.13.3, §5.7).

        Bounded like a charger's memory: at most :data:`COMPOSITE_HORIZON` seconds and at
        most ``max_periods`` periods (ChargingScheduleMaxPeriods: the composite is itself a
        ChargingSchedule); where a bound cuts the schedule short, its ``duration`` ends
        where the first period not reported would begin.  The work is proportional to
        the schedule within the horizon, not to the duration asked for.
        """
        duration = min(duration, COMPOSITE_HORIZON)
        end = now + duration
        targets = [connector_id] if connector_id else [c for c in connectors if c > 0]
        points = {now}
        for c in targets:
            tx = connectors[c].transaction
            relative_start = now if tx is None else tx.started_at
            for i in self._relevant(c, tx):
                points.update(_breakpoints(i, now, end, relative_start, inclusive_end=False))

        def value(c: int, t: float) -> float:
            state = connectors[c]
            tx = state.transaction
            amps = self._limit_at(c, t, state, site, now if tx is None else tx.started_at)
            return _in_unit(amps, unit, state.phases, site)

        periods: list[CompositePeriod] = []
        for t in sorted(points):
            total = sum(value(c, t) for c in targets)
            if connector_id == 0:
                total = min(total, self._charge_point_cap(t, unit, connectors, site))
            limit = one_decimal_down(total)
            start = max(0, math.floor(t - now + 0.5))
            if periods and start >= duration:
                break  # rounded onto the end: a period of no length
            if periods and periods[-1].start == start:
                periods.pop()  # two changes within one second: the later one holds
            if periods and periods[-1].limit == limit:
                continue
            if max_periods is not None and len(periods) >= max(1, max_periods):
                duration = start  # the schedule reported ends where this period begins
                break
            periods.append(CompositePeriod(start, limit))
        return CompositeSchedule(
            connector_id=connector_id,
            start=now,
            duration=duration,
            unit=unit,
            periods=tuple(periods),
            min_rate=self._min_rate(targets[0], now, unit, connectors, site) if targets else None,
        )

    def _charge_point_cap(
        self, t: float, unit: RateUnit, connectors: Mapping[int, ConnectorState], site: Site
    ) -> float:
        """§3.13.3: the ChargePointMaxProfile limits all connectors combined."""
        lead = self._leading(Purpose.CHARGE_POINT_MAX, (0,), t, None, t)
        if lead is None:
            return math.inf
        schedule, period = lead
        phases = max((s.phases for c, s in connectors.items() if c > 0), default=1)
        return _in_unit(_amps(period.limit, schedule.unit, phases, site), unit, phases, site)

    def _min_rate(
        self,
        connector_id: int,
        t: float,
        unit: RateUnit,
        connectors: Mapping[int, ConnectorState],
        site: Site,
    ) -> float | None:
        """minChargingRate of the Tx(Default) schedule leading at ``t``, in ``unit``."""
        state = connectors[connector_id]
        tx = state.transaction
        relative_start = t if tx is None else tx.started_at
        lead = None
        if tx is not None:
            lead = self._leading(Purpose.TX, (connector_id,), t, tx.local_id, relative_start)
        if lead is None:
            lead = self._leading(Purpose.TX_DEFAULT, (0, connector_id), t, None, relative_start)
        if lead is None or lead[0].min_rate is None:
            return None
        schedule = lead[0]
        assert schedule.min_rate is not None
        amps = _amps(schedule.min_rate, schedule.unit, state.phases, site)
        return one_decimal_down(_in_unit(amps, unit, state.phases, site))


# --------------------------------------------------------------------------- checks


def _check_profile(profile: ChargingProfile, caps: Capabilities) -> None:
    """The charger's limits (§3.13.5 keys) and the schedule rules of §5.16 / §7.13."""
    schedule = profile.schedule
    if not 0 <= profile.stack_level <= caps.max_stack_level:
        raise ProfileError(
            f"stackLevel {profile.stack_level} outside 0..{caps.max_stack_level} "
            "(ChargeProfileMaxStackLevel)"
        )
    if schedule.unit not in caps.units:
        raise ProfileError(
            f"chargingRateUnit {schedule.unit} not in ChargingScheduleAllowedChargingRateUnit"
        )
    periods = schedule.periods
    if not periods:
        raise ProfileError("chargingSchedulePeriod is empty")
    if len(periods) > caps.max_periods:
        raise ProfileError(
            f"{len(periods)} periods; ChargingScheduleMaxPeriods is {caps.max_periods}"
        )
    if periods[0].start != 0:
        raise ProfileError("the first period must start at 0 (§5.16)")
    for before, after in itertools.pairwise(periods):
        if after.start <= before.start:
            raise ProfileError("startPeriod must increase from period to period")
    for period in periods:
        if period.limit < 0:
            raise ProfileError(f"negative limit {period.limit}")
        if period.number_phases is not None and not 1 <= period.number_phases <= 3:
            raise ProfileError(f"numberPhases {period.number_phases} outside 1..3")
    if schedule.duration is not None and schedule.duration < 0:
        raise ProfileError(f"negative duration {schedule.duration}")
    if schedule.min_rate is not None and schedule.min_rate < 0:
        raise ProfileError(f"negative minChargingRate {schedule.min_rate}")
    if profile.kind is Kind.RECURRING:
        if profile.recurrency is None:
            raise ProfileError("a Recurring profile needs recurrencyKind")
        if schedule.start is None:
            raise ProfileError("a Recurring profile needs startSchedule (its recurrence start)")
    if (
        profile.valid_from is not None
        and profile.valid_to is not None
        and profile.valid_to <= profile.valid_from
    ):
        raise ProfileError("validTo is not after validFrom")


# --------------------------------------------------------------------------- time


def _schedule_start(i: Installed, t: float, relative_start: float | None) -> float | None:
    """Where the schedule that may cover ``t`` starts (None: it covers nothing)."""
    profile = i.profile
    schedule = profile.schedule
    if profile.kind is Kind.RELATIVE:
        return relative_start
    if profile.kind is Kind.RECURRING:
        assert schedule.start is not None and profile.recurrency is not None
        if t < schedule.start:
            return None
        every = profile.recurrency.seconds
        return schedule.start + math.floor((t - schedule.start) / every) * every
    return i.installed_at if schedule.start is None else schedule.start


def _period_at(i: Installed, t: float, relative_start: float | None) -> SchedulePeriod | None:
    """The period of ``i`` in force at ``t``, if the profile is valid and covers ``t``."""
    profile = i.profile
    if profile.valid_from is not None and t < profile.valid_from:
        return None
    if profile.valid_to is not None and t >= profile.valid_to:
        return None
    start = _schedule_start(i, t, relative_start)
    if start is None or t < start:
        return None
    offset = t - start
    duration = profile.schedule.duration
    if duration is not None and offset >= duration:
        return None  # §5.16: after duration, a lower stackLevel (or nothing) applies
    chosen: SchedulePeriod | None = None
    for period in profile.schedule.periods:
        if period.start > offset:
            break
        chosen = period
    return chosen


def _breakpoints(
    i: Installed,
    lo: float,
    hi: float,
    relative_start: float | None,
    *,
    inclusive_end: bool = True,
) -> Iterator[float]:
    """Instants in (lo, hi] (or (lo, hi)) where ``i``'s contribution may change."""

    def inside(at: float) -> bool:
        return lo < at < hi or (inclusive_end and at == hi)

    profile = i.profile
    schedule = profile.schedule
    for bound in (profile.valid_from, profile.valid_to):
        if bound is not None and inside(bound):
            yield bound
    offsets: list[float] = [p.start for p in schedule.periods]
    if schedule.duration is not None:
        offsets.append(schedule.duration)
    if profile.kind is Kind.RECURRING:
        assert schedule.start is not None and profile.recurrency is not None
        every = profile.recurrency.seconds
        offsets = [o for o in offsets if o < every]  # §5.16: the rest is never executed
        first = max(0, math.floor((lo - schedule.start) / every))
        last = math.floor((hi - schedule.start) / every)
        for k in range(first, last + 1):
            base = schedule.start + k * every
            for offset in offsets:
                if inside(base + offset):
                    yield base + offset
        return
    start = _schedule_start(i, lo, relative_start)
    if start is None:
        return
    for offset in offsets:
        if inside(start + offset):
            yield start + offset


# --------------------------------------------------------------------------- units


def _amps(limit: float, unit: RateUnit, phases: int, site: Site) -> float:
    """§7.11: A is per phase; W is the total, divided by the nominal voltage and phases."""
    if unit is RateUnit.A:
        return limit
    return limit / (site.voltage * max(1, phases))


def _in_unit(amps: float, unit: RateUnit, phases: int, site: Site) -> float:
    if unit is RateUnit.A:
        return amps
    return amps * site.voltage * max(1, phases)


def capabilities(
    *,
    max_stack_level: int,
    max_periods: int,
    max_installed: int,
    allowed_units: Iterable[str],
    connectors: int,
) -> Capabilities:
    """Capabilities from the configuration keys' values (unknown unit names ignored)."""
    return Capabilities(
        max_stack_level=max_stack_level,
        max_periods=max_periods,
        max_installed=max_installed,
        units=frozenset(UNIT_OF_KEY[u] for u in allowed_units if u in UNIT_OF_KEY),
        connectors=connectors,
    )


__all__ = [
    "Capabilities",
    "ChargingProfile",
    "ChargingSchedule",
    "CompositePeriod",
    "CompositeSchedule",
    "ConnectorState",
    "Installed",
    "Kind",
    "ProfileError",
    "Purpose",
    "RateUnit",
    "Recurrency",
    "SchedulePeriod",
    "Site",
    "SmartCharging",
    "capabilities",
    "one_decimal_down",
]
