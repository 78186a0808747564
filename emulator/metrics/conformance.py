"""What the CSMS answered that a load test must not hide: schema violations and idTagInfo.

A CSMS that breaks OCPP 1.6, or that refuses cards, does not stop a load test: the fleet
keeps running, and :class:`CsmsConformance` keeps the books for the summary, ``--json``
and (through its listeners) Prometheus:

* **schema violations** by message (``callresult``: an answer to a wallbox's CALL;
  ``call``: a CALL of the CSMS), action and error code, each with how many were accepted
  leniently (:mod:`emulator.protocol.lenient`) or refused, and the first few messages word
  for word.  The first violation of each kind is logged once as a WARNING, every one at
  DEBUG.  One deviation the schema cannot see is counted the same way, under its own code
  (:data:`~emulator.protocol.authorization_key.PLAIN_TEXT_KEY`): a ChangeConfiguration
  AuthorizationKey in plain text rather than hexadecimal (accepted and used as its UTF-8
  bytes, or refused with --strict-csms); its messages show the key as ``***``;
* **idTagInfo statuses** the CSMS answered per action (Authorize, StartTransaction,
  StopTransaction): a ConcurrentTx or Invalid is an answer, not an error, and would
  otherwise only show as a shorter session;
* **forbidden transitions**, the one deviation of the fleet's own side: connector-status
  changes the wallboxes sent although OCPP 1.6 §4.9 does not list them (outside
  ``--strict``), by kind (from, to), the first of each kind logged once as a WARNING
  (:class:`emulator.core.status.TransitionLog`).  A CSMS may refuse or misread them, so a
  load test shows them next to the CSMS's own deviations.

One instance per fleet, shared by its drivers; everything is bounded (actions, codes and
statuses come from the OCPP 1.6 schemas; at most :data:`MAX_KINDS` kinds of violation and
:data:`EXAMPLES` messages each).  Not per message: a violation or an idTagInfo is rare.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from emulator.core.link import ID_TAG_ACTIONS
from emulator.core.status import Status, TransitionLog, transition_kind
from emulator.protocol.authorization_key import PLAIN_TEXT_KEY

__all__ = [
    "EXAMPLES",
    "ID_TAG_ACTIONS",
    "ID_TAG_STATUSES",
    "LENIENT_READINGS",
    "MAX_KINDS",
    "NAIVE_TIME",
    "ConformanceListener",
    "CsmsConformance",
    "LenientReading",
    "ViolationKind",
]

log = logging.getLogger("emulator.csms_conformance")

EXAMPLES: Final = 3  # messages kept word for word per kind
MAX_KINDS: Final = 256  # distinct (message, action, code) kept; more are counted as one
ID_TAG_STATUSES: Final = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")


@dataclass(frozen=True, slots=True)
class LenientReading:
    """How a lenient wallbox reads one kind of deviation, in the words of each output."""

    accepted_as: str  # the summary: "N accepted (<this>)"
    warning: str  # the WARNING of an accepted one: "accepted as a real charger would (<this>; ..."
    otherwise: str  # the WARNING of a refused one: "(--strict-csms; without it, <this> ...)"
    rule: str  # what the CSMS broke, before the message: "<this> BootNotification.conf"


NAIVE_TIME: Final = LenientReading(
    accepted_as="time without offset read as UTC",
    warning="a time without an offset read as UTC",
    otherwise="the time is read as UTC",
    rule="the OCPP 1.6 schema of",
)
"""The one schema violation a lenient wallbox uses anyway (emulator.protocol.lenient)."""

LENIENT_READINGS: Final[dict[str, LenientReading]] = {
    PLAIN_TEXT_KEY: LenientReading(
        accepted_as="key used as its UTF-8 bytes",
        warning="the plain-text key used as its UTF-8 bytes",
        otherwise="the key is used as its UTF-8 bytes",
        rule="the OCPP 1.6 Security Whitepaper (§7.2, AuthorizationKey in hexadecimal) in",
    ),
}
"""Deviations counted under a code of their own (not a schema error code)."""


@runtime_checkable
class ConformanceListener(Protocol):
    """Receives what :class:`CsmsConformance` records (e.g. the Prometheus reporter)."""

    def schema_violation(self, message: str, action: str, code: str, *, accepted: bool) -> None:
        """A CSMS message broke its schema; ``accepted``: used anyway (lenient)."""

    def id_tag_status(self, action: str, status: str) -> None:
        """The CSMS answered ``action`` with idTagInfo.status ``status``."""

    def forbidden_transition(self, old: str, new: str) -> None:
        """A wallbox sent a connector-status change ``old`` -> ``new`` §4.9 does not list."""


@dataclass(slots=True)
class ViolationKind:
    """One kind of schema violation (or of a deviation with a code of its own, see
    :data:`LENIENT_READINGS`): what, how often, and the first messages."""

    message: str  # "callresult" or "call"
    action: str
    code: str
    accepted: int = 0  # used anyway: what a real charger reads (a naive time as UTC)
    refused: int = 0  # treated as no answer (callresult), a CALLERROR or a refusal (call)
    examples: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.accepted + self.refused

    @property
    def where(self) -> str:
        return f"{self.action}.{'conf' if self.message == 'callresult' else 'req'}"

    @property
    def reading(self) -> LenientReading:
        """How a lenient wallbox reads this kind (a naive time as UTC, unless its code
        names another deviation)."""
        return LENIENT_READINGS.get(self.code, NAIVE_TIME)

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "action": self.action,
            "code": self.code,
            "count": self.count,
            "accepted": self.accepted,
            "refused": self.refused,
            "examples": list(self.examples),
        }


class CsmsConformance:
    """The fleet's record of the CSMS's deviations and idTagInfo answers."""

    def __init__(self) -> None:
        self.violations: dict[tuple[str, str, str], ViolationKind] = {}
        self.id_tag_statuses: Counter[tuple[str, str]] = Counter()
        self.transitions = TransitionLog()  # the wallboxes' forbidden status changes
        self.listeners: list[ConformanceListener] = []

    # -- recording (called by the charger links) ------------------------------------------

    def schema_violation(
        self,
        *,
        message: str,
        action: str,
        code: str,
        description: str,
        charger_id: str,
        accepted: bool,
        repairable: bool = False,
    ) -> None:
        """A CSMS message failed its OCPP 1.6 schema.

        ``description`` names the field and the rule, with the offending value;
        ``accepted``: the wallbox used it anyway, else it refused it; ``repairable``: a
        lenient wallbox would have used it (the hint of a refusal under --strict-csms)."""
        key = (message, action, code)
        kind = self.violations.get(key)
        if kind is None:
            if len(self.violations) >= MAX_KINDS:
                key = (message, "(other)", code)
                kind = self.violations.get(key)
            if kind is None:
                kind = self.violations[key] = ViolationKind(message, key[1], code)
                self._warn(kind, description, charger_id, accepted, repairable)
        if accepted:
            kind.accepted += 1
        else:
            kind.refused += 1
        if len(kind.examples) < EXAMPLES:
            kind.examples.append(f"{charger_id}: {description}")
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s: CSMS schema violation %s (%s), %s",
                charger_id,
                description,
                code,
                "accepted" if accepted else "refused",
            )
        for listener in self.listeners:
            listener.schema_violation(message, key[1], code, accepted=accepted)

    def id_tag_status(self, action: str, status: str) -> None:
        """The CSMS's idTagInfo.status in a schema-valid answer to ``action``."""
        self.id_tag_statuses[action, status] += 1
        for listener in self.listeners:
            listener.id_tag_status(action, status)

    def forbidden_transition(
        self, *, charger_id: str, connector_id: int, old: Status | None, new: Status
    ) -> None:
        """A wallbox sent a status change OCPP 1.6 §4.9 does not list (its TransitionSink)."""
        self.transitions.forbidden_transition(
            charger_id=charger_id, connector_id=connector_id, old=old, new=new
        )
        kind = transition_kind(old, new)
        for listener in self.listeners:
            listener.forbidden_transition(*kind)

    @staticmethod
    def _warn(
        kind: ViolationKind, description: str, charger_id: str, accepted: bool, repairable: bool
    ) -> None:
        reading = kind.reading
        if accepted:
            handling = (
                f"accepted as a real charger would ({reading.warning}; --strict-csms refuses it)"
            )
        else:
            handling = (
                "refused: the answer counts as none"
                if kind.message == "callresult"
                else "refused (answered with a CALLERROR or the charger's own refusal)"
            )
            if repairable:
                handling += f" (--strict-csms; without it, {reading.otherwise} as real chargers do)"
        log.warning(
            "the CSMS broke %s %s (%s), first from %s: %s; %s. "
            "Further ones are counted in the summary, not logged (--log-level DEBUG logs each).",
            reading.rule,
            kind.where,
            kind.code,
            charger_id,
            description,
            handling,
        )

    # -- reading ---------------------------------------------------------------------

    @property
    def total_violations(self) -> int:
        return sum(kind.count for kind in self.violations.values())

    def sorted_violations(self) -> list[ViolationKind]:
        """Most frequent first, then by action and code."""
        return sorted(self.violations.values(), key=lambda k: (-k.count, k.action, k.code))

    def statuses_of(self, action: str) -> Counter[str]:
        """idTagInfo statuses answered to ``action``."""
        return Counter(
            {status: n for (a, status), n in self.id_tag_statuses.items() if a == action}
        )

    def sorted_transitions(self) -> list[tuple[str, str, int]]:
        """Forbidden transitions as (from, to, count), most frequent first."""
        counts = self.transitions.counts
        return [(old, new, n) for (old, new), n in sorted(counts.items(), key=lambda i: -i[1])]

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaViolations": [kind.to_json() for kind in self.sorted_violations()],
            "idTagStatuses": {
                action: dict(sorted(self.statuses_of(action).items()))
                for action in sorted({a for a, _ in self.id_tag_statuses})
            },
            "forbiddenTransitions": [
                {"from": old, "to": new, "count": n} for old, new, n in self.sorted_transitions()
            ],
        }
