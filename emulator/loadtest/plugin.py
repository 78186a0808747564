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
from typing import TYPE_CHECKING, Any

import gevent
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from emulator.fleet.health import HealthSnapshot
from emulator.fleet.scenario import ScenarioError
from emulator.loadtest.bridge import FleetBridge
from emulator.loadtest.options import (
    OptionError,
    RequestRecorder,
    add_arguments,
    command_line_slos,
    fleet_options,
    metrics_address,
    scenario_slos,
    shape_schedule,
)
from emulator.loadtest.schedules import ScheduleError
from emulator.loadtest.shapes import DROP_MESSAGE, ScheduleShape
from emulator.loadtest.view import aggregate, bottleneck_warning, summary_lines
from emulator.metrics.slo import Slo, Verdict, evaluate, verdict_lines
from emulator.metrics.stats import RunStats

if TYPE_CHECKING:
    from emulator.metrics.prometheus import MetricsEndpoint

__all__ = ["FleetPlugin", "plugin_of", "register"]

log = logging.getLogger("ocpp_fleet")

_ATTRIBUTE = "ocpp_fleet"
REPORT_KEY = "ocpp_fleet"
# A stopping wallbox gets drain_timeout (10 s) for its transaction messages and
# close_timeout (5 s) for the close handshake; then a margin.
STOP_TIMEOUT = 20.0


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
        if web_ui is not None:
            from emulator.loadtest.webui import install

            install(web_ui, self)

    def on_test_start(self, environment: Environment, **_: Any) -> None:
        if self.is_master:
            self.worker_snapshots.clear()
            self._overloaded_workers.clear()
            return
        if self.bridge is None:
            return
        self.config_error = None
        judging = self.slo.judges  # a local run
        try:
            options = fleet_options(environment.parsed_options, host=environment.host)
            slos = []
            if judging:
                slos = scenario_slos(options.scenario, options.scenario_path)
                slos += self.slo.command_line
            self.bridge.configure(options, worker_index=self.worker_index)
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
        if slos:
            self.slo.begin(environment, slos)

    def on_spawning_complete(self, **_: Any) -> None:
        if self.slo.running:
            self._drain()
            self.slo.ramped()

    def on_test_stopping(self, environment: Environment, **_: Any) -> None:
        if self.slo.running:
            self._drain()
            verdict = self.slo.judge()
            log.info("%s", verdict.line())

    def _drain(self) -> None:
        """Fire what the loop has measured so far (the window ends or starts now)."""
        if self.bridge is not None:
            self.bridge.drain()

    def on_test_stop(self, environment: Environment, **_: Any) -> None:
        if self.bridge is not None:
            self.bridge.stop_fleet(timeout=STOP_TIMEOUT)

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        if self.slo.running:  # quitting before the test stopped (SIGTERM)
            self._drain()
            self.slo.judge()
        if self.bridge is not None:
            self.bridge.stop_fleet(timeout=STOP_TIMEOUT)
        verdict = self.slo.verdict
        if verdict is not None and environment.process_exit_code is None:
            runner = environment.runner
            if not verdict.passed:
                environment.process_exit_code = 1
            elif not getattr(runner, "exceptions", None):
                # The SLOs judge the failed requests: they, not Locust's "any failure
                # is exit code 1", decide (exceptions in user code still count).
                environment.process_exit_code = 0

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        if not isinstance(self.environment.runner if self.environment else None, WorkerRunner):
            self.print_summary()
            if self.slo.verdict is not None:
                print("\n".join(verdict_lines(self.slo.verdict)), file=sys.stdout, flush=True)
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
            data[REPORT_KEY] = {"index": self.worker_index, "snapshot": self.bridge.snapshot}

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        report = data.get(REPORT_KEY)
        if not report or not report.get("snapshot"):
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
    """SLOs in a local run (docs/slo.md): a :class:`RunStats` rebuilt from the request
    events (only while judging), snapshots when the test starts and when spawning
    completes, the verdict when the test stops."""

    def __init__(self) -> None:
        self.command_line: list[Slo] = []
        self.judges = False  # a local run (a master refuses SLOs, a worker ignores them)
        self.slos: list[Slo] = []
        self.stats: RunStats | None = None
        self.verdict: Verdict | None = None
        self._recorder: RequestRecorder | None = None
        self._start: RunStats | None = None
        self._ramped: RunStats | None = None

    def init(self, parsed: Any, *, master: bool) -> str | None:
        """Read ``--slo``, ``$LOCUST_SLO`` and the scenario's ``[slo]`` (checked again
        at each test start: the web UI can change the scenario); the problem that ends
        the run, or None.  A master refuses SLOs: it has no fleet statistics."""
        try:
            self.command_line = command_line_slos(parsed, environ=os.environ)
            from_scenario = _scenario_slos(parsed)
        except OptionError as exc:
            return f"ocpp-fleet cannot start: {exc}"
        if master:
            given = [*self.command_line, *from_scenario]
            if given:
                return (
                    f"ocpp-fleet cannot start: {given[0].source}: SLOs are judged by a "
                    "local run only (no --master/--worker): a master has the workers' "
                    "Locust statistics, not the fleet's (docs/slo.md)"
                )
            return None
        self.judges = True
        return None

    @property
    def running(self) -> bool:
        return self.stats is not None and self.verdict is None

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

    def judge(self) -> Verdict:
        assert self.stats is not None and self._start is not None
        start, note = self._ramped, None
        if start is None:
            start, note = self._start, "spawning had not completed: judged from the start"
        self.verdict = evaluate(self.slos, self.stats.snapshot().since(start), note=note)
        self.stats = None  # stop recording: the window is over
        if self._recorder is not None:
            self._recorder.stats = None
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
