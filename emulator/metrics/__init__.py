"""What a run measured, behind one small interface the transport layer calls per message.

:class:`Reporter` is that interface.  :class:`~emulator.metrics.stats.RunStats` keeps
in-process statistics for the end-of-run summary; later reporters (Prometheus, Locust)
implement the same methods (:class:`~emulator.metrics.prometheus.PrometheusReporter`),
and :class:`MultiReporter` feeds several at once.

Conventions for every implementation:

* times are seconds as floats (the transport measures them with ``loop.time()``);
* labels are bounded: an OCPP action name, an outcome, an error code or a short reason,
  never a charger id;
* calls are cheap and never raise into the transport.

What the CSMS answered beyond latencies and errors (schema violations a wallbox accepted
anyway, idTagInfo statuses) goes to the fleet's
:class:`~emulator.metrics.conformance.CsmsConformance`, not through this interface; a
reporter that also implements
:class:`~emulator.metrics.conformance.ConformanceListener` (Prometheus) is told too.

``emulator.metrics.prometheus`` is imported on demand (it is not needed for a run
without ``--metrics-port``), so importing this package stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from emulator.metrics.stats import RunStats

__all__ = ["MultiReporter", "NullReporter", "Reporter", "RunStats"]


@runtime_checkable
class Reporter(Protocol):
    """Receives measurements from the transport layer, once per event."""

    def round_trip(self, action: str, seconds: float, outcome: str) -> None:
        """A charger-initiated CALL ended.

        ``seconds`` runs from sending the CALL to receiving its answer (or to giving
        up); ``outcome`` is ``"ok"``, ``"callerror:<ErrorCode>"``, ``"schema"`` or
        ``"schema:<ErrorCode>"`` when the answer failed validation, ``"timeout"``, or
        ``"disconnected"`` when the connection closed first.  Keep outcomes few and
        fixed: they are metric labels.
        """

    def csms_call(self, action: str, seconds: float, error: str | None) -> None:
        """A CSMS-initiated CALL was answered after ``seconds`` of handling.

        ``error`` is the CALLERROR code we answered with, or None for a CALLRESULT.
        """

    def connected(self, seconds: float) -> None:
        """A websocket connection opened; ``seconds`` for TCP + handshake."""

    def connect_failed(self, reason: str) -> None:
        """A connection attempt failed (``reason``: e.g. "refused", "timeout", "http 404")."""

    def disconnected(self, reason: str) -> None:
        """An open connection closed (``reason``: e.g. "closed 1000", "reboot", "stopped",
        "ping_timeout": a ping unanswered for one WebSocketPingInterval, the connection
        aborted)."""

    def ping_rtt(self, seconds: float) -> None:
        """A websocket ping was answered by a pong after ``seconds``."""

    def message_sent(self) -> None:
        """One OCPP-J frame was written to a socket."""

    def message_received(self) -> None:
        """One OCPP-J frame was read from a socket."""

    def lateness(self, seconds: float) -> None:
        """A scheduled wallbox deadline fired ``seconds`` after it was due.

        The driver reports this when a timer it waited for (heartbeat, meter sample,
        ping, session step) is served: a few milliseconds is normal; more means the
        generator, not the CSMS, is the bottleneck.
        """


class NullReporter:
    """Discards everything (tests, or a run that wants no statistics)."""

    def round_trip(self, action: str, seconds: float, outcome: str) -> None:
        pass

    def csms_call(self, action: str, seconds: float, error: str | None) -> None:
        pass

    def connected(self, seconds: float) -> None:
        pass

    def connect_failed(self, reason: str) -> None:
        pass

    def disconnected(self, reason: str) -> None:
        pass

    def ping_rtt(self, seconds: float) -> None:
        pass

    def message_sent(self) -> None:
        pass

    def message_received(self) -> None:
        pass

    def lateness(self, seconds: float) -> None:
        pass


class MultiReporter:
    """Passes every event to each of ``reporters``, in order."""

    __slots__ = ("reporters",)

    def __init__(self, *, reporters: Iterable[Reporter]) -> None:
        self.reporters: tuple[Reporter, ...] = tuple(reporters)

    def round_trip(self, action: str, seconds: float, outcome: str) -> None:
        for reporter in self.reporters:
            reporter.round_trip(action, seconds, outcome)

    def csms_call(self, action: str, seconds: float, error: str | None) -> None:
        for reporter in self.reporters:
            reporter.csms_call(action, seconds, error)

    def connected(self, seconds: float) -> None:
        for reporter in self.reporters:
            reporter.connected(seconds)

    def connect_failed(self, reason: str) -> None:
        for reporter in self.reporters:
            reporter.connect_failed(reason)

    def disconnected(self, reason: str) -> None:
        for reporter in self.reporters:
            reporter.disconnected(reason)

    def ping_rtt(self, seconds: float) -> None:
        for reporter in self.reporters:
            reporter.ping_rtt(seconds)

    def message_sent(self) -> None:
        for reporter in self.reporters:
            reporter.message_sent()

    def message_received(self) -> None:
        for reporter in self.reporters:
            reporter.message_received()

    def lateness(self, seconds: float) -> None:
        for reporter in self.reporters:
            reporter.lateness(seconds)


if TYPE_CHECKING:  # mypy checks that every implementation fits the Protocol

    def _implementations(
        stats: RunStats, null: NullReporter, multi: MultiReporter
    ) -> tuple[Reporter, ...]:
        return (stats, null, multi)
