"""One charger's OCPP-J conversation, sans I/O: text frames in, text frames out.

:class:`ChargerLink` stands between a :class:`~emulator.core.wallbox.Wallbox` and
whatever moves text over a websocket (emulator.transport.driver, or a test).  Everything
OCPP-J 1.6 asks of a charger's side of the conversation happens here, once:

* decoding every frame, and a CALLERROR for what cannot be read (§4.2.3);
* schema validation both ways, with the lenient reading of a CSMS message whose only
  fault is a date-time without an offset (emulator.protocol.lenient), counted on the
  conformance sink;
* the one deviation the schema cannot see: an AuthorizationKey in plain text rather than
  hexadecimal (emulator.protocol.authorization_key), counted the same way, and answered
  Rejected when the link is not lenient;
* dispatching a CSMS CALL through the one table (emulator.core.csms_calls) and its
  CALLRESULT or CALLERROR;
* correlating a CALLRESULT or CALLERROR with the CALL in flight (one at a time, §4.1.1)
  by its unique id, and settling that round trip: answered, refused by the schema,
  timed out (the outbox's response timeout) or lost with the connection.

The I/O layer drives it like websockets' ``Protocol``::

    link.connected(now)                    # the websocket opened
    link.receive_text(text, now)           # every text frame received
    for text in link.frames_to_send(now):  # after every call: send these, in order
        ...
    link.tick(now)                         # at link.next_deadline()
    link.take_effects()                    # pings, reboots, FTP jobs, events
    link.take_settled()                    # round trips and CSMS calls, for the reporter
    link.disconnected(now)                 # the connection closed

It reads no clock: every time is the ``now`` passed in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final, Protocol

from emulator.core.csms_calls import answer_call, answer_schema_violation
from emulator.core.effects import Effect
from emulator.core.outbox import InFlight
from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
from emulator.core.wallbox import Wallbox
from emulator.protocol.authorization_key import (
    KEY_NAME,
    PLAIN_TEXT_KEY,
    REDACTED,
    KeyForm,
    key_form,
)
from emulator.protocol.codec import (
    Call,
    CallError,
    CallResult,
    FrameError,
    decode,
    encode_call,
    encode_error,
    encode_result,
)
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.lenient import accept_leniently, field_value, show_value
from emulator.protocol.schemas import SchemaRegistry

log = logging.getLogger(__name__)

ID_TAG_ACTIONS: Final = ("Authorize", "StartTransaction", "StopTransaction")
"""The charger's CALLs whose answers carry an idTagInfo (its status is counted)."""


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A CALL of the charger ended after ``seconds``.

    ``outcome``: :data:`~emulator.core.outcome.OK`, a CALLERROR's
    (``Outcome.callerror(code)``), an answer that broke the schema and was refused
    (``Outcome.schema(code)``), :data:`~emulator.core.outcome.TIMEOUT` or
    :data:`~emulator.core.outcome.DISCONNECTED`."""

    action: str
    seconds: float
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class CsmsCallAnswered:
    """A frame from the CSMS was dealt with: a CALL answered (``error`` is the CALLERROR
    code we sent, None for a CALLRESULT), or a frame we could not use: ``action`` is
    then "(malformed)", "(garbage)", "(unexpected result)" or "(unexpected error)"."""

    action: str
    error: str | None


Settled = RoundTrip | CsmsCallAnswered


class ConformanceSink(Protocol):
    """Where the CSMS's deviations and idTagInfo answers are counted
    (emulator.metrics.conformance.CsmsConformance; the fleet shares one)."""

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
    ) -> None: ...

    def id_tag_status(self, action: str, status: str) -> None: ...


class _Uncounted:
    """A sink that keeps nothing (a link nobody asks about the CSMS's conformance)."""

    def schema_violation(self, **_details: Any) -> None:
        pass

    def id_tag_status(self, action: str, status: str) -> None:
        pass


class ChargerLink:
    """The OCPP-J conversation of one wallbox (see the module docstring)."""

    __slots__ = (
        "_answers",
        "_sent",
        "_settled",
        "conformance",
        "ever_accepted",
        "lenient",
        "schemas",
        "strict_outgoing",
        "wallbox",
    )

    def __init__(
        self,
        *,
        wallbox: Wallbox,
        schemas: SchemaRegistry,
        conformance: ConformanceSink | None = None,
        lenient: bool = True,
        strict_outgoing: bool = False,
        message_ids: str = "uuid",
    ) -> None:
        """``lenient``: use a CSMS message whose only schema violations are date-times
        without an offset (read as UTC), as the real charger does; False refuses it.
        ``strict_outgoing``: validate every frame we send (tests).  ``message_ids``:
        "uuid" (random UUID4 strings, what many chargers send) or "counter"."""
        if message_ids not in ("uuid", "counter"):
            raise ValueError(f"message_ids must be 'uuid' or 'counter', not {message_ids!r}")
        self.wallbox = wallbox
        self.schemas = schemas
        self.conformance: ConformanceSink = conformance if conformance is not None else _Uncounted()
        self.lenient = lenient
        self.strict_outgoing = strict_outgoing
        wallbox.outbox.uuid_ids = message_ids == "uuid"
        self.ever_accepted = False  # a BootNotification of this wallbox was Accepted
        # Answers to CSMS CALLs not yet taken by frames_to_send, and what settled since
        # take_settled: None while empty (most wallboxes, most of the time).
        self._answers: list[str] | None = None
        self._settled: list[Settled] | None = None
        # The outbox's record of the CALL we sent, until its round trip settles.
        self._sent: InFlight | None = None

    # ------------------------------------------------------------------ connection

    def connected(self, now: float) -> None:
        """The websocket is open: the wallbox boots (or resumes) over it."""
        self.wallbox.connected(now)

    def disconnected(self, now: float) -> None:
        """The connection closed: the CALL in flight settles as "disconnected", answers
        not yet sent are gone with it, and the wallbox goes offline."""
        self._settle_sent(DISCONNECTED, now)
        self._answers = None
        self.wallbox.disconnected(now)

    @property
    def online(self) -> bool:
        return self.wallbox.online

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        return self.wallbox.next_deadline()

    def tick(self, now: float) -> None:
        """Do what is due at ``now``; a CALL whose response timeout passed settles."""
        self.wallbox.tick(now)
        self._check_sent(now)

    # ------------------------------------------------------------------ out

    def frames_to_send(self, now: float) -> list[str]:
        """The frames to send now, in order: answers to the CSMS's CALLs first, then the
        wallbox's next CALL when none is in flight."""
        frames = self._answers or []
        self._answers = None
        self._check_sent(now)
        if self._sent is None:
            call = self.wallbox.next_call(now)
            if call is not None:
                if self.strict_outgoing:
                    self.schemas.validate_request(call.action, call.payload)
                self._sent = self.wallbox.outbox.in_flight
                frames.append(encode_call(call.unique_id, call.action, call.payload))
        return frames

    def take_effects(self) -> list[Effect]:
        """What the I/O layer must do or know, in order (emulator.core.effects)."""
        return self.wallbox.take_effects()

    def take_settled(self) -> list[Settled]:
        """Round trips and CSMS calls settled since the last call (for the reporter)."""
        settled = self._settled
        if settled is None:
            return []
        self._settled = None
        return settled

    def undelivered(self) -> bool:
        """Messages a shutdown still waits for: transaction messages, the CALL in flight
        and, once booted, the StatusNotifications (Finishing, Available) that stopped
        transactions queued, so the CSMS does not keep a connector Charging."""
        outbox = self.wallbox.outbox
        return (
            outbox.transaction_backlog > 0
            or outbox.in_flight is not None
            or (self.wallbox.accepted and outbox.has_queued("StatusNotification"))
        )

    # ------------------------------------------------------------------ in

    def receive_text(self, text: str | bytes, now: float) -> None:
        """One frame from the CSMS.  Whatever it holds, the conversation goes on: a CALL
        is answered (frames_to_send), an answer settles our CALL, garbage is counted."""
        try:
            frame = decode(text)
        except FrameError as exc:
            self._unreadable(exc, now)
            return
        if isinstance(frame, Call):
            self._answer(frame, now)
        elif isinstance(frame, CallResult):
            self._result(frame, now)
        else:
            self._error(frame, now)

    def _unreadable(self, exc: FrameError, now: float) -> None:
        sent = self._sent
        if exc.answerable and exc.unique_id is not None:
            self._reply(encode_error(exc.unique_id, exc.code, exc.description[:255]))
            self._settle(CsmsCallAnswered("(malformed)", exc.code))
        elif exc.unique_id is not None and sent is not None and sent.unique_id == exc.unique_id:
            # An answer to our CALL that OCPP-J cannot read: refused like a schema break.
            self._settle_sent(Outcome.schema(exc.code), now)
            self.wallbox.handle_error(exc.unique_id, "FormationViolation", now)
        else:
            # OCPP-J 1.6 has no way to answer a frame without a readable CALL id.
            self._settle(CsmsCallAnswered("(garbage)", exc.code))

    def _answer(self, frame: Call, now: float) -> None:
        wb = self.wallbox
        action = frame.action
        try:
            try:
                self.schemas.validate_request(action, frame.payload)
            except RemoteProtocolError as violation:
                repaired = None
                if "rule" in violation.details:  # a schema violation, not an unknown action
                    repaired = self._lenient(action, frame.payload, violation, "call")
                if repaired is None:
                    own = answer_schema_violation(wb, action, violation)
                    if own is None:
                        raise
                    result = own  # the charger's own answer to this violation
                else:
                    result = answer_call(wb, action, repaired, now)
            else:
                result = self._plain_text_key(action, frame.payload) or answer_call(
                    wb, action, frame.payload, now
                )
        except RemoteProtocolError as exc:
            self._reply(encode_error(frame.unique_id, exc.code, exc.description[:255]))
            self._settle(CsmsCallAnswered(action, str(exc.code)))
            return
        except Exception:  # a bug of ours must not kill the wallbox
            log.exception("%s: handling %s failed", wb.charge_point_id, action)
            code = ErrorCode.INTERNAL_ERROR
            self._reply(encode_error(frame.unique_id, code, "internal error"))
            self._settle(CsmsCallAnswered(action, str(code)))
            return
        if self.strict_outgoing:
            self.schemas.validate_response(action, result)
        self._reply(encode_result(frame.unique_id, result))
        self._settle(CsmsCallAnswered(action, None))

    def _result(self, frame: CallResult, now: float) -> None:
        sent = self._sent
        if sent is None or sent.unique_id != frame.unique_id:
            self._settle(CsmsCallAnswered("(unexpected result)", "UnexpectedUniqueId"))
            return
        action = sent.message.action
        payload = frame.payload
        try:
            self.schemas.validate_response(action, payload)
        except RemoteProtocolError as exc:
            repaired = self._lenient(action, payload, exc, "callresult")
            if repaired is None:
                self._settle_sent(Outcome.schema(exc.code), now)
                self.wallbox.handle_error(frame.unique_id, str(exc.code), now)
                return
            payload = repaired
        if action in ID_TAG_ACTIONS:
            info = payload.get("idTagInfo")
            if info is not None:
                self.conformance.id_tag_status(action, info["status"])
        if action == "BootNotification" and payload["status"] == "Accepted":
            self.ever_accepted = True
        self._settle_sent(OK, now)
        try:
            self.wallbox.handle_result(frame.unique_id, payload, now)
        except Exception:  # a bug of ours must not kill the wallbox
            log.exception("%s: applying a %s result failed", self.wallbox.charge_point_id, action)

    def _error(self, frame: CallError, now: float) -> None:
        sent = self._sent
        if sent is None or sent.unique_id != frame.unique_id:
            self._settle(CsmsCallAnswered("(unexpected error)", "UnexpectedUniqueId"))
            return
        self._settle_sent(Outcome.callerror(frame.code), now)
        self.wallbox.handle_error(frame.unique_id, frame.code, now)

    def _lenient(
        self, action: str, payload: dict[str, Any], violation: RemoteProtocolError, message: str
    ) -> dict[str, Any] | None:
        """Count the CSMS's schema violation; the payload to use anyway (lenient, see
        emulator.protocol.lenient), or None when it is refused."""
        validate = (
            self.schemas.validate_response
            if message == "callresult"
            else self.schemas.validate_request
        )
        repaired = accept_leniently(lambda p: validate(action, p), payload, violation)
        used = repaired if self.lenient else None
        description = violation.description
        value = field_value(payload, str(violation.details.get("field", "")))
        if value is not None:
            shown = REDACTED if _sets_authorization_key(action, payload) else show_value(value)
            description = f"{description} (got {shown})"
        self.conformance.schema_violation(
            message=message,
            action=action,
            code=str(violation.code),
            description=description,
            charger_id=self.wallbox.charge_point_id,
            accepted=used is not None,
            repairable=repaired is not None,
        )
        return used

    def _plain_text_key(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """A schema-valid ChangeConfiguration that sets AuthorizationKey in plain text, not
        in the hexadecimal of Security Whitepaper §7.2: counted as the CSMS's deviation;
        then None (the configuration takes it, as real chargers do) or, when the link is
        not lenient (--strict-csms), the answer Rejected.

        The check sits here, before the dispatch, rather than in the configuration: which
        CSMS deviations a charger tolerates is the conversation's policy, like the naive
        date-times of :meth:`_lenient`, and the link holds that policy (``lenient``), the
        conformance sink and the charger id.  The configuration keeps the charger's own
        rule (both forms taken, anything else Rejected) and stays free of the run's
        leniency, so a scenario's configuration or a test can set either form."""
        if action != "ChangeConfiguration" or payload["key"] != KEY_NAME:
            return None
        wb = self.wallbox
        if not wb.config.knows(KEY_NAME) or key_form(payload["value"]) is not KeyForm.PLAIN_TEXT:
            return None  # NotSupported, hexadecimal, or Rejected by the configuration
        self.conformance.schema_violation(
            message="call",
            action=action,
            code=PLAIN_TEXT_KEY,
            description=(
                f"{KEY_NAME}={REDACTED} sent as plain text, not as 32 to 40 hexadecimal "
                "digits (OCPP 1.6 Security Whitepaper §7.2, A00.FR.205)"
            ),
            charger_id=wb.charge_point_id,
            accepted=self.lenient,
            repairable=True,
        )
        if self.lenient:
            return None
        wb.config.last_rejection = f"{KEY_NAME}: plain text, not hexadecimal (--strict-csms)"
        return {"status": "Rejected"}

    # ------------------------------------------------------------------ bookkeeping

    def _reply(self, frame: str) -> None:
        if self._answers is None:
            self._answers = [frame]
        else:
            self._answers.append(frame)

    def _settle(self, item: Settled) -> None:
        if self._settled is None:
            self._settled = [item]
        else:
            self._settled.append(item)

    def _settle_sent(self, outcome: Outcome, now: float) -> None:
        sent = self._sent
        if sent is not None:
            self._sent = None
            self._settle(RoundTrip(sent.message.action, now - sent.sent_at, outcome))

    def _check_sent(self, now: float) -> None:
        """The CALL we sent is no longer in flight without an answer: the wallbox gave up
        waiting (its response timeout), or a reset took it away."""
        sent = self._sent
        if sent is not None and self.wallbox.outbox.in_flight is not sent:
            self._settle_sent(TIMEOUT, now)


def _sets_authorization_key(action: str, payload: Any) -> bool:
    """A ChangeConfiguration of AuthorizationKey (any case): none of its values is shown."""
    return (
        action == "ChangeConfiguration"
        and isinstance(payload, dict)
        and str(payload.get("key", "")).lower() == KEY_NAME.lower()
    )
