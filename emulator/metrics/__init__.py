"""What a run measured, behind one small interface the transport layer calls per message.

:class:`Reporter` is that interface (defined by the transport layer that calls it,
emulator.transport.reporter, and re-exported here).  :class:`~emulator.metrics.stats.RunStats` keeps
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
from typing import TYPE_CHECKING

from emulator.core.outcome import Outcome
from emulator.metrics.stats import RunStats
from emulator.transport.reporter import NullReporter, Reporter

__all__ = ["MultiReporter", "NullReporter", "Reporter", "RunStats"]


class MultiReporter:
    """Passes every event to each of ``reporters``, in order."""

    __slots__ = ("reporters",)

    def __init__(self, *, reporters: Iterable[Reporter]) -> None:
        self.reporters: tuple[Reporter, ...] = tuple(reporters)

    def round_trip(self, action: str, seconds: float, outcome: Outcome) -> None:
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
