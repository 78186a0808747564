"""A small misbehaving world for the metrics tests, on 127.0.0.1 only, bounded in time.

:class:`MisbehavingCsms` is the embedded reference CSMS, told to misbehave on every 7th
charger-initiated CALL (a CALLERROR, silence until the response timeout, a
schema-violating CALLRESULT, a late answer, a dropped connection, in turn), with basic
auth that refuses the last two chargers (connect failures), and a task that sends
CSMS-initiated CALLs, a schema-violating CALL, garbage, a malformed CALL and an answer
to a CALL nobody made.

:class:`FleetThread` runs, in a thread with its own event loop, that CSMS and:

* a fleet of ``chargers`` wallboxes with short sessions (:data:`SCENARIO`), reporting
  to a :class:`PrometheusReporter` and watched by a :class:`FleetCollector`;
* the loop-lag monitor, and the metrics HTTP server on a free loopback port.

So within ~20 s every metric of docs/metrics.md has samples.  :class:`CsmsThread` runs
the CSMS alone, for a fleet in another process (a Locust run of :data:`SCENARIO`).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from emulator.csms import (
    AnswerCallError,
    AnswerGarbage,
    Delay,
    DropConnection,
    Misbehaviour,
    ReferenceCsms,
    Silence,
)
from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import Scenario, parse_scenario
from emulator.metrics import MultiReporter
from emulator.metrics.looplag import LoopLagMonitor
from emulator.metrics.prometheus import (
    FleetCollector,
    MetricsServer,
    PrometheusReporter,
    new_registry,
    serve_metrics,
)
from emulator.metrics.stats import RunStats
from emulator.protocol.codec import Call
from emulator.protocol.errors import ErrorCode

PASSWORD = "metrics-test-password"
REFUSED = 2  # the last chargers get HTTP 401: connect failures

SCENARIO = f"""
[scenario]
name = "metrics-test"

[fleet]
id_prefix = "MT"
connect_timeout = 60.0
response_timeout = 1.5
ramp_per_second = 100.0
basic_auth_password = "{PASSWORD}"

[[models]]
name = "socket"
variant = "socket"
phases = 3
max_current = 32.0
[models.configuration]
TransactionMessageRetryInterval = 0
TransactionMessageAttempts = 3
MeterValueSampleInterval = 4
ClockAlignedDataInterval = 0
WebSocketPingInterval = 10

[sessions]
mode = "random"
arrivals_per_hour = 3600.0
plug_in_delay = [0.1, 0.3]
energy_kwh = [0.005, 0.02]
idle_after_full = [0.1, 0.5]
authorize_first_share = 0.5
stop_by_tag_share = 0.3
"""

# Never misbehave on these: the fleet must boot, and transactions must be counted.
_ALWAYS_ANSWER = frozenset({"BootNotification", "StartTransaction", "StopTransaction"})


def scenario() -> Scenario:
    return parse_scenario(SCENARIO, source="<metrics-test>")


class Misbehaving:
    """Every ``every``-th answerable CALL misbehaves, cycling through the kinds."""

    def __init__(self, every: int = 7) -> None:
        self.every = every
        self.calls = itertools.count(1)
        self.kinds = itertools.cycle(
            [
                lambda call: AnswerCallError(ErrorCode.INTERNAL_ERROR, "injected"),
                lambda call: Silence(),
                lambda call: AnswerGarbage(
                    orjson.dumps([3, call.unique_id, {"bogus": True}]).decode()
                ),
                lambda call: Delay(0.2),
                lambda call: DropConnection(),
            ]
        )
        self.enabled = True

    def __call__(self, charger_id: str, call: Call) -> Misbehaviour | None:
        if not self.enabled or call.action in _ALWAYS_ANSWER:
            return None
        if next(self.calls) % self.every:
            return None
        result: Misbehaviour = next(self.kinds)(call)
        return result


class MisbehavingCsms:
    """The reference CSMS of the module doc for the chargers ``ids`` (all but the last
    REFUSED may log in), pestering them with CSMS-initiated traffic; ``async with``."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.misbehaving = Misbehaving()
        self.csms = ReferenceCsms(
            heartbeat_interval=2,
            call_timeout=3.0,
            basic_auth={cid: PASSWORD for cid in ids[: len(ids) - REFUSED]},
            misbehave=self.misbehaving,
        )
        self._pester: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MisbehavingCsms:
        await self.csms.start()
        self._pester = asyncio.create_task(_pester(self.csms))
        return self

    def calm(self) -> None:
        """Behave from now on, so that the fleet drains quickly."""
        self.misbehaving.enabled = False
        if self._pester is not None:
            self._pester.cancel()

    async def __aexit__(self, *exc_info: object) -> None:
        self.calm()
        if self._pester is not None:
            await asyncio.gather(self._pester, return_exceptions=True)
        await self.csms.stop()


class _LoopThread:
    """:meth:`_run` in a daemon thread with its own event loop.

    :meth:`start` returns once ``_run`` called ``self._ready.set()``; :meth:`stop` sets
    ``self._stop`` (which ``_run`` awaits) and joins; both raise what ``_run`` raised.
    """

    def __init__(self, name: str) -> None:
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self._thread.name} did not start")
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self._thread.name} did not stop")
        if self.error is not None:
            raise self.error

    def _main(self) -> None:
        try:
            asyncio.run(self._begin())
        except BaseException as exc:  # reported by start()/stop()
            self.error = exc
        finally:
            self._ready.set()

    async def _begin(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self._run(self._stop)

    async def _run(self, stop: asyncio.Event) -> None:
        raise NotImplementedError


class CsmsThread(_LoopThread):
    """A :class:`MisbehavingCsms` for the scenario's first ``chargers`` charger ids, in a
    background thread: for a fleet that runs in another process."""

    def __init__(self, *, chargers: int) -> None:
        super().__init__("metrics-csms")
        self.chargers = chargers
        self.url = ""
        self._csms: MisbehavingCsms | None = None

    def calm(self) -> None:
        """Stop misbehaving (before the fleet stops, so that it drains quickly)."""
        if self._loop is not None and self._csms is not None:
            self._loop.call_soon_threadsafe(self._csms.calm)

    async def _run(self, stop: asyncio.Event) -> None:
        sc = scenario()
        ids = [sc.fleet.charger_id(i) for i in range(1, self.chargers + 1)]
        async with MisbehavingCsms(ids) as csms:
            self._csms = csms
            self.url = csms.csms.url
            self._ready.set()
            await stop.wait()


class FleetThread(_LoopThread):
    """The fleet, CSMS and metrics server in a background thread; see the module doc."""

    def __init__(self, *, chargers: int = 12) -> None:
        super().__init__("metrics-fleet")
        self.chargers = chargers
        self.registry = new_registry()
        self.reporter = PrometheusReporter(registry=self.registry)
        self.collector = FleetCollector(registry=self.registry)
        self.stats = RunStats()
        self.server: MetricsServer | None = None

    def stop(self, timeout: float = 30.0) -> None:
        try:
            super().stop(timeout)
        finally:
            if self.server is not None:
                self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    async def _run(self, stop: asyncio.Event) -> None:
        sc = scenario()
        ids = [sc.fleet.charger_id(i) for i in range(1, self.chargers + 1)]
        async with MisbehavingCsms(ids) as csms:
            fleet = Fleet(
                scenario=sc,
                csms_url=csms.csms.url,
                chargers=self.chargers,
                seed=6,
                reporter=MultiReporter(reporters=(self.stats, self.reporter)),
            )
            self.collector.add(fleet)
            self.server = serve_metrics(registry=self.registry, host="127.0.0.1", port=0)
            self._ready.set()
            async with LoopLagMonitor(record=self.reporter.loop_lag, interval=0.1):
                run = asyncio.create_task(fleet.run(duration=120.0))
                await stop.wait()
                csms.calm()  # let the fleet drain quickly
                fleet.stop()
                await asyncio.wait_for(run, timeout=20.0)


async def _pester(csms: ReferenceCsms) -> None:
    """CSMS-initiated traffic, good and bad, once a second to some connected charger."""
    frames = itertools.cycle(
        [
            ("call", "GetConfiguration", {"key": ["HeartbeatInterval"]}),
            ("call", "Reset", {"type": "Bogus"}),  # breaks ResetRequest's enum
            ("raw", "not json at all", None),  # (garbage)
            ("raw", '[2, "bad-call", "Reset", []]', None),  # (malformed): payload not an object
            ("raw", '[3, "nobody-asked", {}]', None),  # an answer to no CALL
            ("call", "TriggerMessage", {"requestedMessage": "Heartbeat"}),
        ]
    )
    for n in itertools.count():
        await asyncio.sleep(0.5)
        connected = sorted(csms.connected)
        if not connected:
            continue
        charger = connected[n % len(connected)]
        kind, what, payload = next(frames)
        try:
            if kind == "raw":
                await csms.send_raw(charger, what)
            else:
                assert payload is not None
                await _call(csms, charger, what, payload)
        except Exception:  # a charger that went away, a CALLERROR: all expected here
            pass


async def _call(csms: ReferenceCsms, charger: str, action: str, payload: dict[str, Any]) -> None:
    await csms.call(charger, action, payload, timeout=3.0, check_request=False)
