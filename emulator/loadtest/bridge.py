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
  GIL) of plain tuples, drained every ``drain_interval`` by a greenlet that fires
  Locust's ``events.request`` (only the gevent side may fire events);
* a snapshot dict of fleet counts, replaced (never mutated) by the loop every
  ``snapshot_interval`` and read by the web UI and the worker reports.  A fleet configured
  ``detailed`` (while SLOs are judged, see :mod:`.steps`) adds the CALLs in flight to it,
  and publishes copies of its generator-health histograms beside it
  (:attr:`FleetBridge.generator`, also replaced, never mutated).

Nothing crosses through gevent's thread pool, and the loop thread never blocks on a
gevent primitive (no ``concurrent.futures``, whose locks are patched): the gevent side
waits for the loop by polling with ``gevent.sleep``.

With Prometheus metrics on (``--metrics-port``), the same drain greenlet also feeds a
:class:`~emulator.metrics.prometheus.PrometheusReporter`: prometheus_client's locks are
gevent's in a patched process, so the loop thread must never touch them.  The loop then
queues two more kinds of tuple (a disconnect's reason, each deadline's lateness, see
:class:`MetricsBridgeReporter`) and the loop-lag samples; frame counts stay plain
counters on the loop side, whose increase the drain hands over.  The scrape (a greenlet
of prometheus_client's server) reads the fleet's wallboxes through a
:class:`~emulator.metrics.prometheus.FleetCollector`, which tolerates the loop changing
them meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import gevent
import gevent.monkey
import numpy as np

from emulator.fleet.health import GeneratorHealth, HealthSnapshot
from emulator.fleet.model_mix import ModelSequence
from emulator.fleet.runner import Fleet
from emulator.fleet.stopping import STOP_CAP, STOP_STALL, StopProgress
from emulator.loadtest.options import FleetOptions
from emulator.loadtest.partition import (
    SlotAllocator,
    charger_number,
    worker_range,
)
from emulator.metrics.fleetview import FleetCounts, tally
from emulator.metrics.looplag import LoopLagMonitor
from emulator.metrics.stats import Histogram
from emulator.transport.driver import WallboxDriver

if TYPE_CHECKING:
    from emulator.metrics.prometheus import FleetCollector, PrometheusReporter

__all__ = [
    "BridgeReporter",
    "FleetBridge",
    "GeneratorCopies",
    "LoopThread",
    "MetricsBridgeReporter",
    "OcppFailure",
    "csms_call_name",
]

log = logging.getLogger(__name__)

REQUEST_TYPE = "OCPP"
WEBSOCKET = "WebSocket"

# Items on the loop → gevent deque: (kind, name, seconds, detail).
_ROUND_TRIP = 0
_CSMS_CALL = 1
_CONNECT = 2
_PING = 3
_RELEASED = 4
_HEALTH = 5
_SERVING = 6
_ERROR = 7
# Only with Prometheus metrics on (MetricsBridgeReporter, the loop-lag monitor).
_DISCONNECTED = 8
_LATE = 9
_LAG = 10
# Loop-lag samples for ocpp_fleet_loop_lag_seconds, as often as `ocpp-fleet run` takes them.
LOOP_LAG_INTERVAL = 0.25

GeneratorCopies = tuple[int, Histogram, Histogram]
"""(fleet generation, send lateness, loop lag): copies of a detailed fleet's cumulative
generator-health histograms (seconds), made on the loop.  The generation changes with each
test's fleet, whose histograms start empty."""


def csms_call_name(action: str) -> str:
    """Locust name of a CSMS-initiated call (DataTransfer goes both ways)."""
    return f"{action} (CSMS call)"


class OcppFailure(Exception):
    """A failed OCPP exchange as Locust records it; ``str()`` is the failure's label."""


_FAILURE_TEXT = {
    "timeout": "timeout: no answer within response_timeout",
    "disconnected": "disconnected before the answer",
}


def _round_trip_failure(outcome: str) -> str:
    if outcome.startswith("callerror:"):
        return f"CALLERROR {outcome[10:]}"
    if outcome == "schema":
        return "schema violation"
    if outcome.startswith("schema:"):
        return f"schema violation ({outcome[7:]})"
    return _FAILURE_TEXT.get(outcome, outcome)


class BridgeReporter:
    """The Reporter the fleet uses under Locust: loop side, O(1), never blocks.

    Every timed event becomes one tuple on the deque; counters stay on the loop side and
    reach the gevent side in the snapshots.
    """

    __slots__ = ("_awaiting", "_put", "connects", "disconnects", "received", "reconnects", "sent")

    def __init__(self, put: Callable[[tuple[int, str, float, Any]], None]) -> None:
        self._put = put
        self.connects = 0
        self.disconnects = 0
        self.reconnects = 0
        self.sent = 0
        self.received = 0
        self._awaiting = 0

    def round_trip(self, action: str, seconds: float, outcome: str) -> None:
        self._put((_ROUND_TRIP, action, seconds, outcome))

    def csms_call(self, action: str, seconds: float, error: str | None) -> None:
        self._put((_CSMS_CALL, action, seconds, error))

    def connected(self, seconds: float) -> None:
        self.connects += 1
        if self._awaiting:
            self._awaiting -= 1
            self.reconnects += 1
        self._put((_CONNECT, "connect", seconds, None))

    def connect_failed(self, reason: str) -> None:
        self._put((_CONNECT, "connect", 0.0, reason))

    def disconnected(self, reason: str) -> None:
        self.disconnects += 1
        if reason != "stopped":
            self._awaiting += 1

    def ping_rtt(self, seconds: float) -> None:
        self._put((_PING, "ping", seconds, None))

    def message_sent(self) -> None:
        self.sent += 1

    def message_received(self) -> None:
        self.received += 1

    def lateness(self, seconds: float) -> None:
        pass  # the fleet's GeneratorHealth judges lateness; snapshots carry its figures


class MetricsBridgeReporter(BridgeReporter):
    """The bridge's reporter when Prometheus metrics are on: also queues what only they
    need, a disconnect's reason and each fired deadline's lateness (one tuple each).

    Frame counts stay loop-side counters (:attr:`sent`, :attr:`received`): the drain
    hands their increase to Prometheus, so a frame costs no tuple.
    """

    __slots__ = ()

    def disconnected(self, reason: str) -> None:
        BridgeReporter.disconnected(self, reason)
        self._put((_DISCONNECTED, "", 0.0, reason))

    def lateness(self, seconds: float) -> None:
        self._put((_LATE, "", seconds, None))


class LoopThread:
    """One event loop (uvloop when installed) running in a native OS thread."""

    def __init__(self, *, name: str = "ocpp-fleet-loop") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread_id: int | None = None
        self._done = False

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
        """Run ``fn(*args)`` on the loop, soon (from any thread)."""
        if self.loop is None or self._done:
            raise RuntimeError("the fleet's event loop is not running")
        self.loop.call_soon_threadsafe(fn, *args)

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
        options: FleetOptions,
        put: Callable[[tuple[int, str, float, Any]], None],
        publish: Callable[[dict[str, Any]], None],
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
        self.health = GeneratorHealth(on_change=lambda s: put((_HEALTH, "", 0.0, s)))
        self.fleet = Fleet(
            scenario=options.scenario,
            csms_url=options.csms_url or "",
            chargers=0,
            seed=options.seed,
            reporter=self.reporter,
            id_prefix=options.id_prefix,
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
                record=lambda lag: put((_LAG, "", lag, None)), interval=LOOP_LAG_INTERVAL
            )
            helpers.append(asyncio.ensure_future(monitor.run()))
        self.put((_SERVING, "", 0.0, True))
        try:
            await self.fleet.serve()
        except Exception as exc:  # reported on the gevent side, never lost
            self.put((_ERROR, "", 0.0, f"fleet engine failed: {exc!r}"))
            log.exception("fleet engine failed")
        finally:
            for helper in helpers:
                helper.cancel()
            self.publish(self.snapshot())
            self.put((_SERVING, "", 0.0, False))

    def add(self, number: int, slot: int) -> None:
        try:
            self.fleet.add_wallbox(number, self.models.model_at(slot))
        except Exception as exc:
            self.put((_ERROR, "", 0.0, f"cannot add charger {number}: {exc}"))
            self.put((_RELEASED, "", 0.0, number))

    def _removed(self, number: int, driver: WallboxDriver) -> None:
        tally(driver, self.retired)
        self.put((_RELEASED, "", 0.0, number))

    def snapshot(self) -> dict[str, Any]:
        counts = self.fleet.counts()
        retired = self.retired
        health: HealthSnapshot = self.health.snapshot()
        r = self.reporter
        self.peak = max(self.peak, counts.chargers)
        detail: dict[str, Any] = {}
        if self.detailed:
            detail["in_flight"] = counts.in_flight
            if self.publish_generator is not None:
                self.publish_generator(
                    (self.generation, self.health.lateness.copy(), self.health.loop_lag.copy())
                )
        return {
            "chargers": counts.chargers,
            "chargers_peak": self.peak,
            "connected": counts.connected,
            "booted": counts.booted,
            "charging": counts.charging,
            "transactions_running": counts.transactions_running,
            "transactions_started": counts.transactions_started + retired.transactions_started,
            "transactions_stopped": counts.transactions_stopped + retired.transactions_stopped,
            "queue_depth": counts.queue_depth,
            "transaction_backlog": counts.transaction_backlog + retired.transaction_backlog,
            "statuses": dict(counts.statuses),
            "connects": r.connects,
            "reconnects": r.reconnects,
            "messages_sent": r.sent,
            "messages_received": r.received,
            "health": health.as_dict(),
            **detail,
        }

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
        self._queue: deque[tuple[int, str, float, Any]] = deque()
        self.thread = LoopThread()
        self._drainer: gevent.Greenlet | None = None
        self._side: _LoopSide | None = None
        self._serving = False
        self._slots: SlotAllocator | None = None
        self._first_number = 1
        self._worker_index = 0
        self.options: FleetOptions | None = None
        self.snapshot: dict[str, Any] = {}
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
        options: FleetOptions,
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
            self.collector.add(side.fleet)
        self.thread.call(lambda: asyncio.ensure_future(side.serve()))
        _wait_until(lambda: self._serving or not self.thread.running, timeout, "the fleet")

    async def _make_side(self, options: FleetOptions, detailed: bool = False) -> _LoopSide:
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

    def _publish(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot  # replaced, never mutated: safe to read from gevent

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
                    self.snapshot.get("connected", "?"),
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
        """Fire every queued measurement as a Locust request event (and hand it to the
        Prometheus reporter, if any); returns how many events were fired."""
        queue, fire, fired, prometheus = self._queue, self._fire, 0, self.prometheus
        while queue:
            kind, name, seconds, detail = queue.popleft()
            if prometheus is not None:
                self._feed(prometheus, kind, name, seconds, detail)
            if kind == _ROUND_TRIP:
                fire(
                    request_type=REQUEST_TYPE,
                    name=name,
                    response_time=seconds * 1000.0,
                    response_length=0,
                    exception=None
                    if detail == "ok"
                    else self._failure(_round_trip_failure(detail)),
                    context={},
                )
                fired += 1
            elif kind == _CSMS_CALL:
                fire(
                    request_type=REQUEST_TYPE,
                    name=csms_call_name(name),
                    response_time=seconds * 1000.0,
                    response_length=0,
                    exception=None
                    if detail is None
                    else self._failure(f"answered CALLERROR {detail}"),
                    context={},
                )
                fired += 1
            elif kind in (_CONNECT, _PING):
                fire(
                    request_type=WEBSOCKET,
                    name=name,
                    response_time=seconds * 1000.0,
                    response_length=0,
                    exception=None
                    if detail is None
                    else self._failure(f"connect failed: {detail}"),
                    context={},
                )
                fired += 1
            elif kind == _RELEASED:
                if self._slots is not None:
                    self._slots.release(detail - self._first_number)
            elif kind == _HEALTH:
                self.health = detail
                if detail.overloaded:
                    self.overloaded_ever = True
                if self.on_health is not None:
                    self.on_health(detail)
            elif kind == _SERVING:
                self._serving = bool(detail)
            elif kind == _ERROR:
                self.errors.append(detail)
                log.error("%s", detail)
        if prometheus is not None:
            self._count_messages(prometheus)
        return fired

    @staticmethod
    def _feed(
        prometheus: PrometheusReporter, kind: int, name: str, seconds: float, detail: Any
    ) -> None:
        """One queued measurement to Prometheus: what ``ocpp-fleet run`` reports directly."""
        if kind == _ROUND_TRIP:
            prometheus.round_trip(name, seconds, detail)
        elif kind == _LATE:
            prometheus.lateness(seconds)
        elif kind == _CSMS_CALL:
            prometheus.csms_call(name, seconds, detail)
        elif kind == _CONNECT:
            if detail is None:
                prometheus.connected(seconds)
            else:
                prometheus.connect_failed(detail)
        elif kind == _PING:
            prometheus.ping_rtt(seconds)
        elif kind == _DISCONNECTED:
            prometheus.disconnected(detail)
        elif kind == _LAG:
            prometheus.loop_lag(seconds)

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
