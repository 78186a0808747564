"""How a charger-initiated CALL ended: the one :class:`Outcome` type, made here in the core.

The link (:mod:`emulator.core.link`) settles every CALL of the charger with one of five
kinds (OCPP-J 1.6 §4.1.1: a CALL is answered by a CALLRESULT or a CALLERROR, or not at all):

========================  ===================================================  ============
kind                      when                                                 ``key``
========================  ===================================================  ============
``OK``                    a CALLRESULT that keeps its schema (or is repaired)  ``ok``
``CALLERROR``             the CSMS answered a CALLERROR with ``code``           ``callerror:<code>``
``SCHEMA``                an answer that broke the schema (or OCPP-J) and was   ``schema:<code>``
                          refused, ``code`` the violation's; ``schema`` alone   or ``schema``
                          (no code) is still read, as older windows carry it
``TIMEOUT``               no answer within the response timeout                 ``timeout``
``DISCONNECTED``          the connection closed before the answer               ``disconnected``
========================  ===================================================  ============

:attr:`Outcome.key` is the one serialized form: run-statistics wire windows, the summary
JSON's ``outcomes``, time-series columns and the HTML report all carry it, so it never
changes; :meth:`Outcome.parse` is its one reader.  Nobody builds or matches these strings
elsewhere: they ask the type (:attr:`~Outcome.answered`, :attr:`~Outcome.failed`,
:attr:`~Outcome.kind`, :attr:`~Outcome.code`).

Outcomes are counted once per round trip (10,000 wallboxes: thousands a second), so
every instance is interned: :data:`OK`, :data:`TIMEOUT` and :data:`DISCONNECTED` are
module constants and one instance exists per CALLERROR or schema code.  Equality and
hashing are therefore identity, as cheap as a string key in a ``Counter``.  The intern
table grows with the distinct codes a CSMS sends, like the counters that count them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, final

__all__ = ["DISCONNECTED", "OK", "TIMEOUT", "Outcome", "OutcomeKind"]


class OutcomeKind(StrEnum):
    """The five ways a charger's CALL ends (the first part of :attr:`Outcome.key`)."""

    OK = "ok"
    CALLERROR = "callerror"
    SCHEMA = "schema"
    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"

    @property
    def answered(self) -> bool:
        """A call that ends so got an answer: its duration is a latency."""
        return self in _ANSWERED


# Kinds whose duration is a latency (the call got an answer); a timed-out or
# disconnected call's duration is only how long the charger waited.
_ANSWERED: Final = frozenset({OutcomeKind.OK, OutcomeKind.CALLERROR, OutcomeKind.SCHEMA})
_CODED: Final = frozenset({OutcomeKind.CALLERROR, OutcomeKind.SCHEMA})


@final
class Outcome:
    """One way a CALL ended: a :class:`OutcomeKind` and, for a CALLERROR or a refused
    answer, its error code.  Interned: build them with :meth:`callerror`,
    :meth:`schema` and :meth:`parse`, or use :data:`OK`, :data:`TIMEOUT`,
    :data:`DISCONNECTED`; compare with ``is`` or ``==`` (the same)."""

    __slots__ = ("answered", "code", "failed", "key", "kind")

    kind: OutcomeKind
    code: str | None
    key: str
    answered: bool
    failed: bool

    def __init__(self, kind: OutcomeKind, code: str | None, key: str) -> None:
        """Not for callers: only :func:`_intern` makes instances."""
        self.kind = kind
        self.code = code
        self.key = key
        #: It got an answer (CALLRESULT, CALLERROR, or one refused by the schema): its
        #: duration is a latency.
        self.answered = kind.answered
        #: Anything but a CALLRESULT that was used.
        self.failed = kind is not OutcomeKind.OK

    @staticmethod
    def callerror(code: str) -> Outcome:
        """The CSMS answered with a CALLERROR of ``code``."""
        return _intern(OutcomeKind.CALLERROR, str(code))

    @staticmethod
    def schema(code: str | None = None) -> Outcome:
        """The answer broke the schema (or OCPP-J) and was refused; ``code`` the violation's."""
        return _intern(OutcomeKind.SCHEMA, None if code is None else str(code))

    @staticmethod
    def parse(key: str) -> Outcome:
        """The outcome whose :attr:`key` is ``key``; ValueError when it is none."""
        found = _INTERNED.get(key)
        if found is not None:
            return found
        kind_text, colon, code = key.partition(":")
        try:
            kind = OutcomeKind(kind_text)
        except ValueError:
            raise ValueError(f"not an outcome: {key!r}") from None
        if colon:
            if kind not in _CODED or not code:
                raise ValueError(f"not an outcome: {key!r}")
            return _intern(kind, code)
        if kind is OutcomeKind.CALLERROR:
            raise ValueError(f"not an outcome: {key!r} (a CALLERROR needs its code)")
        return _intern(kind, None)

    @property
    def label(self) -> str:
        """How a summary names it among failures: the code of a CALLERROR, else the key
        (``timeout``, ``schema:FormationViolation``)."""
        if self.kind is OutcomeKind.CALLERROR:
            return self.code or self.key
        return self.key

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Pickled or copied, an outcome comes back as the interned instance.
        return (Outcome.parse, (self.key,))

    def __repr__(self) -> str:
        return f"Outcome({self.key!r})"

    def __str__(self) -> str:
        return self.key


def _intern(kind: OutcomeKind, code: str | None) -> Outcome:
    key = kind.value if code is None else f"{kind.value}:{code}"
    found = _INTERNED.get(key)
    if found is None:
        # setdefault is atomic: two threads making the same new outcome get one instance.
        found = _INTERNED.setdefault(key, Outcome(kind, code, key))
    return found


# The intern table: key -> the one instance (see the module docstring).
_INTERNED: Final[dict[str, Outcome]] = {}

OK: Final = _intern(OutcomeKind.OK, None)
"""A CALLRESULT that keeps its schema (or was repaired leniently)."""
TIMEOUT: Final = _intern(OutcomeKind.TIMEOUT, None)
"""No answer within the response timeout."""
DISCONNECTED: Final = _intern(OutcomeKind.DISCONNECTED, None)
"""The connection closed before the answer."""
