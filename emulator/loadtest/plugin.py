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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import gevent
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from emulator.fleet.health import HealthSnapshot
from emulator.fleet.scenario import ScenarioError
from emulator.loadtest.bridge import FleetBridge
from emulator.loadtest.options import (
    WINDOWS_OPTION,
    OptionError,
    RequestRecorder,
    add_arguments,
    command_line_slos,
    fleet_options,
    metrics_address,
    scenario_slos,
    shape_schedule,
    verdict_outputs,
)
from emulator.loadtest.schedules import ScheduleError, Steps
from emulator.loadtest.shapes import DROP_MESSAGE, ScheduleShape
from emulator.loadtest.steps import (
    FleetState,
    RowRecorder,
    Span,
    StepJudge,
    WindowCollector,
    WindowCutter,
    step_line,
)
from emulator.loadtest.steps import verdict_lines as steps_verdict_lines
from emulator.loadtest.view import aggregate, bottleneck_warning, summary_lines
from emulator.metrics.slo import Slo, Verdict, evaluate, verdict_lines
from emulator.metrics.stats import RunStats

if TYPE_CHECKING:
    from emulator.capacity import Step
    from emulator.capacity import Verdict as CapacityVerdict
    from emulator.metrics.prometheus import MetricsEndpoint

__all__ = ["FleetPlugin", "plugin_of", "register"]

log = logging.getLogger("ocpp_fleet")

_ATTRIBUTE = "ocpp_fleet"
REPORT_KEY = "ocpp_fleet"
# A stopping wallbox gets drain_timeout (10 s) for its transaction messages and
# close_timeout (5 s) for the close handshake; then a margin.
STOP_TIMEOUT = 20.0
# A local run hands itself a window this often (a worker sends one with each report).
LOCAL_WINDOW_INTERVAL = 1.0
# How often the steps judge looks at the fleet and the clock.
STEPS_POLL_INTERVAL = 0.5


def register(events: Any) -> FleetPlugin:
    """Hook the fleet into ``events`` (``locust.events``); call once, in the locustfile."""
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
        self.slo = _SloJudge()
        # Windows (emulator.loadtest.steps): cut on a fleet process, collected where judged.
        self._window_recorder: RequestRecorder | None = None
        self.cutter: WindowCutter | None = None
        self.collector: WindowCollector | None = None
        self._feeder: gevent.Greenlet | None = None
        self._bad_windows: set[int] = set()
        self.steps: _StepsRun | None = None

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
            self.bridge = FleetBridge(
                fire=environment.events.request.fire,
                on_health=self._on_health,
                prometheus=None if self.metrics is None else self.metrics.reporter,
                collector=None if self.metrics is None else self.metrics.collector,
            )
            self.bridge.start()
            if runner is not None:
                runner.register_message(DROP_MESSAGE, self._on_drop)
        elif getattr(environment.parsed_options, "metrics_port", ""):
            log.info("the master runs no wallboxes and serves no metrics: each worker does")
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
        windows = isinstance(environment.runner, WorkerRunner) and _flag(
            environment.parsed_options, WINDOWS_OPTION
        )
        steps = _steps_schedule(environment) if judging else None
        try:
            options = fleet_options(environment.parsed_options, host=environment.host)
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
        if windows:
            self._cut_windows(environment)
        elif slos and steps is not None:
            self.slo.verdict = None
            self._cut_windows(environment)
            self.collector = WindowCollector()
            self._feeder = gevent.spawn(
                _every, LOCAL_WINDOW_INTERVAL, self._feed_local, "collecting the fleet's windows"
            )
            self.steps = _StepsRun(
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
        try:
            slos = [*_scenario_slos(parsed), *self.slo.command_line]
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
        steps = _steps_schedule(environment)
        if steps is not None:
            self.slo.verdict = None
            self.steps = _StepsRun(
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
        if _steps_schedule(environment) is None:
            return (
                f"{option} writes the verdict of a steps shape: give --fleet-shape "
                "steps:sizes=.../...,hold=...,rate=... (and SLOs)"
            )
        if not self.slo.command_line and not _scenario_slos(environment.parsed_options):
            return (
                f"{option} writes a verdict over SLOs: give --slo EXPR, $LOCUST_SLO or "
                "[slo] rules in the scenario"
            )
        return None

    def on_spawning_complete(self, **_: Any) -> None:
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
            self.bridge.stop_fleet(timeout=STOP_TIMEOUT)

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        if self.slo.running:  # quitting before the test stopped (SIGTERM)
            self._drain()
            self.slo.judge()
        if self.steps is not None and not self.steps.finished:
            self._finish_steps()
        self._end_windows()
        if self.bridge is not None:
            self.bridge.stop_fleet(timeout=STOP_TIMEOUT)
        if self.steps is not None:
            self._steps_outcome(environment, self.steps)
            return
        verdict = self.slo.verdict
        if verdict is not None and environment.process_exit_code is None:
            runner = environment.runner
            if not verdict.passed:
                environment.process_exit_code = 1
            elif not getattr(runner, "exceptions", None):
                # The SLOs judge the failed requests: they, not Locust's "any failure
                # is exit code 1", decide (exceptions in user code still count).
                environment.process_exit_code = 0

    def _steps_outcome(self, environment: Environment, steps: _StepsRun) -> None:
        """Write ``--verdict-json`` and ``--report``; the exit code: 0 with a capacity, 1
        when the first step failed (or none was judged), as ``ocpp-fleet capacity``."""
        verdict = steps.verdict
        if verdict is not None:
            try:
                written = _write_outputs(environment.parsed_options, verdict, steps)
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
        if not isinstance(self.environment.runner if self.environment else None, WorkerRunner):
            self.print_summary()
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
        window = report.get("window")
        if window is not None and self.collector is not None:
            self._collect(int(report.get("index", 0)), window)
        if not report.get("snapshot"):
            return
        index, snapshot = int(report["index"]), report["snapshot"]
        self.worker_snapshots[client_id] = (index, snapshot)
        self._worst_seen[index] = snapshot
        overloaded = bool((snapshot.get("health") or {}).get("overloaded"))
        if overloaded and index not in self._overloaded_workers:
            self._overloaded_workers.add(index)
            log.warning(
                "worker %d: %s", index, bottleneck_warning(aggregate({index: snapshot})["health"])
            )
        elif not overloaded and index in self._overloaded_workers:
            self._overloaded_workers.discard(index)
            log.warning("worker %d: the load generator keeps up again", index)

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
        if snapshot.overloaded:
            log.warning(
                "The load generator is the bottleneck: %s. Latencies measured now include "
                "its own delays: run fewer wallboxes per worker or add workers.",
                snapshot.describe(),
            )
        else:
            log.warning("The load generator keeps up again: %s", snapshot.describe())

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


class _SloJudge:
    """The plain SLO verdict (docs/slo.md) over the window from spawning completed to the
    test's stop.  A local run: a :class:`RunStats` rebuilt from the request events (only
    while judging), snapshots when the test starts and when spawning completes, the verdict
    when the test stops.  A master: the same windows as spans of the workers' windows
    (:meth:`begin_collected`)."""

    def __init__(self) -> None:
        self.command_line: list[Slo] = []
        self.judges = False  # a local run or a master (a worker sends windows instead)
        self.slos: list[Slo] = []
        self.stats: RunStats | None = None
        self.verdict: Verdict | None = None
        self._recorder: RequestRecorder | None = None
        self._start: RunStats | None = None
        self._ramped: RunStats | None = None
        self._collector: WindowCollector | None = None
        self._span_start: Span | None = None
        self._span_ramped: Span | None = None

    def init(self, parsed: Any, *, master: bool) -> str | None:
        """Read ``--slo``, ``$LOCUST_SLO`` and the scenario's ``[slo]`` (checked again
        at each test start: the web UI can change the scenario); the problem that ends
        the run, or None."""
        try:
            self.command_line = command_line_slos(parsed, environ=os.environ)
            _scenario_slos(parsed)
        except OptionError as exc:
            return f"ocpp-fleet cannot start: {exc}"
        self.judges = True
        return None

    @property
    def running(self) -> bool:
        return (self.stats is not None or self._span_start is not None) and self.verdict is None

    def begin_collected(self, slos: list[Slo], collector: WindowCollector) -> None:
        """A master: judge the workers' windows."""
        self.slos = slos
        self.stats = None
        self.verdict = None
        self._collector = collector
        self._span_start = collector.open()
        self._span_ramped = None

    def begin(self, environment: Environment, slos: list[Slo]) -> None:
        self.slos = slos
        self.stats = RunStats()
        self.verdict = None
        if self._recorder is None:
            self._recorder = RequestRecorder(self.stats)
            environment.events.request.add_listener(self._recorder)
        self._recorder.stats = self.stats
        self._start = self.stats.snapshot()
        self._ramped = None

    def ramped(self) -> None:
        """Spawning completed (again, when the user count changed): the window starts."""
        if self.stats is not None:
            self._ramped = self.stats.snapshot()
        elif self._collector is not None and self._span_start is not None:
            if self._span_ramped is not None:
                self._collector.close(self._span_ramped)
            self._span_ramped = self._collector.open()

    def judge(self) -> Verdict:
        if self._collector is not None and self._span_start is not None:
            return self._judge_collected(self._collector, self._span_start)
        assert self.stats is not None and self._start is not None
        start, note = self._ramped, None
        if start is None:
            start, note = self._start, "spawning had not completed: judged from the start"
        self.verdict = evaluate(self.slos, self.stats.snapshot().since(start), note=note)
        self.stats = None  # stop recording: the window is over
        if self._recorder is not None:
            self._recorder.stats = None
        return self.verdict

    def _judge_collected(self, collector: WindowCollector, start: Span) -> Verdict:
        span, note = self._span_ramped, None
        if span is None:
            span, note = start, "spawning had not completed: judged from the start"
        window = span.measured(collector.clock())
        if not span.seconds:
            note = "no window from any worker arrived" + (f"; {note}" if note else "")
        self.verdict = evaluate(self.slos, window, note=note)
        for opened in (self._span_start, self._span_ramped):
            if opened is not None:
                collector.close(opened)
        self._span_start = self._span_ramped = None
        self._collector = None
        return self.verdict


def _scenario_slos(parsed: Any) -> list[Slo]:
    """The ``[slo]`` rules of ``--scenario``; none when it cannot be read (the bad
    scenario is reported when the test starts, as without SLOs)."""
    from emulator.fleet.scenario import load_scenario

    path = str(getattr(parsed, "scenario", "") or "").strip()
    if not path:
        return []
    try:
        scenario = load_scenario(path)
    except ScenarioError:
        return []
    return scenario_slos(scenario, path)


def _flag(parsed: Any, name: str) -> bool:
    value = getattr(parsed, name, False)
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _steps_schedule(environment: Environment) -> Steps | None:
    """The ``steps`` schedule of this test's shape (``--fleet-shape`` or a locustfile's
    ScheduleShape), or None."""
    shape = getattr(environment, "shape_class", None)
    if isinstance(shape, ScheduleShape) and isinstance(shape.schedule, Steps):
        return shape.schedule
    return None


class _StepsRun:
    """One test's steps verdict on the judging process: the judge and the time series,
    polled by a greenlet."""

    def __init__(
        self,
        *,
        schedule: Steps,
        slos: list[Slo],
        collector: WindowCollector,
        fleet_state: Callable[[], FleetState],
        generator_health: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.schedule = schedule
        self.slos = slos
        self.collector = collector
        self.fleet_state = fleet_state
        self.generator_health = generator_health
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.judge = StepJudge(
            sizes=schedule.sizes,
            hold=schedule.hold,
            slos=slos,
            collector=collector,
            on_step=self._show,
            on_phase=lambda text: log.info("%s", text),
        )
        self.rows = RowRecorder(collector)
        self.verdict: CapacityVerdict | None = None
        self.finished = False
        log.info(
            "capacity under Locust: steps of %s wallboxes, %g s each, SLOs %s",
            "/".join(f"{n:,}" for n in schedule.sizes),
            schedule.hold,
            ", ".join(slo.text for slo in slos),
        )
        self._greenlet: gevent.Greenlet | None = gevent.spawn(
            _every, STEPS_POLL_INTERVAL, self.poll, "judging the steps"
        )

    def run_time(self) -> float:
        return time.monotonic() - self.started

    def poll(self) -> None:
        fleet = self.fleet_state()
        self.judge.poll(self.run_time(), fleet)
        if self.rows.due():
            self.rows.sample(fleet, self.generator_health())

    def finish(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        fleet = self.fleet_state()
        self.judge.finish(self.run_time(), fleet)
        self.rows.sample(fleet, self.generator_health(), final=True)
        self.verdict = self.judge.verdict()
        self.finished = True

    def _show(self, step: Step, number: int) -> None:
        log.info("%s", step_line(step, number, len(self.schedule.sizes)))
        for result in step.judgements:
            log.info("  %s", result.line())
        if step.note:
            log.info("  note: %s", step.note)


def _write_outputs(parsed: Any, verdict: CapacityVerdict, steps: _StepsRun) -> list[str]:
    """``--verdict-json`` and ``--report``; the paths written."""
    outputs = verdict_outputs(parsed)
    if not outputs:
        return []
    import json

    from emulator.fleet.scenario import load_scenario
    from emulator.report import ReportData, run_parameters, write_report

    path = str(getattr(parsed, "scenario", "") or "")
    name, seed, start_time = path, 1, ""
    try:
        scenario = load_scenario(path)
    except (ScenarioError, OSError):
        pass
    else:
        name = scenario.name
        seed = scenario.seed if scenario.seed is not None else 1
        start_time = scenario.sessions.start_time
    start_text = str(getattr(parsed, "start_time", "") or "").strip()
    start_time = start_text or start_time
    seed_text = str(getattr(parsed, "seed", "") or "").strip()
    if seed_text.lstrip("-").isdigit():
        seed = int(seed_text)
    result = verdict.to_json(scenario=name, seed=seed, start_time=start_time)
    result["fleet_shape"] = str(getattr(parsed, "fleet_shape", "") or "")
    result["workers"] = len(steps.collector.workers)  # the fleet processes that sent windows
    written = []
    if outputs.verdict_json is not None:
        if outputs.verdict_json.parent != outputs.verdict_json:
            outputs.verdict_json.parent.mkdir(parents=True, exist_ok=True)
        outputs.verdict_json.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
        written.append(str(outputs.verdict_json))
    if outputs.report is not None:
        files = write_report(
            outputs.report,
            ReportData(
                kind="capacity",
                verdict=verdict.sentence(),
                result=result,
                rows=steps.rows.rows,
                interval=steps.rows.interval,
                parameters=run_parameters(
                    scenario=name,
                    seed=seed,
                    start_time=start_time,
                    csms_url=str(
                        getattr(parsed, "csms_url", "") or getattr(parsed, "host", "") or ""
                    ),
                    fleet_shape=result["fleet_shape"],
                    sizes="/".join(str(n) for n in steps.schedule.sizes),
                    hold_s=steps.schedule.hold,
                    spawn_rate=steps.schedule.rate,
                    slo=", ".join(slo.text for slo in steps.slos),
                    runner="Locust",
                ),
            ),
        )
        written.append(str(files.html))
    return written


def _every(seconds: float, action: Callable[[], None], what: str) -> None:
    """Run ``action`` every ``seconds`` in this greenlet until it is killed; a failure is
    logged (``what`` failed) and must not end the run."""
    while True:
        gevent.sleep(seconds)
        try:
            action()
        except Exception:
            log.exception("%s failed", what)
