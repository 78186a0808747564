"""OCPP-J 1.6 message frames (OCPP-J 1.6 §4): parse and serialise, nothing else.

A frame is a JSON array whose first element is the MessageTypeId (§4.1.3):

* ``[2, "<UniqueId>", "<Action>", {<payload>}]``                     CALL (§4.2.1)
* ``[3, "<UniqueId>", {<payload>}]``                                 CALLRESULT (§4.2.2)
* ``[4, "<UniqueId>", "<errorCode>", "<errorDescription>", {<errorDetails>}]``
                                                                     CALLERROR (§4.2.3)

:func:`decode` turns text into one of the frozen :class:`Call`, :class:`CallResult` or
:class:`CallError` events, or raises :class:`FrameError` (a
:class:`~emulator.protocol.errors.RemoteProtocolError`) carrying the code to answer with.
Which error code a broken *frame* deserves is not spelled out by OCPP-J 1.6 (the codes of
§4.2.3 describe a CALL's payload), so :func:`decode` documents the choice it makes.

Schema validation of payloads lives in :mod:`emulator.protocol.schemas`; this module only
checks the frame's shape, so it stays cheap on the hot path (one ``orjson.loads`` and a few
``type() is`` tests).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import orjson

from emulator.protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_UNIQUE_ID_LENGTH",
    "Call",
    "CallError",
    "CallResult",
    "Frame",
    "FrameError",
    "MessageTypeId",
    "UniqueIdGenerator",
    "decode",
    "encode",
    "encode_call",
    "encode_error",
    "encode_result",
    "random_unique_id",
]

#: OCPP-J 1.6 §4.1.4: "The message ID ... maximum of 36 characters, to allow for GUIDs".
MAX_UNIQUE_ID_LENGTH: Final = 36

_ERROR_CODES: Final[dict[str, ErrorCode]] = {code.value: code for code in ErrorCode}


class MessageTypeId(IntEnum):
    """OCPP-J 1.6 §4.1.3 message type numbers."""

    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4


@dataclass(frozen=True, slots=True)
class Call:
    """A request (OCPP-J 1.6 §4.2.1)."""

    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    """The answer to a :class:`Call` (OCPP-J 1.6 §4.2.2)."""

    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    """A refusal of a :class:`Call` (OCPP-J 1.6 §4.2.3).

    ``code`` is an :class:`ErrorCode` when the peer sent one of the 1.6 codes, else the
    raw string it sent (peers speaking 2.0 send e.g. "FormatViolation"; we keep it rather
    than refuse an otherwise readable answer).
    """

    unique_id: str
    code: str
    description: str
    details: dict[str, Any]

    @property
    def error_code(self) -> ErrorCode | None:
        """The 1.6 error code, or None if the peer sent a code 1.6 does not define."""
        return _ERROR_CODES.get(self.code)


Frame = Call | CallResult | CallError


class FrameError(RemoteProtocolError):
    """The peer sent a frame that is not a well-formed OCPP-J 1.6 message.

    ``message_type_id`` is the MessageTypeId read from the frame, if it was an integer.
    Only a CALL can be answered (a CALLERROR answers a CALL, §4.2.3), and only when its
    unique id could be read, hence :attr:`answerable`; a broken CALLRESULT or CALLERROR
    should instead fail the pending call with that ``unique_id``.
    """

    def __init__(
        self,
        code: ErrorCode,
        description: str,
        *,
        unique_id: str | None = None,
        message_type_id: int | None = None,
    ) -> None:
        super().__init__(code, description, unique_id=unique_id)
        self.message_type_id = message_type_id

    @property
    def answerable(self) -> bool:
        """Whether a CALLERROR may be sent back for this frame."""
        return self.message_type_id == MessageTypeId.CALL and self.unique_id is not None


def decode(data: str | bytes) -> Frame:
    """Parse one WebSocket text message into a frame.

    Raises :class:`FrameError` with these codes (OCPP-J 1.6 §4):

    * not JSON, not an array, an empty array, a MessageTypeId that is not an integer, the
      wrong number of elements for its type, a unique id or action or error code or
      description that is not a string, a unique id over 36 characters (§4.1.4), or a
      payload / errorDetails that is not an object -> ``FormationViolation``: §4.2.3
      defines it as "syntactically incorrect or not conform the PDU structure", and the
      frame's structure is the outermost PDU structure there is.
    * an integer MessageTypeId other than 2, 3, 4 -> ``ProtocolError``. §4.1.3 says the
      receiver "SHALL ignore the message payload", so this is never answered (it is not a
      CALL; :attr:`FrameError.answerable` is False). The frame is well formed, it speaks a
      protocol we do not: ``ProtocolError`` is the nearest 1.6 code (2.0.1 later added
      ``MessageTypeNotSupported`` for exactly this case).

    ``unique_id`` is set on the error whenever element 1 is a string (even an over-long
    one), so a broken CALL can be answered and a broken CALLRESULT can fail its call.
    A ``bool`` is not accepted as an integer (JSON ``true`` is not ``2``).
    """
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FrameError(ErrorCode.FORMATION_VIOLATION, f"invalid JSON: {exc}") from None
    if type(frame) is not list or not frame:
        raise FrameError(ErrorCode.FORMATION_VIOLATION, "a frame must be a non-empty JSON array")

    type_id = frame[0]
    if type(type_id) is not int:  # excludes bool, float and str on purpose
        raise FrameError(ErrorCode.FORMATION_VIOLATION, "MessageTypeId must be an integer")
    unique_id = frame[1] if len(frame) > 1 and type(frame[1]) is str else None

    if type_id == 2:
        if len(frame) != 4:
            raise _bad(f"a CALL has 4 elements, got {len(frame)}", unique_id, type_id)
        _, uid, action, payload = frame
        _check_unique_id(uid, type_id)
        if type(action) is not str:
            raise _bad("Action must be a string", uid, type_id)
        if type(payload) is not dict:
            raise _bad("CALL payload must be a JSON object", uid, type_id)
        return Call(uid, action, payload)

    if type_id == 3:
        if len(frame) != 3:
            raise _bad(f"a CALLRESULT has 3 elements, got {len(frame)}", unique_id, type_id)
        _, uid, payload = frame
        _check_unique_id(uid, type_id)
        if type(payload) is not dict:
            raise _bad("CALLRESULT payload must be a JSON object", uid, type_id)
        return CallResult(uid, payload)

    if type_id == 4:
        if len(frame) != 5:
            raise _bad(f"a CALLERROR has 5 elements, got {len(frame)}", unique_id, type_id)
        _, uid, code, description, details = frame
        _check_unique_id(uid, type_id)
        if type(code) is not str:
            raise _bad("errorCode must be a string", uid, type_id)
        if type(description) is not str:
            raise _bad("errorDescription must be a string", uid, type_id)
        if type(details) is not dict:
            raise _bad("errorDetails must be a JSON object", uid, type_id)
        return CallError(uid, _ERROR_CODES.get(code, code), description, details)

    raise FrameError(
        ErrorCode.PROTOCOL_ERROR,
        f"unknown MessageTypeId {type_id} (OCPP-J 1.6 §4.1.3: ignored)",
        unique_id=unique_id,
        message_type_id=type_id,
    )


def _bad(description: str, unique_id: object, type_id: int) -> FrameError:
    return FrameError(
        ErrorCode.FORMATION_VIOLATION,
        description,
        unique_id=unique_id if type(unique_id) is str else None,
        message_type_id=type_id,
    )


def _check_unique_id(unique_id: object, type_id: int) -> None:
    if type(unique_id) is not str:
        raise _bad("UniqueId must be a string", None, type_id)
    if len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        raise _bad(f"UniqueId longer than {MAX_UNIQUE_ID_LENGTH} characters", unique_id, type_id)


def _dumps(frame: list[Any]) -> str:
    if type(frame[1]) is not str:
        raise LocalProtocolError(f"UniqueId must be a string: {frame[1]!r}")
    try:
        return orjson.dumps(frame).decode()
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise LocalProtocolError(f"payload is not JSON-serialisable: {exc}") from None


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    """Serialise a CALL (OCPP-J 1.6 §4.2.1).

    The 36-character limit of §4.1.4 binds whoever creates the id, so it is enforced here
    and not in :func:`encode_result` / :func:`encode_error`, which echo the peer's id (an
    over-long id is still answered with a CALLERROR carrying it, so the peer can match it).
    """
    if type(unique_id) is str and len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        raise LocalProtocolError(f"UniqueId longer than 36 characters: {unique_id!r}")
    return _dumps([MessageTypeId.CALL.value, unique_id, action, payload])


def encode_result(unique_id: str, payload: dict[str, Any]) -> str:
    """Serialise a CALLRESULT (OCPP-J 1.6 §4.2.2)."""
    return _dumps([MessageTypeId.CALLRESULT.value, unique_id, payload])


def encode_error(
    unique_id: str,
    code: ErrorCode | str,
    description: str,
    details: dict[str, Any] | None = None,
) -> str:
    """Serialise a CALLERROR (OCPP-J 1.6 §4.2.3); ``details`` defaults to ``{}``."""
    return _dumps([MessageTypeId.CALLERROR.value, unique_id, str(code), description, details or {}])


def encode(frame: Frame) -> str:
    """Serialise any frame event."""
    if type(frame) is Call:
        return encode_call(frame.unique_id, frame.action, frame.payload)
    if type(frame) is CallResult:
        return encode_result(frame.unique_id, frame.payload)
    if type(frame) is CallError:
        return encode_error(frame.unique_id, frame.code, frame.description, frame.details)
    raise LocalProtocolError(f"not a frame: {frame!r}")


class UniqueIdGenerator:
    """Cheap unique ids: ``prefix`` + a decimal counter (OCPP-J 1.6 §4.1.4).

    §4.1.4 only asks that an id differ from every id the same sender used on the same
    connection; keep one generator per sender across reconnects (not per socket) so ids
    stay unique even for a CSMS that remembers them between connections. With a prefix
    of at most 16 characters the id stays below 36 characters for 10**20 messages.
    """

    __slots__ = ("_next", "_prefix")

    MAX_PREFIX_LENGTH: Final = 16

    def __init__(self, *, prefix: str = "", start: int = 1) -> None:
        if len(prefix) > self.MAX_PREFIX_LENGTH:
            raise ValueError(f"prefix longer than {self.MAX_PREFIX_LENGTH} characters")
        self._prefix = prefix
        self._next = start

    def __call__(self) -> str:
        """Return the next id."""
        n = self._next
        self._next = n + 1
        return f"{self._prefix}{n}"


# A generator of its own, seeded from the OS, reseeded in a forked child (two forked
# load-generator processes must not send the same ids), untouched by random.seed().
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)
_getrandbits = _ids.getrandbits
# UUID version 4 (RFC 9562 §5.4): version bits 76-79 = 0100, variant bits 62-63 = 10.
_UUID4_CLEAR: Final = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET: Final = (0x4 << 76) | (0x2 << 62)


def random_unique_id() -> str:
    """A random UUID4 string (36 characters, the most OCPP-J 1.6 §4.1.4 allows), as many
    chargers send.  From a non-cryptographic generator: an id must be unique, not secret;
    ~1.2 µs, a fifth of ``str(uuid.uuid4())``, which reads the OS's entropy pool each time."""
    h = "%032x" % (_getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
