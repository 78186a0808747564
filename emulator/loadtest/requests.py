"""The fleet's measurements as Locust requests, both ways: the one mapping.

Locust records a request as a type, a name, a response time and, when it failed, an
exception whose text is the failure's label.  The fleet's timed events become such
requests here, and only here (docs/loadtest.md, "What Locust records", shows them):

* :class:`RoundTripDone`: ``OCPP``, the action; no failure for OK, else
  ``CALLERROR <code>``, ``schema violation (<code>)``, ``timeout: no answer within
  response_timeout`` or ``disconnected before the answer``;
* :class:`CsmsCallDone`: ``OCPP``, ``<action> (CSMS call)``; failure
  ``answered CALLERROR <code>``;
* :class:`Connected` and :class:`ConnectFailed`: ``WebSocket``, ``connect``; failure
  ``connect failed: <reason>``;
* :class:`PingAnswered`: ``WebSocket``, ``ping``.

:func:`to_locust` makes the request (the bridge fires it), :func:`from_locust` reads one
back into its measurement (the :class:`RequestRecorder` rebuilds run statistics from
Locust's events, for SLOs), and :func:`report` hands a measurement to any
:class:`~emulator.metrics.Reporter` (the recorder's run statistics, the bridge's
Prometheus reporter).  The measurements are also what the fleet's loop queues for the
gevent side (:mod:`.bridge`): small immutable tuples, one per event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome, OutcomeKind
from emulator.metrics.stats import RunStats
from emulator.transport.reporter import Reporter

__all__ = [
    "CONNECT",
    "CSMS_CALL_SUFFIX",
    "OCPP",
    "PING",
    "WEBSOCKET",
    "ConnectFailed",
    "Connected",
    "CsmsCallDone",
    "LocustRequest",
    "Measurement",
    "OcppFailure",
    "PingAnswered",
    "RequestRecorder",
    "RoundTripDone",
    "connect_failure_text",
    "from_locust",
    "report",
    "to_locust",
]

OCPP: Final = "OCPP"
"""The request type of OCPP calls, both directions."""
WEBSOCKET: Final = "WebSocket"
"""The request type of websocket connects and pings."""
CONNECT: Final = "connect"
PING: Final = "ping"
CSMS_CALL_SUFFIX: Final = " (CSMS call)"
"""Names a CSMS-initiated call apart from the charger's own of the same action
(DataTransfer goes both ways)."""

_CALLERROR = "CALLERROR "
_SCHEMA = "schema violation"
_ANSWERED_CALLERROR = "answered CALLERROR "
_CONNECT_FAILED = "connect failed: "
_UNANSWERED_TEXT: Final = {
    TIMEOUT: "timeout: no answer within response_timeout",
    DISCONNECTED: "disconnected before the answer",
}
_UNANSWERED_BY_TEXT: Final = {text: outcome for outcome, text in _UNANSWERED_TEXT.items()}


class OcppFailure(Exception):
    """A failed OCPP exchange as Locust records it; ``str()`` is the failure's label."""


# -- the measurements ----------------------------------------------------------------


class RoundTripDone(NamedTuple):
    """A charger-initiated CALL ended after ``seconds`` (see Reporter.round_trip)."""

    action: str
    seconds: float
    outcome: Outcome


class CsmsCallDone(NamedTuple):
    """A CSMS-initiated CALL was answered after ``seconds``; ``error``: the CALLERROR's
    code, None for a CALLRESULT."""

    action: str
    seconds: float
    error: str | None


class Connected(NamedTuple):
    """A websocket opened after ``seconds``."""

    seconds: float


class ConnectFailed(NamedTuple):
    """A connection attempt failed (``reason``: "refused", "timeout", "http_404", ...)."""

    reason: str


class PingAnswered(NamedTuple):
    """A websocket ping was answered after ``seconds``."""

    seconds: float


Measurement = RoundTripDone | CsmsCallDone | Connected | ConnectFailed | PingAnswered


class LocustRequest(NamedTuple):
    """A measurement as Locust's ``events.request`` takes it (``response_time`` in ms;
    ``failure``: the failure's text, None for a success)."""

    request_type: str
    name: str
    response_time: float
    failure: str | None


# -- measurement -> Locust -------------------------------------------------------------


def round_trip_failure(outcome: Outcome) -> str | None:
    """A round trip's failure text: None for OK."""
    kind = outcome.kind
    if kind is OutcomeKind.OK:
        return None
    if kind is OutcomeKind.CALLERROR:
        return f"{_CALLERROR}{outcome.code}"
    if kind is OutcomeKind.SCHEMA:
        return _SCHEMA if outcome.code is None else f"{_SCHEMA} ({outcome.code})"
    return _UNANSWERED_TEXT[outcome]


def connect_failure_text(reason: str) -> str:
    """A failed connect's failure text."""
    return f"{_CONNECT_FAILED}{reason}"


def _round_trip(m: RoundTripDone) -> LocustRequest:
    return LocustRequest(OCPP, m.action, m.seconds * 1000.0, round_trip_failure(m.outcome))


def _csms_call(m: CsmsCallDone) -> LocustRequest:
    failure = None if m.error is None else f"{_ANSWERED_CALLERROR}{m.error}"
    return LocustRequest(OCPP, f"{m.action}{CSMS_CALL_SUFFIX}", m.seconds * 1000.0, failure)


def _connected(m: Connected) -> LocustRequest:
    return LocustRequest(WEBSOCKET, CONNECT, m.seconds * 1000.0, None)


def _connect_failed(m: ConnectFailed) -> LocustRequest:
    return LocustRequest(WEBSOCKET, CONNECT, 0.0, connect_failure_text(m.reason))


def _ping(m: PingAnswered) -> LocustRequest:
    return LocustRequest(WEBSOCKET, PING, m.seconds * 1000.0, None)


_TO_LOCUST: Final[dict[type, Callable[[Any], LocustRequest]]] = {
    RoundTripDone: _round_trip,
    CsmsCallDone: _csms_call,
    Connected: _connected,
    ConnectFailed: _connect_failed,
    PingAnswered: _ping,
}


def to_locust(measurement: Measurement) -> LocustRequest:
    """The Locust request of ``measurement`` (the table in the module docstring)."""
    return _TO_LOCUST[type(measurement)](measurement)


# -- Locust -> measurement -------------------------------------------------------------


def _round_trip_outcome(failure: str | None) -> Outcome | None:
    """A round trip's failure text back to its outcome; None for a text no round trip has."""
    if failure is None:
        return OK
    if failure.startswith(_CALLERROR):
        return Outcome.callerror(failure[len(_CALLERROR) :])
    if failure == _SCHEMA:
        return Outcome.schema()
    if failure.startswith(f"{_SCHEMA} (") and failure.endswith(")"):
        return Outcome.schema(failure[len(_SCHEMA) + 2 : -1])
    return _UNANSWERED_BY_TEXT.get(failure)


def from_locust(
    request_type: str, name: str, response_time: float, failure: str | None
) -> Measurement | None:
    """The measurement a Locust request of :func:`to_locust` stands for; None for a
    request this mapping did not make (another plugin's, or a failure text it does not
    know)."""
    seconds = (response_time or 0.0) / 1000.0
    if request_type == OCPP:
        if name.endswith(CSMS_CALL_SUFFIX):
            error = None if failure is None else failure.removeprefix(_ANSWERED_CALLERROR)
            return CsmsCallDone(name[: -len(CSMS_CALL_SUFFIX)], seconds, error)
        outcome = _round_trip_outcome(failure)
        return None if outcome is None else RoundTripDone(name, seconds, outcome)
    if request_type == WEBSOCKET:
        if name == CONNECT:
            if failure is None:
                return Connected(seconds)
            # A failure text the plugin rewrote (the generator's own timeouts) keeps its
            # words as the reason.
            return ConnectFailed(failure.removeprefix(_CONNECT_FAILED))
        if name == PING:
            return PingAnswered(seconds)
    return None


# -- measurement -> Reporter -----------------------------------------------------------

_REPORT: Final[dict[type, Callable[[Reporter, Any], None]]] = {
    RoundTripDone: lambda r, m: r.round_trip(m.action, m.seconds, m.outcome),
    CsmsCallDone: lambda r, m: r.csms_call(m.action, m.seconds, m.error),
    Connected: lambda r, m: r.connected(m.seconds),
    ConnectFailed: lambda r, m: r.connect_failed(m.reason),
    PingAnswered: lambda r, m: r.ping_rtt(m.seconds),
}


def report(reporter: Reporter, measurement: Measurement) -> None:
    """Hand ``measurement`` to ``reporter`` as the transport would have."""
    _REPORT[type(measurement)](reporter, measurement)


class RequestRecorder:
    """Rebuilds a :class:`RunStats` from the fleet's Locust request events, for SLOs.

    A listener of ``events.request`` (only while a run judges SLOs): reads every request
    of :func:`to_locust` back (:func:`from_locust`) into what ``ocpp-fleet run``'s
    reporter gets directly: outcomes, latencies, connects.  Pings are no SLO's measure
    and are left out, as they always were.
    """

    __slots__ = ("stats",)

    def __init__(self, stats: RunStats | None = None) -> None:
        self.stats = stats  # None: not judging now, events pass by

    def __call__(
        self,
        request_type: str = "",
        name: str = "",
        response_time: float = 0.0,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        stats = self.stats
        if stats is None:
            return
        failure = None if exception is None else str(exception)
        measurement = from_locust(request_type, name, response_time, failure)
        if measurement is not None and type(measurement) is not PingAnswered:
            report(stats, measurement)
