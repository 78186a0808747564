"""The report: one self-contained HTML file, plus the data behind it.

:func:`write_report` writes into a directory:

* ``report.html``: the verdict as a sentence, then latency percentiles per action against
  fleet size (log scale: the knee), throughput, failures and the generator's health per
  step, latency, load and fleet size over time, and tables of the steps, the SLO
  results and the run's parameters;
* ``result.json``: the verdict JSON, as passed in;
* ``timeseries.json`` and ``timeseries.csv``: the rows (:mod:`emulator.metrics.timeseries`).

**Why plotly.js, inlined.**  The file must work offline, from a mail attachment or a CI
artifact, years later: nothing may come from a CDN.  The candidates were plotly (the
plotly.js bundle inlined, ~4.9 MB per report), matplotlib (inline SVG: no JavaScript, but
static, and a heavy native dependency: Pillow, FreeType fonts, kiwisolver, contourpy),
pygal (SVG whose tooltips load a script from a CDN unless vendored) and a vendored small
library such as uPlot (~50 kB, but a JavaScript file to keep up to date by hand, outside
any package manager).  plotly wins on what a capacity report is read for: hovering a
point gives the exact p99 of an action at a step, log axes, zoom into the knee, toggling
actions in the legend, and a PNG/SVG export button, all without a server.  Its Python
package is pure Python (plus narwhals), and only its ``plotly.min.js`` is used: the
figures are plain dicts built in :mod:`emulator.report.figures`, so the report does not
import plotly's figure classes and costs ~0.1 s to write.  The size is the price; gzip
takes the file to ~1.4 MB.

**Nothing is fetched and nothing is injected.**  The page carries a Content-Security-
Policy that allows no network access at all (``default-src 'none'``; inline scripts and
styles only), every text is HTML-escaped (:func:`html.escape`), the chart data sits in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` written as JSON
escapes, and texts inside charts are escaped for plotly.js (:func:`~emulator.report.figures.label`).
A chart that cannot be drawn says so in its box instead of leaving it blank.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator.metrics.timeseries import write_csv, write_json
from emulator.report.data import ReportData, versions
from emulator.report.figures import Figure, action_colors, step_figures, time_figures

__all__ = ["ReportFiles", "render_html", "write_report"]

REPORT = "report.html"
RESULT = "result.json"
TIMESERIES_JSON = "timeseries.json"
TIMESERIES_CSV = "timeseries.csv"

_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; "
    "form-action 'none'"
)


@dataclass(frozen=True, slots=True)
class ReportFiles:
    html: Path
    result: Path
    timeseries_json: Path
    timeseries_csv: Path


def write_report(directory: Path | str, data: ReportData) -> ReportFiles:
    """Write ``report.html``, ``result.json``, ``timeseries.json`` and ``timeseries.csv``
    into ``directory`` (created if missing; existing files are replaced)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        html=folder / REPORT,
        result=folder / RESULT,
        timeseries_json=folder / TIMESERIES_JSON,
        timeseries_csv=folder / TIMESERIES_CSV,
    )
    files.result.write_text(
        json.dumps(_finite(data.result), indent=2, allow_nan=False, default=str) + "\n", "utf-8"
    )
    write_json(files.timeseries_json, data.rows, interval=data.interval)
    write_csv(files.timeseries_csv, data.rows)
    files.html.write_text(render_html(data), "utf-8")
    return files


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: strict JSON, whatever was measured."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def render_html(data: ReportData) -> str:
    """The report as one HTML document (with plotly.js inlined)."""
    result = data.result
    steps = [s for s in _list(result.get("steps")) if isinstance(s, Mapping)]
    capacity = result.get("capacity")
    names = [str(n) for s in steps for n in (s.get("actions") or {})]
    names += [a.action for r in data.rows for a in r.actions]
    colors = action_colors(names)
    figures: dict[str, Figure] = {}
    figures.update(
        step_figures(steps, capacity=capacity if isinstance(capacity, int) else None, colors=colors)
    )
    figures.update(time_figures(data.rows, colors=colors))
    plots = {f"plot-{key}": figure for key, figure in figures.items()}

    title = "Capacity search" if data.kind == "capacity" else "Run report"
    scenario = result.get("scenario", data.parameters.get("scenario", ""))
    body: list[str] = [
        "<header>",
        f"<p class='kind'>ocpp-fleet · {_e(title)}"
        + (f" · {_e(scenario)}" if scenario else "")
        + "</p>",
        f"<h1 class='verdict {_verdict_class(data, steps)}'>{_e(data.verdict)}</h1>",
        _violations(result),
        "</header>",
    ]
    no_steps = "No step was judged: nothing to plot against fleet size."
    body += _section("Latency against fleet size", "latency", plots, no_steps, tall=True)
    body += _section("Throughput against fleet size", "throughput", plots, no_steps)
    body += _section("Failures per step", "failures", plots, no_steps)
    body += _section(
        "Generator health per step",
        "generator",
        plots,
        "No generator figures in the steps." if steps else no_steps,
    )
    body += ["<section>", "<h2>Steps</h2>", _steps_table(steps), "</section>"]
    body += ["<section>", "<h2>SLO results</h2>", _slo_table(steps), "</section>"]
    no_rows = "No time series was recorded."
    body += _section("Latency and fleet size over time", "timeline_latency", plots, no_rows)
    body += _section("Calls and failures over time", "timeline_load", plots, no_rows)
    if "plot-timeline_generator" in plots:
        body += _section("Generator over time", "timeline_generator", plots, "")
    body += [
        "<section>",
        "<h2>Parameters</h2>",
        _table(_flatten(_parameters(data)), ("parameter", "value")),
        "</section>",
        _footer(),
    ]
    return _document(title, scenario, "\n".join(body), plots)


# --------------------------------------------------------------------------- pieces


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _verdict_class(data: ReportData, steps: Sequence[Mapping[str, Any]]) -> str:
    result = data.result
    if data.kind == "capacity":
        return {"max": "pass", "generator": "warn"}.get(str(result.get("limited_by")), "info")
    if not steps:
        return "info"
    return "pass" if all(s.get("passed", True) for s in steps) else "fail"


def _section(
    heading: str, key: str, plots: Mapping[str, Figure], empty: str, *, tall: bool = False
) -> list[str]:
    plot = f"plot-{key}"
    if plot in plots:
        content = f"<div class='plot{' tall' if tall else ''}' id='{plot}'></div>"
    else:
        content = f"<p class='empty'>{_e(empty)}</p>"
    return ["<section>", f"<h2>{_e(heading)}</h2>", content, "</section>"]


def _violations(result: Mapping[str, Any]) -> str:
    items = [v for v in _list(result.get("violations")) if isinstance(v, Mapping | str)]
    if not items:
        return ""
    lines = []
    for item in items:
        if isinstance(item, str):
            lines.append(f"<li>{_e(item)}</li>")
            continue
        value = _value_text(item)
        detail = item.get("detail")
        text = f"<code>{_e(item.get('slo', ''))}</code>: {_e(value)}"
        if detail and value != detail:
            text += f" <span class='detail'>({_e(detail)})</span>"
        lines.append(f"<li>{text}</li>")
    return "<ul class='violations'>" + "".join(lines) + "</ul>"


def _value_text(judgement: Mapping[str, Any]) -> str:
    value = judgement.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return str(judgement.get("detail") or "not measured")
    unit = str(judgement.get("unit") or "")
    number = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if unit in ("", "count"):
        return f"{value:,.0f}"
    return f"{number} {unit}"


def _fmt(value: Any, *, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:,.{digits}f}"
    return str(value)


def _steps_table(steps: Sequence[Mapping[str, Any]]) -> str:
    if not steps:
        return "<p class='empty'>No step was judged.</p>"
    head = (
        "#",
        "chargers",
        "connected",
        "result",
        "calls/s",
        "slowest p99",
        "failed calls",
        "loop lag p99",
        "lateness p99",
        "hold",
    )
    rows = []
    for number, step in enumerate(steps, 1):
        actions = step.get("actions") or {}
        slowest = max(
            (
                (float(f["p99_ms"]), str(name))
                for name, f in actions.items()
                if isinstance(f, Mapping) and isinstance(f.get("p99_ms"), int | float)
            ),
            default=None,
        )
        failed = sum(int(f.get("errors") or 0) for f in actions.values() if isinstance(f, Mapping))
        generator = step.get("generator") or {}
        passed = step.get("passed")
        verdict = "–" if passed is None else ("passed" if passed else "failed")
        cells = [
            _e(number),
            _e(_fmt(step.get("chargers"))),
            _e(_fmt(step.get("connected"))),
            f"<span class='{'pass' if passed else 'fail'}'>{_e(verdict)}</span>"
            if passed is not None
            else "–",
            _e(_fmt(step.get("calls_per_second"))),
            "–" if slowest is None else f"{_e(slowest[1])} {_e(_fmt(slowest[0]))} ms",
            _e(f"{failed:,}"),
            _ms_cell(generator.get("loop_lag_p99_ms"), generator.get("loop_lag_limit_ms")),
            _ms_cell(generator.get("lateness_p99_ms"), generator.get("lateness_limit_ms")),
            _e(_fmt(step.get("hold_s"), digits=0) + " s") if step.get("hold_s") else "–",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (
        f"<table class='steps'><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _ms_cell(value: Any, limit: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    over = isinstance(limit, int | float) and value > limit
    text = f"{value:,.1f} ms"
    return f"<span class='fail'>{_e(text)}</span>" if over else _e(text)


def _slo_table(steps: Sequence[Mapping[str, Any]]) -> str:
    judged: dict[str, dict[int, Mapping[str, Any]]] = {}
    for index, step in enumerate(steps):
        for judgement in _list(step.get("slo")):
            if isinstance(judgement, Mapping):
                judged.setdefault(str(judgement.get("slo", "")), {})[index] = judgement
    if not judged:
        return "<p class='empty'>No SLO was judged.</p>"
    header = "<th>SLO</th>" + "".join(
        f"<th>#{i + 1} · {_e(_fmt(s.get('chargers')))} chargers</th>" for i, s in enumerate(steps)
    )
    rows = []
    for text, by_step in judged.items():
        cells = [f"<td><code>{_e(text)}</code></td>"]
        for index in range(len(steps)):
            judgement = by_step.get(index)
            if judgement is None:
                cells.append("<td>–</td>")
                continue
            passed = bool(judgement.get("passed"))
            mark = "✓" if passed else "✗"
            cells.append(
                f"<td class='{'pass' if passed else 'fail'}' "
                f"title='{_e(judgement.get('detail', ''))}'>"
                f"{mark} {_e(_value_text(judgement))}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table class='slo'><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _parameters(data: ReportData) -> dict[str, Any]:
    shown = dict(data.parameters)
    for key in ("scenario", "seed", "start_time", "versions", "machine"):
        if key not in shown and key in data.result:
            shown[key] = data.result[key]
    if data.interval is not None and "timeseries_interval_s" not in shown:
        shown["timeseries_interval_s"] = data.interval
    return shown


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    flat: list[tuple[str, str]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat += _flatten(value, name + ".")
        elif isinstance(value, list | tuple):
            flat.append((name, ", ".join(_fmt(v) for v in value)))
        else:
            flat.append((name, _fmt(value, digits=3)))
    return flat


def _table(rows: Iterable[tuple[str, str]], head: Sequence[str]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    if not body:
        return "<p class='empty'>None given.</p>"
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table class='params'><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _footer() -> str:
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    version = versions().get("ocpp-fleet", "")
    files = " · ".join(
        f"<a href='{name}'>{name}</a>" for name in (RESULT, TIMESERIES_JSON, TIMESERIES_CSV)
    )
    return (
        f"<footer>Written {_e(written)} by ocpp-fleet {_e(version)}. "
        f"The data behind it: {files}.</footer>"
    )


# --------------------------------------------------------------------------- the document

# The page's own colours are not the charts' (figures.COLORS): a screenshot tells them apart.
_STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222;
       background: #fafafa; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
header { padding: 8px 0 4px; }
.kind { color: #666; margin: 0 0 6px; font-size: 14px; }
h1.verdict { font-size: 22px; line-height: 1.35; font-weight: 600; margin: 0 0 8px;
             padding: 10px 14px; border-left: 6px solid #888; background: #fff; }
h1.verdict.pass { border-color: #1a7f1a; }
h1.verdict.fail { border-color: #c62020; }
h1.verdict.warn { border-color: #e07000; }
h1.verdict.info { border-color: #3a6ea5; }
h2 { font-size: 17px; margin: 28px 0 8px; }
section { background: #fff; padding: 4px 14px 12px; margin-top: 14px;
          border: 1px solid #e5e5e5; border-radius: 4px; }
.plot { width: 100%; height: 380px; }
.plot.tall { height: 440px; }
.plot.failed { height: auto; padding: 20px; color: #c62020; }
.empty { color: #666; font-style: italic; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #eee; vertical-align: top; }
thead th { border-bottom: 2px solid #ccc; }
table.steps td, table.slo td { font-variant-numeric: tabular-nums; }
.pass { color: #1a7f1a; }
.fail { color: #c62020; font-weight: 600; }
.violations { margin: 6px 0 0; }
.detail { color: #666; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
footer { color: #777; font-size: 12px; margin-top: 24px; }
"""

_BOOT = """
(function () {
  "use strict";
  var figures = JSON.parse(document.getElementById("report-figures").textContent);
  var config = {displaylogo: false, responsive: true};
  function fail(box, error) {
    box.className += " failed";
    box.textContent = "This chart could not be drawn: " + error;
  }
  Object.keys(figures).forEach(function (id) {
    var box = document.getElementById(id);
    try {
      if (typeof Plotly === "undefined") { throw new Error("plotly.js did not load"); }
      Plotly.newPlot(box, figures[id].data, figures[id].layout, config)
        .catch(function (error) { fail(box, error); });
    } catch (error) {
      fail(box, error);
    }
  });
})();
"""

_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_JSON_UNSAFE = re.compile("[<>&\u2028\u2029]")


def script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return _JSON_UNSAFE.sub(lambda m: _JSON_ESCAPES[m[0]], text)


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    script = get_plotlyjs()
    if "</script" in script.lower():  # pragma: no cover - a bundle we could not inline
        raise RuntimeError("plotly.min.js contains </script>: it cannot be inlined")
    return script


def _document(title: str, scenario: object, body: str, plots: Mapping[str, Figure]) -> str:
    heading = f"ocpp-fleet {title.lower()}" + (f": {scenario}" if scenario else "")
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'>",
        "<head>",
        "<meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(heading)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        body,
        "</main>",
        f"<script type='application/json' id='report-figures'>{script_json(plots)}</script>",
    ]
    if plots:
        parts += [f"<script>{_plotly_js()}</script>", f"<script>{_BOOT}</script>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
