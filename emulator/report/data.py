"""What a report is made of: plain data, JSON-able, documented as TypedDicts.

:class:`ReportData` is what :func:`emulator.report.write_report` takes.  Its ``result``
is the verdict JSON (written as ``result.json``); the report reads these keys of it, and
shows what is missing as missing, never fails on it:

* a capacity search: :class:`Result` (``emulator.capacity.Verdict.to_json()``);
* a plain run: the same shape with one step (the run after its ramp) or none;
  :func:`run_step` builds that step from a :meth:`RunStats.since` window.

Nothing here imports the fleet: the CLI and the capacity search pass their figures in.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any, Literal, TypedDict, cast

from emulator.metrics.stats import Direction, RunStats
from emulator.metrics.timeseries import Row

__all__ = [
    "ActionFigures",
    "GeneratorFigures",
    "ReportData",
    "Result",
    "SloJudgement",
    "StepResult",
    "machine",
    "run_parameters",
    "run_step",
    "versions",
]


class ActionFigures(TypedDict):
    """One charger-initiated action over a step's hold; latencies in ms (None: no answer)."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: int


class GeneratorFigures(TypedDict, total=False):
    """The load generator over a step's hold (ms; shares of one core)."""

    loop_lag_p99_ms: float
    lateness_p99_ms: float
    loop_lag_limit_ms: float
    lateness_limit_ms: float
    cpu_share: float
    cpu_limit: float
    limited: bool  # over its limits: the step measured the generator, not the CSMS


class SloJudgement(TypedDict, total=False):
    """One SLO judged over a step (``emulator.metrics.slo.SloResult.to_json()``)."""

    slo: str  # "StartTransaction:p99<800ms"
    value: float | None  # in ``unit``; None: nothing to measure
    unit: str  # "ms", "s", "%" or "count"
    op: str
    limit: float
    passed: bool
    detail: str


class _StepRequired(TypedDict):
    chargers: int


class StepResult(_StepRequired, total=False):
    """One fleet size, held and judged."""

    passed: bool
    connected: int
    hold_s: float
    calls_per_second: float  # charger-initiated calls per second over the hold
    actions: dict[str, ActionFigures]  # charger-initiated actions by name
    failures: dict[str, int]  # optional: failed charger calls by outcome ("timeout", ...)
    connect_failures: int
    slo: list[SloJudgement]
    generator: GeneratorFigures


class Result(TypedDict, total=False):
    """The verdict JSON (``result.json``)."""

    capacity: int | None  # the largest passing fleet size; None: no step passed
    limited_by: str  # "slo" | "generator" | "max"
    verdict: str
    violations: list[SloJudgement]  # what broke at the deciding step
    steps: list[StepResult]  # in the order they ran
    scenario: str
    seed: int
    start_time: str
    versions: dict[str, str]
    machine: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """Everything one report shows.

    ``kind``: ``"run"`` (``ocpp-fleet run``) or ``"capacity"`` (a capacity search);
    ``verdict``: the sentence at the top; ``result``: the verdict JSON (:class:`Result`),
    written verbatim as ``result.json``; ``rows``: the time series
    (:attr:`TimeSeries.rows <emulator.metrics.timeseries.TimeSeries.rows>`), written as
    ``timeseries.json`` and ``.csv``; ``interval``: its row length in seconds;
    ``parameters``: the run's parameters, shown as a table in their order, nested
    mappings flattened (:func:`run_parameters` makes the usual ones).
    """

    kind: Literal["run", "capacity"]
    verdict: str
    result: Mapping[str, Any]
    rows: Sequence[Row] = ()
    interval: float | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


def run_step(
    window: RunStats,
    *,
    chargers: int,
    connected: int | None = None,
    slo: Sequence[Mapping[str, Any]] = (),
    generator: Mapping[str, Any] | None = None,
    passed: bool | None = None,
) -> StepResult:
    """A plain run's one step from its window after the ramp, shaped like a capacity
    search's steps.  ``slo``: ``SloResult.to_json()`` of each SLO judged over the window;
    ``passed`` defaults to all of them passing."""
    actions: dict[str, ActionFigures] = {}
    failures: dict[str, int] = {}
    calls = 0
    for (direction, name), stats in sorted(window.actions.items()):
        if direction is not Direction.CP_TO_CSMS:
            continue
        calls += stats.count
        p50, p95, p99 = (
            stats.latency.percentiles((50, 95, 99)) if stats.latency.count else (math.nan,) * 3
        )
        actions[name] = {
            "count": stats.count,
            "p50_ms": _ms(p50),
            "p95_ms": _ms(p95),
            "p99_ms": _ms(p99),
            "errors": stats.errors,
        }
        for outcome, n in stats.outcomes.items():
            if outcome.failed and n:
                failures[outcome.key] = failures.get(outcome.key, 0) + n
    judged = [dict(j) for j in slo]
    elapsed = window.elapsed
    step: StepResult = {
        "chargers": chargers,
        "passed": all(bool(j.get("passed")) for j in judged) if passed is None else passed,
        "hold_s": round(elapsed, 3),
        "calls_per_second": round(calls / elapsed, 3) if elapsed > 0 else 0.0,
        "actions": actions,
        "failures": dict(sorted(failures.items())),
        "connect_failures": window.connect_failures.total(),
        "slo": cast(list[SloJudgement], judged),
    }
    if connected is not None:
        step["connected"] = connected
    if generator is not None:
        step["generator"] = cast(GeneratorFigures, dict(generator))
    return step


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000.0, 3)


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the measurements."""
    found = {"ocpp-fleet": "", "python": platform.python_version()}
    for name in ("ocpp-fleet", "websockets", "ocpp"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return {k: v for k, v in found.items() if v}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python_implementation": sys.implementation.name,
    }


def run_parameters(
    *, scenario: str, seed: int, start_time: datetime | str, **more: Any
) -> dict[str, Any]:
    """The parameters table: scenario, seed, start time, then ``more`` (chargers,
    duration, CSMS URL, ...), then :func:`versions` and :func:`machine`."""
    started = start_time.isoformat() if isinstance(start_time, datetime) else start_time
    return {
        "scenario": scenario,
        "seed": seed,
        "start_time": started,
        **more,
        "versions": versions(),
        "machine": machine(),
    }
