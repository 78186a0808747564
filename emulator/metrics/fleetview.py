"""One counting of what a fleet's wallboxes show from outside.

Connections, accepted boots, connector statuses, transactions and the messages not yet
delivered are counted by :func:`tally`, one wallbox at a time, and every reader adds up
that same reading:

* ``ocpp-fleet run``'s progress line and its JSON summary, the Locust bridge's snapshots
  (:func:`count`, through ``Fleet.counts``);
* the time-series rows and the capacity search, which poll often and read only the
  cheap part (:func:`gauges`, through ``Fleet.gauges``);
* the Prometheus collector (:class:`~emulator.metrics.prometheus.FleetCollector`),
  through a :class:`FleetReader` that reads the fleet on the fleet's own loop (no read
  races the loop) into an immutable :class:`FleetReading`, and keeps what a wallbox
  counted once it has left;
* the Locust bridge, which keeps the transactions of the wallboxes whose users stopped.

What is counted comes through two small protocols: :class:`Observed` (a wallbox with
its connection: the transport's driver is one) and :class:`FleetSource` (a fleet as the
collector reads it: the fleet engine is one).  Counting never changes a wallbox and is
computed on demand, never per message.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from emulator.core.status import Status

if TYPE_CHECKING:
    from emulator.core.connector import Connector
    from emulator.core.wallbox import Wallbox

__all__ = [
    "NOTHING_SETTLED",
    "FleetCounts",
    "FleetGauges",
    "FleetReader",
    "FleetReading",
    "FleetSource",
    "Observed",
    "Settled",
    "count",
    "gauges",
    "register_wh",
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


# -- one fleet read on its own loop, for the Prometheus collector ----------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetReading:
    """A fleet's wallboxes as :class:`FleetReader` read them on the fleet's loop
    (immutable: published to the scrape's thread by swapping one reference).

    ``transactions_started``/``stopped`` and ``energy_wh`` are counters: they include
    what wallboxes that left the fleet counted; ``energy_wh`` runs from when the reader
    first saw each wallbox (its lifetime register is not "delivered")."""

    scenario: str
    counts: FleetCounts  # never changed once read (statuses by name)
    energy_wh: float = 0.0
    power_w: float = 0.0


@dataclass(slots=True)
class _Seen:
    """What a reader remembers about one wallbox between readings."""

    wallbox: weakref.ref[Wallbox]
    baseline_wh: float  # its energy registers when first seen: energy counts from there
    # Its leading settled transactions (:data:`Settled`): a reading then looks only at
    # the unsettled tail, O(wallboxes) instead of O(every transaction of a soak).
    settled: Settled = NOTHING_SETTLED
    # Its last counts, kept when it leaves the fleet so the counters never go down.
    started: int = 0
    stopped: int = 0
    energy_wh: float = 0.0


class FleetReader:
    """Reads one fleet into a :class:`FleetReading`, on the thread that runs the fleet.

    Only the fleet's own loop changes its wallboxes, so a reading made there never races
    it; :meth:`publish` (scheduled with ``loop.call_soon_threadsafe`` by a reader on
    another thread) replaces :attr:`latest`, which other threads only read.  It keeps
    per wallbox where its energy started and what it counted, so that counters stay
    monotonic as wallboxes come and go.
    """

    __slots__ = (
        "_retired_energy_wh",
        "_retired_started",
        "_retired_stopped",
        "_seen",
        "fleet",
        "latest",
    )

    def __init__(self, fleet: FleetSource) -> None:
        self.fleet = fleet
        self.latest: FleetReading | None = None
        self._seen: dict[int, _Seen] = {}  # id(wallbox) -> what we know of it
        # What the wallboxes that left counted.
        self._retired_started = self._retired_stopped = 0
        self._retired_energy_wh = 0.0

    def publish(self) -> None:
        """Read the fleet and publish the reading (call on the fleet's loop)."""
        self.latest = self.read()

    def read(self) -> FleetReading:
        """The fleet now (call where the fleet's wallboxes do not change meanwhile)."""
        fleet = self.fleet
        now = fleet.clock()
        counts = FleetCounts()
        energy_wh = power_w = 0.0
        present: set[int] = set()
        for driver in fleet.drivers:
            wb = driver.wallbox
            seen = self._entry(wb, now)
            present.add(id(wb))
            power, energy = _power_and_energy(wb, now)
            started, stopped = counts.transactions_started, counts.transactions_stopped
            seen.settled = tally(driver, counts, settled=seen.settled)
            seen.started = counts.transactions_started - started
            seen.stopped = counts.transactions_stopped - stopped
            seen.energy_wh = max(seen.energy_wh, energy - seen.baseline_wh)
            power_w += power
            energy_wh += seen.energy_wh
        for key in [k for k in self._seen if k not in present]:
            self._retire(self._seen.pop(key))
        counts.transactions_started += self._retired_started
        counts.transactions_stopped += self._retired_stopped
        counts.statuses = {str(status): n for status, n in sorted(counts.statuses.items())}
        return FleetReading(
            scenario=fleet.scenario.name,
            counts=counts,
            energy_wh=energy_wh + self._retired_energy_wh,
            power_w=power_w,
        )

    def _entry(self, wallbox: Wallbox, now: float) -> _Seen:
        key = id(wallbox)
        seen = self._seen.get(key)
        if seen is not None and seen.wallbox() is wallbox:
            return seen
        if seen is not None:  # the id of a wallbox that is gone, reused: retire that one
            self._retire(seen)
        baseline = sum(register_wh(c, now) for c in wallbox.connectors[1:])
        seen = self._seen[key] = _Seen(weakref.ref(wallbox), baseline)
        return seen

    def _retire(self, gone: _Seen) -> None:
        self._retired_started += gone.started
        self._retired_stopped += gone.stopped
        self._retired_energy_wh += gone.energy_wh


def _power_and_energy(wallbox: Wallbox, now: float) -> tuple[float, float]:
    """The wallbox's active power now (W) and its energy registers projected to now (Wh)."""
    power_w = energy_wh = 0.0
    for c in wallbox.connectors[1:]:
        ev = c.ev
        power = c.meter.power_w(ev.phases if ev is not None else None)
        power_w += power
        energy_wh += register_wh(c, now, power)
    return power_w, energy_wh


def register_wh(connector: Connector, now: float, power: float | None = None) -> float:
    """A connector's energy register projected to ``now``, without touching the meter.

    The meter integrates lazily (at events and samples); a reading must not advance it
    (the EV's delivered energy is credited in the same step), so it projects the
    current draw over the time since the meter's last update instead.
    """
    meter = connector.meter
    if power is None:
        ev = connector.ev
        power = meter.power_w(ev.phases if ev is not None else None)
    energy: float = meter.energy_wh
    elapsed = now - meter.last_update
    if power and elapsed > 0:
        energy += power * elapsed / 3600.0
    return energy
