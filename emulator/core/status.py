"""Connector statuses and the transitions OCPP 1.6 allows (§4.9, StatusNotification table).

The wallbox does not drive a state machine by events: it *derives* each connector's
status from facts (fault, availability, cable, transaction, EV and EVSE suspension,
reservation) and sends a StatusNotification when the derived status changes.  A
derived status cannot disagree with the facts, which an event table can; the legal
transitions below are still data, and :func:`check_transition` refuses a derived
change OCPP 1.6 does not list, so a bug shows up as a LocalProtocolError in tests
instead of a strange StatusNotification at a customer's CSMS.

Outside strict mode the wallbox sends such a change anyway (its facts are what they
are) and tells a :class:`TransitionSink`: the fleet's conformance record counts it per
kind (from, to) for the summary, ``--json`` and Prometheus, and logs the first of each
kind; a wallbox without one keeps its own :class:`TransitionLog`.
"""

from __future__ import annotations

import logging
from collections import Counter
from enum import StrEnum
from typing import Any, Final, Protocol

from emulator.protocol.errors import LocalProtocolError
from emulator.protocol.timefmt import format_timestamp

log = logging.getLogger(__name__)


class Status(StrEnum):
    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


A, P, C, SEV, SEVSE, F, R, U, X = (
    Status.AVAILABLE,
    Status.PREPARING,
    Status.CHARGING,
    Status.SUSPENDED_EV,
    Status.SUSPENDED_EVSE,
    Status.FINISHING,
    Status.RESERVED,
    Status.UNAVAILABLE,
    Status.FAULTED,
)

# OCPP 1.6 §4.9 table, rows "from", cells A1..I8.  There is no B8 (Preparing ->
# Unavailable): ChangeAvailability is Scheduled while Preparing.  F->P is F2 (the user
# restarts a session while Finishing).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    A: frozenset({P, C, SEV, SEVSE, R, U, X}),
    P: frozenset({A, C, SEV, SEVSE, F, X}),
    C: frozenset({A, SEV, SEVSE, F, U, X}),
    SEV: frozenset({A, C, SEVSE, F, U, X}),
    SEVSE: frozenset({A, C, SEV, F, U, X}),
    F: frozenset({A, P, U, X}),
    R: frozenset({A, P, U, X}),
    U: frozenset({A, P, C, SEV, SEVSE, X}),
    X: frozenset({A, P, C, SEV, SEVSE, F, R, U}),
}

CONNECTOR_ZERO_STATUSES: frozenset[Status] = frozenset({A, U, X})
"""OCPP 1.6 §4.9: connector 0 (the charge point as a whole) is Available, Unavailable or Faulted."""


class ChargePointErrorCode(StrEnum):
    """StatusNotification errorCode (OCPP 1.6 §7.6)."""

    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    INTERNAL_ERROR = "InternalError"
    LOCAL_LIST_CONFLICT = "LocalListConflict"
    NO_ERROR = "NoError"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    OVER_VOLTAGE = "OverVoltage"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    RESET_FAILURE = "ResetFailure"
    UNDER_VOLTAGE = "UnderVoltage"
    WEAK_SIGNAL = "WeakSignal"


def allowed(connector_id: int, old: Status | None, new: Status) -> bool:
    """Whether OCPP 1.6 §4.9 lists this change (``old`` None: the first status)."""
    if connector_id == 0:
        return new in CONNECTOR_ZERO_STATUSES
    return old is None or old == new or new in TRANSITIONS[old]


def check_transition(connector_id: int, old: Status | None, new: Status) -> None:
    """Raise LocalProtocolError when OCPP 1.6 §4.9 has no such transition."""
    if allowed(connector_id, old, new):
        return
    if connector_id == 0:
        raise LocalProtocolError(f"connector 0 cannot be {new}")
    raise LocalProtocolError(
        f"connector {connector_id}: {old} -> {new} is not an OCPP 1.6 transition"
    )


FORBIDDEN: Final[tuple[tuple[Status, Status], ...]] = tuple(
    (old, new) for old in Status for new in Status if old != new and new not in TRANSITIONS[old]
)
"""The 19 changes between two statuses §4.9 does not list, in the table's order: the kinds
a wallbox may be driven into (Prometheus creates their series at 0)."""

NO_STATUS: Final = "(none)"
"""The ``from`` of a connector's first status (only connector 0 can get that wrong)."""


def transition_kind(old: Status | None, new: Status) -> tuple[str, str]:
    """The (from, to) label pair of a change: two of nine statuses (or NO_STATUS)."""
    return (NO_STATUS if old is None else old.value, new.value)


class TransitionSink(Protocol):
    """Told of every connector-status change the wallbox sent although OCPP 1.6 §4.9 does
    not list it (outside strict mode): emulator.metrics.conformance.CsmsConformance for a
    fleet, :class:`TransitionLog` for a wallbox on its own."""

    def forbidden_transition(
        self, *, charger_id: str, connector_id: int, old: Status | None, new: Status
    ) -> None: ...


class TransitionLog:
    """Counts forbidden transitions by kind and logs the first of each kind once, as a
    WARNING naming it: rare (a wallbox's facts changed in a way §4.9 has no cell for),
    bounded (at most 9 x 9 kinds), and worth knowing, since a CSMS may refuse it."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def forbidden_transition(
        self, *, charger_id: str, connector_id: int, old: Status | None, new: Status
    ) -> None:
        kind = transition_kind(old, new)
        if kind not in self.counts:
            log.warning(
                "%s: connector %d went %s -> %s, a status change OCPP 1.6 §4.9 does not list; "
                "sent anyway (--strict raises instead). Further %s -> %s changes are counted "
                "in the summary, not logged.",
                charger_id,
                connector_id,
                *kind,
                *kind,
            )
        self.counts[kind] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def status_payload(
    connector_id: int,
    error_code: str,
    status: Status,
    now: float,
    *,
    always_error_code: bool = False,
) -> dict[str, Any]:
    """StatusNotification.req of a connector: errorCode only when Faulted (OCPP 1.6 §4.9),
    unless ``always_error_code`` (LocalListConflict, reported with the current status)."""
    shown = always_error_code or status == Status.FAULTED
    return {
        "connectorId": connector_id,
        "errorCode": error_code if shown else "NoError",
        "status": status.value,
        "timestamp": format_timestamp(now),
    }
