"""A master (``--master``): runs no wallboxes; sums its workers' fleets and judges.

It keeps the latest snapshot of each worker for the Fleet tab, warns when a worker's
generator is overloaded (naming the spawn rate when spawning did it), judges the SLOs or
the steps from the windows its workers send (it asks for them with an option every spawn
message carries), and prints the fleet summary at the end.  A master that quits a running
test (the end of ``--run-time``, SIGTERM) first stops the workers' wallboxes and waits
until each has reported them stopped, with its last requests: the master's totals then
include every StopTransaction and close of the shutdown.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import gevent
from locust.env import Environment

from emulator.fleet.stopping import STOP_CAP, STOP_STALL
from emulator.loadtest import locust_internals
from emulator.loadtest.judging import Judging
from emulator.loadtest.options import WINDOWS_OPTION, WORKERS_OPTION, OptionError
from emulator.loadtest.overload import GENERATOR_TIMEOUT, spawn_rate_warning
from emulator.loadtest.role import (
    Refused,
    Role,
    Setup,
    attach_shape,
    outputs_problem,
    read_judged,
)
from emulator.loadtest.steps import FleetState, WindowCollector
from emulator.loadtest.view import aggregate, bottleneck_warning, summary_lines
from emulator.loadtest.worker_role import REPORT_KEY, STOPPED_MESSAGE
from emulator.run.setup import option_text

__all__ = ["MasterRole"]

log = logging.getLogger("ocpp_fleet")

# Heartbeats (one a second) a worker may miss before the master calls it missing.
WORKER_LIVENESS = 60
# A quitting master waits for that while each worker still reports (every 3 s): a worker
# waits for its wallboxes while they make progress (FleetBridge.stop_fleet), so the master
# gives up on one that sent nothing for its stall time and a report interval, or when every
# worker had its time.
STOPPED_SILENCE = STOP_STALL + 5.0
STOPPED_WAIT = STOP_CAP + 10.0


class MasterRole(Role):
    name = "master"

    def __init__(self, *, environment: Environment, runner: Any) -> None:
        super().__init__(environment=environment, runner=runner)
        self.judging = Judging(
            environment=environment,
            drain=lambda: None,  # what the workers measured arrives with their reports
            fleet_state=self._fleet_state,
            generator_health=self._generator_health,
        )
        self.worker_snapshots: dict[str, tuple[int, dict[str, Any]]] = {}
        self._worst_seen: dict[int, dict[str, Any]] = {}
        self._overloaded_workers: set[int] = set()
        self._bad_windows: set[int] = set()
        self._stopped_workers: set[int] = set()
        self._reported_at: dict[int, float] = {}  # while stopping: each worker's last report
        self._summary_printed = False

    def _read_options(self, parsed: Any, host: str | None) -> Setup:
        """The master checks the scenario and the URL it sends its workers."""
        return read_judged(parsed, host, metrics_asked=bool(option_text(parsed, "metrics_port")))

    def start(self, web_ui: Any) -> None:
        parsed = self.environment.parsed_options
        form = web_ui is not None and not getattr(parsed, "autostart", False)
        setup = self._read_or_refuse(parsed, self.environment.host, fleet=not form)
        attach_shape(self.environment, self.runner, setup.schedule)
        problem = outputs_problem(setup.outputs, setup.slos, self.judging.steps_schedule())
        if problem is not None:
            self.refuse(problem)
            raise Refused
        if setup.metrics_asked:
            log.info("the master runs no wallboxes and serves no metrics: each worker does")
        self.runner.register_message(STOPPED_MESSAGE, self._on_worker_stopped)
        locust_internals.run_before_quit(self.runner, self.stop_workers_first)
        # A worker's heartbeat greenlet shares its process with a fleet loop that can
        # hold the GIL for seconds in a connect storm (40,000 wallboxes on 4 workers
        # of a 2-core host): after Locust's 3 s the master calls it missing and hands
        # its users to the others, doubling their load.  A dead worker is still
        # noticed, after WORKER_LIVENESS s.  (What starved the heartbeats for a
        # whole minute was the spawn messages: see emulator.loadtest.spawn_messages.)
        locust_internals.allow_missed_heartbeats(WORKER_LIVENESS)
        self._starting = False

    # ------------------------------------------------------------------ a test

    def on_test_start(self, environment: Environment, **_: Any) -> None:
        """The master judges when it has SLOs: it asks the workers for windows (an option
        every spawn message carries) and collects them."""
        self.judging.new_test()
        self.worker_snapshots.clear()
        self._overloaded_workers.clear()
        self._bad_windows.clear()
        parsed = environment.parsed_options
        if parsed is None:
            return
        # Which workers this start reaches: each takes its slice of an address pool.
        setattr(parsed, WORKERS_OPTION, locust_internals.started_workers(self.runner))
        try:
            setup = self._read_options(parsed, environment.host)
            fleet = setup.checked_fleet()
        except OptionError as exc:  # a file changed since it was checked
            self.refuse(str(exc), ends_run=self._headless(parsed))
            setup, fleet = Setup(fleet=None), None
        setattr(parsed, WINDOWS_OPTION, bool(setup.slos))
        if setup.slos and fleet is not None:
            self.judging.begin(fleet, list(setup.slos), WindowCollector())

    def on_spawning_complete(self, **_: Any) -> None:
        self.judging.spawning_complete()

    def on_test_stopping(self, environment: Environment, **_: Any) -> None:
        self.judging.stopping(lambda: None)

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        self.judging.stopping(lambda: None, quitting=True)
        self.judging.outcome()

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        self.print_summary()
        self.judging.print_verdicts()

    def print_summary(self) -> None:
        if self._summary_printed:
            return
        self._summary_printed = True
        view = aggregate(self._worst_seen)
        if view["workers"]:
            print("\n".join(summary_lines(view)), file=sys.stdout, flush=True)

    # ------------------------------------------------------------------ the workers

    def _live_snapshots(self) -> dict[int, dict[str, Any]]:
        """The latest fleet snapshot of every live worker, by index."""
        alive = locust_internals.live_client_ids(self.runner)
        return {
            index: snap
            for client_id, (index, snap) in self.worker_snapshots.items()
            if not alive or client_id in alive
        }

    def _fleet_state(self) -> FleetState:
        return FleetState.of(list(self._live_snapshots().values()))

    def _generator_health(self) -> Mapping[str, Any]:
        health: Mapping[str, Any] = self.fleet_view()["health"]
        return health

    def fleet_view(self) -> dict[str, Any]:
        """What the Fleet tab shows: every live worker's fleet, summed."""
        view = aggregate(self._live_snapshots())
        view["role"] = "master"
        view["errors"] = [self.config_error] if self.config_error else []
        return view

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        report = data.get(REPORT_KEY)
        if not report:
            return
        index = int(report.get("index", 0))
        self._reported_at[index] = time.monotonic()
        window = report.get("window")
        if window is not None and self.judging.collector is not None:
            self._collect(self.judging.collector, index, window)
        snapshot = report.get("snapshot")
        if not snapshot:
            return
        self.worker_snapshots[client_id] = (index, snapshot)
        self._worst_seen[index] = snapshot
        health = snapshot.get("health") or {}
        self._note_health(index, snapshot, health)
        errors = (data.get("errors") or {}).values()
        if any(GENERATOR_TIMEOUT in str(error.get("error", "")) for error in errors):
            self.judging.warn_timeouts_once(f"worker {index}", health)

    def _note_health(self, index: int, snapshot: dict[str, Any], health: Mapping[str, Any]) -> None:
        """Warn when a worker's generator becomes overloaded, and when it keeps up again."""
        overloaded = bool(health.get("overloaded"))
        if overloaded and index not in self._overloaded_workers:
            self._overloaded_workers.add(index)
            rate = self.judging.spawning_rate()
            if rate is not None:
                self.judging.note_spawn_overload(rate, index, health)
                workers = locust_internals.worker_count(self.runner) or 1
                warning = spawn_rate_warning(
                    spawn_rate=rate, workers=workers, where=f"worker {index}", health=health
                )
            else:
                warning = bottleneck_warning(aggregate({index: snapshot})["health"])
            log.warning("worker %d: %s", index, warning)
        elif not overloaded and index in self._overloaded_workers:
            self._overloaded_workers.discard(index)
            log.warning("worker %d: the load generator keeps up again", index)

    def _collect(self, collector: WindowCollector, index: int, window: Any) -> None:
        try:
            collector.receive(index, window)
        except ValueError as exc:
            if index not in self._bad_windows:  # once per worker and test
                self._bad_windows.add(index)
                log.error(
                    "worker %d sent a window this master cannot read (%s): is it running "
                    "the same version of ocpp-fleet?",
                    index,
                    exc,
                )

    # ------------------------------------------------------------------ quitting

    def _on_worker_stopped(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._stopped_workers.add(int((msg.data or {}).get("index", -1)))

    def stop_workers_first(self) -> None:
        """Before a master quits a running test: stop it (the workers stop their
        wallboxes) and wait until every worker reported its wallboxes stopped, so that
        the master's statistics hold the shutdown's requests too."""
        runner = self.runner
        if not locust_internals.test_running(runner):
            return
        expected = locust_internals.running_workers(runner)
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
