"""A local run (no ``--master``/``--worker``): a fleet, and the judge of its own verdicts.

Without a ``steps`` shape it judges the SLOs over the request events it fires itself
(exactly); with one it cuts its measurements into windows and hands itself one every
second, judged step by step like ``ocpp-fleet capacity`` (:mod:`.verdicts`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import gevent
from locust.env import Environment

from emulator.fleet.health import HealthSnapshot
from emulator.loadtest.fleet_role import FleetRole
from emulator.loadtest.judging import Judging
from emulator.loadtest.options import OptionError, metrics_address
from emulator.loadtest.overload import spawn_rate_warning
from emulator.loadtest.role import (
    Refused,
    Setup,
    attach_shape,
    outputs_problem,
    read_judged,
)
from emulator.loadtest.steps import FleetState, WindowCollector
from emulator.loadtest.verdicts import every
from emulator.loadtest.view import summary_lines

__all__ = ["LocalRole"]

log = logging.getLogger("ocpp_fleet")

# A local run hands itself a window this often (a worker sends one with each report).
LOCAL_WINDOW_INTERVAL = 1.0


class LocalRole(FleetRole):
    name = "local"

    def __init__(self, *, environment: Environment, runner: Any) -> None:
        super().__init__(environment=environment, runner=runner)
        self.judging = Judging(
            environment=environment,
            drain=self._drain,
            fleet_state=self._fleet_state,
            generator_health=self._generator_health,
        )
        self.collector: WindowCollector | None = None
        self._feeder: gevent.Greenlet | None = None
        self._summary_printed = False

    def _read_options(self, parsed: Any, host: str | None) -> Setup:
        metrics = metrics_address(parsed, environ=os.environ, worker_index=None)
        return read_judged(parsed, host, metrics=metrics)

    def start(self, web_ui: Any) -> None:
        parsed = self.environment.parsed_options
        # A web UI's form gives the scenario and the URL per test; otherwise they are due now.
        form = web_ui is not None and not getattr(parsed, "autostart", False)
        setup = self._read_or_refuse(parsed, self.environment.host, fleet=not form)
        attach_shape(self.environment, self.runner, setup.schedule)
        problem = outputs_problem(setup.outputs, setup.slos, self.judging.steps_schedule())
        if problem is not None:
            self.refuse(problem)
            raise Refused
        self._start_fleet(setup.metrics)
        self._starting = False

    # ------------------------------------------------------------------ a test

    def on_test_start(self, environment: Environment, **_: Any) -> None:
        self._end_windows()
        self.judging.new_test()
        self.collector = None
        if self._bridge is None:
            return
        self.config_error = None
        headless = self._headless(environment.parsed_options)
        try:
            setup = self._read_options(environment.parsed_options, environment.host)
            options = setup.checked_fleet()
        except OptionError as exc:  # a file changed since it was checked
            self.refuse(str(exc), ends_run=headless)
            return
        slos = list(setup.slos)
        steps = self.judging.steps_schedule()
        if not self._configure(options, detailed=bool(slos) and steps is not None):
            return
        if slos and steps is not None:
            self._cut_windows()
            self.collector = WindowCollector()
            self._feeder = gevent.spawn(
                every, LOCAL_WINDOW_INTERVAL, self._feed_local, "collecting the fleet's windows"
            )
            self.judging.begin(options, slos, self.collector)
        elif slos:
            self.judging.begin(options, slos, None)

    def _feed_local(self) -> None:
        """Hand this run's judge a window (every LOCAL_WINDOW_INTERVAL)."""
        if self.cutter is not None and self.collector is not None:
            self._drain()
            self.collector.receive(0, self.cutter.cut())

    def _last_window(self) -> None:
        try:
            self._feed_local()
        finally:
            self._end_windows()

    def _end_windows(self) -> None:
        if self._feeder is not None:
            self._feeder.kill(block=False)
            self._feeder = None
        super()._end_windows()

    def _fleet_state(self) -> FleetState:
        snap = self.snapshot()
        return FleetState.of([snap] if snap else [])

    def _generator_health(self) -> Mapping[str, Any]:
        health: Mapping[str, Any] = self.fleet_view()["health"]
        return health

    def on_spawning_complete(self, **_: Any) -> None:
        self.judging.spawning_complete()

    def on_test_stopping(self, environment: Environment, **_: Any) -> None:
        self.judging.stopping(self._last_window)

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        self.judging.stopping(self._last_window, quitting=True)
        super().on_quitting(environment)
        self.judging.outcome()

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        self.print_summary()
        self.judging.print_verdicts()
        super().on_quit(exit_code)

    def print_summary(self) -> None:
        if self._summary_printed:
            return
        self._summary_printed = True
        view = self.fleet_view()
        if view["workers"]:
            print("\n".join(summary_lines(view)), file=sys.stdout, flush=True)

    # ------------------------------------------------------------------ the generator

    def _spawning(self) -> bool:
        return self.judging.spawning()

    def _spawn_overloaded(self, snapshot: HealthSnapshot) -> bool:
        rate = self.judging.spawning_rate()
        if rate is None:
            return False
        health = snapshot.as_dict()
        self.judging.note_spawn_overload(rate, 0, health)
        log.warning(
            "%s",
            spawn_rate_warning(spawn_rate=rate, workers=1, where="this process", health=health),
        )
        return True

    def _generator_timeout_judged(self) -> None:
        self.judging.warn_timeouts_once("this process", self.snapshot().get("health") or {})
