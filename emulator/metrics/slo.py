"""Service-level objectives: pass/fail rules judged over a window of a run.

One syntax everywhere (``ocpp-fleet run --slo``, Locust's ``--slo`` and ``$LOCUST_SLO``, a
scenario's ``[slo]`` table), documented in ``docs/slo.md``::

    StartTransaction:p99<800ms     *:p95<=0.5s     Heartbeat:mean<50ms     *:max<5s
    errors<0.5%     StartTransaction:errors=0     timeouts=0     connect_failures<1%
    ledger=0

:func:`parse_slo` turns one expression into an :class:`Slo` or raises :class:`SloError`
whose message names the bad part; :func:`evaluate` judges a list of them over a
:class:`~emulator.metrics.stats.RunStats` window (``RunStats.since``) and returns a
:class:`Verdict`.  Nothing here runs per message.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from emulator.core.outcome import TIMEOUT, OutcomeKind
from emulator.metrics.stats import ActionStats, Direction, Histogram, RunStats
from emulator.protocol.schemas import CHARGER_INITIATED, CSMS_INITIATED

__all__ = [
    "CHARGER_ACTIONS",
    "CSMS_ACTIONS",
    "Slo",
    "SloError",
    "SloResult",
    "Verdict",
    "evaluate",
    "ledger_slo",
    "option_sources",
    "parse_rules",
    "parse_slo",
    "scenario_sources",
    "verdict_lines",
]

#: The calls a charger sends (OCPP 1.6 §4 and the security whitepaper): what an SLO names.
CHARGER_ACTIONS: Final = CHARGER_INITIATED
#: The calls a CSMS sends: named in an SLO, they get a message of their own.
CSMS_ACTIONS: Final = CSMS_INITIATED

ALL = "*"
# Measures by kind: what they take as a limit and where they may be scoped.
_LATENCY = "latency"  # pN, mean, max: a duration; an action or * (default *)
_CALLS = "calls"  # errors, timeouts: a share (%) or a count; an action or * (default *)
_CONNECTS = "connects"  # connect_failures: a share (%) or a count; fleet-wide
_LEDGER = "ledger"  # ledger: a count; fleet-wide, whole run
_KINDS: Final = {
    "mean": _LATENCY,
    "max": _LATENCY,
    "errors": _CALLS,
    "timeouts": _CALLS,
    "connect_failures": _CONNECTS,
    "ledger": _LEDGER,
}
_MEASURES_TEXT = (
    "p50, p90, p95, p99, p99.9 (any pN), mean, max, errors, timeouts, connect_failures, ledger"
)
_OPERATORS: Final = {"<": "<", "<=": "<=", "=": "=", "==": "=", ">": ">", ">=": ">="}
_OPERATORS_TEXT = "<, <=, =, ==, >, >="
_UNITS: Final = ("ms", "s", "%")
_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")
_OPERATOR = re.compile(r"[<>=!]+")
_VALUE = re.compile(r"^(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>.*)$")
_ACTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
# A CP→CSMS call that failed: refused (CALLERROR), an answer that broke the schema, or
# no answer at all.  A call cut off by a disconnect is neither the CSMS's answer nor its
# silence: it counts as a call, not as an error.
_ERRORS: Final = frozenset({OutcomeKind.CALLERROR, OutcomeKind.SCHEMA, OutcomeKind.TIMEOUT})


class SloError(ValueError):
    """An expression that is not an SLO; ``str()`` names the bad part (one line)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Slo:
    """One parsed rule: ``[action:]measure op limit[unit]``.

    ``action`` is None for all charger calls pooled (``*`` or no action) and for the
    fleet-wide measures; ``limit`` is in ``unit`` (``"ms"``, ``"s"``, ``"%"``, or
    ``""`` for a count); ``op`` is one of ``<``, ``<=``, ``=``, ``>``, ``>=``;
    ``source`` where it was written (``--slo "..."``, ``scenarios/x.toml: slo.rules[0]``).
    """

    text: str
    measure: str
    action: str | None
    op: str
    limit: float
    unit: str
    quantile: float | None = None
    source: str = field(default="", compare=False)

    @property
    def kind(self) -> str:
        return _LATENCY if self.quantile is not None else _KINDS[self.measure]

    @property
    def limit_text(self) -> str:
        return _number(self.limit, self.unit)

    def holds(self, value: float) -> bool:
        if self.op == "<":
            return value < self.limit
        if self.op == "<=":
            return value <= self.limit
        if self.op == ">":
            return value > self.limit
        if self.op == ">=":
            return value >= self.limit
        return value == self.limit


def parse_slo(text: str, *, source: str = "") -> Slo:
    """Parse one SLO expression; raises :class:`SloError` naming the bad part.

    ``source`` says where it was written (kept for later messages, e.g. a ``ledger``
    SLO that cannot be judged)."""
    rule = text.strip()
    if not rule:
        raise SloError('empty SLO: expected e.g. "StartTransaction:p99<800ms" or "errors<0.5%"')
    scope: str | None = None
    body = rule
    if ":" in rule:
        scope, body = (part.strip() for part in rule.split(":", 1))
        if not scope:
            raise SloError('expected an action or "*" before ":"')
    op_match = _OPERATOR.search(body)
    if op_match is None:
        raise SloError(
            f"expected a comparison ({_OPERATORS_TEXT}), e.g. "
            '"StartTransaction:p99<800ms" or "timeouts=0"'
        )
    op = _OPERATORS.get(op_match[0])
    if op is None:
        raise SloError(f'unknown operator "{op_match[0]}" ({_OPERATORS_TEXT})')
    measure_text = body[: op_match.start()].strip()
    value_text = body[op_match.end() :].strip()
    measure, quantile = _measure(measure_text)
    kind = _LATENCY if quantile is not None else _KINDS[measure]
    action = _scope(scope, measure, kind)
    limit, unit = _limit(value_text, measure, kind)
    return Slo(
        text=rule,
        measure=measure,
        action=action,
        op=op,
        limit=limit,
        unit=unit,
        quantile=quantile,
        source=source,
    )


def parse_rules(rules: Iterable[tuple[str, str]]) -> list[Slo]:
    """Parse ``(source, text)`` pairs, e.g. ``('--slo "timeouts=0"', "timeouts=0")``; an
    error names its source: ``scenarios/x.toml: slo.rules[1]: unknown unit "xs" ...``."""
    slos = []
    for source, text in rules:
        try:
            slos.append(parse_slo(text, source=source))
        except SloError as exc:
            raise SloError(f"{source}: {exc}") from None
    return slos


def scenario_sources(rules: Sequence[str], path: str) -> list[tuple[str, str]]:
    """A scenario's ``slo.rules`` as :func:`parse_rules` takes them."""
    return [(f"{path}: slo.rules[{i}]", rule) for i, rule in enumerate(rules)]


def option_sources(option: str, rules: Iterable[str]) -> list[tuple[str, str]]:
    """Rules given with an option (``--slo``) as :func:`parse_rules` takes them."""
    return [(f'{option} "{rule.strip()}"', rule) for rule in rules]


def ledger_slo(slos: Iterable[Slo]) -> Slo | None:
    """The first ``ledger`` SLO (it can only be judged against the embedded CSMS)."""
    return next((slo for slo in slos if slo.measure == "ledger"), None)


def _measure(text: str) -> tuple[str, float | None]:
    if not text:
        raise SloError(f"expected a measure before the comparison ({_MEASURES_TEXT})")
    name = text.lower()
    match = _PERCENTILE.match(name)
    if match is not None:
        quantile = float(match[1])
        if not 0 < quantile <= 100:
            raise SloError(f'percentile "{text}" out of range: p0 < pN <= p100')
        return f"p{match[1]}", quantile
    if name not in _KINDS:
        close = difflib.get_close_matches(name, [*_KINDS, "p50", "p95", "p99"], n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else f" ({_MEASURES_TEXT})"
        raise SloError(f'unknown measure "{text}"{hint}')
    return name, None


def _scope(scope: str | None, measure: str, kind: str) -> str | None:
    if kind in (_CONNECTS, _LEDGER):
        if scope is not None:
            raise SloError(f'{measure} is measured over the whole fleet: no action before ":"')
        return None
    if scope is None or scope == ALL:
        return None
    if scope in CHARGER_ACTIONS:
        return scope
    if scope in CSMS_ACTIONS:
        raise SloError(
            f'"{scope}" is a call the CSMS sends: SLOs judge the calls chargers send '
            '(StartTransaction, MeterValues, ... or "*" for all)'
        )
    if not _ACTION_NAME.match(scope):
        raise SloError(f'expected an OCPP action or "*" before ":", got "{scope}"')
    close = difflib.get_close_matches(scope, sorted(CHARGER_ACTIONS), n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    raise SloError(f'unknown action "{scope}"{hint}: expected a call chargers send, or "*"')


def _limit(text: str, measure: str, kind: str) -> tuple[float, str]:
    if not text:
        raise SloError(f"expected a limit after the comparison, e.g. {_example(kind)}")
    match = _VALUE.match(text)
    if match is None:
        raise SloError(f'expected a number >= 0 with its unit, got "{text}"')
    number, unit = float(match["number"]), match["unit"].strip()
    if unit and unit not in _UNITS:
        raise SloError(f'unknown unit "{unit}" (ms, s or %)')
    if kind == _LATENCY:
        if not unit:
            raise SloError(f'{measure} takes a duration: give its unit, ms or s ("{text}ms"?)')
        if unit == "%":
            raise SloError(f'{measure} takes a duration in ms or s, not a share ("%")')
    elif unit in ("ms", "s"):
        what = "a count" if kind == _LEDGER else "a share in % or a count"
        raise SloError(f'{measure} takes {what}, not a duration ("{unit}")')
    elif unit == "%":
        if kind == _LEDGER:
            raise SloError('ledger takes a count of discrepancies, not a share ("%")')
        if number > 100:
            raise SloError(f'a share must be from 0 to 100 %, got "{text}"')
    elif number != int(number):
        raise SloError(f'a count must be a whole number, got "{text}" (a share takes "%")')
    return number, unit


def _example(kind: str) -> str:
    return {
        _LATENCY: '"800ms"',
        _CALLS: '"0.5%" or "0"',
        _CONNECTS: '"1%" or "0"',
        _LEDGER: '"0"',
    }[kind]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True, kw_only=True)
class SloResult:
    """An SLO judged: the measured ``value`` in the SLO's unit (None: nothing to
    measure), whether it ``passed``, and ``detail`` (what the value is made of)."""

    slo: Slo
    value: float | None
    passed: bool
    detail: str
    missing: str = ""  # what stands for the value when there is none: "no calls"

    @property
    def value_text(self) -> str:
        if self.value is None:
            return self.missing or "–"
        return _number(self.value, self.slo.unit)

    def line(self) -> str:
        """One line for a log:
        ``PASS StartTransaction:p99<800ms: 412 ms (1,234 answered calls)``."""
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict} {self.slo.text}: {self.value_text} ({self.detail})"

    def to_json(self) -> dict[str, Any]:
        value = None if self.value is None else round(self.value, 6)
        return {
            "slo": self.slo.text,
            "value": value,
            "unit": self.slo.unit or "count",
            "op": self.slo.op,
            "limit": self.slo.limit,
            "passed": self.passed,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Every SLO of a run judged over one window of ``window_s`` seconds; ``note`` says
    when the window is not the usual one (e.g. the run ended before its ramp did)."""

    results: tuple[SloResult, ...]
    window_s: float
    note: str | None = None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[SloResult]:
        return [r for r in self.results if not r.passed]

    def line(self) -> str:
        """The final verdict, one line."""
        n = len(self.results)
        if self.passed:
            return f"SLO verdict: PASS ({n} of {n} met over {self.window_s:.1f} s)"
        names = ", ".join(r.slo.text for r in self.failed)
        return (
            f"SLO verdict: FAIL ({len(self.failed)} of {n} not met over {self.window_s:.1f} s: "
            f"{names})"
        )

    def to_json(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "passed": self.passed,
            "window_s": round(self.window_s, 3),
            "results": [r.to_json() for r in self.results],
        }
        if self.note:
            report["note"] = self.note
        return report


def evaluate(
    slos: Sequence[Slo],
    window: RunStats,
    *,
    ledger_discrepancies: int | None = None,
    note: str | None = None,
) -> Verdict:
    """Judge ``slos`` over ``window`` (a :meth:`RunStats.since` window, or a whole run).

    ``ledger_discrepancies``: the count from the ledger comparison, None when there is
    no CSMS ledger (a ``ledger`` SLO then fails: it cannot be judged).
    """
    pooled: ActionStats | None = None
    results = []
    for slo in slos:
        if slo.kind in (_LATENCY, _CALLS):
            if slo.action is None:
                if pooled is None:
                    pooled = _pooled(window)
                calls = pooled
            else:
                calls = window.actions.get((Direction.CP_TO_CSMS, slo.action)) or ActionStats(
                    direction=Direction.CP_TO_CSMS, action=slo.action
                )
            result = _latency(slo, calls) if slo.kind == _LATENCY else _calls(slo, calls)
        elif slo.kind == _CONNECTS:
            result = _connects(slo, window)
        else:
            result = _ledger(slo, ledger_discrepancies)
        results.append(result)
    return Verdict(results=tuple(results), window_s=window.elapsed, note=note)


def _pooled(window: RunStats) -> ActionStats:
    total = ActionStats(direction=Direction.CP_TO_CSMS, action=ALL)
    for stats in window.actions.values():
        if stats.direction is Direction.CP_TO_CSMS:
            total.merge(stats)
    return total


def _no_calls(slo: Slo, calls: ActionStats) -> SloResult:
    where = "charger calls" if slo.action is None else f"{slo.action} calls"
    return SloResult(
        slo=slo, value=None, passed=False, detail=f"no {where} in the window", missing="no calls"
    )


def _latency(slo: Slo, calls: ActionStats) -> SloResult:
    histogram: Histogram = calls.latency
    if not calls.count:
        return _no_calls(slo, calls)
    if not histogram.count:
        return SloResult(
            slo=slo,
            value=None,
            passed=False,
            detail=f"none of {_calls_text(calls.count)} was answered",
            missing="no answers",
        )
    if slo.quantile is not None:
        seconds = histogram.percentile(slo.quantile)
    elif slo.measure == "mean":
        seconds = histogram.mean
    else:
        seconds = histogram.max
    value = seconds * 1000.0 if slo.unit == "ms" else seconds
    return SloResult(
        slo=slo,
        value=value,
        passed=slo.holds(value),
        detail=f"{_plural(histogram.count, 'answered call')}",
    )


def _calls(slo: Slo, calls: ActionStats) -> SloResult:
    if not calls.count:
        return _no_calls(slo, calls)
    if slo.measure == "timeouts":
        bad = calls.outcomes[TIMEOUT]
    else:
        bad = sum(n for outcome, n in calls.outcomes.items() if outcome.kind in _ERRORS)
    what = "timeout" if slo.measure == "timeouts" else "error"
    detail = f"{_plural(bad, what)} in {_calls_text(calls.count)}"
    if slo.unit == "%":
        value = 100.0 * bad / calls.count
    else:
        value = float(bad)
    return SloResult(slo=slo, value=value, passed=slo.holds(value), detail=detail)


def _connects(slo: Slo, window: RunStats) -> SloResult:
    failed = window.connect_failures.total()
    attempts = window.connects + failed
    detail = f"{failed:,} failed of {_plural(attempts, 'connect attempt')}"
    if slo.unit == "%":
        # No attempt in the window (no connection was lost after the ramp): no failure.
        value = 100.0 * failed / attempts if attempts else 0.0
    else:
        value = float(failed)
    return SloResult(slo=slo, value=value, passed=slo.holds(value), detail=detail)


def _ledger(slo: Slo, discrepancies: int | None) -> SloResult:
    if discrepancies is None:
        return SloResult(
            slo=slo,
            value=None,
            passed=False,
            detail="cannot be judged: only the embedded reference CSMS keeps a ledger",
            missing="not judged",
        )
    value = float(discrepancies)
    return SloResult(
        slo=slo,
        value=value,
        passed=slo.holds(value),
        detail=f"{_plural(discrepancies, 'ledger discrepancy', 'ledger discrepancies')}, whole run",
    )


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _calls_text(n: int) -> str:
    return _plural(n, "call")


def _number(value: float, unit: str) -> str:
    if unit == "":
        return f"{value:,.0f}"
    if unit == "%":
        return f"{_significant(value)} %"
    return f"{_significant(value)} {unit}"


def _significant(value: float) -> str:
    """Three significant digits, no exponent for what SLOs measure."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def verdict_lines(verdict: Verdict) -> list[str]:
    """The verdict as a plain-text table and its final line (for logs without rich)."""
    window = f"window: {verdict.window_s:.1f} s" + (
        f"; {verdict.note}" if verdict.note else " after the ramp"
    )
    header = ("SLO", "Measured", "Limit", "Verdict", "Over")
    rows = [
        (
            r.slo.text,
            r.value_text,
            f"{r.slo.op} {r.slo.limit_text}",
            "PASS" if r.passed else "FAIL",
            r.detail,
        )
        for r in verdict.results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = [f"Service-level objectives ({window})"]
    for row in [header, *rows]:
        lines.append(
            f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  "
            f"{row[3]:<{widths[3]}}  {row[4]}".rstrip()
        )
    lines.append(verdict.line())
    return lines
