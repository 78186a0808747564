"""The report's charts as plotly.js figure specifications (plain dicts, JSON-able).

Every text a chart shows that comes from outside (action names, failure outcomes, SLO
texts) goes through :func:`label`: plotly.js renders a few HTML-like tags in trace names
and annotations (``<b>``, ``<a href>``, ...) and decodes entities, so escaping ``&``,
``<`` and ``>`` makes it show the text as it is, tags and all.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from emulator.metrics.timeseries import Row

__all__ = ["COLORS", "Figure", "label", "step_figures", "time_figures"]

Figure = dict[str, Any]

# Tableau 10: distinct, colour-blind friendly enough, and known to the tests.
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
PASSED = "#2ca02c"
FAILED = "#d62728"
LIMIT = "#d62728"
FLEET = "#444444"
_QUANTILES = ("p50", "p95", "p99")
_LATENCY_SLO = re.compile(r"^\s*(?:(?P<action>[A-Za-z][A-Za-z0-9]*|\*)\s*:)?\s*(?P<q>p\d+)\s*<")


def label(text: object) -> str:
    """``text`` as plotly.js shows it literally."""
    return html.escape(str(text), quote=False)


def _base_layout(**extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "margin": {"l": 64, "r": 24, "t": 36, "b": 56},
        "font": {"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 12},
        "hovermode": "closest",
        "showlegend": True,
        "legend": {"orientation": "v"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
    }
    layout.update(extra)
    return layout


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    axis: dict[str, Any] = {
        "title": {"text": title},
        "gridcolor": "#e5e5e5",
        "zerolinecolor": "#cccccc",
        "linecolor": "#999999",
        "showline": True,
    }
    axis.update(extra)
    return axis


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _positive(value: Any) -> float | None:
    """A value for a log axis (None: not drawable)."""
    number = _number(value)
    return number if number is not None and number > 0 else None


def action_colors(names: Iterable[str]) -> dict[str, str]:
    """One colour per action, by name order: the same in every chart of a report."""
    return {name: COLORS[i % len(COLORS)] for i, name in enumerate(sorted(set(names)))}


# --------------------------------------------------------------------------- per step


def step_figures(
    steps: Sequence[Mapping[str, Any]], *, capacity: int | None, colors: Mapping[str, str]
) -> dict[str, Figure]:
    """Latency, throughput, failures and generator health against fleet size; empty
    when there is no step."""
    ordered = sorted(
        (s for s in steps if _number(s.get("chargers")) is not None),
        key=lambda s: float(s["chargers"]),
    )
    if not ordered:
        return {}
    figures = {
        "latency": _latency_figure(ordered, capacity, colors),
        "throughput": _throughput_figure(ordered),
        "failures": _failures_figure(ordered, colors),
    }
    generator = _generator_figure(ordered)
    if generator is not None:
        figures["generator"] = generator
    return figures


def _chargers(steps: Sequence[Mapping[str, Any]]) -> list[float]:
    return [float(s["chargers"]) for s in steps]


def _symbols(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    return ["circle" if s.get("passed", True) else "x" for s in steps]


def _step_actions(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    names: set[str] = set()
    for step in steps:
        actions = step.get("actions")
        if isinstance(actions, Mapping):
            names.update(str(name) for name in actions)
    return sorted(names)


def _x_span(xs: Sequence[float]) -> list[float]:
    low, high = min(xs), max(xs)
    if high <= low:
        return [low * 0.8, high * 1.2] if low > 0 else [low - 1, high + 1]
    return [low, high]


def _latency_figure(
    steps: Sequence[Mapping[str, Any]], capacity: int | None, colors: Mapping[str, str]
) -> Figure:
    xs = _chargers(steps)
    data: list[dict[str, Any]] = []
    for index, quantile in enumerate(_QUANTILES):
        axis = "" if index == 0 else str(index + 1)
        for name in _step_actions(steps):
            ys: list[float | None] = []
            for step in steps:
                figures = (step.get("actions") or {}).get(name) or {}
                ys.append(_positive(figures.get(f"{quantile}_ms")))
            if all(y is None for y in ys):
                continue
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": label(name),
                    "legendgroup": label(name),
                    "showlegend": quantile == "p99",
                    "x": xs,
                    "y": ys,
                    "xaxis": f"x{axis}",
                    "yaxis": f"y{axis}",
                    "line": {"color": colors.get(name, COLORS[0]), "width": 2},
                    "marker": {"size": 8, "symbol": _symbols(steps)},
                    "connectgaps": True,
                    "hovertemplate": f"%{{x:,}} chargers: {quantile} %{{y:,.1f}} ms",
                }
            )
    span = _x_span(xs)
    for slo, quantile, action in _latency_slos(steps):
        index = _QUANTILES.index(quantile)
        axis = "" if index == 0 else str(index + 1)
        limit = _positive(slo.get("limit"))
        if limit is None:
            continue
        limit_ms = limit * 1000.0 if slo.get("unit") == "s" else limit
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": label(f"SLO {slo.get('slo', '')}"),
                "x": span,
                "y": [limit_ms, limit_ms],
                "xaxis": f"x{axis}",
                "yaxis": f"y{axis}",
                "line": {"color": colors.get(action or "", LIMIT), "width": 1.5, "dash": "dot"},
                "hovertemplate": "limit %{y:,.0f} ms<extra>%{fullData.name}</extra>",
            }
        )
    layout = _base_layout(
        margin={"l": 64, "r": 24, "t": 40, "b": 56},
        legend={"title": {"text": "p99, p95, p50 per action"}},
    )
    shapes: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, quantile in enumerate(_QUANTILES):
        axis = "" if index == 0 else str(index + 1)
        width = 0.30
        start = index * 0.35
        layout[f"xaxis{axis}"] = _axis(
            "chargers",
            domain=[start, start + width],
            anchor=f"y{axis}",
            tickformat=",~f",
        )
        layout[f"yaxis{axis}"] = _axis(
            "latency (ms)" if index == 0 else "",
            type="log",
            anchor=f"x{axis}",
            **({"matches": "y"} if index else {}),
        )
        annotations.append(
            {
                "text": f"<b>{quantile}</b>",
                "xref": f"x{axis} domain",
                "yref": "paper",
                "x": 0.5,
                "y": 1.0,
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 13},
            }
        )
        if capacity is not None:
            shapes.append(
                {
                    "type": "line",
                    "xref": f"x{axis}",
                    "yref": f"y{axis} domain",
                    "x0": capacity,
                    "x1": capacity,
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": PASSED, "width": 1.5, "dash": "dash"},
                }
            )
            annotations.append(
                {
                    "text": f"capacity {capacity:,}",
                    "xref": f"x{axis}",
                    "yref": f"y{axis} domain",
                    "x": capacity,
                    "y": 1.0,
                    "xanchor": "right",
                    "yanchor": "top",
                    "showarrow": False,
                    "font": {"size": 11, "color": PASSED},
                }
            )
    layout["shapes"] = shapes
    layout["annotations"] = annotations
    return {"data": data, "layout": layout}


def _latency_slos(
    steps: Sequence[Mapping[str, Any]],
) -> list[tuple[Mapping[str, Any], str, str | None]]:
    """Latency SLOs on p50/p95/p99 judged in any step, once each: (slo, quantile, action)."""
    found: dict[str, tuple[Mapping[str, Any], str, str | None]] = {}
    for step in steps:
        for slo in step.get("slo") or ():
            if not isinstance(slo, Mapping):
                continue
            text = str(slo.get("slo", ""))
            match = _LATENCY_SLO.match(text)
            if match is None or match["q"] not in _QUANTILES or text in found:
                continue
            if slo.get("unit") not in ("ms", "s"):
                continue
            action = match["action"]
            found[text] = (slo, match["q"], None if action in (None, "*") else action)
    return list(found.values())


def _throughput_figure(steps: Sequence[Mapping[str, Any]]) -> Figure:
    xs = _chargers(steps)
    ys = [_number(s.get("calls_per_second")) for s in steps]
    colors = [PASSED if s.get("passed", True) else FAILED for s in steps]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "calls/s",
            "x": xs,
            "y": ys,
            "line": {"color": COLORS[0], "width": 2},
            "marker": {"size": 10, "color": colors, "symbol": _symbols(steps)},
            "hovertemplate": "%{x:,} chargers: %{y:,.1f} calls/s<extra></extra>",
        }
    ]
    first = next(((x, y) for x, y in zip(xs, ys, strict=True) if y and x > 0), None)
    if first is not None and len(xs) > 1:
        per_charger = first[1] / first[0]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "linear from the smallest step",
                "x": [0.0, max(xs)],
                "y": [0.0, per_charger * max(xs)],
                "line": {"color": "#999999", "width": 1, "dash": "dash"},
                "hoverinfo": "skip",
            }
        )
    layout = _base_layout(
        xaxis=_axis("chargers", tickformat=",~f", rangemode="tozero"),
        yaxis=_axis("charger calls per second", rangemode="tozero"),
    )
    return {"data": data, "layout": layout}


def _failures_figure(steps: Sequence[Mapping[str, Any]], colors: Mapping[str, str]) -> Figure:
    categories = [f"{int(float(s['chargers'])):,}" for s in steps]
    by_outcome = all(isinstance(s.get("failures"), Mapping) for s in steps)
    series: dict[str, list[float]] = {}
    if by_outcome:
        names = sorted({str(o) for s in steps for o in s["failures"]})
        for name in names:
            series[name] = [float(_number(s["failures"].get(name)) or 0) for s in steps]
    else:
        for name in _step_actions(steps):
            series[name] = [
                float(_number(((s.get("actions") or {}).get(name) or {}).get("errors")) or 0)
                for s in steps
            ]
    connects = [float(_number(s.get("connect_failures")) or 0) for s in steps]
    if any(connects):
        series["connect failures"] = connects
    data = []
    for i, (name, values) in enumerate(series.items()):
        if not any(values):
            continue
        color = colors.get(name) if not by_outcome else None
        data.append(
            {
                "type": "bar",
                "name": label(name),
                "x": categories,
                "y": values,
                "marker": {"color": color or COLORS[i % len(COLORS)]},
                "hovertemplate": "%{x} chargers: %{y:,}<extra>%{fullData.name}</extra>",
            }
        )
    layout = _base_layout(
        barmode="stack",
        xaxis=_axis("chargers", type="category", categoryorder="array", categoryarray=categories),
        yaxis=_axis("failed calls" if by_outcome else "failed calls by action", rangemode="tozero"),
    )
    if not data:
        layout["annotations"] = [
            {
                "text": "no failed calls in any step",
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "showarrow": False,
                "font": {"size": 14, "color": "#666666"},
            }
        ]
    return {"data": data, "layout": layout}


def _generator_figure(steps: Sequence[Mapping[str, Any]]) -> Figure | None:
    generators: list[Mapping[str, Any]] = []
    for step in steps:
        figures = step.get("generator")
        generators.append(figures if isinstance(figures, Mapping) else {})
    if not any(generators):
        return None
    xs = _chargers(steps)
    data: list[dict[str, Any]] = []
    lines = (
        ("loop_lag_p99_ms", "loop lag p99", COLORS[4], "loop_lag_limit_ms"),
        ("lateness_p99_ms", "send lateness p99", COLORS[1], "lateness_limit_ms"),
    )
    span = _x_span(xs)
    for key, name, color, limit_key in lines:
        ys = [_number(g.get(key)) for g in generators]
        if all(y is None for y in ys):
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": xs,
                "y": ys,
                "line": {"color": color, "width": 2},
                "marker": {"size": 8},
                "hovertemplate": "%{x:,} chargers: %{y:,.1f} ms<extra>" + name + "</extra>",
            }
        )
        limits = [_number(g.get(limit_key)) for g in generators]
        limit = next((v for v in limits if v is not None), None)
        if limit is not None:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{name} limit",
                    "x": span,
                    "y": [limit, limit],
                    "line": {"color": color, "width": 1.5, "dash": "dot"},
                    "hovertemplate": "limit %{y:,.0f} ms<extra></extra>",
                }
            )
    cpu = [_number(g.get("cpu_share")) for g in generators]
    layout = _base_layout(
        xaxis=_axis("chargers", tickformat=",~f"),
        yaxis=_axis("p99 (ms)", rangemode="tozero"),
    )
    if any(c is not None for c in cpu):
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "CPU (share of a core)",
                "x": xs,
                "y": cpu,
                "yaxis": "y2",
                "line": {"color": FLEET, "width": 1.5},
                "marker": {"size": 6, "symbol": "square"},
                "hovertemplate": "%{x:,} chargers: CPU %{y:.0%}<extra></extra>",
            }
        )
        cpu_limit = next(
            (v for g in generators if (v := _number(g.get("cpu_limit"))) is not None), None
        )
        if cpu_limit is not None:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": "CPU limit",
                    "x": span,
                    "y": [cpu_limit, cpu_limit],
                    "yaxis": "y2",
                    "line": {"color": FLEET, "width": 1, "dash": "dot"},
                    "hoverinfo": "skip",
                }
            )
        layout["yaxis2"] = _axis(
            "CPU (share of one core)",
            overlaying="y",
            side="right",
            tickformat=".0%",
            rangemode="tozero",
            showgrid=False,
            tickmode="auto",
        )
        layout["margin"] = {"l": 64, "r": 64, "t": 36, "b": 56}
        layout["legend"] = {"x": 1.08, "xanchor": "left"}
    return {"data": data, "layout": layout}


# --------------------------------------------------------------------------- over time


def _plot_time(iso: str) -> str:
    """An ISO 8601 time as plotly.js reads dates (no offset: the axis says UTC)."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def time_figures(rows: Sequence[Row], *, colors: Mapping[str, str]) -> dict[str, Figure]:
    """Latency and fleet size over time, calls and failures over time and, when the rows
    have them, the generator's figures over time; empty without rows."""
    if not rows:
        return {}
    times = [_plot_time(r.time) for r in rows]
    figures = {
        "timeline_latency": _timeline_latency(rows, times, colors),
        "timeline_load": _timeline_load(rows, times),
    }
    if any(r.generator for r in rows):
        figures["timeline_generator"] = _timeline_generator(rows, times)
    return figures


def _fleet_traces(rows: Sequence[Row], times: Sequence[str]) -> list[dict[str, Any]]:
    traces = []
    for key, name, dash in (("chargers", "chargers", "solid"), ("connected", "connected", "dot")):
        values = [getattr(r, key) for r in rows]
        if all(v is None for v in values):
            continue
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": name,
                "x": times,
                "y": values,
                "yaxis": "y2",
                "line": {"color": FLEET, "width": 1.5, "dash": dash, "shape": "hv"},
                "hovertemplate": "%{y:,} " + name + "<extra></extra>",
            }
        )
    return traces


def _time_layout(y_title: str, y2_title: str | None, **y: Any) -> dict[str, Any]:
    layout = _base_layout(
        xaxis=_axis("time (UTC)", type="date"),
        yaxis=_axis(y_title, **y),
        hovermode="x unified",
        legend={"x": 1.08, "xanchor": "left"},
        margin={"l": 64, "r": 64, "t": 36, "b": 56},
    )
    if y2_title is not None:
        layout["yaxis2"] = _axis(
            y2_title,
            overlaying="y",
            side="right",
            rangemode="tozero",
            showgrid=False,
            tickmode="auto",
            tickformat=",~f",
        )
    return layout


def _timeline_latency(
    rows: Sequence[Row], times: Sequence[str], colors: Mapping[str, str]
) -> Figure:
    names = sorted({a.action for r in rows for a in r.actions if a.direction == "cp_to_csms"})
    data: list[dict[str, Any]] = []
    for name in names:
        ys = []
        for row in rows:
            found = row.action(name)
            ys.append(None if found is None else _positive(found.p99_ms))
        if all(y is None for y in ys):
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": label(name),
                "x": times,
                "y": ys,
                "line": {"color": colors.get(name, COLORS[0]), "width": 1.5},
                "marker": {"size": 4},
                "hovertemplate": "p99 %{y:,.1f} ms",
            }
        )
    fleet = _fleet_traces(rows, times)
    data += fleet
    layout = _time_layout("p99 latency (ms)", "wallboxes" if fleet else None, type="log")
    return {"data": data, "layout": layout}


def _timeline_load(rows: Sequence[Row], times: Sequence[str]) -> Figure:
    calls, failures = [], []
    for row in rows:
        duration = row.duration_s
        calls.append(round(row.calls / duration, 3) if duration > 0 else None)
        failures.append(round(row.failures / duration, 3) if duration > 0 else None)
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "calls/s",
            "x": times,
            "y": calls,
            "line": {"color": COLORS[0], "width": 1.5},
            "marker": {"size": 4},
            "hovertemplate": "%{y:,.1f} calls/s",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "failed calls/s",
            "x": times,
            "y": failures,
            "line": {"color": FAILED, "width": 1.5},
            "marker": {"size": 4},
            "hovertemplate": "%{y:,.2f} failed/s",
        },
    ]
    depth = [r.queue_depth for r in rows]
    if any(d is not None for d in depth):
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "queued messages",
                "x": times,
                "y": depth,
                "yaxis": "y2",
                "line": {"color": FLEET, "width": 1.5, "dash": "dot"},
                "hovertemplate": "%{y:,} queued",
            }
        )
    layout = _time_layout(
        "calls per second (both directions)",
        "queued messages" if any(d is not None for d in depth) else None,
        rangemode="tozero",
    )
    return {"data": data, "layout": layout}


def _timeline_generator(rows: Sequence[Row], times: Sequence[str]) -> Figure:
    data: list[dict[str, Any]] = []
    for key, name, color in (
        ("loop_lag_p99_ms", "loop lag p99", COLORS[4]),
        ("lateness_p99_ms", "send lateness p99", COLORS[1]),
    ):
        ys = [r.generator.get(key) for r in rows]
        if all(y is None for y in ys):
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": times,
                "y": ys,
                "line": {"color": color, "width": 1.5},
                "marker": {"size": 4},
                "hovertemplate": "%{y:,.1f} ms",
            }
        )
    layout = _time_layout("p99 (ms)", None, rangemode="tozero")
    return {"data": data, "layout": layout}
