"""Reports of runs and capacity searches: one self-contained HTML file and the data behind it.

::

    from emulator.report import ReportData, run_parameters, write_report

    write_report(directory, ReportData(kind="capacity", verdict=verdict.sentence(),
                                       result=verdict_json, rows=series.rows,
                                       interval=series.interval, parameters=...))

See :mod:`emulator.report.data` for the data and :mod:`emulator.report.html` for the page
(and why it uses plotly.js, inlined).
"""

from __future__ import annotations

from emulator.report.data import (
    ActionFigures,
    GeneratorFigures,
    ReportData,
    Result,
    SloJudgement,
    StepResult,
    machine,
    run_parameters,
    run_step,
    versions,
)
from emulator.report.html import ReportFiles, render_html, write_report

__all__ = [
    "ActionFigures",
    "GeneratorFigures",
    "ReportData",
    "ReportFiles",
    "Result",
    "SloJudgement",
    "StepResult",
    "machine",
    "render_html",
    "run_parameters",
    "run_step",
    "versions",
    "write_report",
]
