"""Wires the fleet into Locust's events: options, the loop bridge, shapes, the Fleet tab.

A locustfile calls :func:`register` once with ``locust.events``; nothing here runs at
import time.  Per process:

* **local run / worker**: a :class:`~emulator.loadtest.bridge.FleetBridge` (the fleet
  engine's loop thread) starts at ``init``; each test (``test_start``) gets a new fleet
  configured from the options, which the users then fill; ``test_stop`` stops it
  cleanly; ``quit`` ends the loop thread.  A worker adds its fleet snapshot to every
  report to the master.
* **master**: keeps the latest snapshot of each worker for the Fleet tab, warns when a
  worker's generator is overloaded, and prints the fleet summary at the end.

SLOs (``--slo``, ``$LOCUST_SLO``, the scenario's ``[slo]``) are judged by a local run or
the master.  A local run without a ``steps`` shape judges the request events it fires
itself (exactly); otherwise the fleet processes cut their measurements into windows
(:mod:`emulator.loadtest.steps`): a worker sends one with every report to the master,
a local run hands itself one every second, and the judging process merges them, for the
window after spawning or for each step's hold of the ``steps`` shape, whose verdict
(``--verdict-json``, ``--report``) is shaped like ``ocpp-fleet capacity``'s.

Per-worker options: a master's spawn message carries its options to the workers; a
worker keeps its own source addresses and metrics options, or takes its slice of the
master's address pool (:func:`~emulator.loadtest.options.worker_options`).  A master
that quits (the end of ``--run-time``, SIGTERM) first stops the workers' wallboxes and
waits until each has reported them stopped, with its last requests: the master's totals
then include every StopTransaction and close of the shutdown.

When the generator is the limit (:mod:`emulator.loadtest.overload`): a worker counts a
handshake that timed out while its loop lagged as the generator's
("timeout while the load generator lagged"), not as a CSMS connect failure; the master
(or a local run) names the spawn rate that overloaded a worker, and such timeouts alone
do not make the exit code 1.

Prometheus metrics (``--metrics-port``, else ``$OCPP_FLEET_METRICS_PORT``): a local run
and every worker serve the same ``/metrics`` as ``ocpp-fleet run`` (per-action
latencies and errors, connections, fleet gauges, generator health, process metrics),
fed on the gevent side (see :mod:`emulator.loadtest.bridge`).  A master runs no
wallboxes and serves none: Prometheus sums the workers.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import gevent
import locust.runners as locust_runners
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from emulator.fleet.health import HealthSnapshot
from emulator.fleet.scenario import ScenarioError
from emulator.fleet.stopping import STOP_CAP, STOP_STALL
from emulator.loadtest.bridge import FleetBridge
from emulator.loadtest.options import (
    WINDOWS_OPTION,
    WORKERS_OPTION,
    OptionError,
    add_arguments,
    flag,
    fleet_options,
    metrics_address,
    own_options,
    scenario_slos,
    shape_schedule,
    verdict_outputs,
    worker_options,
)
from emulator.loadtest.overload import (
    CONNECT_TIMEOUT,
    DEFER,
    GENERATOR_TIMEOUT,
    LagHistory,
    SpawnOverload,
    generator_failures_only,
    limit_lines,
    spawn_rate_warning,
    timeout_warning,
)
from emulator.loadtest.requests import WEBSOCKET, OcppFailure, RequestRecorder
from emulator.loadtest.schedules import ScheduleError
from emulator.loadtest.shapes import DROP_MESSAGE, ScheduleShape
from emulator.loadtest.spawn_messages import cache_default_args
from emulator.loadtest.steps import (
    FleetState,
    WindowCollector,
    WindowCutter,
)
from emulator.loadtest.steps import verdict_lines as steps_verdict_lines
from emulator.loadtest.verdicts import (
    SloJudge,
    StepsRun,
    every,
    slos_of_scenario,
    steps_schedule,
    write_outputs,
)
from emulator.loadtest.view import aggregate, bottleneck_warning, summary_lines
from emulator.metrics.slo import verdict_lines
from emulator.metrics.stats import RunStats

if TYPE_CHECKING:
    from emulator.metrics.prometheus import MetricsEndpoint

__all__ = ["FleetPlugin", "plugin_of", "register"]

log = logging.getLogger("ocpp_fleet")

_ATTRIBUTE = "ocpp_fleet"
REPORT_KEY = "ocpp_fleet"
# A local run hands itself a window this often (a worker sends one with each report).
LOCAL_WINDOW_INTERVAL = 1.0
# How often a fleet process notes its loop lag (LagHistory) from the fleet snapshots.
LAG_SAMPLE_INTERVAL = 1.0
# An overload verdict this soon after spawning completed is the spawn's: the verdict takes
# three 5-s windows over the limits, and reaches the master with a snapshot and a report.
SPAWN_BLAME = 30.0
# A worker tells its master that its wallboxes have stopped (after its last report).
STOPPED_MESSAGE = "ocpp_fleet_stopped"
# Heartbeats (one a second) a worker may miss before the master calls it missing.
WORKER_LIVENESS = 60
# A quitting master waits for that while each worker still reports (every 3 s): a worker
# waits for its wallboxes while they make progress (FleetBridge.stop_fleet), so the master
# gives up on one that sent nothing for its stall time and a report interval, or when every
# worker had its time.
STOPPED_SILENCE = STOP_STALL + 5.0
STOPPED_WAIT = STOP_CAP + 10.0
# A worker quits when it heard nothing from its master for this long.  Locust's 60 s is
# shorter than a worker's wait for its wallboxes, during which it reads no message.
MASTER_SILENCE = int(STOP_CAP) + 30


def register(events: Any) -> FleetPlugin:
    """Hook the fleet into ``events`` (``locust.events``); call once, in the locustfile."""
    cache_default_args()  # a worker's spawn messages would otherwise starve its heartbeats
    plugin = FleetPlugin()
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(plugin.on_init)
    events.test_start.add_listener(plugin.on_test_start)
    events.test_stop.add_listener(plugin.on_test_stop)
    events.quitting.add_listener(plugin.on_quitting)
    events.quit.add_listener(plugin.on_quit)
    events.report_to_master.add_listener(plugin.on_report_to_master)
    events.worker_report.add_listener(plugin.on_worker_report)
    events.spawning_complete.add_listener(plugin.on_spawning_complete)
    events.test_stopping.add_listener(plugin.on_test_stopping)
    return plugin


class _CannotServeMetrics(Exception):
    """``str()``: the message for the user; ``exit_code``: the process's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _serve_metrics(environment: Environment, runner: Any) -> MetricsEndpoint | None:
    """Start this process's Prometheus endpoint if asked for; None when not.

    Raises _CannotServeMetrics for a port that is not one (exit code 2) or cannot be
    bound (3, like ``ocpp-fleet run``): a load test without the metrics it was started
    for is a wasted run.
    """
    worker_index = int(runner.worker_index) if isinstance(runner, WorkerRunner) else None
    try:
        address = metrics_address(
            environment.parsed_options,
            environ=os.environ,
            worker_index=None if worker_index is None else max(0, worker_index),
        )
    except OptionError as exc:
        raise _CannotServeMetrics(str(exc), 2) from None
    if address is None:
        return None
    from emulator.metrics.prometheus import MetricsEndpoint, disable_created_series

    disable_created_series()  # the same series as `ocpp-fleet run`
    try:
        endpoint = MetricsEndpoint(host=address.host, port=address.port)
    except OSError as exc:
        hint = ""
        if isinstance(runner, WorkerRunner):
            hint = " (several workers on one host: --metrics-port-per-worker)"
        raise _CannotServeMetrics(
            f"cannot serve metrics on {address.host}:{address.port}: {exc.strerror or exc}{hint}",
            3,
        ) from None
    log.info("Prometheus metrics on %s", endpoint.url)
    return endpoint


def plugin_of(environment: Environment) -> FleetPlugin:
    plugin = getattr(environment, _ATTRIBUTE, None)
    if plugin is None:
        raise RuntimeError(
            "ocpp-fleet is not set up: call emulator.loadtest.register(events) in the locustfile"
        )
    assert isinstance(plugin, FleetPlugin)
    return plugin


class FleetPlugin:
    def __init__(self) -> None:
        self.environment: Environment | None = None
        self.bridge: FleetBridge | None = None
        self.config_error: str | None = None
        self.worker_snapshots: dict[str, tuple[int, dict[str, Any]]] = {}
        self._overloaded_workers: set[int] = set()
        self._worst_seen: dict[int, dict[str, Any]] = {}
        self._summary_printed = False
        self.metrics: MetricsEndpoint | None = None
        self.slo = SloJudge()
        # Windows (emulator.loadtest.steps): cut on a fleet process, collected where judged.
        self._window_recorder: RequestRecorder | None = None
        self.cutter: WindowCutter | None = None
        self.collector: WindowCollector | None = None
        self._feeder: gevent.Greenlet | None = None
        self._bad_windows: set[int] = set()
        self.steps: StepsRun | None = None
        # Per-worker options as this process was started (a worker's own).
        self._own_options: dict[str, Any] = {}
        # The generator as the limit (emulator.loadtest.overload).
        self.lag_history = LagHistory()
        self._lag_sampler: gevent.Greenlet | None = None
        self._last_health: Any = None
        self._fire: Callable[..., Any] | None = None
        self._generator_timeout = OcppFailure(GENERATOR_TIMEOUT)
        # Connect timeouts waiting to be judged: (when, the request event's arguments).
        self._pending_timeouts: deque[tuple[float, dict[str, Any]]] = deque()
        self.generator_timeouts = 0  # this process's, since it started
        self.spawn_overload: SpawnOverload | None = None  # this test's
        self._spawn_done: float | None = None  # when spawning last completed
        self._timeouts_warned = False  # this test's first generator timeouts were named
        self._stopped_workers: set[int] = set()
        self._reported_at: dict[int, float] = {}  # while stopping: each worker's last report

    # ------------------------------------------------------------------ roles

    @property
    def is_master(self) -> bool:
        return self.environment is not None and isinstance(self.environment.runner, MasterRunner)

    @property
    def worker_index(self) -> int:
        runner = self.environment.runner if self.environment is not None else None
        if isinstance(runner, WorkerRunner):
            return max(0, int(runner.worker_index))
        return 0

    def bridge_for_users(self) -> FleetBridge:
        if self.config_error is not None:
            raise RuntimeError(self.config_error)
        if self.bridge is None:
            raise RuntimeError("no fleet in this process (a master runs no wallboxes)")
        return self.bridge

    # ------------------------------------------------------------------ events

    def on_init(
        self, environment: Environment, runner: Any = None, web_ui: Any = None, **_: Any
    ) -> None:
        self.environment = environment
        setattr(environment, _ATTRIBUTE, self)
        runner = runner or environment.runner
        if not isinstance(runner, MasterRunner):
            if runner is not None:
                try:
                    self.metrics = _serve_metrics(environment, runner)
                except _CannotServeMetrics as exc:
                    # No fleet either: users that start before the quit get this error.
                    self.config_error = f"ocpp-fleet cannot start: {exc}"
                    log.error("%s", self.config_error)
                    environment.process_exit_code = exc.exit_code
                    gevent.spawn(runner.quit)
                    return
            self._fire = environment.events.request.fire
            self.bridge = FleetBridge(
                fire=self._fire_request,
                on_health=self._on_health,
                prometheus=None if self.metrics is None else self.metrics.reporter,
                collector=None if self.metrics is None else self.metrics.collector,
            )
            self.bridge.start()
            self._lag_sampler = gevent.spawn(
                every, LAG_SAMPLE_INTERVAL, self._watch_lag, "judging connect timeouts"
            )
            if runner is not None:
                runner.register_message(DROP_MESSAGE, self._on_drop)
            if isinstance(runner, WorkerRunner):
                self._own_options = own_options(environment.parsed_options)
                if locust_runners.MASTER_HEARTBEAT_TIMEOUT < MASTER_SILENCE:
                    locust_runners.MASTER_HEARTBEAT_TIMEOUT = MASTER_SILENCE
        else:
            if getattr(environment.parsed_options, "metrics_port", ""):
                log.info("the master runs no wallboxes and serves no metrics: each worker does")
            runner.register_message(STOPPED_MESSAGE, self._on_worker_stopped)
            _stop_workers_before_quitting(runner, self)
            # A worker's heartbeat greenlet shares its process with a fleet loop that can
            # hold the GIL for seconds in a connect storm (40,000 wallboxes on 4 workers
            # of a 2-core host): after Locust's 3 s the master calls it missing and hands
            # its users to the others, doubling their load.  A dead worker is still
            # noticed, after WORKER_LIVENESS s.  (What starved the heartbeats for a
            # whole minute was the spawn messages: see emulator.loadtest.spawn_messages.)
            if locust_runners.HEARTBEAT_LIVENESS < WORKER_LIVENESS:
                locust_runners.HEARTBEAT_LIVENESS = WORKER_LIVENESS
        if not isinstance(runner, WorkerRunner) and runner is not None:
            problem = self.slo.init(environment.parsed_options, master=self.is_master)
            if problem is not None:
                log.error("%s", problem)
                if self.is_master:
                    # Before any worker got work; a quitting master would still wait
                    # for --expect-workers.
                    raise SystemExit(2)
                environment.process_exit_code = 2
                gevent.spawn(runner.quit)
                return
        if not isinstance(runner, WorkerRunner):
            try:
                schedule = shape_schedule(environment.parsed_options)
            except (ScheduleError, ScenarioError) as exc:
                log.error("--fleet-shape: %s", exc)
                environment.process_exit_code = 2
                gevent.spawn(runner.quit)
                return
            if schedule is not None:
                shape = ScheduleShape(schedule)
                shape.runner = runner
                environment.shape_class = shape
            problem = self._check_outputs(environment)
            if problem is not None:
                log.error("ocpp-fleet cannot start: %s", problem)
                if self.is_master:
                    raise SystemExit(2)
                environment.process_exit_code = 2
                if runner is not None:
                    gevent.spawn(runner.quit)
                return
        if web_ui is not None:
            from emulator.loadtest.webui import install

            install(web_ui, self)

    def on_test_start(self, environment: Environment, **_: Any) -> None:
        self._end_windows()
        self.collector = None
        self.steps = None  # the last test's verdict sets the exit code
        self.spawn_overload = None
        self._spawn_done = None
        self._timeouts_warned = False
        if self.is_master:
            self.worker_snapshots.clear()
            self._overloaded_workers.clear()
            self._bad_windows.clear()
            self._master_test_start(environment)
            return
        if self.bridge is None:
            return
        self.config_error = None
        judging = self.slo.judges  # a local run
        # A worker whose master judges SLOs sends it windows (the master set this option).
        windows = isinstance(environment.runner, WorkerRunner) and flag(
            environment.parsed_options, WINDOWS_OPTION
        )
        steps = steps_schedule(environment) if judging else None
        addresses = None
        try:
            parsed = environment.parsed_options
            if isinstance(environment.runner, WorkerRunner):
                own = worker_options(parsed, self._own_options, worker_index=self.worker_index)
                parsed, addresses = own.parsed, own
            options = fleet_options(parsed, host=environment.host)
            slos = []
            if judging:
                slos = scenario_slos(options.scenario, options.scenario_path)
                slos += self.slo.command_line
            self.bridge.configure(
                options,
                worker_index=self.worker_index,
                detailed=windows or (bool(slos) and steps is not None),
            )
        except Exception as exc:  # OptionError, ScenarioError, security files, a timeout
            self.config_error = f"ocpp-fleet cannot start: {exc}"
            log.error("%s", self.config_error)
            options_ = environment.parsed_options
            if environment.runner is not None and getattr(options_, "headless", False):
                environment.process_exit_code = 2
                gevent.spawn(environment.runner.quit)
            return
        log.info(
            "fleet: scenario %s, seed %s, worker %s owns chargers %s%06d..., CSMS %s",
            options.scenario.name,
            options.seed,
            self.worker_index,
            options.id_prefix or options.scenario.fleet.id_prefix,
            self.worker_index * options.ids_per_worker + 1,
            options.csms_url,
        )
        if addresses is not None:
            (log.warning if addresses.shared else log.info)(
                "worker %s: source addresses %s", self.worker_index, addresses.addresses
            )
        if windows:
            self._cut_windows(environment)
        elif slos and steps is not None:
            self.slo.verdict = None
            self._cut_windows(environment)
            self.collector = WindowCollector()
            self._feeder = gevent.spawn(
                every, LOCAL_WINDOW_INTERVAL, self._feed_local, "collecting the fleet's windows"
            )
            self.steps = StepsRun(
                schedule=steps,
                slos=slos,
                collector=self.collector,
                fleet_state=self._fleet_state,
                generator_health=self._generator_health,
            )
        elif slos:
            self.slo.begin(environment, slos)

    def _master_test_start(self, environment: Environment) -> None:
        """The master judges when it has SLOs: it asks the workers for windows (an option
        every spawn message carries) and collects them."""
        parsed = environment.parsed_options
        runner = environment.runner
        if parsed is not None and isinstance(runner, MasterRunner):
            # Which workers this start reaches: each takes its slice of an address pool.
            setattr(parsed, WORKERS_OPTION, _started_workers(runner))
        try:
            slos = [*slos_of_scenario(parsed), *self.slo.command_line]
        except OptionError as exc:  # a scenario changed in the web UI
            log.error("ocpp-fleet cannot start: %s", exc)
            slos = []
            if getattr(parsed, "headless", False) and environment.runner is not None:
                environment.process_exit_code = 2
                gevent.spawn(environment.runner.quit)
        if parsed is not None:
            setattr(parsed, WINDOWS_OPTION, bool(slos))
        if not slos:
            return
        self.collector = WindowCollector()
        steps = steps_schedule(environment)
        if steps is not None:
            self.slo.verdict = None
            self.steps = StepsRun(
                schedule=steps,
                slos=slos,
                collector=self.collector,
                fleet_state=self._fleet_state,
                generator_health=self._generator_health,
            )
        else:
            self.slo.begin_collected(slos, self.collector)

    def _cut_windows(self, environment: Environment) -> None:
        """Record this fleet's measurements (a RunStats rebuilt from the request events) and
        cut them into windows."""
        stats = RunStats()
        if self._window_recorder is None:
            self._window_recorder = RequestRecorder()
            environment.events.request.add_listener(self._window_recorder)
        self._window_recorder.stats = stats
        bridge = self.bridge
        self.cutter = WindowCutter(stats, lambda: None if bridge is None else bridge.generator)

    def _feed_local(self) -> None:
        """A local run hands itself a window (every LOCAL_WINDOW_INTERVAL)."""
        if self.cutter is not None and self.collector is not None:
            self._drain()
            self.collector.receive(0, self.cutter.cut())

    def _end_windows(self) -> None:
        """Stop cutting and collecting (the test is over, or a new one starts)."""
        if self._feeder is not None:
            self._feeder.kill(block=False)
            self._feeder = None
        if self._window_recorder is not None:
            self._window_recorder.stats = None
        self.cutter = None

    def _fleet_state(self) -> FleetState:
        return FleetState.of(self._live_snapshots())

    def _generator_health(self) -> Mapping[str, Any]:
        health: Mapping[str, Any] = self.fleet_view()["health"]
        return health

    def _live_snapshots(self) -> list[dict[str, Any]]:
        """The latest fleet snapshot of every live worker (or this process's)."""
        if self.is_master:
            runner = self.environment.runner if self.environment else None
            alive = set(getattr(runner, "clients", {}) or {})
            return [
                snap
                for client_id, (_, snap) in self.worker_snapshots.items()
                if not alive or client_id in alive
            ]
        snap = self.bridge.snapshot if self.bridge is not None else {}
        return [snap] if snap else []

    def _check_outputs(self, environment: Environment) -> str | None:
        """``--verdict-json`` and ``--report`` need the steps shape and SLOs."""
        outputs = verdict_outputs(environment.parsed_options)
        if not outputs:
            return None
        option = "--verdict-json" if outputs.verdict_json is not None else "--report"
        if steps_schedule(environment) is None:
            return (
                f"{option} writes the verdict of a steps shape: give --fleet-shape "
                "steps:sizes=.../...,hold=...,rate=... (and SLOs)"
            )
        if not self.slo.command_line and not slos_of_scenario(environment.parsed_options):
            return (
                f"{option} writes a verdict over SLOs: give --slo EXPR, $LOCUST_SLO or "
                "[slo] rules in the scenario"
            )
        return None

    def on_spawning_complete(self, **_: Any) -> None:
        self._spawn_done = time.monotonic()
        if self.slo.running:
            self._drain()
            self.slo.ramped()

    def on_test_stopping(self, environment: Environment, **_: Any) -> None:
        if self.steps is not None and not self.steps.finished:
            self._finish_steps()
        if self.slo.running:
            self._drain()
            verdict = self.slo.judge()
            log.info("%s", verdict.line())

    def _finish_steps(self) -> None:
        steps = self.steps
        if steps is None:
            return
        try:
            self._feed_local()  # a local run's last window (a master has what arrived)
        except Exception:
            log.exception("collecting the fleet's last window failed")
        self._end_windows()
        steps.finish()
        verdict = steps.verdict
        log.info(
            "Capacity verdict: %s",
            "none, no step was judged" if verdict is None else verdict.sentence(),
        )

    def _drain(self) -> None:
        """Fire what the loop has measured so far (the window ends or starts now)."""
        if self.bridge is not None:
            self.bridge.drain()

    def on_test_stop(self, environment: Environment, **_: Any) -> None:
        self._end_windows()  # a worker's windows end with the test
        if self.bridge is not None:
            self.bridge.stop_fleet()
            self._judge_timeouts(now=True)
            if isinstance(environment.runner, WorkerRunner):
                self._report_stopped(environment.runner)

    def _report_stopped(self, runner: WorkerRunner) -> None:
        """Send the master this worker's last requests (the shutdown's StopTransactions and
        closes), then say that its wallboxes have stopped (messages arrive in order)."""
        try:
            runner._send_stats()
            runner.send_message(STOPPED_MESSAGE, {"index": self.worker_index})
        except Exception as exc:  # a master that is gone: nothing to tell
            log.warning("cannot tell the master that the wallboxes stopped: %s", exc)

    def _on_worker_stopped(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._stopped_workers.add(int((msg.data or {}).get("index", -1)))

    def stop_workers_first(self, runner: MasterRunner) -> None:
        """Before a master quits a running test: stop it (the workers stop their
        wallboxes) and wait until every worker reported its wallboxes stopped, so that
        the master's statistics hold the shutdown's requests too."""
        from locust.runners import STATE_RUNNING, STATE_SPAWNING

        if runner.state not in (STATE_SPAWNING, STATE_RUNNING):
            return
        clients = runner.clients
        expected = {
            int(runner.get_worker_index(client.id))
            for client in (*clients.spawning, *clients.running)
        }
        self._stopped_workers.clear()
        log.info("stopping the wallboxes of %d workers before quitting", len(expected))
        started = time.monotonic()
        self._reported_at = dict.fromkeys(expected, started)
        runner.stop()
        while not expected <= self._stopped_workers:
            now = time.monotonic()
            waiting = expected - self._stopped_workers
            if now - started > STOPPED_WAIT or all(
                now - self._reported_at.get(index, started) > STOPPED_SILENCE for index in waiting
            ):
                break
            gevent.sleep(0.1)
        missing = sorted(expected - self._stopped_workers)
        if missing:
            log.warning(
                "worker %s did not report its wallboxes stopped (waited %.0f s): the totals "
                "may miss its last requests",
                ", ".join(map(str, missing)),
                time.monotonic() - started,
            )

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        if self.slo.running:  # quitting before the test stopped (SIGTERM)
            self._drain()
            self.slo.judge()
        if self.steps is not None and not self.steps.finished:
            self._finish_steps()
        self._end_windows()
        if self.bridge is not None:
            self.bridge.stop_fleet()
            self._judge_timeouts(now=True)
        if self.steps is not None:
            self._steps_outcome(environment, self.steps)
            return
        self._generator_outcome(environment)
        verdict = self.slo.verdict
        if verdict is not None and environment.process_exit_code is None:
            runner = environment.runner
            if not verdict.passed:
                environment.process_exit_code = 1
            elif not getattr(runner, "exceptions", None):
                # The SLOs judge the failed requests: they, not Locust's "any failure
                # is exit code 1", decide (exceptions in user code still count).
                environment.process_exit_code = 0

    def _generator_outcome(self, environment: Environment) -> None:
        """Connection attempts that timed out while the generator lagged, and nothing else
        failed: the CSMS failed nothing, so Locust's "any failure is exit code 1" does
        not apply (an SLO verdict, judged after this, still decides)."""
        runner = environment.runner
        if environment.process_exit_code is not None or runner is None or runner.exceptions:
            return
        if isinstance(runner, WorkerRunner):
            return
        errors = getattr(getattr(runner, "stats", None), "errors", None) or {}
        counted = generator_failures_only(
            (str(e.method), str(e.error), int(e.occurrences)) for e in errors.values()
        )
        if counted:
            import locust.log

            if not locust.log.unhandled_greenlet_exception:
                environment.process_exit_code = 0
                log.warning(
                    "%d connection attempts timed out while the load generator lagged and "
                    "nothing else failed: exit code 0 (the CSMS failed nothing)",
                    counted,
                )

    def _steps_outcome(self, environment: Environment, steps: StepsRun) -> None:
        """Write ``--verdict-json`` and ``--report``; the exit code: 0 with a capacity, 1
        when the first step failed (or none was judged), as ``ocpp-fleet capacity``."""
        verdict = steps.verdict
        if verdict is not None:
            try:
                written = write_outputs(environment.parsed_options, verdict, steps)
            except OSError as exc:
                log.error("cannot write the verdict: %s", exc)
                if environment.process_exit_code is None:
                    environment.process_exit_code = 2
            else:
                for path in written:
                    log.info("capacity verdict written to %s", path)
        if environment.process_exit_code is not None:
            return
        if verdict is None or verdict.capacity is None:
            environment.process_exit_code = 1
        elif not getattr(environment.runner, "exceptions", None):
            environment.process_exit_code = 0

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        if self._lag_sampler is not None:
            self._lag_sampler.kill(block=False)
            self._lag_sampler = None
        if not isinstance(self.environment.runner if self.environment else None, WorkerRunner):
            self.print_summary()
            lines = limit_lines(
                self.spawn_overload, self._generator_timeouts_counted(), self._spawn_rate()
            )
            if lines:
                print("\n".join(lines), file=sys.stdout, flush=True)
            if self.slo.verdict is not None:
                print("\n".join(verdict_lines(self.slo.verdict)), file=sys.stdout, flush=True)
            if self.steps is not None and self.steps.finished:
                lines = steps_verdict_lines(self.steps.verdict, unjudged=self.steps.judge.unjudged)
                print("\n".join(lines), file=sys.stdout, flush=True)
        if self.bridge is not None:
            self.bridge.close()
        if self.metrics is not None:
            try:
                self.metrics.close()
            except Exception:  # the process ends anyway
                log.debug("closing the metrics server failed", exc_info=True)
            self.metrics = None

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        if self.bridge is not None:
            report: dict[str, Any] = {"index": self.worker_index}
            if self.cutter is not None:
                self._drain()  # what the loop measured until now is in this window
                report["window"] = self.cutter.cut()
            report["snapshot"] = self.bridge.snapshot
            data[REPORT_KEY] = report

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        report = data.get(REPORT_KEY)
        if not report:
            return
        self._reported_at[int(report.get("index", 0))] = time.monotonic()
        window = report.get("window")
        if window is not None and self.collector is not None:
            self._collect(int(report.get("index", 0)), window)
        if not report.get("snapshot"):
            return
        index, snapshot = int(report["index"]), report["snapshot"]
        self.worker_snapshots[client_id] = (index, snapshot)
        self._worst_seen[index] = snapshot
        health = snapshot.get("health") or {}
        overloaded = bool(health.get("overloaded"))
        if overloaded and index not in self._overloaded_workers:
            self._overloaded_workers.add(index)
            rate = self._spawning_rate()
            if rate is not None:
                self._note_spawn_overload(rate, index, health)
                workers = len(getattr(self._runner, "clients", {}) or {}) or 1
                log.warning(
                    "worker %d: %s",
                    index,
                    spawn_rate_warning(
                        spawn_rate=rate, workers=workers, where=f"worker {index}", health=health
                    ),
                )
            else:
                log.warning(
                    "worker %d: %s",
                    index,
                    bottleneck_warning(aggregate({index: snapshot})["health"]),
                )
        elif not overloaded and index in self._overloaded_workers:
            self._overloaded_workers.discard(index)
            log.warning("worker %d: the load generator keeps up again", index)
        if not self._timeouts_warned and any(
            GENERATOR_TIMEOUT in str(error.get("error", ""))
            for error in (data.get("errors") or {}).values()
        ):
            self._timeouts_warned = True
            log.warning(
                "worker %d: %s",
                index,
                timeout_warning(
                    spawn_rate=self._spawn_rate(), where=f"worker {index}", health=health
                ),
            )

    def _collect(self, index: int, window: Any) -> None:
        assert self.collector is not None
        try:
            self.collector.receive(index, window)
        except ValueError as exc:
            if index not in self._bad_windows:  # once per worker and test
                self._bad_windows.add(index)
                log.error(
                    "worker %d sent a window this master cannot read (%s): is it running "
                    "the same version of ocpp-fleet?",
                    index,
                    exc,
                )

    def _on_drop(self, environment: Environment, msg: Any, **_: Any) -> None:
        if self.bridge is not None and self.bridge.configured:
            share = float((msg.data or {}).get("share", 0.0))
            log.info("reconnect wave: dropping %.0f %% of the connections", share * 100)
            self.bridge.drop_connections(share)

    def _on_health(self, snapshot: HealthSnapshot) -> None:
        rate = None if isinstance(self._runner, WorkerRunner) else self._spawning_rate()
        if snapshot.overloaded and rate is not None:  # a local run spawning
            health = snapshot.as_dict()
            self._note_spawn_overload(rate, 0, health)
            log.warning(
                "%s",
                spawn_rate_warning(spawn_rate=rate, workers=1, where="this process", health=health),
            )
        elif snapshot.overloaded and self._spawning():  # a worker spawning
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

    # ------------------------------------------------------------------ the generator as the limit

    @property
    def _runner(self) -> Any:
        return self.environment.runner if self.environment is not None else None

    def _spawning(self) -> bool:
        """Spawning now, or it ended so recently that an overload verdict now (which needs
        several windows over the limits) began while it ran."""
        from locust.runners import STATE_SPAWNING

        runner = self._runner
        if isinstance(runner, WorkerRunner):
            spawning = bool(runner.worker_state == STATE_SPAWNING)
        else:
            spawning = runner is not None and runner.state == STATE_SPAWNING
        done = self._spawn_done
        return spawning or (done is not None and time.monotonic() - done <= SPAWN_BLAME)

    def _spawning_rate(self) -> float | None:
        """The spawn rate (users/s) of the master or local run while it spawns (or just
        spawned, see :meth:`_spawning`), else None."""
        if not self._spawning():
            return None
        return self._spawn_rate()

    def _spawn_rate(self) -> float | None:
        """The last spawn rate (users/s) of the master or local run, if known."""
        rate = getattr(self._runner, "spawn_rate", None)  # a master's
        if not rate and self.environment is not None:
            rate = getattr(self.environment.parsed_options, "spawn_rate", None)
        try:
            return float(rate) if rate else None
        except (TypeError, ValueError):
            return None

    def _note_spawn_overload(self, rate: float, worker: int, health: Mapping[str, Any]) -> None:
        if self.spawn_overload is None:
            self.spawn_overload = SpawnOverload(spawn_rate=rate)
        self.spawn_overload.add(worker, health)

    def _sample_lag(self) -> None:
        """Note the loop lag of the fleet's last closed health window (once per snapshot)."""
        snapshot = self.bridge.snapshot if self.bridge is not None else None
        if not snapshot or snapshot is self._last_health:
            return
        self._last_health = snapshot
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
        options = self.bridge.options if self.bridge is not None else None
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
                if not self._timeouts_warned and not isinstance(self._runner, WorkerRunner):
                    self._timeouts_warned = True  # a local run (a master hears of a worker's)
                    health = (self.bridge.snapshot if self.bridge else {}).get("health") or {}
                    log.warning(
                        "%s",
                        timeout_warning(
                            spawn_rate=self._spawn_rate(), where="this process", health=health
                        ),
                    )
            assert self._fire is not None
            self._fire(**kwargs)

    def _generator_timeouts_counted(self) -> int:
        """Generator timeouts in this process's statistics (a master: every worker's)."""
        errors = getattr(getattr(self._runner, "stats", None), "errors", None) or {}
        return sum(
            int(e.occurrences)
            for e in errors.values()
            if str(e.method) == WEBSOCKET and GENERATOR_TIMEOUT in str(e.error)
        )

    # ------------------------------------------------------------------ views

    def fleet_view(self) -> dict[str, Any]:
        """What the Fleet tab shows: this process's fleet, or every worker's summed."""
        if self.is_master:
            runner = self.environment.runner if self.environment else None
            alive = set(getattr(runner, "clients", {}) or {})
            snapshots = {
                index: snap
                for client_id, (index, snap) in self.worker_snapshots.items()
                if not alive or client_id in alive
            }
            view = aggregate(snapshots)
            view["role"] = "master"
        else:
            snap = self.bridge.snapshot if self.bridge is not None else {}
            view = aggregate({self.worker_index: snap} if snap else {})
            view["role"] = "local"
        view["errors"] = list(self.bridge.errors) if self.bridge is not None else []
        if self.config_error:
            view["errors"].append(self.config_error)
        return view

    def print_summary(self) -> None:
        if self._summary_printed:
            return
        self._summary_printed = True
        if self.is_master:
            view = aggregate(self._worst_seen)
        else:
            view = self.fleet_view()
        if not view["workers"]:
            return
        print("\n".join(summary_lines(view)), file=sys.stdout, flush=True)


def _started_workers(runner: MasterRunner) -> list[int]:
    """The sorted indexes of the workers a master's start reaches (not missing ones)."""
    clients = runner.clients
    return sorted(
        int(runner.get_worker_index(client.id))
        for client in (*clients.ready, *clients.spawning, *clients.running)
    )


def _stop_workers_before_quitting(runner: MasterRunner, plugin: FleetPlugin) -> None:
    """Make ``runner.quit`` stop a running test first (:meth:`FleetPlugin.stop_workers_first`):
    Locust's quit waits half a second for the workers' last reports, not for their
    wallboxes to stop."""
    quit_now = runner.quit

    def quit() -> None:
        try:
            plugin.stop_workers_first(runner)
        except Exception:
            log.exception("stopping the workers before quitting failed")
        quit_now()

    runner.quit = quit  # type: ignore[method-assign]
