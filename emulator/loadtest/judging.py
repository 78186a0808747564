"""What the judging process of a Locust run does: a local run, or the master.

It judges the SLOs (:class:`~emulator.loadtest.verdicts.SloJudge`) or the steps of a
``steps`` shape (:class:`~emulator.loadtest.verdicts.StepsRun`), names the spawn rate
when it overloaded the generator (:mod:`.overload`), and decides the exit code at the
end: the SLO or steps verdict, not Locust's "any failure is exit code 1", and 0 when the
only failures were the generator's own connect timeouts.  A role holds one
:class:`Judging` (composition: the worker judges nothing).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from locust.env import Environment

from emulator.loadtest import locust_internals
from emulator.loadtest.overload import (
    GENERATOR_TIMEOUT,
    SpawnOverload,
    generator_failures_only,
    limit_lines,
    timeout_warning,
)
from emulator.loadtest.requests import WEBSOCKET
from emulator.loadtest.schedules import Steps
from emulator.loadtest.steps import FleetState, WindowCollector
from emulator.loadtest.steps import verdict_lines as steps_verdict_lines
from emulator.loadtest.verdicts import SloJudge, StepsRun, steps_schedule, write_outputs
from emulator.metrics.slo import Slo, verdict_lines
from emulator.run.setup import RunSetup

__all__ = ["SPAWN_BLAME", "Judging"]

log = logging.getLogger("ocpp_fleet")

# An overload verdict this soon after spawning completed is the spawn's: the verdict takes
# three 5-s windows over the limits, and reaches the master with a snapshot and a report.
SPAWN_BLAME = 30.0


class Judging:
    """One judging process's verdicts and outcome; ``drain`` fires what the fleet has
    measured so far (a local run's bridge; nothing on a master)."""

    def __init__(
        self,
        *,
        environment: Environment,
        drain: Callable[[], None],
        fleet_state: Callable[[], FleetState],
        generator_health: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.environment = environment
        self._drain = drain
        self._fleet_state = fleet_state
        self._generator_health = generator_health
        self.slo = SloJudge()
        self.setup: RunSetup | None = None  # this test's
        self.steps: StepsRun | None = None
        self.collector: WindowCollector | None = None
        self.spawn_overload: SpawnOverload | None = None  # this test's
        self.spawn_done: float | None = None  # when spawning last completed
        self.timeouts_warned = False  # this test's first generator timeouts were named

    @property
    def runner(self) -> Any:
        return self.environment.runner

    # ------------------------------------------------------------------ a test

    def new_test(self) -> None:
        """A test starts: the last test's steps verdict no longer sets the exit code."""
        self.collector = None
        self.steps = None
        self.spawn_overload = None
        self.spawn_done = None
        self.timeouts_warned = False

    def steps_schedule(self) -> Steps | None:
        return steps_schedule(self.environment)

    def begin(self, setup: RunSetup, slos: list[Slo], collector: WindowCollector | None) -> None:
        """Judge ``slos`` in this test: over each step's hold with a steps shape, else over
        the window after spawning; ``collector`` holds the fleet processes' windows (None:
        a local run judges its own request events).  ``setup``: the test's run setup,
        whose outputs the steps verdict is written to."""
        self.setup = setup
        schedule = self.steps_schedule()
        if collector is not None and schedule is not None:
            self.collector = collector
            self.slo.verdict = None
            self.steps = StepsRun(
                schedule=schedule,
                slos=slos,
                collector=collector,
                fleet_state=self._fleet_state,
                generator_health=self._generator_health,
            )
        elif collector is not None:
            self.collector = collector
            self.slo.begin_collected(slos, collector)
        else:
            self.slo.begin(self.environment, slos)

    def spawning_complete(self) -> None:
        self.spawn_done = time.monotonic()
        if self.slo.running:
            self._drain()
            self.slo.ramped()

    def stopping(self, feed_last: Callable[[], None], *, quitting: bool = False) -> None:
        """The test stops (``quitting``: the process quits before it did, SIGTERM): the
        verdicts are reached; ``feed_last`` hands the judge the last window."""
        if self.slo.running:
            self._drain()
            verdict = self.slo.judge()
            if not quitting:  # the verdict table follows at the end anyway
                log.info("%s", verdict.line())
        if self.steps is not None and not self.steps.finished:
            self._finish_steps(feed_last)

    def _finish_steps(self, feed_last: Callable[[], None]) -> None:
        steps = self.steps
        assert steps is not None
        try:
            feed_last()  # a local run's last window (a master has what arrived)
        except Exception:
            log.exception("collecting the fleet's last window failed")
        steps.finish()
        verdict = steps.verdict
        log.info(
            "Capacity verdict: %s",
            "none, no step was judged" if verdict is None else verdict.sentence(),
        )

    # ------------------------------------------------------------------ spawning

    def spawning(self) -> bool:
        """Spawning now, or it ended so recently that an overload verdict now (which needs
        several windows over the limits) began while it ran."""
        done = self.spawn_done
        return locust_internals.spawning(self.runner) or (
            done is not None and time.monotonic() - done <= SPAWN_BLAME
        )

    def spawning_rate(self) -> float | None:
        """The spawn rate (users/s) while spawning (or just after, see :meth:`spawning`)."""
        return self.spawn_rate() if self.spawning() else None

    def spawn_rate(self) -> float | None:
        """The last spawn rate (users/s) of the master or local run, if known."""
        rate = getattr(self.runner, "spawn_rate", None)  # a master's
        if not rate:
            rate = getattr(self.environment.parsed_options, "spawn_rate", None)
        try:
            return float(rate) if rate else None
        except (TypeError, ValueError):
            return None

    def note_spawn_overload(self, rate: float, worker: int, health: Mapping[str, Any]) -> None:
        if self.spawn_overload is None:
            self.spawn_overload = SpawnOverload(spawn_rate=rate)
        self.spawn_overload.add(worker, health)

    def warn_timeouts_once(self, where: str, health: Mapping[str, Any]) -> bool:
        """Name the generator's first connect timeouts of this test; False: already done."""
        if self.timeouts_warned:
            return False
        self.timeouts_warned = True
        warning = timeout_warning(spawn_rate=self.spawn_rate(), where=where, health=health)
        log.warning("%s", warning if where == "this process" else f"{where}: {warning}")
        return True

    # ------------------------------------------------------------------ the end

    def outcome(self) -> None:
        """The exit code when the process quits (after :meth:`stopping`)."""
        environment = self.environment
        if self.steps is not None:
            self._steps_outcome(self.steps)
            return
        self._generator_outcome()
        verdict = self.slo.verdict
        if verdict is not None and environment.process_exit_code is None:
            if not verdict.passed:
                environment.process_exit_code = 1
            elif not locust_internals.user_exceptions(self.runner):
                # The SLOs judge the failed requests: they, not Locust's "any failure
                # is exit code 1", decide (exceptions in user code still count).
                environment.process_exit_code = 0

    def _generator_outcome(self) -> None:
        """Connection attempts that timed out while the generator lagged, and nothing else
        failed: the CSMS failed nothing, so Locust's "any failure is exit code 1" does
        not apply (an SLO verdict, judged after this, still decides)."""
        environment, runner = self.environment, self.runner
        if environment.process_exit_code is not None or runner is None:
            return
        if locust_internals.user_exceptions(runner):
            return
        counted = generator_failures_only(locust_internals.error_rows(runner))
        if counted and not locust_internals.unhandled_greenlet_exception():
            environment.process_exit_code = 0
            log.warning(
                "%d connection attempts timed out while the load generator lagged and "
                "nothing else failed: exit code 0 (the CSMS failed nothing)",
                counted,
            )

    def _steps_outcome(self, steps: StepsRun) -> None:
        """Write ``--verdict-json`` and ``--report``; the exit code: 0 with a capacity, 1
        when the first step failed (or none was judged), as ``ocpp-fleet capacity``."""
        environment = self.environment
        verdict = steps.verdict
        if verdict is not None:
            try:
                assert self.setup is not None  # begun with it
                written = write_outputs(self.setup, verdict, steps)
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
        elif not locust_internals.user_exceptions(self.runner):
            environment.process_exit_code = 0

    def generator_timeouts_counted(self) -> int:
        """Generator timeouts in this process's statistics (a master: every worker's)."""
        return sum(
            occurrences
            for method, error, occurrences in locust_internals.error_rows(self.runner)
            if method == WEBSOCKET and GENERATOR_TIMEOUT in error
        )

    def print_verdicts(self) -> None:
        """After the fleet summary: the generator's limits, the SLO and steps verdicts."""
        lines = limit_lines(
            self.spawn_overload, self.generator_timeouts_counted(), self.spawn_rate()
        )
        if lines:
            print("\n".join(lines), file=sys.stdout, flush=True)
        if self.slo.verdict is not None:
            print("\n".join(verdict_lines(self.slo.verdict)), file=sys.stdout, flush=True)
        if self.steps is not None and self.steps.finished:
            lines = steps_verdict_lines(self.steps.verdict, unjudged=self.steps.judge.unjudged)
            print("\n".join(lines), file=sys.stdout, flush=True)
