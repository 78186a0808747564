"""What a Locust process that runs wallboxes does (a local run, a worker): the base of
:class:`~emulator.loadtest.local_role.LocalRole` and
:class:`~emulator.loadtest.worker_role.WorkerRole`.

* its :class:`~emulator.loadtest.bridge.FleetBridge` (the fleet engine's loop thread)
  starts at ``init``; each test gets a fleet configured from the options, which the users
  then fill; the test's stop stops the wallboxes cleanly; ``quit`` ends the loop thread;
* its Prometheus endpoint (``--metrics-port``), started before the bridge;
* the generator as the limit (:mod:`.overload`): a connect timeout waits until the loop
  lag of its attempt is known, and one that happened while the loop lagged is the
  generator's ("timeout while the load generator lagged"), not the CSMS's;
* windows (:mod:`.steps`): its measurements rebuilt from the request events and cut into
  windows, for a judge elsewhere (a worker's master) or here (a local run's steps);
* reconnect waves (:data:`~emulator.loadtest.shapes.DROP_MESSAGE`).

The bridge's snapshot is read in :meth:`FleetRole.snapshot` only.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import gevent
from locust.env import Environment

from emulator.fleet.health import HealthSnapshot
from emulator.fleet.runner import FleetStartError
from emulator.loadtest.bridge import FleetBridge
from emulator.loadtest.options import MetricsAddress
from emulator.loadtest.overload import CONNECT_TIMEOUT, DEFER, GENERATOR_TIMEOUT, LagHistory
from emulator.loadtest.requests import WEBSOCKET, OcppFailure, RequestRecorder
from emulator.loadtest.role import Refused, Role
from emulator.loadtest.shapes import DROP_MESSAGE
from emulator.loadtest.steps import WindowCutter
from emulator.loadtest.verdicts import every
from emulator.loadtest.view import aggregate
from emulator.metrics.stats import RunStats
from emulator.run.lifecycle import metrics_served
from emulator.run.setup import RunSetup

if TYPE_CHECKING:
    from emulator.metrics.prometheus import MetricsEndpoint

__all__ = ["FleetRole"]

log = logging.getLogger("ocpp_fleet")

# How often a fleet process notes its loop lag (LagHistory) from the fleet snapshots.
LAG_SAMPLE_INTERVAL = 1.0


class FleetRole(Role):
    """A Locust process with a fleet: its bridge, metrics, connect-timeout judgement and
    windows."""

    def __init__(self, *, environment: Environment, runner: Any) -> None:
        super().__init__(environment=environment, runner=runner)
        self._bridge: FleetBridge | None = None
        self.metrics: MetricsEndpoint | None = None
        self.index = 0  # the worker index (0: a local run)
        # Windows (emulator.loadtest.steps): cut here, collected where judged.
        self._window_recorder: RequestRecorder | None = None
        self.cutter: WindowCutter | None = None
        # The generator as the limit (emulator.loadtest.overload).
        self.lag_history = LagHistory()
        self._resources = ExitStack()  # left at Locust's quit, in reverse
        self._last_snapshot: Any = None
        self._fire: Callable[..., Any] | None = None
        self._generator_timeout = OcppFailure(GENERATOR_TIMEOUT)
        # Connect timeouts waiting to be judged: (when, the request event's arguments).
        self._pending_timeouts: deque[tuple[float, dict[str, Any]]] = deque()
        self.generator_timeouts = 0  # this process's, since it started

    # ------------------------------------------------------------------ start-up

    def _start_fleet(self, metrics: MetricsAddress | None) -> None:
        """Enter this process's resources on its exit stack (left in reverse at Locust's
        quit, as ``ocpp-fleet run`` leaves its own): the metrics (if asked for; a port that
        cannot be bound is refused with exit code 3, like ``ocpp-fleet run``), the loop
        bridge, the lag sampler."""
        stack = self._resources
        if metrics is not None and self.runner is not None:
            try:
                self.metrics = stack.enter_context(metrics_served(metrics))
            except FleetStartError as exc:
                self.refuse(f"{exc}{self._metrics_hint()}", exit_code=3)
                raise Refused from None
            log.info("Prometheus metrics on %s", self.metrics.url)
        self._fire = self.environment.events.request.fire
        bridge = self._bridge = FleetBridge(
            fire=self._fire_request,
            on_health=self._on_health,
            prometheus=None if self.metrics is None else self.metrics.reporter,
            collector=None if self.metrics is None else self.metrics.collector,
        )
        bridge.start()
        stack.callback(bridge.close)
        sampler = gevent.spawn(
            every, LAG_SAMPLE_INTERVAL, self._watch_lag, "judging connect timeouts"
        )
        stack.callback(sampler.kill, block=False)
        if self.runner is not None:
            self.runner.register_message(DROP_MESSAGE, self._on_drop)

    def _metrics_hint(self) -> str:
        return ""

    # ------------------------------------------------------------------ the fleet

    @property
    def bridge(self) -> FleetBridge | None:
        return self._bridge

    def bridge_for_users(self) -> FleetBridge:
        if self.config_error is not None or self._bridge is None:
            return super().bridge_for_users()
        return self._bridge

    def snapshot(self) -> dict[str, Any]:
        """The fleet's latest published counts (empty before the first)."""
        return self._bridge.snapshot if self._bridge is not None else {}

    def _configure(self, options: RunSetup, *, detailed: bool) -> bool:
        """Give this test a fleet; False: refused (a security file, a loop that hangs)."""
        assert self._bridge is not None
        try:
            self._bridge.configure(options, worker_index=self.index, detailed=detailed)
        except Exception as exc:  # ScenarioError, OSError, a timeout: all the user's to fix
            self.refuse(str(exc), ends_run=self._headless(self.environment.parsed_options))
            return False
        first = self.index * options.ids_per_worker + 1
        identities = options.scenario.identities
        owns = (
            f"rows {first}-{first + options.ids_per_worker - 1} of {identities.path}"
            if identities is not None
            else f"chargers {options.scenario.charger_id(first)}..."
        )
        log.info(
            "fleet: scenario %s, seed %s, worker %s owns %s, CSMS %s",
            options.scenario.name,
            options.seed,
            self.index,
            owns,
            options.csms_url,
        )
        return True

    def fleet_view(self) -> dict[str, Any]:
        """What the Fleet tab shows: this process's fleet."""
        snap = self.snapshot()
        view = aggregate({self.index: snap} if snap else {})
        view["role"] = "local"
        view["errors"] = list(self._bridge.errors) if self._bridge is not None else []
        if self.config_error:
            view["errors"].append(self.config_error)
        return view

    def _on_drop(self, environment: Environment, msg: Any, **_: Any) -> None:
        if self._bridge is not None and self._bridge.configured:
            share = float((msg.data or {}).get("share", 0.0))
            log.info("reconnect wave: dropping %.0f %% of the connections", share * 100)
            self._bridge.drop_connections(share)

    def _drain(self) -> None:
        """Fire what the loop has measured so far (the window ends or starts now)."""
        if self._bridge is not None:
            self._bridge.drain()

    def _stop_fleet(self) -> None:
        """Stop this test's wallboxes cleanly and fire their last measurements."""
        if self._bridge is not None:
            self._bridge.stop_fleet()
            self._judge_timeouts(now=True)

    # ------------------------------------------------------------------ windows

    def _cut_windows(self) -> None:
        """Record this fleet's measurements (a RunStats rebuilt from the request events) and
        cut them into windows."""
        stats = RunStats()
        if self._window_recorder is None:
            self._window_recorder = RequestRecorder()
            self.environment.events.request.add_listener(self._window_recorder)
        self._window_recorder.stats = stats
        bridge = self._bridge
        self.cutter = WindowCutter(stats, lambda: None if bridge is None else bridge.generator)

    def _end_windows(self) -> None:
        """Stop cutting (the test is over, or a new one starts)."""
        if self._window_recorder is not None:
            self._window_recorder.stats = None
        self.cutter = None

    # ------------------------------------------------------------------ events

    def on_test_stop(self, environment: Environment, **_: Any) -> None:
        self._end_windows()
        self._stop_fleet()

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        self._end_windows()
        self._stop_fleet()

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        try:
            self._resources.close()
        except Exception:  # the process ends anyway
            log.debug("leaving this process's resources failed", exc_info=True)
        self.metrics = None

    # ------------------------------------------------------------------ the generator

    def _on_health(self, snapshot: HealthSnapshot) -> None:
        """The generator's health changed (the bridge's ``on_health``)."""
        if snapshot.overloaded and self._spawn_overloaded(snapshot):
            return
        if snapshot.overloaded and self._spawning():
            log.warning(
                "The load generator is the bottleneck while spawning: %s. Handshakes that "
                "time out now count as the generator's; the master's spawn rate is more than "
                "this worker keeps up with.",
                snapshot.describe(),
            )
        elif snapshot.overloaded:
            log.warning(
                "The load generator is the bottleneck: %s. Latencies measured now include "
                "its own delays: run fewer wallboxes per worker or add workers.",
                snapshot.describe(),
            )
        else:
            log.warning("The load generator keeps up again: %s", snapshot.describe())

    def _spawn_overloaded(self, snapshot: HealthSnapshot) -> bool:
        """A local run names the spawn rate that overloaded it (True: named)."""
        return False

    def _spawning(self) -> bool:
        """Spawning now, or so recently that an overload verdict now began while it ran."""
        raise NotImplementedError

    def _generator_timeout_judged(self) -> None:
        """A connect timeout was found the generator's (a local run names it once)."""

    def _sample_lag(self) -> None:
        """Note the loop lag of the fleet's last closed health window (once per snapshot)."""
        snapshot = self.snapshot()
        if not snapshot or snapshot is self._last_snapshot:
            return
        self._last_snapshot = snapshot
        self.lag_history.record(time.monotonic(), snapshot.get("health") or {})

    def _fire_request(self, **kwargs: Any) -> None:
        """The bridge's ``events.request.fire``.  A connect timeout waits (``DEFER`` s, see
        :meth:`_judge_timeouts`) until the loop lag of its attempt is known."""
        exception = kwargs.get("exception")
        if (
            exception is not None
            and kwargs.get("request_type") == WEBSOCKET
            and str(exception) == CONNECT_TIMEOUT
        ):
            self._pending_timeouts.append((time.monotonic(), kwargs))
            return
        assert self._fire is not None
        self._fire(**kwargs)

    def _watch_lag(self) -> None:
        self._sample_lag()
        self._judge_timeouts()

    def _judge_timeouts(self, *, now: bool = False) -> None:
        """Fire the connect timeouts that waited long enough (``now``: all of them): one
        that happened while the loop lagged is the generator's failure, not the CSMS's."""
        pending = self._pending_timeouts
        if not pending:
            return
        self._sample_lag()
        options = self._bridge.options if self._bridge is not None else None
        handshake = options.scenario.fleet.handshake_timeout if options is not None else 30.0
        due = time.monotonic() - DEFER
        verdicts: dict[int, bool] = {}  # by second: a burst of timeouts is judged once
        while pending and (now or pending[0][0] <= due):
            at, kwargs = pending.popleft()
            second = int(at)
            if second not in verdicts:
                verdicts[second] = self.lag_history.blames_generator(at, handshake)
            if verdicts[second]:
                kwargs["exception"] = self._generator_timeout
                self.generator_timeouts += 1
                self._generator_timeout_judged()
            assert self._fire is not None
            self._fire(**kwargs)
