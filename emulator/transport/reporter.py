"""What the transport layer reports per message: the :class:`Reporter` interface.

The driver calls it once per event; emulator.metrics implements it (run statistics,
Prometheus, the Locust bridge, several at once) without this floor knowing them.

Conventions for every implementation:

* times are seconds as floats;
* labels are bounded: an OCPP action name, an outcome, an error code or a short reason,
  never a charger id;
* calls are cheap and never raise into the transport.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from emulator.core.outcome import Outcome


@runtime_checkable
class Reporter(Protocol):
    """Receives measurements from the transport layer, once per event."""

    def round_trip(self, action: str, seconds: float, outcome: Outcome) -> None:
        """A charger-initiated CALL ended.

        ``seconds`` runs from sending the CALL to receiving its answer (or to giving
        up); ``outcome`` (:class:`~emulator.core.outcome.Outcome`, interned) is OK, a
        CALLERROR with its code, an answer refused by the schema with the violation's
        code, TIMEOUT, or DISCONNECTED when the connection closed first.  Its kind and
        code are metric labels: map codes to a bounded set.
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

    def round_trip(self, action: str, seconds: float, outcome: Outcome) -> None:
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
