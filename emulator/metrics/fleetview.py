"""One counting of what a fleet's wallboxes show from outside.

Connections, accepted boots, connector statuses, transactions and the messages not yet
delivered are counted by :func:`tally`, one wallbox at a time, and every reader adds up
that same reading:

* ``ocpp-fleet run``'s progress line and its JSON summary, the Locust bridge's snapshots
  (:func:`count`, through ``Fleet.counts``);
* the time-series rows and the capacity search, which poll often and read only the
  cheap part (:func:`gauges`, through ``Fleet.gauges``);
* the Prometheus collector (:class:`~emulator.metrics.prometheus.FleetCollector`), which
  tallies each wallbox on its own, so that a read racing the fleet's event loop can be
  done again, and keeps what a wallbox counted once it has left;
* the Locust bridge, which keeps the transactions of the wallboxes whose users stopped.

What is counted comes through two small protocols: :class:`Observed` (a wallbox with
its connection: the transport's driver is one) and :class:`FleetSource` (a fleet as the
collector reads it: the fleet engine is one).  Counting never changes a wallbox and is
computed on demand, never per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from emulator.core.status import Status

if TYPE_CHECKING:
    from emulator.core.wallbox import Wallbox

__all__ = [
    "NOTHING_SETTLED",
    "FleetCounts",
    "FleetGauges",
    "FleetSource",
    "Observed",
    "Settled",
    "count",
    "gauges",
    "tally",
]

_CHARGING = Status.CHARGING


class Observed(Protocol):
    """A wallbox as the metrics see it: its state and whether its connection is open."""

    @property
    def connected(self) -> bool:
        """A websocket to the CSMS is open."""
        ...

    @property
    def wallbox(self) -> Wallbox: ...


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class FleetSource(Protocol):
    """A fleet as the Prometheus collector reads it: its wallboxes, clock and scenario."""

    @property
    def drivers(self) -> Sequence[Observed]:
        """The wallboxes now (the collector reads a copy: the loop may change the list)."""
        ...

    @property
    def scenario(self) -> _Named:
        """What the fleet runs; its name labels ``ocpp_fleet_scenario_info``."""
        ...

    def clock(self) -> float:
        """The fleet's wall clock (seconds since the epoch), what its meters run on."""
        ...


@dataclass(slots=True)
class FleetCounts:
    """What a set of wallboxes shows, summed (:func:`count`, :func:`tally`)."""

    chargers: int = 0
    started: int = 0  # wallboxes started so far (a fleet's size, unless told otherwise)
    connected: int = 0  # with an open websocket
    booted: int = 0  # connected, and the BootNotification of this power cycle Accepted
    charging: int = 0  # wallboxes whose connector 1 last reported Charging
    transactions_running: int = 0  # connectors with a transaction in progress
    transactions_started: int = 0  # StartTransaction queued, over the wallboxes' lifetime
    transactions_stopped: int = 0  # StopTransaction queued, likewise
    queue_depth: int = 0  # charger-initiated messages queued, the CALL in flight included
    transaction_backlog: int = 0  # transaction messages not yet delivered to the CSMS
    in_flight: int = 0  # CALLs sent and not yet answered
    # Connectors (id >= 1) by the status last reported to the CSMS.
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, other: FleetCounts) -> None:
        """Add ``other``'s counts to these."""
        self.chargers += other.chargers
        self.started += other.started
        self.connected += other.connected
        self.booted += other.booted
        self.charging += other.charging
        self.transactions_running += other.transactions_running
        self.transactions_started += other.transactions_started
        self.transactions_stopped += other.transactions_stopped
        self.queue_depth += other.queue_depth
        self.transaction_backlog += other.transaction_backlog
        self.in_flight += other.in_flight
        statuses = self.statuses
        for status, n in other.statuses.items():
            statuses[status] = statuses.get(status, 0) + n


@dataclass(frozen=True, slots=True)
class FleetGauges:
    """The cheap part of :class:`FleetCounts` (no connector or transaction walk): what a
    time-series row and a capacity step read, often."""

    chargers: int
    connected: int
    charging: int
    queue_depth: int  # messages queued in the wallboxes, not yet sent
    in_flight: int  # CALLs sent and not yet answered


Settled = tuple[int, int]
"""A wallbox's settled transactions: how many leading ones are final (stopped, or lost in
a hard reset) and how many of those stopped.  Handing back what :func:`tally` returned
lets the next tally of that wallbox look only at the transactions after them."""

NOTHING_SETTLED: Settled = (0, 0)


def tally(
    observed: Observed,
    into: FleetCounts,
    *,
    settled: Settled = NOTHING_SETTLED,
    detail: bool = True,
) -> Settled:
    """Add one wallbox to ``into``: the definition of every count of :class:`FleetCounts`.

    Without ``detail`` only the :class:`FleetGauges` figures are counted (chargers,
    connected, charging, queue depth, in flight): no connector or transaction walk.
    ``settled`` is what the previous tally of this wallbox returned (or nothing); the
    return value is the settled prefix now.

    Everything is read before ``into`` changes, so a read that races the wallbox's event
    loop (another thread: RuntimeError or LookupError) leaves ``into`` as it was.
    """
    connected = observed.connected
    wb = observed.wallbox
    connectors = wb.connectors
    outbox = wb.outbox
    charging = connectors[1].reported is _CHARGING
    depth = outbox.depth
    flying = outbox.in_flight is not None
    if not detail:
        into.chargers += 1
        into.started += 1
        if connected:
            into.connected += 1
        if charging:
            into.charging += 1
        into.queue_depth += depth
        if flying:
            into.in_flight += 1
        return settled
    booted = connected and wb.accepted
    reported: list[Status] = []
    running = 0
    for c in connectors[1:]:
        status = c.reported
        if status is not None:
            reported.append(status)
        if c.transaction is not None:
            running += 1
    # Transactions: the leading settled ones were counted before; walk the rest.
    transactions = wb.transactions
    started = len(transactions)
    done, stopped = settled
    if done > started:  # the list was trimmed: count afresh
        done = stopped = 0
    lost = wb.lost_transactions
    while done < started:
        tx = transactions[done]
        if tx.stopped_at is not None:
            stopped += 1
        elif not (lost and any(tx is gone for gone in lost)):
            break
        done += 1
    now_settled = (done, stopped)
    for tx in transactions[done:started]:
        if tx.stopped_at is not None:
            stopped += 1
    backlog = outbox.transaction_backlog
    # All read: add it up.
    into.chargers += 1
    into.started += 1
    if connected:
        into.connected += 1
        if booted:
            into.booted += 1
    if charging:
        into.charging += 1
    into.transactions_running += running
    into.transactions_started += started
    into.transactions_stopped += stopped
    into.queue_depth += depth
    into.transaction_backlog += backlog
    if flying:
        into.in_flight += 1
    statuses = into.statuses
    for status in reported:
        statuses[status] = statuses.get(status, 0) + 1
    return now_settled


def count(observed: Iterable[Observed], *, started: int | None = None) -> FleetCounts:
    """Every count of the wallboxes ``observed`` (statuses by name, in name order).

    ``started``: how many wallboxes were started so far, when not all of them are.
    """
    counts = FleetCounts()
    for one in observed:
        tally(one, counts)
    if started is not None:
        counts.started = started
    counts.statuses = {str(status): n for status, n in sorted(counts.statuses.items())}
    return counts


def gauges(observed: Iterable[Observed]) -> FleetGauges:
    """The cheap counts of the wallboxes ``observed`` (~2 µs a wallbox)."""
    counts = FleetCounts()
    for one in observed:
        tally(one, counts, detail=False)
    return FleetGauges(
        counts.chargers, counts.connected, counts.charging, counts.queue_depth, counts.in_flight
    )
