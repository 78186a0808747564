"""What every Locust role shares: the options it reads, the one way it refuses to start.

A role (:mod:`.local_role`, :mod:`.worker_role`, :mod:`.master_role`) is chosen once, at
``init``, from Locust's runner (:func:`emulator.loadtest.plugin.register`).  Each reads
all of its options through one method, ``_read_options(parsed, host) -> Setup``, calling
the functions of :mod:`.options`: at start-up, for each test, and for the web UI's start
form (:meth:`Role.swarm_problem`), so the three agree.

A mistake is refused before any work, in one error line that keeps its words as given
(square brackets too), with exit code 2 (3: a metrics port that cannot be bound, as
``ocpp-fleet run``) and no traceback (:meth:`Role.refuse`):

* at start-up (``init``): before any user spawns, whatever the role; a local run or a
  master ends the process there (Locust would otherwise start a headless run's users
  right after ``init``), a worker quits through its runner (so that its master hears it);
* in the web UI: a swarm whose form gives a bad scenario, URL, ... is answered
  ``{"success": false, "message": ...}`` and never started (:mod:`.webui`);
* at a test's start (what only the test can show, a worker's slice of its master's
  options, files a security profile names): one line too; a headless run then ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from copy import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import gevent
from locust.env import Environment

from emulator.fleet.scenario import ScenarioError
from emulator.loadtest.options import (
    MetricsAddress,
    OptionError,
    RunSetup,
    VerdictOutputs,
    WorkerOptions,
    command_line_slos,
    fleet_options,
    shape_schedule,
    verdict_outputs,
)
from emulator.loadtest.schedules import Schedule, ScheduleError, Steps
from emulator.loadtest.shapes import ScheduleShape
from emulator.loadtest.verdicts import slos_of_scenario
from emulator.metrics.slo import Slo

if TYPE_CHECKING:
    from emulator.loadtest.bridge import FleetBridge

__all__ = [
    "Refused",
    "Role",
    "Setup",
    "attach_shape",
    "outputs_problem",
    "read_fleet",
    "read_judged",
    "read_shape",
    "read_slos",
]

log = logging.getLogger("ocpp_fleet")


class Refused(Exception):
    """A role refused to start (already logged and the exit code set): stop its ``init``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Setup:
    """Everything a role reads from Locust's options (its ``_read_options``).

    ``fleet`` is None with ``fleet_problem`` when the scenario or the CSMS URL is missing
    or bad: fatal for a test, but not at a web UI's start-up (its form gives them).
    """

    fleet: RunSetup | None
    fleet_problem: str | None = None
    slos: tuple[Slo, ...] = ()  # the scenario's [slo], then --slo and $LOCUST_SLO
    schedule: Schedule | None = None  # --fleet-shape
    outputs: VerdictOutputs | None = None  # --verdict-json, --report
    metrics: MetricsAddress | None = None  # where this process serves /metrics
    metrics_asked: bool = False  # --metrics-port given (a master says it serves none)
    addresses: WorkerOptions | None = None  # a worker's: its options from its master's
    windows: bool = False  # a worker's: its master judges SLOs and wants windows

    def checked_fleet(self) -> RunSetup:
        """The fleet options, or OptionError with the problem."""
        if self.fleet is None:
            raise OptionError(self.fleet_problem or "no fleet options")
        return self.fleet


def read_fleet(
    parsed: Any, host: str | None, *, outputs: bool = True
) -> tuple[RunSetup | None, str | None]:
    """:func:`fleet_options`, with its problem as text instead of an exception."""
    try:
        return fleet_options(parsed, host=host, outputs=outputs), None
    except (OptionError, ScenarioError) as exc:
        return None, str(exc)


def read_judged(parsed: Any, host: str | None, **more: Any) -> Setup:
    """What a judging process (a local run, a master) reads: the fleet's setup, the SLOs,
    the shape and the verdict's outputs; ``more``: the role's own fields."""
    fleet, problem = read_fleet(parsed, host)
    return Setup(
        fleet=fleet,
        fleet_problem=problem,
        slos=read_slos(parsed, fleet),
        schedule=read_shape(parsed),
        outputs=verdict_outputs(parsed),
        **more,
    )


def read_slos(parsed: Any, fleet: RunSetup | None) -> tuple[Slo, ...]:
    """The scenario's ``[slo]`` rules, then ``--slo`` and ``$LOCUST_SLO``'s; OptionError."""
    if fleet is not None:
        return fleet.slos  # read and checked with the rest of the run setup
    # A scenario that cannot be read is the fleet's problem, reported as such.
    return (*slos_of_scenario(parsed), *command_line_slos(parsed, environ=os.environ))


def read_shape(parsed: Any) -> Schedule | None:
    """``--fleet-shape``; OptionError names the option."""
    try:
        return shape_schedule(parsed)
    except (ScheduleError, ScenarioError) as exc:
        raise OptionError(f"--fleet-shape: {exc}") from None


def attach_shape(environment: Environment, runner: Any, schedule: Schedule | None) -> None:
    """Run ``--fleet-shape``'s schedule as this run's load shape (a local run, a master)."""
    if schedule is not None:
        shape = ScheduleShape(schedule)
        shape.runner = runner
        environment.shape_class = shape


def outputs_problem(
    outputs: VerdictOutputs | None, slos: Sequence[Slo], steps: Steps | None
) -> str | None:
    """``--verdict-json`` and ``--report`` need the steps shape and SLOs."""
    if not outputs:
        return None
    option = "--verdict-json" if outputs.verdict_json is not None else "--report"
    if steps is None:
        return (
            f"{option} writes the verdict of a steps shape: give --fleet-shape "
            "steps:sizes=.../...,hold=...,rate=... (and SLOs)"
        )
    if not slos:
        return (
            f"{option} writes a verdict over SLOs: give --slo EXPR, $LOCUST_SLO or "
            "[slo] rules in the scenario"
        )
    return None


def form_view(parsed: Any, form: Mapping[str, str]) -> Any:
    """A copy of ``parsed`` with the web UI form's values, as Locust's ``/swarm`` will set
    them (texts; a flag is ``"true"``): :func:`fleet_options` takes texts for every field."""
    view = copy(parsed)
    for key, value in form.items():
        if key != "host" and hasattr(view, key):
            current = getattr(view, key)
            setattr(view, key, value == "true" if isinstance(current, bool) else value)
    return view


class Role:
    """One Locust process's part; the events' methods do nothing unless a role does."""

    name: ClassVar[str] = ""

    def __init__(self, *, environment: Environment, runner: Any) -> None:
        self.environment = environment
        self.runner = runner
        self.config_error: str | None = None  # shown on the Fleet tab and to users
        self._starting = True  # in init: nothing runs yet

    # ------------------------------------------------------------------ options

    def _read_options(self, parsed: Any, host: str | None) -> Setup:
        """All the options this role reads (OptionError for a bad one)."""
        raise NotImplementedError

    def _read_or_refuse(self, parsed: Any, host: str | None, *, fleet: bool) -> Setup:
        """The options, or :meth:`refuse` (``fleet``: the fleet options are required)."""
        try:
            setup = self._read_options(parsed, host)
            if fleet:
                setup.checked_fleet()
        except OptionError as exc:
            self.refuse(str(exc))
            raise Refused from None
        return setup

    def swarm_problem(self, form: Mapping[str, str]) -> str | None:
        """Why the web UI's start form cannot start a test (logged), or None."""
        parsed = self.environment.parsed_options
        host = form.get("host", self.environment.host)
        try:
            self._read_options(form_view(parsed, form), host).checked_fleet()
        except OptionError as exc:
            problem = f"ocpp-fleet cannot start: {exc}"
            log.error("%s", problem)
            return problem
        return None

    # ------------------------------------------------------------------ refusing

    def refuse(self, problem: str, *, exit_code: int = 2, ends_run: bool = True) -> None:
        """One error line; then (``ends_run``) the exit code and the end of this process.

        At start-up a local run or a master ends here (SystemExit: nothing runs yet, and
        Locust would start a headless run's users right after ``init``); a worker asks its
        runner to quit, which tells its master.  During a test the runner quits, whatever
        the role.  ``ends_run`` False (a web UI's test): the line, and the Fleet tab.
        """
        self.config_error = f"ocpp-fleet cannot start: {problem}"
        log.error("%s", self.config_error)
        if not ends_run:
            return
        self.environment.process_exit_code = exit_code
        if self._starting and self._ends_process_at_start_up():
            raise SystemExit(exit_code)
        if self.runner is not None:
            gevent.spawn(self.runner.quit)

    def _ends_process_at_start_up(self) -> bool:
        return True

    def _headless(self, parsed: Any) -> bool:
        """Whether nobody can correct an option and start again (no web UI form)."""
        return bool(getattr(parsed, "headless", False))

    # ------------------------------------------------------------------ events

    def start(self, web_ui: Any) -> None:
        """``init``: read and check the options, start this role's resources."""
        raise NotImplementedError

    @property
    def bridge(self) -> FleetBridge | None:
        return None

    def bridge_for_users(self) -> FleetBridge:
        if self.config_error is not None:
            raise RuntimeError(self.config_error)
        raise RuntimeError("no fleet in this process (a master runs no wallboxes)")

    def fleet_view(self) -> dict[str, Any]:
        raise NotImplementedError

    def on_test_start(self, environment: Environment, **_: Any) -> None:
        pass

    def on_spawning_complete(self, **_: Any) -> None:
        pass

    def on_test_stopping(self, environment: Environment, **_: Any) -> None:
        pass

    def on_test_stop(self, environment: Environment, **_: Any) -> None:
        pass

    def on_quitting(self, environment: Environment, **_: Any) -> None:
        pass

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        pass

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        pass

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        pass
