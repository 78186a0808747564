"""The HTML report in real headless Chromium: plots drawn, nothing fetched, nothing injected.

A real short run (reference CSMS and fleet on 127.0.0.1, a 1 s time series), a synthetic
capacity search of several steps, an empty report, and a control page that proves the
checks fail when plotly.js is missing and a CDN is used.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from emulator.csms import ReferenceCsms
from emulator.csms.misbehaviour import AnswerCallError
from emulator.fleet.runner import FleetCounts
from emulator.metrics.stats import Direction, RunStats
from emulator.metrics.timeseries import TimeSeries, read_csv, read_json
from emulator.report import ReportData, run_parameters, run_step, write_report
from emulator.report.figures import COLORS
from tests.integration.support import eventually, running_fleet, scenario
from tests.report.chromium import Document, Page, colour_pixels, render

# --------------------------------------------------------------------------- helpers


def figures_of(report: Path) -> dict[str, dict[str, Any]]:
    """The chart specifications the report embeds (a JSON script block)."""
    text = report.read_text()
    match = re.search(r"<script type='application/json' id='report-figures'>(.*?)</script>", text)
    assert match is not None
    figures: dict[str, dict[str, Any]] = json.loads(match[1])
    return figures


def expected_marks(figure: Mapping[str, Any]) -> tuple[int, int, int]:
    """(scatter traces, bar traces, points) plotly.js draws for a specification."""
    scatter = bars = points = 0
    for trace in figure["data"]:
        if trace["type"] == "bar":
            bars += 1
            points += len(trace["y"])  # a bar per value, 0 too
        else:
            scatter += 1
            if "markers" in trace.get("mode", ""):
                points += sum(1 for y in trace["y"] if y is not None)
    return scatter, bars, points


def drawn_marks(page: Page, plot_id: str) -> tuple[int, int, int]:
    box = page.plot(plot_id)
    scatter = len(re.findall(r'<g class="trace scatter\b', box))
    bars = len(re.findall(r'<g class="trace bars\b', box))
    points = len(re.findall(r'<path class="point"', box))
    points += len(re.findall(r'<g class="point"><path d=', box))
    return scatter, bars, points


def legend(page: Page, plot_id: str) -> list[str]:
    box = page.plot(plot_id)
    return [
        Document(text).text[0] if Document(text).text else ""
        for text in re.findall(r'<text class="legendtext"[^>]*>.*?</text>', box)
    ]


def assert_every_plot_drawn(page: Page, figures: Mapping[str, Any]) -> None:
    for plot_id, figure in figures.items():
        box = page.plot(plot_id)
        assert "could not be drawn" not in box, box[:500]
        assert box.count('class="main-svg"') >= 2, f"{plot_id}: no plotly SVG"
        assert drawn_marks(page, plot_id) == expected_marks(figure), plot_id


def assert_offline_and_clean(report: Path, page: Page) -> None:
    assert Document(report.read_text()).external_references() == []
    assert page.requests == [], "the page asked the network for something"
    assert page.console == [], page.console


def trace_colours(page: Page) -> list[str]:
    """Chart colours that cover a visible area of the screenshot (lines, markers, bars).
    The page itself uses none of them; grey is left out (text is anti-aliased in greys)."""
    assert page.screenshot is not None
    return [c for c in COLORS if c != "#7f7f7f" and colour_pixels(page.screenshot, c) >= 150]


# --------------------------------------------------------------------------- a real run


async def short_run() -> tuple[TimeSeries, RunStats, FleetCounts, RunStats]:
    refused: set[str] = set()

    def refuse_first_start(charger_id: str, call: Any) -> Any:
        if call.action == "StartTransaction" and charger_id not in refused:
            refused.add(charger_id)
            return AnswerCallError("InternalError", "busy")
        return None

    async with ReferenceCsms(misbehave=refuse_first_start) as csms:
        async with running_fleet(
            scenario(arrivals=3600.0, sample=4, energy="[0.002, 0.004]"), csms.url, chargers=6
        ) as (fleet, stats):
            series = TimeSeries(
                stats,
                interval=1.0,
                fleet=fleet.counts,
                generator=lambda: fleet.health.snapshot().as_dict(),
            )
            async with series.running():
                await eventually(lambda: fleet.counts().booted == 6, 15.0, "6 wallboxes booted")
                after_ramp = stats.snapshot()
                cp = fleet.wallboxes[0].charge_point_id
                await csms.call(cp, "GetConfiguration", {"key": ["HeartbeatInterval"]})
                await eventually(lambda: len(refused) >= 3, 15.0, "refused StartTransactions")
                await asyncio.sleep(4.5)
                window = stats.snapshot().since(after_ramp)
                counts = fleet.counts()
    return series, window, counts, stats


def slo_judgements(window: RunStats) -> list[dict[str, Any]]:
    """Two SLOs judged by hand over the window (one holds, one breaks)."""
    start = window.actions[Direction.CP_TO_CSMS, "StartTransaction"]
    p99 = start.latency.percentile(99) * 1000.0
    calls = sum(a.count for a in window.actions.values() if a.direction.value == "cp_to_csms")
    errors = sum(a.errors for a in window.actions.values() if a.direction.value == "cp_to_csms")
    share = 100.0 * errors / calls
    return [
        {
            "slo": "StartTransaction:p99<5000ms",
            "value": p99,
            "unit": "ms",
            "op": "<",
            "limit": 5000.0,
            "passed": p99 < 5000.0,
            "detail": f"{start.latency.count} answered calls",
        },
        {
            "slo": "errors<0.5%",
            "value": share,
            "unit": "%",
            "op": "<",
            "limit": 0.5,
            "passed": share < 0.5,
            "detail": f"{errors} errors of {calls} calls",
        },
    ]


def test_report_of_a_real_run_renders_every_chart_offline(tmp_path: Path) -> None:
    series, window, counts, stats = asyncio.run(short_run())
    rows = series.rows
    assert len(rows) >= 5 and rows[-1].partial and not any(r.partial for r in rows[:-1])
    starts = [a for r in rows if (a := r.action("StartTransaction")) is not None]
    refused = sum(a.failures.get("callerror:InternalError", 0) for a in starts)
    assert refused >= 3, "the CSMS's CALLERRORs are in the rows, by code"
    assert any(r.action("GetConfiguration", "csms_to_cp") for r in rows)
    assert all(r.chargers == 6 for r in rows) and rows[-1].connected == 6
    assert all("lateness_limit_ms" in r.generator for r in rows)

    slo = slo_judgements(window)
    step = run_step(
        window,
        chargers=counts.chargers,
        connected=counts.connected,
        slo=slo,
        generator={
            "loop_lag_p99_ms": rows[-1].generator.get("loop_lag_p99_ms", 0.0),
            "lateness_p99_ms": rows[-1].generator.get("lateness_p99_ms", 0.0),
            "loop_lag_limit_ms": 100.0,
            "lateness_limit_ms": 250.0,
        },
    )
    assert step["passed"] is False, "errors<0.5% breaks: the first StartTransactions were refused"
    assert step["failures"]["callerror:InternalError"] >= 3
    result = {
        "verdict": "6 chargers for 5 s: errors<0.5% not met.",
        "steps": [step],
        "scenario": "integration",
        "seed": 1,
    }
    data = ReportData(
        kind="run",
        verdict="6 chargers for 5 s: errors<0.5% was not met (1 of 2 SLOs).",
        result=result,
        rows=rows,
        interval=series.interval,
        parameters=run_parameters(
            scenario="integration", seed=1, start_time="2027-01-15T08:00:00+00:00", chargers=6
        ),
    )
    files = write_report(tmp_path / "report", data)

    assert json.loads(files.result.read_text()) == result
    assert read_json(files.timeseries_json) == rows
    assert read_csv(files.timeseries_csv) == rows
    assert json.loads(files.timeseries_json.read_text())["interval_s"] == 1.0

    figures = figures_of(files.html)
    assert set(figures) == {
        "plot-latency",
        "plot-throughput",
        "plot-failures",
        "plot-generator",
        "plot-timeline_latency",
        "plot-timeline_load",
        "plot-timeline_generator",
    }
    page = render(files.html, tmp_path / "chromium")
    assert_every_plot_drawn(page, figures)
    assert_offline_and_clean(files.html, page)

    answered = sorted(name for name, a in step["actions"].items() if a["p99_ms"] is not None)
    assert {"StartTransaction", "StatusNotification"} <= set(answered)
    # Three percentiles per action, one point each (one step), plus the latency SLO line.
    assert drawn_marks(page, "plot-latency") == (3 * len(answered) + 1, 0, 3 * len(answered))
    assert set(legend(page, "plot-latency")) == {*answered, "SLO StartTransaction:p99<5000ms"}
    assert legend(page, "plot-failures") == ["callerror:InternalError"]
    # Over time: one point per row for each action answered in it.
    timeline = page.plot("plot-timeline_latency")
    assert {"chargers", "connected", "StartTransaction"} <= set(
        legend(page, "plot-timeline_latency")
    )
    assert re.search(r'class="xtick"[^>]*>.*?\d\d:\d\d', timeline), "a time axis"
    text = " ".join(Document(page.dom).text)
    assert "errors<0.5%" in text and "✗" in text and "✓" in text
    assert len(trace_colours(page)) >= 3, "the charts are painted"
    assert stats.connects >= 6


# --------------------------------------------------------------------------- capacity

EVIL_ACTION = "<b>Evil</b>"
EVIL_SCENARIO = "<script>document.title='pwned'</script>"
EVIL_DETAIL = "<img src=x onerror=\"document.title='pwned'\">"


def capacity_result() -> dict[str, Any]:
    """Seven steps, the knee at ~450 chargers: grows 100 -> 506, bisects 421, 463."""
    steps: list[dict[str, Any]] = []
    base = {"StartTransaction": 60.0, "MeterValues": 15.0, EVIL_ACTION: 5.0, "Heartbeat": 3.0}
    for n in (100, 150, 225, 337, 506, 421, 463):
        load = max(1.0, (n / 350) ** 8)
        actions = {
            name: {
                "count": n * 3,
                "p50_ms": ms * (1 + load / 4),
                "p95_ms": ms * 2 * load,
                "p99_ms": ms * 3 * load,
                "errors": int(load) - 1,
            }
            for name, ms in base.items()
        }
        p99 = actions["StartTransaction"]["p99_ms"]
        steps.append(
            {
                "chargers": n,
                "connected": n,
                "passed": p99 < 800,
                "hold_s": 60.0,
                "calls_per_second": round(n * 0.5 / (1 + max(0.0, load - 2) / 10), 3),
                "actions": actions,
                "connect_failures": 3 if n > 450 else 0,
                "slo": [
                    {
                        "slo": "StartTransaction:p99<800ms",
                        "value": p99,
                        "unit": "ms",
                        "op": "<",
                        "limit": 800,
                        "passed": p99 < 800,
                        "detail": f"{n * 3} answered calls",
                    },
                    {
                        "slo": "errors<1%",
                        "value": 0.1,
                        "unit": "%",
                        "op": "<",
                        "limit": 1,
                        "passed": True,
                        "detail": EVIL_DETAIL,
                    },
                ],
                "generator": {
                    "loop_lag_p99_ms": 2 + n / 100,
                    "lateness_p99_ms": 5 + n / 20,
                    "loop_lag_limit_ms": 100.0,
                    "lateness_limit_ms": 250.0,
                    "cpu_share": n / 1000,
                    "cpu_limit": 0.9,
                    "limited": False,
                },
            }
        )
    passing = max(s["chargers"] for s in steps if s["passed"])
    failing = min(s["chargers"] for s in steps if not s["passed"])
    deciding = next(s for s in steps if s["chargers"] == failing)
    return {
        "capacity": passing,
        "limited_by": "slo",
        "verdict": "",
        "violations": [j for j in deciding["slo"] if not j["passed"]],
        "steps": steps,
        "scenario": EVIL_SCENARIO,
        "seed": 7,
        "start_time": "2027-01-15T08:00:00+00:00",
        "versions": {"ocpp-fleet": "0.1.0", "python": "3.11.7"},
        "machine": {"cpus": 2, "platform": "Linux"},
    }


def test_capacity_report_shows_the_knee_and_escapes_every_text(tmp_path: Path) -> None:
    result = capacity_result()
    steps = result["steps"]
    passing, failing = result["capacity"], min(s["chargers"] for s in steps if not s["passed"])
    assert (passing, failing) == (421, 463), "the synthetic knee"
    sentence = (
        f"Your CSMS held {passing:,} chargers; at {failing:,} StartTransaction p99 was "
        f"{result['violations'][0]['value']:,.0f} ms (limit 800 ms)."
    )
    data = ReportData(
        kind="capacity",
        verdict=sentence,
        result=result,
        parameters={"scenario": EVIL_SCENARIO, "seed": 7, "note": EVIL_DETAIL},
    )
    files = write_report(tmp_path / "report", data)
    assert read_json(files.timeseries_json) == [] and read_csv(files.timeseries_csv) == []

    figures = figures_of(files.html)
    assert set(figures) == {"plot-latency", "plot-throughput", "plot-failures", "plot-generator"}
    page = render(files.html, tmp_path / "chromium")
    assert_every_plot_drawn(page, figures)
    assert_offline_and_clean(files.html, page)

    # 4 actions x 3 percentiles x 7 steps, and the SLO's limit line in the p99 panel.
    assert drawn_marks(page, "plot-latency") == (13, 0, 84)
    assert legend(page, "plot-latency") == [
        EVIL_ACTION,
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "SLO StartTransaction:p99<800ms",
    ]
    latency = page.plot("plot-latency")
    capacity_label = f'data-unformatted="capacity {passing:,}"'
    assert latency.count(capacity_label) == 3, "the capacity line in each panel"
    assert len(re.findall(r'class="x\d?tick"', latency)) >= 9, "three x axes with ticks"
    assert 'data-unformatted="latency (ms)"' in latency
    # Throughput: 7 steps and the linear reference; the failed steps are marked.
    assert drawn_marks(page, "plot-throughput") == (2, 0, 7)
    # Failures: stacked per action plus connect failures, for the 2 steps that had any.
    assert drawn_marks(page, "plot-failures")[1] == 5
    assert "connect failures" in legend(page, "plot-failures")
    # Generator: two p99 lines with their limits, CPU with its limit.
    assert drawn_marks(page, "plot-generator") == (6, 0, 21)
    assert " ".join(Document(page.dom).text).count("No time series was recorded.") == 2

    # Escaped everywhere: no element came from a text, and the texts read as written.
    document = Document(page.dom)
    names = document.names()
    assert "img" not in names and "b" not in names
    assert names.count("script") == 3, "the figures, plotly.js and the boot script"
    title = re.search(r"<title>(.*?)</title>", page.dom)
    assert title is not None
    assert Document(title[1]).text == [f"ocpp-fleet capacity search: {EVIL_SCENARIO}"], (
        "no script of a text ran (it would have set the title)"
    )
    text = " ".join(document.text)
    assert EVIL_SCENARIO in text and EVIL_DETAIL in text and sentence in text
    slo_cells = [attrs.get("title") for tag, attrs in document.tags if tag == "td"]
    assert EVIL_DETAIL in slo_cells, "the SLO detail as a tooltip, escaped"
    assert len(trace_colours(page)) >= 4


# --------------------------------------------------------------------------- edge cases


def test_an_empty_report_renders_without_charts_or_errors(tmp_path: Path) -> None:
    data = ReportData(kind="run", verdict="The run ended before its ramp did.", result={})
    files = write_report(tmp_path / "report", data)
    html = files.html.read_text()
    assert len(html) < 50_000, "no charts: no plotly.js"
    page = render(files.html, tmp_path / "chromium", screenshot=False)
    assert_offline_and_clean(files.html, page)
    text = " ".join(Document(page.dom).text)
    assert "The run ended before its ramp did." in text
    assert "No time series was recorded." in text and "No step was judged." in text
    assert "No SLO was judged." in text and 'class="main-svg"' not in page.dom


def test_the_checks_fail_for_a_report_without_plotly_that_uses_a_cdn(tmp_path: Path) -> None:
    """The control: the same checks on a broken page must see what is wrong.  The page
    loads plotly.js and an image from a CDN instead of inlining; first without the
    report's Content-Security-Policy (the requests are made, and fail), then with it
    (nothing is requested: the policy refuses both, on the console)."""
    from plotly.offline import get_plotlyjs

    files = write_report(
        tmp_path / "report",
        ReportData(kind="capacity", verdict="control", result=capacity_result()),
    )
    html = files.html.read_text()
    inline = f"<script>{get_plotlyjs()}</script>"
    assert inline in html
    cdn = (
        "<script src='https://cdn.plot.ly/plotly-3.0.0.min.js'></script>"
        "<img src='https://cdn.example.com/pixel.png'>"
    )
    with_policy = tmp_path / "with-policy.html"
    with_policy.write_text(html.replace(inline, cdn))
    csp = re.search(r"<meta http-equiv='Content-Security-Policy'[^>]*>", html)
    assert csp is not None and "default-src 'none'" in csp[0]
    without_policy = tmp_path / "without-policy.html"
    without_policy.write_text(with_policy.read_text().replace(csp[0], ""))
    urls = ["https://cdn.example.com/pixel.png", "https://cdn.plot.ly/plotly-3.0.0.min.js"]

    page = render(without_policy, tmp_path / "without")
    assert sorted(Document(without_policy.read_text()).external_references()) == urls
    assert sorted(page.requests) == urls
    for plot_id in figures_of(files.html):
        assert "This chart could not be drawn: Error: plotly.js did not load" in page.plot(plot_id)
        assert drawn_marks(page, plot_id) == (0, 0, 0)
    assert trace_colours(page) == [], "no chart painted"

    page = render(with_policy, tmp_path / "with", screenshot=False)
    assert page.requests == []
    refused = [line for line in page.console if "Content Security Policy" in line]
    assert len(refused) == 2 and all(any(u in line for u in urls) for line in refused), page.console


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    from tests.report.chromium import chromium

    chromium()
