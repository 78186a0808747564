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
    add_arguments,
    fleet_options,
    metrics_address,
    shape_schedule,
)
from emulator.loadtest.schedules import ScheduleError
from emulator.loadtest.shapes import DROP_MESSAGE, ScheduleShape
from emulator.loadtest.view import aggregate, bottleneck_warning, summary_lines

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
        try:
            options = fleet_options(environment.parsed_options, host=environment.host)
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

    def on_test_stop(self, environment: Environment, **_: Any) -> None:
        if self.bridge is not None:
            self.bridge.stop_fleet(timeout=STOP_TIMEOUT)

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        if self.bridge is not None:
            self.bridge.stop_fleet(timeout=STOP_TIMEOUT)

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        if not isinstance(self.environment.runner if self.environment else None, WorkerRunner):
            self.print_summary()
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
