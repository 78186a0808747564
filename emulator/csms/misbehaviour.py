"""Ways the reference CSMS can be told to misbehave, for tests of the charger side.

A ``misbehave(charger_id, call)`` hook on :class:`~emulator.csms.ReferenceCsms` returns one
of these (or None to behave) for each charger-initiated CALL. Except for
:class:`AnswerCallError`, the CALL is still processed (a StartTransaction still gets its
transactionId): what misbehaves is the *answer*, which is lost, garbled or late. That is
what a charger's retransmission and idempotency handling must cope with.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.protocol.errors import ErrorCode

__all__ = [
    "AnswerCallError",
    "AnswerGarbage",
    "Delay",
    "DropConnection",
    "Misbehaviour",
    "Silence",
]


@dataclass(frozen=True, slots=True)
class AnswerCallError:
    """Refuse the CALL with this CALLERROR, without processing it."""

    code: ErrorCode | str = ErrorCode.INTERNAL_ERROR
    description: str = ""


@dataclass(frozen=True, slots=True)
class AnswerGarbage:
    """Send ``text`` as is (any text, need not be JSON) instead of the CALLRESULT."""

    text: str = "garbage"


@dataclass(frozen=True, slots=True)
class Silence:
    """Never answer."""


@dataclass(frozen=True, slots=True)
class DropConnection:
    """Close the connection instead of answering.

    By default the TCP connection is aborted with no closing handshake, like a CSMS that
    crashed or a NAT that forgot the flow; ``graceful=True`` sends a close frame (1011).
    """

    graceful: bool = False


@dataclass(frozen=True, slots=True)
class Delay:
    """Answer after ``seconds`` (other frames on the connection are not held up)."""

    seconds: float


Misbehaviour = AnswerCallError | AnswerGarbage | Silence | DropConnection | Delay
