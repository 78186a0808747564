"""The loop bridge: one uvloop event loop in a native thread beside gevent, per process.

``import locust`` monkey-patches the process for gevent, and asyncio cannot run on
gevent's hub (locust issues 1251, 2383).  So each Locust process runs the fleet engine
(:class:`~emulator.fleet.runner.Fleet`) in its own event loop, in an OS thread started
with the *original* ``_thread.start_new_thread`` (``gevent.monkey.get_original``): the
patched ``threading.Thread`` would start a greenlet, not a thread.  uvloop does its I/O
in libuv, untouched by the patching.

The two sides share nothing but three thread-safe channels:

* gevent → loop: ``loop.call_soon_threadsafe`` (add or remove a wallbox, stop);
* loop → gevent: a ``collections.deque`` (``append``/``popleft`` are atomic under the
  GIL) of small immutable messages, one type per kind: the measurements of
  :mod:`.requests` (round trips, CSMS calls, connects, pings) and the bridge's own
  (:class:`Released`, :class:`HealthChanged`, :class:`Serving`, :class:`EngineFailed`;
  with Prometheus on also :class:`Disconnected`, :class:`Late`, :class:`LoopLag`).  A
  greenlet drains it every ``drain_interval`` and dispatches each message by its type
  through two tables: what the bridge does with it (fire Locust's ``events.request``,
  only the gevent side may; release a slot; note a verdict) and what Prometheus gets;
* a :class:`FleetSnapshot` of the fleet's counts, a frozen value made on the loop every
  ``snapshot_interval`` and published by swapping one reference (never mutated), read by
  the web UI and the worker reports (:attr:`FleetBridge.published`, and its wire form
  :attr:`FleetBridge.snapshot`, the dict a worker sends to the master).  A fleet
  configured ``detailed`` (while SLOs are judged, see :mod:`.steps`) adds the CALLs in
  flight to it, and publishes copies of its generator-health histograms beside it
  (:attr:`FleetBridge.generator`, also replaced, never mutated).

Nothing crosses through gevent's thread pool, and the loop thread never blocks on a
gevent primitive (no ``concurrent.futures``, whose locks are patched): the gevent side
waits for the loop by polling with ``gevent.sleep``.

With Prometheus metrics on (``--metrics-port``), the same drain greenlet also feeds a
:class:`~emulator.metrics.prometheus.PrometheusReporter`: prometheus_client's locks are
gevent's in a patched process, so the loop thread must never touch them.  The loop then
queues two more kinds of message (a disconnect's reason, each deadline's lateness, see
:class:`MetricsBridgeReporter`) and the loop-lag samples; frame counts stay plain
counters on the loop side, whose increase the drain hands over.  The scrape (a greenlet
of prometheus_client's server) reads the fleet through a
:class:`~emulator.metrics.prometheus.FleetCollector`, which asks the fleet's loop for a
reading and never touches a wallbox itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import gevent
import gevent.monkey
import numpy as np

from emulator.core.outcome import Outcome
from emulator.fleet.health import GeneratorHealth, HealthSnapshot
from emulator.fleet.model_mix import ModelSequence
from emulator.fleet.runner import Fleet
from emulator.fleet.stopping import STOP_CAP, STOP_STALL, StopProgress
from emulator.loadtest.partition import (
    SlotAllocator,
    charger_number,
    worker_range,
)
from emulator.loadtest.requests import (
    Connected,
    ConnectFailed,
    CsmsCallDone,
    Measurement,
    OcppFailure,
    PingAnswered,
    RoundTripDone,
    report,
    to_locust,
)
from emulator.metrics.fleetview import FleetCounts, tally
from emulator.metrics.looplag import LoopLagMonitor
from emulator.metrics.stats import Histogram
from emulator.run.setup import RunSetup
from emulator.transport.driver import WallboxDriver

if TYPE_CHECKING:
    from emulator.metrics.prometheus import FleetCollector, PrometheusReporter

__all__ = [
    "BridgeReporter",
    "Disconnected",
    "EngineFailed",
    "FleetBridge",
    "FleetSnapshot",
    "GeneratorCopies",
    "HealthChanged",
    "Late",
    "LoopLag",
    "LoopThread",
    "Message",
    "MetricsBridgeReporter",
    "Released",
    "Serving",
]

log = logging.getLogger(__name__)

# Loop-lag samples for ocpp_fleet_loop_lag_seconds, as often as `ocpp-fleet run` takes them.
LOOP_LAG_INTERVAL = 0.25

GeneratorCopies = tuple[int, Histogram, Histogram]
"""(fleet generation, send lateness, loop lag): copies of a detailed fleet's cumulative
generator-health histograms (seconds), made on the loop.  The generation changes with each
test's fleet, whose histograms start empty."""


# -- the loop's messages to the gevent side (besides the measurements of .requests) ----


class Released(NamedTuple):
    """A wallbox left the fleet (or could not join it): its user's slot is free."""

    number: int


class HealthChanged(NamedTuple):
    """The generator's overloaded verdict flipped."""

    health: HealthSnapshot


class Serving(NamedTuple):
    """The fleet engine started (True) or stopped (False) serving."""

    serving: bool


class EngineFailed(NamedTuple):
    """Something failed on the loop; ``message`` is logged and shown on the Fleet tab."""

    message: str


class Disconnected(NamedTuple):
    """An open connection closed (Prometheus only)."""

    reason: str


class Late(NamedTuple):
    """A wallbox deadline fired ``seconds`` late (Prometheus only)."""

    seconds: float


class LoopLag(NamedTuple):
    """A loop-lag sample (Prometheus only)."""

    seconds: float


Message = (
    Measurement | Released | HealthChanged | Serving | EngineFailed | Disconnected | Late | LoopLag
)
"""What the loop queues for the gevent side."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSnapshot:
    """The fleet's counts as the loop last published them (immutable).

    Counts of the wallboxes now, plus what those that left counted (transactions,
    undelivered transaction messages); the reporter's connection and frame counters; the
    generator's health; with a ``detailed`` fleet, the CALLs in flight."""

    chargers: int = 0
    chargers_peak: int = 0
    connected: int = 0
    booted: int = 0
    charging: int = 0
    transactions_running: int = 0
    transactions_started: int = 0
    transactions_stopped: int = 0
    queue_depth: int = 0
    transaction_backlog: int = 0
    statuses: tuple[tuple[str, int], ...] = ()  # connectors by status, in status order
    connects: int = 0
    reconnects: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    health: HealthSnapshot | None = None
    in_flight: int | None = None  # only from a detailed fleet

    def to_wire(self) -> dict[str, Any]:
        """The JSON form a worker sends to the master (and :mod:`.view` sums): one key per
        field, ``statuses`` a dict, ``health`` :meth:`HealthSnapshot.as_dict`,
        ``in_flight`` only from a detailed fleet."""
        wire: dict[str, Any] = {
            "chargers": self.chargers,
            "chargers_peak": self.chargers_peak,
            "connected": self.connected,
            "booted": self.booted,
            "charging": self.charging,
            "transactions_running": self.transactions_running,
            "transactions_started": self.transactions_started,
            "transactions_stopped": self.transactions_stopped,
            "queue_depth": self.queue_depth,
            "transaction_backlog": self.transaction_backlog,
            "statuses": dict(self.statuses),
            "connects": self.connects,
            "reconnects": self.reconnects,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "health": {} if self.health is None else self.health.as_dict(),
        }
        if self.in_flight is not None:
            wire["in_flight"] = self.in_flight
        return wire


class BridgeReporter:
    """The Reporter the fleet uses under Locust: loop side, O(1), never blocks.

    Every timed event becomes one message on the deque; counters stay on the loop side
    and reach the gevent side in the snapshots.
    """

    __slots__ = ("_awaiting", "_put", "connects", "disconnects", "received", "reconnects", "sent")

    def __init__(self, put: Callable[[Message], None]) -> None:
        self._put = put
        self.connects = 0
        self.disconnects = 0
        self.reconnects = 0
        self.sent = 0
        self.received = 0
        self._awaiting = 0

    def round_trip(self, action: str, seconds: float, outcome: Outcome) -> None:
        self._put(RoundTripDone(action, seconds, outcome))

    def csms_call(self, action: str, seconds: float, error: str | None) -> None:
        self._put(CsmsCallDone(action, seconds, error))

    def connected(self, seconds: float) -> None:
        self.connects += 1
        if self._awaiting:
            self._awaiting -= 1
            self.reconnects += 1
        self._put(Connected(seconds))

    def connect_failed(self, reason: str) -> None:
        self._put(ConnectFailed(reason))

    def disconnected(self, reason: str) -> None:
        self.disconnects += 1
        if reason != "stopped":
            self._awaiting += 1

    def ping_rtt(self, seconds: float) -> None:
        self._put(PingAnswered(seconds))

    def message_sent(self) -> None:
        self.sent += 1

    def message_received(self) -> None:
        self.received += 1

    def lateness(self, seconds: float) -> None:
        pass  # the fleet's GeneratorHealth judges lateness; snapshots carry its figures


class MetricsBridgeReporter(BridgeReporter):
    """The bridge's reporter when Prometheus metrics are on: also queues what only they
    need, a disconnect's reason and each fired deadline's lateness (one message each).

    Frame counts stay loop-side counters (:attr:`sent`, :attr:`received`): the drain
    hands their increase to Prometheus, so a frame costs no message.
    """

    __slots__ = ()

    def disconnected(self, reason: str) -> None:
        BridgeReporter.disconnected(self, reason)
        self._put(Disconnected(reason))

    def lateness(self, seconds: float) -> None:
        self._put(Late(seconds))


class LoopThread:
    """One event loop (uvloop when installed) running in a native OS thread.

    :meth:`call` hands work over in batches: the calls queue on a deque, and only the
    first of a batch wakes the loop (``call_soon_threadsafe``), whose one callback then
    runs every call queued by then, in order.  Spawning users called once per user and
    each call wrote to the loop's wake-up pipe: ~1,000 wake-ups a second, each a system
    call and a hand-over of the GIL between the two threads.
    """

    def __init__(self, *, name: str = "ocpp-fleet-loop") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread_id: int | None = None
        self._done = False
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._woken = False  # a wake-up is scheduled that will run every queued call

    def start(self, timeout: float = 10.0) -> None:
        start_new_thread = gevent.monkey.get_original("_thread", "start_new_thread")
        start_new_thread(self._main, ())
        _wait_until(lambda: self.loop is not None or self._done, timeout, "the event loop")

    def _main(self) -> None:
        import threading

        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.thread_id = threading.get_native_id()
        self.loop = loop
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            self._done = True

    @property
    def running(self) -> bool:
        return self.loop is not None and not self._done

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop, soon, after the calls made before (from any
        thread; from the gevent side in practice)."""
        if self.loop is None or self._done:
            raise RuntimeError("the fleet's event loop is not running")
        self._calls.append((fn, args))
        if not self._woken:
            self._woken = True
            self.loop.call_soon_threadsafe(self._run_calls)

    def _run_calls(self) -> None:
        """On the loop: every queued call, in order.  The flag is cleared first, so a call
        queued meanwhile either runs here or wakes the loop again (deque operations and
        the flag's reads and writes are atomic under the GIL)."""
        self._woken = False
        calls = self._calls
        while calls:
            fn, args = calls.popleft()
            try:
                fn(*args)
            except Exception as exc:  # as the loop does for a callback of its own
                assert self.loop is not None
                self.loop.call_exception_handler(
                    {"message": f"exception in {fn!r} called on the loop", "exception": exc}
                )

    def run(self, factory: Callable[[], Coroutine[Any, Any, Any]], timeout: float) -> Any:
        """Run ``factory()`` as a task on the loop; wait (gevent-friendly) for its result."""
        box: dict[str, Any] = {}

        async def wrapper() -> None:
            try:
                box["result"] = await factory()
            except BaseException as exc:
                box["error"] = exc

        self.call(lambda: asyncio.ensure_future(wrapper()))
        _wait_until(lambda: box or self._done, timeout, "the event loop task")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (cancelling what still runs on it) and wait for the thread."""
        if self.loop is None or self._done:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        _wait_until(lambda: self._done, timeout, "the event loop to stop")


def _wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:g} s")
        gevent.sleep(0.01)


class _LoopSide:
    """What lives on the loop: the fleet of the current test and its helpers."""

    def __init__(
        self,
        *,
        options: RunSetup,
        put: Callable[[Message], None],
        publish: Callable[[FleetSnapshot], None],
        snapshot_interval: float,
        metrics: bool = False,
        detailed: bool = False,
        generation: int = 0,
        publish_generator: Callable[[GeneratorCopies], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.detailed = detailed
        self.generation = generation
        self.publish_generator = publish_generator
        self.reporter = (MetricsBridgeReporter if metrics else BridgeReporter)(put)
        self.models = ModelSequence(options.scenario)
        self.put = put
        self.publish = publish
        self.snapshot_interval = snapshot_interval
        self.health = GeneratorHealth(on_change=lambda s: put(HealthChanged(s)))
        self.fleet = Fleet(
            scenario=options.scenario,
            csms_url=options.csms_url or "",
            chargers=0,
            seed=options.seed,
            reporter=self.reporter,
            source_addresses=options.source_addresses,
            health=self.health,
            tune_gc=True,  # a Locust process exists to run this fleet
        )
        self.fleet.on_removed = self._removed
        # Wallboxes leave the fleet when their users stop: what they counted when they
        # left (their transactions, the transaction messages they never delivered) stays.
        self.retired = FleetCounts()
        self.peak = 0
        self.drop_rng = np.random.default_rng(options.seed)

    async def serve(self) -> None:
        helpers = [asyncio.ensure_future(self._snapshots())]
        if self.metrics:
            put = self.put
            monitor = LoopLagMonitor(
                record=lambda lag: put(LoopLag(lag)), interval=LOOP_LAG_INTERVAL
            )
            helpers.append(asyncio.ensure_future(monitor.run()))
        self.put(Serving(True))
        try:
            await self.fleet.serve()
        except Exception as exc:  # reported on the gevent side, never lost
            self.put(EngineFailed(f"fleet engine failed: {exc!r}"))
            log.exception("fleet engine failed")
        finally:
            for helper in helpers:
                helper.cancel()
            self.publish(self.snapshot())
            self.put(Serving(False))

    def add(self, number: int, slot: int) -> None:
        try:
            self.fleet.add_wallbox(number, self.models.model_at(slot))
        except Exception as exc:
            self.put(EngineFailed(f"cannot add charger {number}: {exc}"))
            self.put(Released(number))

    def _removed(self, number: int, driver: WallboxDriver) -> None:
        tally(driver, self.retired)
        self.put(Released(number))

    def snapshot(self) -> FleetSnapshot:
        counts = self.fleet.counts()
        retired = self.retired
        health: HealthSnapshot = self.health.snapshot()
        r = self.reporter
        self.peak = max(self.peak, counts.chargers)
        if self.detailed and self.publish_generator is not None:
            self.publish_generator(
                (self.generation, self.health.lateness.copy(), self.health.loop_lag.copy())
            )
        return FleetSnapshot(
            chargers=counts.chargers,
            chargers_peak=self.peak,
            connected=counts.connected,
            booted=counts.booted,
            charging=counts.charging,
            transactions_running=counts.transactions_running,
            transactions_started=counts.transactions_started + retired.transactions_started,
            transactions_stopped=counts.transactions_stopped + retired.transactions_stopped,
            queue_depth=counts.queue_depth,
            transaction_backlog=counts.transaction_backlog + retired.transaction_backlog,
            statuses=tuple(counts.statuses.items()),
            connects=r.connects,
            reconnects=r.reconnects,
            messages_sent=r.sent,
            messages_received=r.received,
            health=health,
            in_flight=counts.in_flight if self.detailed else None,
        )

    async def _snapshots(self) -> None:
        while True:
            self.publish(self.snapshot())
            await asyncio.sleep(self.snapshot_interval)


class FleetBridge:
    """The gevent side's handle on the fleet engine (one per Locust process).

    ``fire`` is ``environment.events.request.fire``; ``on_health`` is called on the gevent
    side with each overloaded/recovered verdict.  ``prometheus`` and ``collector`` (both
    or neither) are the process's metrics: the drain feeds the reporter every
    measurement, and the collector watches each test's fleet.  Both are only ever called
    on the gevent side.
    """

    def __init__(
        self,
        *,
        fire: Callable[..., Any],
        on_health: Callable[[HealthSnapshot], None] | None = None,
        drain_interval: float = 0.05,
        snapshot_interval: float = 2.0,
        prometheus: PrometheusReporter | None = None,
        collector: FleetCollector | None = None,
    ) -> None:
        self._fire = fire
        self.prometheus = prometheus
        self.collector = collector
        # The loop-side reporter whose frame counts were last handed to Prometheus.
        self._counted: BridgeReporter | None = None
        self._counted_sent = self._counted_received = 0
        self.on_health = on_health
        self.drain_interval = drain_interval
        self.snapshot_interval = snapshot_interval
        self._queue: deque[Message] = deque()
        self.thread = LoopThread()
        self._drainer: gevent.Greenlet | None = None
        self._side: _LoopSide | None = None
        self._serving = False
        self._slots: SlotAllocator | None = None
        self._first_number = 1
        self._worker_index = 0
        self.options: RunSetup | None = None
        # The loop's last snapshot and its wire form: one reference, swapped atomically.
        self._published: tuple[FleetSnapshot, dict[str, Any]] | None = None
        self.errors: deque[str] = deque(maxlen=20)
        self.generator: GeneratorCopies | None = None  # published by a detailed fleet
        self._generation = 0
        self.health: HealthSnapshot | None = None  # the last verdict that flipped
        self.overloaded_ever = False
        self._failures: dict[str, OcppFailure] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self.thread.running:
            return
        self.thread.start()
        self._drainer = gevent.spawn(self._drain_forever)

    def configure(
        self,
        options: RunSetup,
        *,
        worker_index: int,
        timeout: float = 30.0,
        detailed: bool = False,
    ) -> None:
        """Start a new (empty) fleet with ``options``; stops the previous one first.

        ``detailed``: the snapshots also count the CALLs in flight, and the generator's
        histograms are published (:attr:`generator`), for judging SLOs."""
        self.start()
        self.stop_fleet()
        self._generation += 1
        self.generator = None
        numbers = worker_range(worker_index, options.ids_per_worker)
        self._worker_index = worker_index
        self._first_number = numbers.start
        self._slots = SlotAllocator(limit=options.ids_per_worker)
        self.options = options
        side = self.thread.run(lambda: self._make_side(options, detailed), timeout=timeout)
        self._side = side
        if self.collector is not None:
            self.collector.add(side.fleet, loop=self.thread.loop)  # read on its loop
        self.thread.call(lambda: asyncio.ensure_future(side.serve()))
        _wait_until(lambda: self._serving or not self.thread.running, timeout, "the fleet")

    async def _make_side(self, options: RunSetup, detailed: bool = False) -> _LoopSide:
        return _LoopSide(
            options=options,
            put=self._queue.append,
            publish=self._publish,
            snapshot_interval=self.snapshot_interval,
            metrics=self.prometheus is not None,
            detailed=detailed,
            generation=self._generation,
            publish_generator=self._publish_generator,
        )

    def _publish(self, snapshot: FleetSnapshot) -> None:
        # On the loop: the wire form is made here once, and both replace the previous
        # pair in one assignment (never mutated), so gevent reads a consistent pair.
        self._published = (snapshot, snapshot.to_wire())

    @property
    def published(self) -> FleetSnapshot | None:
        """The fleet's counts as the loop last published them (None before the first)."""
        latest = self._published
        return None if latest is None else latest[0]

    @property
    def snapshot(self) -> dict[str, Any]:
        """:attr:`published` in its wire form (:meth:`FleetSnapshot.to_wire`), what a
        worker sends to the master; ``{}`` before the first.  The same dict until the
        next publication."""
        latest = self._published
        return {} if latest is None else latest[1]

    def _publish_generator(self, copies: GeneratorCopies) -> None:
        self.generator = copies  # replaced, never mutated: safe to read from gevent

    @property
    def configured(self) -> bool:
        return self._side is not None and self._serving

    def add_user(self) -> int:
        """A Locust user starts: reserve the lowest free slot, add its wallbox.  Returns
        the charger number (its id is the prefix + the number)."""
        if self._side is None or self._slots is None:
            raise RuntimeError("the fleet is not configured (did test_start run?)")
        slot = self._slots.acquire()
        number = charger_number(self._worker_index, slot, self._slots.limit)
        self.thread.call(self._side.add, number, slot)
        return number

    def charger_id(self, number: int) -> str:
        if self._side is None:
            return str(number)
        return self._side.fleet.charger_id(number)

    def remove_user(self, number: int) -> None:
        """A Locust user stops: its wallbox stops transactions, flushes, closes (1001)."""
        side = self._side
        if side is not None and self.thread.running:
            self.thread.call(side.fleet.remove_wallbox, number)

    def drop_connections(self, share: float) -> None:
        """A reconnect wave: cut ``share`` of the open connections (see Fleet.drop_connections)."""
        side = self._side
        if side is not None and self.thread.running:
            self.thread.call(lambda: side.fleet.drop_connections(share, side.drop_rng))

    def stop_fleet(self, *, stall: float = STOP_STALL, cap: float = STOP_CAP) -> None:
        """Stop every wallbox cleanly and wait until all have closed, as long as they make
        progress: at most ``stall`` s without a frame or a close, ``cap`` s in all."""
        side = self._side
        if side is None:
            return
        if self.thread.running:
            self.thread.call(side.fleet.stop)
            problem = self._wait_while_stopping(side.reporter, stall=stall, cap=cap)
            if problem:
                log.warning(
                    "gave up waiting for the wallboxes to stop (%s connected 2 s ago): %s",
                    "?" if self.published is None else self.published.connected,
                    problem,
                )
        self.drain()
        if self.collector is not None:
            self.collector.remove(side.fleet)  # what it counted stays counted
        self._side = None
        self._slots = None

    def close(self) -> None:
        self.stop_fleet()
        try:
            self.thread.stop()
        except TimeoutError as exc:  # an overloaded loop: the process exits anyway
            log.error("%s; exiting without it", exc)
        self.drain()
        if self._drainer is not None:
            self._drainer.kill(block=False)
            self._drainer = None

    def _wait_while_stopping(self, reporter: BridgeReporter, *, stall: float, cap: float) -> str:
        """Wait until the fleet stopped serving; '' then, else why it gave up."""

        def mark() -> tuple[int, int, int]:
            return reporter.sent, reporter.received, reporter.disconnects

        progress = StopProgress(stall=stall, cap=cap, mark=mark(), now=time.monotonic())
        while self._serving:  # the drain greenlet reads the loop's last word
            problem = progress.give_up(mark(), time.monotonic())
            if problem:
                return problem
            gevent.sleep(0.05)
        return ""

    # ------------------------------------------------------------------ gevent side

    def _drain_forever(self) -> None:
        while True:
            try:
                self.drain()
            except Exception:  # a listener's bug must not stop the bridge
                log.exception("firing fleet events failed")
            gevent.sleep(self.drain_interval)

    def _failure(self, text: str) -> OcppFailure:
        failure = self._failures.get(text)
        if failure is None:
            failure = self._failures[text] = OcppFailure(text)
        return failure

    def drain(self) -> int:
        """Dispatch every queued message by its type: fire the measurements as Locust
        request events (and hand them to the Prometheus reporter, if any), act on the
        rest; returns how many events were fired."""
        queue, prometheus, fired = self._queue, self.prometheus, 0
        handlers = _HANDLERS
        while queue:
            message = queue.popleft()
            if prometheus is not None:
                feed = _FEEDS.get(type(message))
                if feed is not None:
                    feed(prometheus, message)
            fired += handlers[type(message)](self, message)
        if prometheus is not None:
            self._count_messages(prometheus)
        return fired

    # What the drain does with each message (returns how many events it fired).

    def _fire_request(self, measurement: Measurement) -> int:
        request = to_locust(measurement)
        failure = request.failure
        self._fire(
            request_type=request.request_type,
            name=request.name,
            response_time=request.response_time,
            response_length=0,
            exception=None if failure is None else self._failure(failure),
            context={},
        )
        return 1

    def _on_released(self, message: Released) -> int:
        if self._slots is not None:
            self._slots.release(message.number - self._first_number)
        return 0

    def _on_health(self, message: HealthChanged) -> int:
        self.health = health = message.health
        if health.overloaded:
            self.overloaded_ever = True
        if self.on_health is not None:
            self.on_health(health)
        return 0

    def _on_serving(self, message: Serving) -> int:
        self._serving = message.serving
        return 0

    def _on_error(self, message: EngineFailed) -> int:
        self.errors.append(message.message)
        log.error("%s", message.message)
        return 0

    def _for_prometheus_only(self, message: Message) -> int:
        return 0

    def _count_messages(self, prometheus: PrometheusReporter) -> None:
        """Hand the increase of the loop side's frame counters to Prometheus.

        Reading two ints another thread increments is safe under the GIL; each test's
        fleet has a new reporter, whose counts start at 0.  ``stop_fleet`` drains once
        more before it lets the fleet go, so a fleet's last frames are counted.
        """
        side = self._side
        if side is None:
            return
        reporter = side.reporter
        if reporter is not self._counted:
            self._counted = reporter
            self._counted_sent = self._counted_received = 0
        sent, received = reporter.sent, reporter.received
        prometheus.count_messages(sent - self._counted_sent, received - self._counted_received)
        self._counted_sent, self._counted_received = sent, received


_HANDLERS: Final[dict[type, Callable[[FleetBridge, Any], int]]] = {
    RoundTripDone: FleetBridge._fire_request,
    CsmsCallDone: FleetBridge._fire_request,
    Connected: FleetBridge._fire_request,
    ConnectFailed: FleetBridge._fire_request,
    PingAnswered: FleetBridge._fire_request,
    Released: FleetBridge._on_released,
    HealthChanged: FleetBridge._on_health,
    Serving: FleetBridge._on_serving,
    EngineFailed: FleetBridge._on_error,
    Disconnected: FleetBridge._for_prometheus_only,
    Late: FleetBridge._for_prometheus_only,
    LoopLag: FleetBridge._for_prometheus_only,
}
"""The drain's dispatch: message type -> what the gevent side does with it."""

_FEEDS: Final[dict[type, Callable[[PrometheusReporter, Any], None]]] = {
    RoundTripDone: report,
    CsmsCallDone: report,
    Connected: report,
    ConnectFailed: report,
    PingAnswered: report,
    Disconnected: lambda p, m: p.disconnected(m.reason),
    Late: lambda p, m: p.lateness(m.seconds),
    LoopLag: lambda p, m: p.loop_lag(m.seconds),
}
"""What Prometheus gets of each message: what ``ocpp-fleet run`` reports directly."""
