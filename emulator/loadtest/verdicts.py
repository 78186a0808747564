"""The verdicts of a Locust run: the SLO judge (whole run, or windows after the ramp)
and the capacity steps (a "steps" load shape judged step by step, like
``ocpp-fleet capacity``), with the files they write (--verdict-json, --report).

The plugin (emulator.loadtest.plugin) owns the Locust events; this module owns what is
judged and how it is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import gevent
from locust.env import Environment

from emulator.fleet.scenario import ScenarioError
from emulator.loadtest.options import (
    scenario_slos,
)
from emulator.loadtest.requests import RequestRecorder
from emulator.loadtest.schedules import Steps
from emulator.loadtest.shapes import ScheduleShape
from emulator.loadtest.steps import (
    FleetState,
    RowRecorder,
    Span,
    StepJudge,
    WindowCollector,
    step_line,
)
from emulator.metrics.slo import Slo, Verdict, evaluate
from emulator.metrics.stats import RunStats
from emulator.run.setup import RunSetup, slo_texts

if TYPE_CHECKING:
    from emulator.capacity import Step
    from emulator.capacity import Verdict as CapacityVerdict

log = logging.getLogger("ocpp_fleet")

# How often the steps judge looks at the fleet and the clock.
STEPS_POLL_INTERVAL = 0.5


class SloJudge:
    """The plain SLO verdict (docs/slo.md) over the window from spawning completed to the
    test's stop.  A local run: a :class:`RunStats` rebuilt from the request events (only
    while judging), snapshots when the test starts and when spawning completes, the verdict
    when the test stops.  A master: the same windows as spans of the workers' windows
    (:meth:`begin_collected`)."""

    def __init__(self) -> None:
        self.slos: list[Slo] = []
        self.stats: RunStats | None = None
        self.verdict: Verdict | None = None
        self._recorder: RequestRecorder | None = None
        self._start: RunStats | None = None
        self._ramped: RunStats | None = None
        self._collector: WindowCollector | None = None
        self._span_start: Span | None = None
        self._span_ramped: Span | None = None

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


def slos_of_scenario(parsed: Any) -> list[Slo]:
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


def steps_schedule(environment: Environment) -> Steps | None:
    """The ``steps`` schedule of this test's shape (``--fleet-shape`` or a locustfile's
    ScheduleShape), or None."""
    shape = getattr(environment, "shape_class", None)
    if isinstance(shape, ScheduleShape) and isinstance(shape.schedule, Steps):
        return shape.schedule
    return None


class StepsRun:
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
            every, STEPS_POLL_INTERVAL, self.poll, "judging the steps"
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


def write_outputs(setup: RunSetup, verdict: CapacityVerdict, steps: StepsRun) -> list[str]:
    """``--verdict-json`` and ``--report`` of the test's run setup; the paths written.
    Raises OSError."""
    outputs = setup.outputs
    if outputs.json is None and outputs.report is None:
        return []
    import json

    from emulator.report import ReportData, run_parameters, write_report

    scenario = setup.scenario
    result = verdict.to_json(
        scenario=scenario.name, seed=setup.seed, start_time=scenario.sessions.start_time
    )
    result["fleet_shape"] = setup.fleet_shape
    result["workers"] = len(steps.collector.workers)  # the fleet processes that sent windows
    written = []
    if outputs.json is not None:
        outputs.json.parent.mkdir(parents=True, exist_ok=True)
        outputs.json.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
        written.append(str(outputs.json))
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
                    scenario=scenario.name,
                    seed=setup.seed,
                    start_time=scenario.sessions.start_time,
                    csms_url=setup.csms_url or "",
                    fleet_shape=setup.fleet_shape,
                    sizes="/".join(str(n) for n in steps.schedule.sizes),
                    hold_s=steps.schedule.hold,
                    spawn_rate=steps.schedule.rate,
                    slo=slo_texts(steps.slos),
                    runner="Locust",
                ),
            ),
        )
        written.append(str(files.html))
    return written


def every(seconds: float, action: Callable[[], None], what: str) -> None:
    """Run ``action`` every ``seconds`` in this greenlet until it is killed; a failure is
    logged (``what`` failed) and must not end the run."""
    while True:
        gevent.sleep(seconds)
        try:
            action()
        except Exception:
            log.exception("%s failed", what)
