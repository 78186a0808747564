"""A worker (``--worker``): a fleet run with its master's options, reported to its master.

Per-worker options: a master's spawn message carries its options to the workers; a worker
keeps its own source addresses and metrics options, or takes its slice of the master's
address pool (:func:`~emulator.loadtest.options.worker_options`).  Every report to the
master carries the worker's fleet snapshot, and a window of its measurements when the
master judges SLOs.  When its test stops, the worker stops its wallboxes, sends its last
requests and then :data:`STOPPED_MESSAGE` (a quitting master waits for it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import gevent
from locust.env import Environment

from emulator.fleet.stopping import STOP_CAP
from emulator.loadtest import locust_internals
from emulator.loadtest.fleet_role import FleetRole
from emulator.loadtest.judging import SPAWN_BLAME
from emulator.loadtest.options import (
    WINDOWS_OPTION,
    OptionError,
    RunSetup,
    metrics_address,
    own_options,
    worker_options,
)
from emulator.loadtest.role import Setup, read_fleet
from emulator.run.setup import option_flag

__all__ = ["MASTER_SILENCE", "REPORT_KEY", "STOPPED_MESSAGE", "WorkerRole"]

log = logging.getLogger("ocpp_fleet")

# The key of a worker's part of each report to its master.
REPORT_KEY = "ocpp_fleet"
# A worker tells its master that its wallboxes have stopped (after its last report).
STOPPED_MESSAGE = "ocpp_fleet_stopped"
# A worker quits when it heard nothing from its master for this long.  Locust's 60 s is
# shorter than a worker's wait for its wallboxes, during which it reads no message.
MASTER_SILENCE = int(STOP_CAP) + 30
# A test that starts while init still runs waits for it, at most 20 s (0.05 s a step).
START_UP_WAIT_STEPS = 400


class WorkerRole(FleetRole):
    name = "worker"

    def __init__(self, *, environment: Environment, runner: Any) -> None:
        super().__init__(environment=environment, runner=runner)
        self.index = max(0, int(runner.worker_index))
        # The per-worker options as this process was started (read at start-up, before a
        # master's spawn message overwrites them).
        self._own: Mapping[str, Any] | None = None
        self._spawn_done: float | None = None

    def _read_options(self, parsed: Any, host: str | None) -> Setup:
        """At start-up ``parsed`` holds this worker's own options, for each test its
        master's (its own per-worker ones kept)."""
        starting = self._own is None
        if self._own is None:
            self._own = own_options(parsed)
        view = worker_options(parsed, self._own, worker_index=self.index)
        fleet: RunSetup | None = None
        problem: str | None = "no test yet: the master sends the scenario and the URL"
        if not starting:  # the scenario and the URL are the master's, sent with each test
            # The verdict's paths are the master's, on its host: a worker writes none.
            fleet, problem = read_fleet(view.parsed, host, outputs=False)
        return Setup(
            fleet=fleet,
            fleet_problem=problem,
            metrics=metrics_address(view.parsed, environ=os.environ, worker_index=self.index),
            addresses=view,
            windows=option_flag(parsed, WINDOWS_OPTION),
        )

    def start(self, web_ui: Any) -> None:
        try:
            setup = self._read_or_refuse(
                self.environment.parsed_options, self.environment.host, fleet=False
            )
            self._start_fleet(setup.metrics)
            locust_internals.allow_master_silence(MASTER_SILENCE)
        finally:
            self._starting = False

    def _wait_for_start_up(self) -> None:
        """Starting the metrics server and the loop thread lets other greenlets run, so a
        master's first spawn message can arrive before ``init`` is done: wait for it."""
        for _ in range(START_UP_WAIT_STEPS):
            if not self._starting:
                return
            gevent.sleep(0.05)

    def _ends_process_at_start_up(self) -> bool:
        return False  # the runner's quit tells the master, which would otherwise wait

    def _metrics_hint(self) -> str:
        return " (several workers on one host: --metrics-port-per-worker)"

    # ------------------------------------------------------------------ a test

    def on_test_start(self, environment: Environment, **_: Any) -> None:
        self._end_windows()
        self._spawn_done = None
        self._wait_for_start_up()
        if self._bridge is None:
            return
        self.config_error = None
        parsed = environment.parsed_options
        try:
            setup = self._read_options(parsed, environment.host)
            options = setup.checked_fleet()
        except OptionError as exc:  # the master checked its own; this is the worker's part
            self.refuse(str(exc), ends_run=self._headless(parsed))
            return
        if not self._configure(options, detailed=setup.windows):
            return
        if setup.addresses is not None:
            (log.warning if setup.addresses.shared else log.info)(
                "worker %s: source addresses %s", self.index, setup.addresses.addresses
            )
        if setup.windows:  # the master judges SLOs: it wants windows
            self._cut_windows()

    def on_spawning_complete(self, **_: Any) -> None:
        self._spawn_done = time.monotonic()

    def _spawning(self) -> bool:
        done = self._spawn_done
        return locust_internals.spawning(self.runner) or (
            done is not None and time.monotonic() - done <= SPAWN_BLAME
        )

    def on_test_stop(self, environment: Environment, **_: Any) -> None:
        super().on_test_stop(environment)
        self._report_stopped()

    def _report_stopped(self) -> None:
        """Send the master this worker's last requests (the shutdown's StopTransactions and
        closes), then say that its wallboxes have stopped (messages arrive in order)."""
        try:
            locust_internals.send_stats_now(self.runner)
            self.runner.send_message(STOPPED_MESSAGE, {"index": self.index})
        except Exception as exc:  # a master that is gone: nothing to tell
            log.warning("cannot tell the master that the wallboxes stopped: %s", exc)

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        if self._bridge is None:
            return
        report: dict[str, Any] = {"index": self.index}
        if self.cutter is not None:
            self._drain()  # what the loop measured until now is in this window
            report["window"] = self.cutter.cut()
        report["snapshot"] = self.snapshot()
        data[REPORT_KEY] = report
