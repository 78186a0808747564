"""Prometheus metrics of a fleet process: per-message reporter plus a scrape-time collector.

Two halves, both registered in a :class:`~prometheus_client.CollectorRegistry` passed
in (tests get a fresh one; nothing touches the global ``REGISTRY``):

* :class:`PrometheusReporter` implements :class:`emulator.metrics.Reporter`: the
  transport calls it once per message, so it only does a dict lookup and one
  ``observe``/``inc`` on a pre-bound label child.  Label values are normalised to
  bounded sets (OCPP 1.6 action names, OCPP-J error codes, a few outcomes, at most
  :data:`MAX_REASONS` connection reasons): a misbehaving CSMS that sends made-up
  actions or error codes cannot grow the number of series.
* :class:`FleetCollector` computes fleet-wide gauges (connected, booted, connectors
  by status, transactions, energy, power, queue depth) when Prometheus scrapes, from
  the fleets it watches (any :class:`~emulator.metrics.fleetview.FleetSource`): each
  fleet is read on its own loop into an immutable reading, each wallbox counted as
  everywhere else (:func:`emulator.metrics.fleetview.tally`).
  Never one series per wallbox: a charger id is never a label.

:func:`serve_metrics` starts prometheus_client's HTTP server on a port; nothing is
served unless a caller asks for it (``ocpp-fleet run --metrics-port``, a Locust
process's ``--metrics-port``: see :mod:`emulator.loadtest.metrics`).

Every metric, with its type, labels and help text, is listed in ``docs/metrics.md``;
``tests/metrics/test_prometheus.py`` keeps that table and this module identical.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from ocpp.v16.enums import Action
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from emulator.core.csms_calls import PROFILE_OF_ACTION
from emulator.core.outcome import Outcome, OutcomeKind
from emulator.core.status import FORBIDDEN, Status
from emulator.metrics.conformance import ID_TAG_ACTIONS, ID_TAG_STATUSES, LENIENT_READINGS
from emulator.metrics.fleetview import FleetCounts, FleetReader, FleetReading, FleetSource
from emulator.metrics.looplag import LoopLagMonitor
from emulator.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = [
    "CALL_BUCKETS",
    "HANDLING_BUCKETS",
    "LAG_BUCKETS",
    "FleetCollector",
    "MetricsEndpoint",
    "MetricsServer",
    "PrometheusReporter",
    "disable_created_series",
    "new_registry",
    "serve_metrics",
]

# Charger-initiated round trips, connects, pongs: 1-2-5 steps from 1 ms to 60 s, so
# histogram_quantile() interpolates within a factor of 2.5 anywhere in that range.
CALL_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
)  # fmt: skip
# Handling a CSMS-initiated CALL is local work: tens of microseconds to milliseconds.
HANDLING_BUCKETS = (
    0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005,
    0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
# Loop lag and send lateness: sub-millisecond when healthy, seconds when overloaded.
LAG_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# Bounded label values.
OTHER = "(other)"
MALFORMED = "(malformed)"  # a broken frame we answered with a CALLERROR
GARBAGE = "(garbage)"  # a broken frame without a readable CALL id
UNEXPECTED_RESULT = "(unexpected result)"  # a CALLRESULT for no CALL of ours
UNEXPECTED_ERROR = "(unexpected error)"  # a CALLERROR for no CALL of ours
_FRAME_ACTIONS = frozenset({MALFORMED, GARBAGE})
_UNEXPECTED = {UNEXPECTED_RESULT: "callresult", UNEXPECTED_ERROR: "callerror"}
ACTIONS: frozenset[str] = frozenset(a.value for a in Action) | _FRAME_ACTIONS | set(_UNEXPECTED)
ERROR_CODES: frozenset[str] = frozenset(c.value for c in ErrorCode)
# The codes SchemaRegistry and the frame codec answer a payload or frame that breaks
# the OCPP 1.6 schemas with; the wallbox itself only answers NotSupported,
# NotImplemented, SecurityError, InternalError (and OccurenceConstraintViolation for a
# GetConfiguration over GetConfigurationMaxKeys, a constraint of the reference charger).
SCHEMA_CODES: frozenset[str] = frozenset(
    {
        ErrorCode.FORMATION_VIOLATION,
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        ErrorCode.PROTOCOL_ERROR,
    }
)
# Outcome kinds as label values: answered round trips (a latency), and those whose
# duration is only how long we waited.
OUTCOMES: tuple[str, ...] = tuple(k.value for k in OutcomeKind if k.answered)
UNANSWERED: tuple[str, ...] = tuple(k.value for k in OutcomeKind if not k.answered)
MAX_REASONS = 32  # distinct connect-failure / disconnect reasons before "(other)"
_MAX_CACHED = 4096  # raw label tuples remembered per metric (the hot-path cache)
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)

# Label values known before the first event: their series start at 0, so a healthy run's
# dashboards show 0 instead of "No data" (client_python: initialise known label values).
# Only what OCPP 1.6 and the transport can produce, never the full cross product.
#: Actions of OCPP 1.6 §4 a wallbox sends (the Core profile and Firmware Management).
CHARGER_ACTIONS: tuple[str, ...] = (
    "Authorize",
    "BootNotification",
    "DataTransfer",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
)
#: Actions of OCPP 1.6 §5 a CSMS sends (every feature profile).
CSMS_ACTIONS: tuple[str, ...] = tuple(sorted(PROFILE_OF_ACTION))
#: Codes a wallbox answers a CSMS CALL with (schema codes, SecurityError before an accepted
#: boot, NotSupported for a profile it lacks, InternalError); NotImplemented only for
#: actions OCPP 1.6 does not have, which are "(other)".
CHARGER_CODES: tuple[str, ...] = (
    *sorted(SCHEMA_CODES),
    ErrorCode.NOT_SUPPORTED,
    ErrorCode.SECURITY_ERROR,
    ErrorCode.INTERNAL_ERROR,
)
#: Connect failures the transport reports by name (emulator.transport.driver).
KNOWN_CONNECT_FAILURES: tuple[str, ...] = (
    "refused",
    "timeout",
    "closed_during_handshake",
    "handshake",
    "subprotocol",
    "http_401",
    "http_403",
    "http_404",
    "http_500",
    "http_502",
    "http_503",
    "os_error",
    "tls_error",
    "tls_unknown_ca",
    "tls_verify_failed",
    "tls_server_cert_expired",
    "tls_client_cert_missing",
    "tls_client_cert_required",
    "tls_client_cert_rejected",
    "tls_client_cert_expired",
)
#: Disconnect reasons of a healthy run and the usual failures.
KNOWN_DISCONNECTS: tuple[str, ...] = (
    "closed 1000",
    "closed 1001",
    "closed 1006",
    "closed 1011",
    "ping_timeout",
    "reboot",
    "stopped",
)


def new_registry(*, process: bool = True) -> CollectorRegistry:
    """A fresh registry, with the process/platform/GC collectors when ``process``.

    ``process_*`` (CPU seconds, resident memory, open and maximum file descriptors)
    are what the generator-health dashboard compares with the fleet size.
    """
    registry = CollectorRegistry()
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def disable_created_series() -> None:
    """Drop the ``*_created`` series prometheus_client adds to every counter and histogram.

    They double the series count and no dashboard reads them.  This is process-wide
    prometheus_client state, so programs call it (``ocpp-fleet run`` does), never an import.
    """
    disable_created_metrics()


def _action(action: str) -> str:
    return action if action in ACTIONS else OTHER


def _code(code: str | None) -> str:
    if code is None:
        return OTHER
    return code if code in ERROR_CODES or code in LENIENT_READINGS else OTHER


class _Reasons:
    """Keeps a free-text reason label bounded: the first MAX_REASONS distinct short ones."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, reason: str) -> str:
        if reason in self.seen:
            return reason
        if len(self.seen) >= MAX_REASONS or not (0 < len(reason) <= 40 and reason.isprintable()):
            return OTHER
        self.seen.add(reason)
        return reason


class PrometheusReporter:
    """The per-message half: implements :class:`emulator.metrics.Reporter`.

    Label children are bound on first use and kept in dicts keyed by the raw
    arguments, so a call costs one dict lookup plus the metric update; the label
    normalisation runs once per distinct argument tuple.
    """

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.call_duration = Histogram(
            "ocpp_fleet_call_duration_seconds",
            "Round trip of charger-initiated CALLs that got an answer, from sending the CALL "
            "to receiving its CALLRESULT or CALLERROR (outcome: ok, callerror, schema).",
            ["action", "outcome"],
            registry=registry,
            buckets=CALL_BUCKETS,
        )
        self.calls_unanswered = Counter(
            "ocpp_fleet_calls_unanswered",
            "Charger-initiated CALLs that got no answer: reason=timeout (the response "
            "timeout ran out) or reason=disconnected (the connection closed first).",
            ["action", "reason"],
            registry=registry,
        )
        self.csms_call_handling = Histogram(
            "ocpp_fleet_csms_call_handling_seconds",
            "Time the emulated charger took to answer a CSMS-initiated CALL (validation, "
            "handling, sending the CALLRESULT or CALLERROR).",
            ["action"],
            registry=registry,
            buckets=HANDLING_BUCKETS,
        )
        self.callerrors = Counter(
            "ocpp_fleet_callerrors",
            "CALLERRORs by the action of the CALL they answer and their error code; "
            "sender=csms: the CSMS refused a charger's CALL, sender=charger: a charger "
            "refused a CSMS CALL.",
            ["sender", "action", "code"],
            registry=registry,
        )
        self.schema_violations = Counter(
            "ocpp_fleet_schema_violations",
            "CSMS messages that broke OCPP 1.6: message=call (a CSMS CALL payload failed "
            "its schema), callresult (a CALLRESULT failed its schema), frame (not a valid "
            "OCPP-J frame); those a wallbox used anyway (a date-time without an offset, read "
            "as UTC) included; code=AuthorizationKeyNotHex: a ChangeConfiguration "
            "AuthorizationKey in plain text, not hexadecimal (Security Whitepaper §7.2).",
            ["message", "action", "code"],
            registry=registry,
        )
        self.id_tag_statuses = Counter(
            "ocpp_fleet_id_tag_statuses",
            "idTagInfo.status in the CSMS's answers to Authorize, StartTransaction and "
            "StopTransaction (Accepted, Blocked, Expired, Invalid, ConcurrentTx).",
            ["action", "status"],
            registry=registry,
        )
        self.forbidden_transitions = Counter(
            "ocpp_fleet_forbidden_transitions",
            "Connector status changes the wallboxes sent although OCPP 1.6 §4.9 does not list "
            "them (from -> to; outside --strict, which raises instead).",
            ["from", "to"],
            registry=registry,
        )
        self.unexpected_answers = Counter(
            "ocpp_fleet_unexpected_answers",
            "CALLRESULTs or CALLERRORs from the CSMS whose unique id matches no CALL in flight.",
            ["message"],
            registry=registry,
        )
        self.connect_duration = Histogram(
            "ocpp_fleet_connect_duration_seconds",
            "Time to open a websocket: TCP connect, TLS handshake and HTTP upgrade.",
            registry=registry,
            buckets=CALL_BUCKETS,
        )
        self.connect_failures = Counter(
            "ocpp_fleet_connect_failures",
            "Failed websocket connection attempts by reason (refused, timeout, http_401, "
            "subprotocol, os_error_N, ...).",
            ["reason"],
            registry=registry,
        )
        self.disconnects = Counter(
            "ocpp_fleet_disconnects",
            "Open websocket connections that closed, by reason (closed N with N the close "
            "code, reboot, stopped).",
            ["reason"],
            registry=registry,
        )
        self.reconnects = Counter(
            "ocpp_fleet_reconnects",
            "Connections opened after a disconnect (the first connect of a wallbox is not one).",
            registry=registry,
        )
        self.pong_rtt = Histogram(
            "ocpp_fleet_pong_rtt_seconds",
            "Websocket ping to pong round trip (WebSocketPingInterval pings); the count is "
            "the number of pings answered.",
            registry=registry,
            buckets=CALL_BUCKETS,
        )
        self.messages = Counter(
            "ocpp_fleet_messages",
            "OCPP-J frames written to (direction=sent) or read from (direction=received) "
            "websockets.",
            ["direction"],
            registry=registry,
        )
        self.send_lateness = Histogram(
            "ocpp_fleet_send_lateness_seconds",
            "How late scheduled wallbox deadlines (heartbeats, meter samples, pings, session "
            "steps) fired; large values mean the generator, not the CSMS, is the bottleneck.",
            registry=registry,
            buckets=LAG_BUCKETS,
        )
        self.event_loop_lag = Histogram(
            "ocpp_fleet_loop_lag_seconds",
            "How late a periodic asyncio.sleep on the fleet's event loop woke up "
            "(LoopLagMonitor samples).",
            registry=registry,
            buckets=LAG_BUCKETS,
        )
        # Hot-path caches: raw arguments -> pre-bound children.
        self._round_trips: dict[
            tuple[str, Outcome], tuple[_Observer | None, _Incrementer | None]
        ] = {}
        self._csms_calls: dict[
            tuple[str, str | None],
            tuple[_Observer | None, _Incrementer | None, _Incrementer | None],
        ] = {}
        self._connect_failures: dict[str, _Incrementer] = {}
        self._disconnects: dict[str, _Incrementer] = {}
        self._failure_reasons = _Reasons()
        self._disconnect_reasons = _Reasons()
        self._sent = self.messages.labels("sent")
        self._received = self.messages.labels("received")
        self._connect_observe = self.connect_duration.observe
        self._pong_observe = self.pong_rtt.observe
        self._lateness_observe = self.send_lateness.observe
        self._lag_observe = self.event_loop_lag.observe
        self._reconnect = self.reconnects.inc
        self._awaiting_reconnect = 0
        self._initialise_known_series()

    def _initialise_known_series(self) -> None:
        """Create the children of label values known in advance, at 0: 482 counter series
        and 19 handling histograms (~770 samples a scrape), whatever the fleet size."""
        for action in CHARGER_ACTIONS:
            for reason in UNANSWERED:
                self.calls_unanswered.labels(action, reason)
            for code in sorted(ERROR_CODES):
                self.callerrors.labels("csms", action, code)
            for code in sorted(SCHEMA_CODES):
                self.schema_violations.labels("callresult", action, code)
        for action in CSMS_ACTIONS:
            self.csms_call_handling.labels(action)
            for code in CHARGER_CODES:
                self.callerrors.labels("charger", action, code)
            for code in sorted(SCHEMA_CODES):
                self.schema_violations.labels("call", action, code)
        for frame in sorted(_FRAME_ACTIONS):
            for code in (ErrorCode.FORMATION_VIOLATION, ErrorCode.PROTOCOL_ERROR):
                self.schema_violations.labels("frame", frame, code)
        for action in ID_TAG_ACTIONS:
            for status in ID_TAG_STATUSES:
                self.id_tag_statuses.labels(action, status)
        for old, new in FORBIDDEN:
            self.forbidden_transitions.labels(old, new)
        for reason in KNOWN_CONNECT_FAILURES:
            self._connect_failures[reason] = self.connect_failures.labels(reason)
        for reason in KNOWN_DISCONNECTS:
            self._disconnects[reason] = self.disconnects.labels(reason)

    # -- Reporter ----------------------------------------------------------------------

    def round_trip(self, action: str, seconds: float, outcome: Outcome) -> None:
        bound = self._round_trips.get((action, outcome))
        if bound is None:
            bound = self._bind_round_trip(action, outcome)
        histogram, counter = bound
        if histogram is not None:
            histogram.observe(seconds)
        if counter is not None:
            counter.inc()

    def csms_call(self, action: str, seconds: float, error: str | None) -> None:
        bound = self._csms_calls.get((action, error))
        if bound is None:
            bound = self._bind_csms_call(action, error)
        handling, callerror, violation = bound
        if handling is not None:
            handling.observe(seconds)
        if callerror is not None:
            callerror.inc()
        if violation is not None:
            violation.inc()

    def connected(self, seconds: float) -> None:
        self._connect_observe(seconds)
        if self._awaiting_reconnect:
            self._awaiting_reconnect -= 1
            self._reconnect()

    # -- emulator.metrics.conformance.ConformanceListener -------------------------------

    def schema_violation(self, message: str, action: str, code: str, *, accepted: bool) -> None:
        """A CSMS message broke its schema.  A refused one is already counted by
        :meth:`round_trip` or :meth:`csms_call` (its outcome or CALLERROR); one used anyway
        (lenient) is counted here, and so is a deviation with a code of its own (a
        plain-text AuthorizationKey), refused with an answer rather than a CALLERROR."""
        if accepted or code in LENIENT_READINGS:
            self.schema_violations.labels(message, _action(action), _code(code)).inc()

    def id_tag_status(self, action: str, status: str) -> None:
        label = status if status in ID_TAG_STATUSES else OTHER
        self.id_tag_statuses.labels(_action(action), label).inc()

    def forbidden_transition(self, old: str, new: str) -> None:
        self.forbidden_transitions.labels(old, new).inc()  # 10 x 9 values at most

    def connect_failed(self, reason: str) -> None:
        child = self._connect_failures.get(reason)
        if child is None:
            child = self.connect_failures.labels(self._failure_reasons(reason))
            if len(self._connect_failures) < _MAX_CACHED:
                self._connect_failures[reason] = child
        child.inc()

    def disconnected(self, reason: str) -> None:
        child = self._disconnects.get(reason)
        if child is None:
            child = self.disconnects.labels(self._disconnect_reasons(reason))
            if len(self._disconnects) < _MAX_CACHED:
                self._disconnects[reason] = child
        child.inc()
        # Like RunStats: a connect that follows an unmatched disconnect is a reconnect.
        if reason != "stopped":
            self._awaiting_reconnect += 1

    def ping_rtt(self, seconds: float) -> None:
        self._pong_observe(seconds)

    def message_sent(self) -> None:
        self._sent.inc()

    def message_received(self) -> None:
        self._received.inc()

    def count_messages(self, sent: int, received: int) -> None:
        """Many frames at once: a process that counts them elsewhere (the Locust bridge)
        hands over what was sent and received since its last call."""
        if sent > 0:
            self._sent.inc(sent)
        if received > 0:
            self._received.inc(received)

    def lateness(self, seconds: float) -> None:
        if seconds >= 0.0:  # a deadline served early is not late (and NaN is nothing)
            self._lateness_observe(seconds)

    # -- not part of Reporter ----------------------------------------------------------

    def loop_lag(self, seconds: float) -> None:
        """One :class:`~emulator.metrics.looplag.LoopLagMonitor` sample."""
        self._lag_observe(seconds)

    # -- binding (once per distinct argument tuple) --------------------------------------

    def _bind_round_trip(
        self, action: str, outcome: Outcome
    ) -> tuple[_Observer | None, _Incrementer | None]:
        label = _action(action)
        kind = outcome.kind
        histogram: _Observer | None = None
        counter: _Incrementer | None = None
        if outcome.answered:
            histogram = self.call_duration.labels(label, kind.value)
        else:
            counter = self.calls_unanswered.labels(label, kind.value)
        if kind is OutcomeKind.CALLERROR:
            counter = self.callerrors.labels("csms", label, _code(outcome.code))
        elif kind is OutcomeKind.SCHEMA:
            counter = self.schema_violations.labels("callresult", label, _code(outcome.code))
        bound = (histogram, counter)
        if len(self._round_trips) < _MAX_CACHED:
            self._round_trips[action, outcome] = bound
        return bound

    def _bind_csms_call(
        self, action: str, error: str | None
    ) -> tuple[_Observer | None, _Incrementer | None, _Incrementer | None]:
        label = _action(action)
        handling: _Observer | None = None
        callerror: _Incrementer | None = None
        violation: _Incrementer | None = None
        if label in _UNEXPECTED:
            violation = self.unexpected_answers.labels(_UNEXPECTED[label])
        elif label in _FRAME_ACTIONS:
            # Not a CALL we could handle: no handling time.  A malformed CALL with a
            # readable id was answered with a CALLERROR; garbage could not be.
            violation = self.schema_violations.labels("frame", label, _code(error))
            if label == MALFORMED:
                callerror = self.callerrors.labels("charger", label, _code(error))
        else:
            handling = self.csms_call_handling.labels(label)
            if error is not None:
                code = _code(error)
                callerror = self.callerrors.labels("charger", label, code)
                if code in SCHEMA_CODES and not (
                    action == "GetConfiguration"
                    and code == ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION
                ):
                    violation = self.schema_violations.labels("call", label, code)
        bound = (handling, callerror, violation)
        if len(self._csms_calls) < _MAX_CACHED:
            self._csms_calls[action, error] = bound
        return bound


if TYPE_CHECKING:
    from typing import Protocol

    class _Observer(Protocol):
        def observe(self, amount: float) -> None: ...

    class _Incrementer(Protocol):
        def inc(self, amount: float = 1) -> None: ...


# -- scrape-time fleet gauges ---------------------------------------------------------


@dataclass(slots=True)
class _Totals:
    # The fleets' counts; transactions_started/stopped are counters here (what every
    # wallbox counted when last read, those that left included).
    counts: FleetCounts = field(
        default_factory=lambda: FleetCounts(statuses=dict.fromkeys(STATUSES, 0))
    )
    energy_wh: float = 0.0
    power_w: float = 0.0
    scenarios: set[str] = field(default_factory=set)

    def add(self, reading: FleetReading) -> None:
        self.counts.add(reading.counts)
        self.energy_wh += reading.energy_wh
        self.power_w += reading.power_w
        self.scenarios.add(reading.scenario)


@dataclass(slots=True)
class _Watched:
    """A fleet the collector watches: its reader and the loop that runs it (None: no
    loop runs it yet, or the caller runs it; read in place)."""

    fleet: FleetSource
    reader: FleetReader
    loop: asyncio.AbstractEventLoop | None


# How long a scrape waits for a fleet's loop to make a fresh reading before it serves the
# last one: a loop that lags more than this is overloaded, and the scrape must not hang.
READING_WAIT = 1.0
_POLL = 0.002


class FleetCollector(Collector):
    """Fleet-wide gauges and counters, computed when Prometheus scrapes.

    Watches any number of fleets (:meth:`add`, :meth:`remove`) and sums them; wallboxes
    may join and leave a fleet at any time (a Locust worker adds one per user).  A scrape
    runs in the HTTP server's thread (a greenlet in a Locust process) and never touches a
    wallbox: it asks each fleet's loop for a reading (``loop.call_soon_threadsafe`` of
    :meth:`FleetReader.publish`) and reads the immutable
    :class:`~emulator.metrics.fleetview.FleetReading` the loop publishes, waiting at most
    :data:`READING_WAIT` (polling, so that it never blocks on a primitive the loop thread
    would have to touch); a loop that does not answer in time serves its last reading.
    On request rather than on a period: a reading walks every wallbox (tens of
    milliseconds for 10,000), which a scrape every 15 s pays once while a 1-s period
    would pay fifteen times over, whether anyone scrapes or not.  The counters
    (transactions, energy) stay monotonic when wallboxes or fleets go away: what they
    counted is kept.
    """

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._watched: list[_Watched] = []
        self._retired_started = 0
        self._retired_stopped = 0
        self._retired_energy_wh = 0.0
        self._high_energy_wh = 0.0  # monotonic clamp against float noise
        self._high_started = 0
        self._high_stopped = 0
        if registry is not None:
            registry.register(self)

    def add(self, fleet: FleetSource, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start watching ``fleet``, run by ``loop`` (default: the loop running the caller,
        if any); its energy counts from its first reading, made now."""
        if loop is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
        with self._lock:
            if any(w.fleet is fleet for w in self._watched):
                return
            watched = _Watched(fleet, FleetReader(fleet), loop)
            self._watched.append(watched)
            _reading(watched)

    def remove(self, fleet: FleetSource) -> None:
        """Stop watching ``fleet``; its transactions and energy stay in the counters."""
        with self._lock:
            for watched in [w for w in self._watched if w.fleet is fleet]:
                last = _reading(watched)  # its last counts, as of now
                if last is not None:
                    self._retired_started += last.counts.transactions_started
                    self._retired_stopped += last.counts.transactions_stopped
                    self._retired_energy_wh += last.energy_wh
            self._watched = [w for w in self._watched if w.fleet is not fleet]

    def describe(self) -> Iterable[Metric]:
        return list(self._families(_Totals()))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            totals = _Totals()
            for watched in self._watched:
                reading = _reading(watched)
                if reading is not None:
                    totals.add(reading)
            counts = totals.counts
            counts.transactions_started += self._retired_started
            counts.transactions_stopped += self._retired_stopped
            totals.energy_wh += self._retired_energy_wh
            # Counters never go down, whatever float rounding says.
            self._high_energy_wh = totals.energy_wh = max(self._high_energy_wh, totals.energy_wh)
            self._high_started = counts.transactions_started = max(
                self._high_started, counts.transactions_started
            )
            self._high_stopped = counts.transactions_stopped = max(
                self._high_stopped, counts.transactions_stopped
            )
        return list(self._families(totals))

    @staticmethod
    def _families(t: _Totals) -> Iterator[Metric]:
        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, documentation, value=value)

        c = t.counts

        yield gauge(
            "ocpp_fleet_chargers", "Emulated wallboxes in this process (fleet size).", c.chargers
        )
        yield gauge(
            "ocpp_fleet_chargers_connected",
            "Wallboxes with an open websocket to the CSMS.",
            c.connected,
        )
        yield gauge(
            "ocpp_fleet_chargers_booted",
            "Connected wallboxes whose BootNotification was Accepted.",
            c.booted,
        )
        connectors = GaugeMetricFamily(
            "ocpp_fleet_connectors",
            "Connectors by the status last sent in a StatusNotification (OCPP 1.6 §7.7).",
            labels=["status"],
        )
        for status in STATUSES:
            connectors.add_metric([status], c.statuses.get(status, 0))
        yield connectors
        yield gauge(
            "ocpp_fleet_transactions_running",
            "Transactions in progress (started, not yet stopped).",
            c.transactions_running,
        )
        yield CounterMetricFamily(
            "ocpp_fleet_transactions_started",
            "Transactions started by the wallboxes (StartTransaction queued).",
            value=c.transactions_started,
        )
        yield CounterMetricFamily(
            "ocpp_fleet_transactions_stopped",
            "Transactions stopped by the wallboxes (StopTransaction queued).",
            value=c.transactions_stopped,
        )
        yield CounterMetricFamily(
            "ocpp_fleet_energy_delivered_wh",
            "Energy the emulated meters delivered to EVs since the fleet started, in Wh "
            "(the unit of OCPP meter values).",
            value=t.energy_wh,
        )
        yield gauge(
            "ocpp_fleet_power_watts",
            "Active power the emulated EVs draw right now.",
            t.power_w,
        )
        yield gauge(
            "ocpp_fleet_outbox_messages",
            "Charger-initiated messages queued in the wallboxes' outboxes (offline queue "
            "depth, including the CALL in flight).",
            c.queue_depth,
        )
        yield gauge(
            "ocpp_fleet_transaction_backlog_messages",
            "Transaction messages (Start/StopTransaction, transaction MeterValues) not yet "
            "delivered to the CSMS.",
            c.transaction_backlog,
        )
        info = GaugeMetricFamily(
            "ocpp_fleet_scenario_info",
            "Always 1: the scenario this process runs and the ocpp-fleet version.",
            labels=["scenario", "version"],
        )
        for scenario in sorted(t.scenarios):
            info.add_metric([scenario, _version()], 1)
        yield info


def _reading(watched: _Watched) -> FleetReading | None:
    """A fresh reading of a watched fleet, made on its loop; its last one if the loop
    does not answer within READING_WAIT; None if it was never read."""
    reader, loop = watched.reader, watched.loop
    if loop is None or not loop.is_running() or _running_loop() is loop:
        reader.publish()  # nothing else changes the fleet meanwhile: read it here
        return reader.latest
    before = reader.latest
    try:
        loop.call_soon_threadsafe(reader.publish)
    except RuntimeError:  # the loop closed meanwhile
        return before
    deadline = time.monotonic() + READING_WAIT
    while reader.latest is before and time.monotonic() < deadline:
        time.sleep(_POLL)  # a greenlet's sleep in a Locust process (patched)
    return reader.latest


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@cache
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ocpp-fleet")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


# -- serving -------------------------------------------------------------------------


class MetricsServer:
    """prometheus_client's HTTP server in its daemon thread; :meth:`close` stops it."""

    def __init__(self, *, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    def close(self, timeout: float = 5.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)


def serve_metrics(*, registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` (port 0: any free port).

    Raises OSError when the port cannot be bound.
    """
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server=server, thread=thread)


class MetricsEndpoint:
    """What a fleet process needs to be scraped, in one object.

    A fresh registry with the process collectors, a :class:`PrometheusReporter` (add it
    to the fleet's reporters), a :class:`FleetCollector` (:meth:`FleetCollector.add`
    each fleet) and the HTTP server on ``host:port``.  ``ocpp-fleet run --metrics-port``
    uses it, and so can any other fleet process (a Locust worker: its own port each)::

        metrics = MetricsEndpoint(host="0.0.0.0", port=9100)
        fleet = Fleet(..., reporter=MultiReporter(reporters=(stats, metrics.reporter)))
        metrics.collector.add(fleet)
        async with metrics.loop_lag_monitor():
            await fleet.run(duration=600)
        metrics.close()

    Raises OSError when the port cannot be bound.
    """

    def __init__(self, *, host: str, port: int, process: bool = True) -> None:
        self.registry = new_registry(process=process)
        self.reporter = PrometheusReporter(registry=self.registry)
        self.collector = FleetCollector(registry=self.registry)
        self.server = serve_metrics(registry=self.registry, host=host, port=port)

    @property
    def url(self) -> str:
        return self.server.url

    def loop_lag_monitor(self, interval: float = 0.25) -> LoopLagMonitor:
        """A monitor feeding ``ocpp_fleet_loop_lag_seconds``; use with ``async with``."""
        return LoopLagMonitor(record=self.reporter.loop_lag, interval=interval)

    def close(self) -> None:
        self.server.close()
