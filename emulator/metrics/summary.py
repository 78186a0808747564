"""The end-of-run summary: a rich table for people, a dict for ``--json``."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from emulator.core.outcome import Outcome
from emulator.metrics.conformance import CsmsConformance
from emulator.metrics.stats import ActionStats, Direction, Histogram, RunStats, outcome_keys

__all__ = ["conformance_dict", "render_conformance", "render_summary", "summary_dict"]

_QUANTILES = (50.0, 95.0, 99.0)
_BREAKDOWN_ITEMS = 3
_INLINE_BREAKDOWN_WIDTH = 110


def summary_dict(stats: RunStats, *, chargers: int | None = None) -> dict[str, Any]:
    """Everything :func:`render_summary` shows, as JSON-able data (latencies in ms).

    Percentiles of an empty histogram are None, never NaN, so the result encodes as
    strict JSON.  With ``chargers`` each action also has ``per_charger_hour``: the load
    the fleet offered, in messages per charger per hour over the run.
    """
    elapsed = stats.elapsed
    return {
        "duration_s": round(elapsed, 3),
        "actions": [
            {
                "action": a.action,
                "direction": a.direction.value,
                "count": a.count,
                "errors": a.errors,
                "outcomes": dict(sorted(outcome_keys(a.outcomes).items())),
                "latency_ms": _latency_dict(a.latency),
                **(
                    {"per_charger_hour": round(_per_charger_hour(a.count, chargers, elapsed), 3)}
                    if chargers
                    else {}
                ),
            }
            for a in _sorted_actions(stats)
        ],
        "totals": {
            direction.value: {
                "count": total.count,
                "errors": total.errors,
                "outcomes": dict(sorted(outcome_keys(total.outcomes).items())),
                "latency_ms": _latency_dict(total.latency),
            }
            for direction in Direction
            if (total := _total(stats, direction)).count
        },
        "connections": {
            "connects": stats.connects,
            "reconnects": stats.reconnects,
            "open": stats.open_connections,
            "connect_failures": dict(sorted(stats.connect_failures.items())),
            "disconnects": dict(sorted(stats.disconnects.items())),
            "connect_ms": _latency_dict(stats.connect_latency),
            "ping_rtt_ms": _latency_dict(stats.ping_rtt_latency),
        },
        "messages": {
            "sent": stats.messages_sent,
            "received": stats.messages_received,
            "sent_per_s": _rate(stats.messages_sent, elapsed),
            "received_per_s": _rate(stats.messages_received, elapsed),
        },
        "counters": dict(sorted(stats.counters.items())),
    }


def render_summary(stats: RunStats, *, console: Console, chargers: int | None = None) -> None:
    """Print the per-action table and the connection figures to ``console``; with
    ``chargers``, also the load offered per action (messages per charger per hour)."""
    actions = _sorted_actions(stats)
    totals = [t for d in Direction if (t := _total(stats, d)).count]
    # On a narrow terminal the breakdown gets its own lines below the table instead of a
    # column squeezed to a few characters.
    inline = console.width >= _INLINE_BREAKDOWN_WIDTH
    calls = Table(
        title="OCPP calls (latencies in ms)", title_justify="left", show_edge=False, pad_edge=False
    )
    width = max([len("Action"), len("Total"), *(len(a.action) for a in actions)])
    calls.add_column("Action", no_wrap=True, min_width=width)
    calls.add_column("Direction", no_wrap=True)
    calls.add_column("Count", justify="right", no_wrap=True)
    for q in _QUANTILES:
        calls.add_column(f"p{q:g}", justify="right", no_wrap=True)
    calls.add_column("Errors", justify="right", no_wrap=True)
    if inline:
        calls.add_column("Error breakdown", overflow="fold")
    for action in actions:
        calls.add_row(*_call_row(Text(action.action), action, breakdown=inline))
    calls.add_section()
    for total in totals:
        calls.add_row(*_call_row(Text("Total"), total, breakdown=inline), style="bold")
    if not actions:
        calls.add_row(Text("no OCPP calls", style="dim"))
    console.print(calls)
    if not inline and any(a.errors for a in totals):
        console.print(Text("Error breakdown", style="italic"))
        for action in [*actions, *totals]:
            if action.errors:
                name = action.action or "Total"
                line = Text(
                    f"  {name} {action.direction.arrow}: ",
                    style="bold" if not action.action else "",
                )
                line.append(_breakdown(action.outcomes, limit=None))
                console.print(line)

    elapsed = stats.elapsed
    figures = Table(title="Connections", title_justify="left", show_header=False, show_edge=False)
    figures.add_column("What")
    figures.add_column("Value")
    figures.add_row("Duration", f"{elapsed:.1f} s")
    figures.add_row(
        "Connects",
        f"{stats.connects:,} ({stats.reconnects:,} reconnects), {stats.open_connections:,} open",
    )
    figures.add_row("Connect failures", _counts(stats.connect_failures))
    figures.add_row("Disconnects", _counts(stats.disconnects))
    figures.add_row("Connect time", _latency_text(stats.connect_latency))
    figures.add_row("Ping RTT", _latency_text(stats.ping_rtt_latency))
    figures.add_row(
        "Messages",
        f"{stats.messages_sent:,} sent ({_rate(stats.messages_sent, elapsed):,.1f}/s), "
        f"{stats.messages_received:,} received ({_rate(stats.messages_received, elapsed):,.1f}/s)",
    )
    for name, value in sorted(stats.counters.items()):
        figures.add_row(Text(name), f"{value:,}")
    console.print(figures)
    if chargers and actions:
        _render_load(actions, chargers, elapsed, console)


def _render_load(
    actions: list[ActionStats], chargers: int, elapsed: float, console: Console
) -> None:
    """One line per action: the load the fleet offered, per charger and hour."""
    load = Table(
        title=f"Load offered by {chargers:,} chargers (messages per charger per hour)",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    load.add_column("Action", no_wrap=True)
    load.add_column("Direction", no_wrap=True)
    load.add_column("Per charger per hour", justify="right", no_wrap=True)
    load.add_column("Fleet per second", justify="right", no_wrap=True)
    for action in actions:
        load.add_row(
            Text(action.action),
            action.direction.arrow,
            f"{_per_charger_hour(action.count, chargers, elapsed):,.2f}",
            f"{_rate(action.count, elapsed):,.2f}",
        )
    console.print(load)


def _per_charger_hour(count: int, chargers: int | None, seconds: float) -> float:
    if not chargers or seconds <= 0:
        return 0.0
    return count / chargers / (seconds / 3600.0)


def _sorted_actions(stats: RunStats) -> list[ActionStats]:
    directions = list(Direction)
    return sorted(stats.actions.values(), key=lambda a: (directions.index(a.direction), a.action))


def _total(stats: RunStats, direction: Direction) -> ActionStats:
    total = ActionStats(direction=direction, action="")
    for action in stats.actions.values():
        if action.direction is direction:
            total.merge(action)
    return total


def _call_row(name: Text, action: ActionStats, *, breakdown: bool) -> list[Text | str]:
    errors = Text(f"{action.errors:,}", style="red" if action.errors else "")
    row: list[Text | str] = [
        name,
        action.direction.arrow,
        f"{action.count:,}",
        *(_ms(v) for v in _percentiles(action.latency)),
        errors,
    ]
    if breakdown:
        row.append(Text(_breakdown(action.outcomes, limit=_BREAKDOWN_ITEMS)))
    return row


def _percentiles(histogram: Histogram) -> list[float]:
    return histogram.percentiles(_QUANTILES)


def _breakdown(outcomes: Counter[Outcome], *, limit: int | None) -> str:
    """The most frequent error outcomes, e.g. ``"timeout 3, NotImplemented 1"``."""
    errors = [(n, o.label) for o, n in outcomes.items() if o.failed]
    errors.sort(key=lambda item: (-item[0], item[1]))
    shown = ", ".join(f"{name} {n:,}" for n, name in errors[:limit])
    more = len(errors) - limit if limit is not None else 0
    return shown + (f", +{more} more" if more > 0 else "")


def _counts(counter: Counter[str]) -> str:
    if not counter:
        return "0"
    parts = ", ".join(f"{reason} {n:,}" for reason, n in counter.most_common())
    return f"{counter.total():,} ({parts})"


def _latency_text(histogram: Histogram) -> str:
    if not histogram.count:
        return "–"
    p50, p95, p99 = _percentiles(histogram)
    return f"p50 {_ms(p50)} ms, p95 {_ms(p95)} ms, p99 {_ms(p99)} ms ({histogram.count:,})"


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    ms = seconds * 1000.0
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def _latency_dict(histogram: Histogram) -> dict[str, float | int | None]:
    def ms(seconds: float) -> float | None:
        return None if math.isnan(seconds) or math.isinf(seconds) else round(seconds * 1e3, 3)

    empty = histogram.count == 0
    quantiles: Iterable[float] = _percentiles(histogram)
    return {
        "count": histogram.count,
        **{f"p{q:g}": ms(v) for q, v in zip(_QUANTILES, quantiles, strict=True)},
        "mean": ms(histogram.mean),
        "min": None if empty else ms(histogram.min),
        "max": None if empty else ms(histogram.max),
    }


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def conformance_dict(
    conformance: CsmsConformance, *, chargers: int, never_accepted: int
) -> dict[str, Any]:
    """What :func:`render_conformance` shows, for ``--json``: the CSMS's schema violations
    (each with its first messages), idTagInfo statuses per action, how many of the
    ``chargers`` wallboxes the CSMS never accepted (BootNotification), and the wallboxes'
    status changes OCPP 1.6 §4.9 does not list (``forbiddenTransitions``)."""
    return {
        **conformance.to_json(),
        "chargers": chargers,
        "neverAccepted": never_accepted,
    }


def render_conformance(
    conformance: CsmsConformance, *, console: Console, chargers: int, never_accepted: int
) -> None:
    """The CSMS's deviations after the summary: wallboxes never accepted, schema violations
    by message, action and code with their first messages, the wallboxes' forbidden status
    changes, idTagInfo statuses."""
    if never_accepted:
        console.print(
            Text(
                f"{never_accepted:,} of {chargers:,} wallboxes never accepted by the CSMS "
                "(BootNotification)",
                style="bold red",
            )
        )
    kinds = conformance.sorted_violations()
    if kinds:
        console.print(
            Text(
                f"CSMS schema violations: {conformance.total_violations:,}",
                style="bold yellow",
            )
        )
        for kind in kinds:
            handled = []
            if kind.accepted:
                handled.append(f"{kind.accepted:,} accepted ({kind.reading.accepted_as})")
            if kind.refused:
                handled.append(f"{kind.refused:,} refused")
            console.print(
                Text(f"  {kind.where} {kind.code}: {kind.count:,}, {', '.join(handled)}"),
                highlight=False,
                soft_wrap=True,
            )
            for example in kind.examples:
                console.print(Text(f"    {example}", style="dim"), highlight=False, soft_wrap=True)
    _render_transitions(conformance, console)
    for action in ("Authorize", "StartTransaction", "StopTransaction"):
        statuses = conformance.statuses_of(action)
        if statuses:
            parts = ", ".join(f"{status} {n:,}" for status, n in statuses.most_common())
            console.print(Text(f"{action} idTagInfo: {parts}"), highlight=False, soft_wrap=True)


def _render_transitions(conformance: CsmsConformance, console: Console) -> None:
    """The wallboxes' own deviation: status changes OCPP 1.6 §4.9 does not list."""
    kinds = conformance.sorted_transitions()
    if not kinds:
        return
    console.print(
        Text(
            f"connector status changes OCPP 1.6 does not list, sent anyway (--strict raises): "
            f"{conformance.transitions.total:,}",
            style="bold yellow",
        ),
        soft_wrap=True,
    )
    for old, new, n in kinds:
        console.print(Text(f"  {old} -> {new}: {n:,}"), highlight=False, soft_wrap=True)
