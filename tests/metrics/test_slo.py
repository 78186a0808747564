"""SLO rules: the parser (every form, every error and its message) and the evaluation
over run statistics built by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
from emulator.metrics.slo import (
    Slo,
    SloError,
    Verdict,
    evaluate,
    ledger_slo,
    option_sources,
    parse_rules,
    parse_slo,
    scenario_sources,
    verdict_lines,
)
from emulator.metrics.stats import RunStats

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "measure", "action", "op", "limit", "unit", "quantile"),
    [
        ("StartTransaction:p99<800ms", "p99", "StartTransaction", "<", 800.0, "ms", 99.0),
        ("*:p95<500ms", "p95", None, "<", 500.0, "ms", 95.0),
        ("p50<=0.2s", "p50", None, "<=", 0.2, "s", 50.0),
        ("Heartbeat:p90>1ms", "p90", "Heartbeat", ">", 1.0, "ms", 90.0),
        ("MeterValues:p99.9>=.5s", "p99.9", "MeterValues", ">=", 0.5, "s", 99.9),
        ("*:p100<5s", "p100", None, "<", 5.0, "s", 100.0),
        ("Authorize:mean<50ms", "mean", "Authorize", "<", 50.0, "ms", None),
        ("*:max<5s", "max", None, "<", 5.0, "s", None),
        ("errors<0.5%", "errors", None, "<", 0.5, "%", None),
        ("*:errors<=1%", "errors", None, "<=", 1.0, "%", None),
        ("StartTransaction:errors=0", "errors", "StartTransaction", "=", 0.0, "", None),
        ("timeouts=0", "timeouts", None, "=", 0.0, "", None),
        ("timeouts==0", "timeouts", None, "=", 0.0, "", None),
        ("StopTransaction:timeouts<0.1%", "timeouts", "StopTransaction", "<", 0.1, "%", None),
        ("connect_failures<1%", "connect_failures", None, "<", 1.0, "%", None),
        ("connect_failures<=3", "connect_failures", None, "<=", 3.0, "", None),
        ("ledger=0", "ledger", None, "=", 0.0, "", None),
        ("  *:p99 < 800 ms  ", "p99", None, "<", 800.0, "ms", 99.0),
        ("*:P99<800ms", "p99", None, "<", 800.0, "ms", 99.0),
        ("SignCertificate:p99<2s", "p99", "SignCertificate", "<", 2.0, "s", 99.0),
    ],
)
def test_every_form_parses(
    text: str,
    measure: str,
    action: str | None,
    op: str,
    limit: float,
    unit: str,
    quantile: float | None,
) -> None:
    slo = parse_slo(text)
    assert (slo.measure, slo.action, slo.op, slo.limit, slo.unit, slo.quantile) == (
        measure,
        action,
        op,
        limit,
        unit,
        quantile,
    )
    assert slo.text == text.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'empty SLO: expected e.g. "StartTransaction:p99<800ms" or "errors<0.5%"'),
        ("   ", 'empty SLO: expected e.g. "StartTransaction:p99<800ms" or "errors<0.5%"'),
        ("StartTransaction:p99<800xs", 'unknown unit "xs" (ms, s or %)'),
        ("*:p99<800 MS", 'unknown unit "MS" (ms, s or %)'),
        (":p99<1s", 'expected an action or "*" before ":"'),
        (
            "StartTransaction:p99",
            'expected a comparison (<, <=, =, ==, >, >=), e.g. "StartTransaction:p99<800ms" '
            'or "timeouts=0"',
        ),
        ("timeouts!=0", 'unknown operator "!=" (<, <=, =, ==, >, >=)'),
        ("timeouts=<0", 'unknown operator "=<" (<, <=, =, ==, >, >=)'),
        ("p99<<1s", 'unknown operator "<<" (<, <=, =, ==, >, >=)'),
        (
            "<1s",
            "expected a measure before the comparison (p50, p90, p95, p99, p99.9 (any pN), "
            "mean, max, errors, timeouts, connect_failures, ledger)",
        ),
        ("*:p0<1s", 'percentile "p0" out of range: p0 < pN <= p100'),
        ("*:p101<1s", 'percentile "p101" out of range: p0 < pN <= p100'),
        ("eror<1%", 'unknown measure "eror" (did you mean "errors"?)'),
        (
            "*:latency<1s",
            'unknown measure "latency" (p50, p90, p95, p99, p99.9 (any pN), mean, max, errors, '
            "timeouts, connect_failures, ledger)",
        ),
        (
            "StartTranscation:p99<1s",
            'unknown action "StartTranscation" (did you mean "StartTransaction"?): '
            'expected a call chargers send, or "*"',
        ),
        ("Foo:p99<1s", 'unknown action "Foo": expected a call chargers send, or "*"'),
        (
            "Start Transaction:p99<1s",
            'expected an OCPP action or "*" before ":", got "Start Transaction"',
        ),
        (
            "RemoteStartTransaction:p99<1s",
            '"RemoteStartTransaction" is a call the CSMS sends: SLOs judge the calls chargers '
            'send (StartTransaction, MeterValues, ... or "*" for all)',
        ),
        (
            "Heartbeat:connect_failures<1%",
            'connect_failures is measured over the whole fleet: no action before ":"',
        ),
        ("*:ledger=0", 'ledger is measured over the whole fleet: no action before ":"'),
        ("*:p99<", 'expected a limit after the comparison, e.g. "800ms"'),
        ("errors<", 'expected a limit after the comparison, e.g. "0.5%" or "0"'),
        ("connect_failures<", 'expected a limit after the comparison, e.g. "1%" or "0"'),
        ("ledger=", 'expected a limit after the comparison, e.g. "0"'),
        ("*:p99<-1ms", 'expected a number >= 0 with its unit, got "-1ms"'),
        ("*:p99<fast", 'expected a number >= 0 with its unit, got "fast"'),
        ("*:p99<800", 'p99 takes a duration: give its unit, ms or s ("800ms"?)'),
        ("*:mean<5%", 'mean takes a duration in ms or s, not a share ("%")'),
        ("errors<5ms", 'errors takes a share in % or a count, not a duration ("ms")'),
        (
            "connect_failures<1s",
            'connect_failures takes a share in % or a count, not a duration ("s")',
        ),
        ("ledger<1ms", 'ledger takes a count, not a duration ("ms")'),
        ("ledger<1%", 'ledger takes a count of discrepancies, not a share ("%")'),
        ("errors<150%", 'a share must be from 0 to 100 %, got "150%"'),
        ("timeouts<0.5", 'a count must be a whole number, got "0.5" (a share takes "%")'),
    ],
)
def test_every_error_names_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(SloError) as caught:
        parse_slo(text)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_rules_from_several_places_name_their_source_in_errors() -> None:
    rules = scenario_sources(["errors<1%", "StartTransaction:p99<800xs"], "scenarios/x.toml")
    with pytest.raises(SloError) as caught:
        parse_rules(rules)
    assert str(caught.value) == ('scenarios/x.toml: slo.rules[1]: unknown unit "xs" (ms, s or %)')
    with pytest.raises(SloError) as caught:
        parse_rules(option_sources("--slo", ["timeouts=0", " *:p99<1h "]))
    assert str(caught.value) == '--slo "*:p99<1h": unknown unit "h" (ms, s or %)'

    slos = parse_rules(
        scenario_sources(["errors<1%"], "s.toml") + option_sources("--slo", ["ledger=0"])
    )
    assert [s.source for s in slos] == ["s.toml: slo.rules[0]", '--slo "ledger=0"']
    found = ledger_slo(slos)
    assert found is not None and found.source == '--slo "ledger=0"'
    assert ledger_slo(slos[:1]) is None


@pytest.mark.parametrize(
    ("op", "below", "equal", "above"),
    [
        ("<", True, False, False),
        ("<=", True, True, False),
        ("=", False, True, False),
        (">", False, False, True),
        (">=", False, True, True),
    ],
)
def test_operators_compare_the_value_with_the_limit(
    op: str, below: bool, equal: bool, above: bool
) -> None:
    slo = parse_slo(f"timeouts{op}5")
    assert (slo.holds(4), slo.holds(5), slo.holds(6)) == (below, equal, above)


# --------------------------------------------------------------------- evaluation


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sample_run() -> RunStats:
    """100 StartTransactions (90 at 10 ms, 9 at 100 ms, 1 at 1 s, of which 2 refused and
    one timed out on top), 50 Heartbeats, a connect failure, a CSMS call."""
    clock = Clock()
    stats = RunStats(clock=clock)
    for _ in range(90):
        stats.round_trip("StartTransaction", 0.010, OK)
    for _ in range(7):
        stats.round_trip("StartTransaction", 0.100, OK)
    for _ in range(2):
        stats.round_trip("StartTransaction", 0.100, Outcome.callerror("InternalError"))
    stats.round_trip("StartTransaction", 1.0, Outcome.schema("FormationViolation"))
    stats.round_trip("StartTransaction", 30.0, TIMEOUT)
    stats.round_trip("StartTransaction", 2.0, DISCONNECTED)
    for _ in range(50):
        stats.round_trip("Heartbeat", 0.002, OK)
    stats.csms_call("RemoteStartTransaction", 9.0, None)  # not a charger call: never judged
    for _ in range(99):
        stats.connected(0.01)
    stats.connect_failed("refused")
    clock.now += 60.0
    stats.stop()
    return stats


def judge(text: str, stats: RunStats | None = None, **kwargs: object) -> Verdict:
    return evaluate([parse_slo(text)], stats or sample_run(), **kwargs)  # type: ignore[arg-type]


def test_a_percentile_of_one_action_is_measured_in_the_rules_unit() -> None:
    result = judge("StartTransaction:p50<20ms").results[0]
    assert result.passed and result.value is not None
    assert result.value == pytest.approx(10.0, rel=0.01)
    assert result.detail == "100 answered calls"
    result = judge("StartTransaction:p95<0.05s").results[0]
    assert not result.passed and result.value == pytest.approx(0.1, rel=0.01)
    # The answered calls only: the timeout (30 s) and the disconnect (2 s) are no latency.
    assert judge("StartTransaction:max<=1s").results[0].value == pytest.approx(1.0)
    assert judge("StartTransaction:max<=1s").passed


def test_star_pools_every_charger_call_and_never_a_csms_call() -> None:
    result = judge("*:max<5s").results[0]
    assert result.passed and result.value == pytest.approx(1.0)  # not the CSMS call's 9 s
    assert result.detail == "150 answered calls"
    pooled = judge("*:mean<1s").results[0].value
    assert pooled == pytest.approx((90 * 0.010 + 9 * 0.100 + 1.0 + 50 * 0.002) / 150, rel=1e-9)
    assert judge("p50<5ms").results[0].value == pytest.approx(10.0, rel=0.01)  # no action: *


def test_errors_are_callerrors_schema_violations_and_timeouts_over_all_calls() -> None:
    # StartTransaction: 102 calls; errors 2 CALLERROR + 1 schema + 1 timeout; the
    # disconnected call counts as a call, not as an error.
    result = judge("StartTransaction:errors<5%").results[0]
    assert result.value == pytest.approx(100 * 4 / 102)
    assert result.passed
    assert result.detail == "4 errors in 102 calls"
    assert judge("StartTransaction:errors=4").passed
    result = judge("errors<2%").results[0]
    assert result.value == pytest.approx(100 * 4 / 152)
    assert not result.passed
    assert judge("Heartbeat:errors=0").passed


def test_timeouts_count_the_calls_never_answered() -> None:
    result = judge("timeouts=0").results[0]
    assert result.value == 1.0 and not result.passed
    assert result.detail == "1 timeout in 152 calls"
    assert judge("StartTransaction:timeouts<1%").results[0].value == pytest.approx(100 / 102)
    assert judge("Heartbeat:timeouts=0").passed


def test_connect_failures_are_a_share_of_all_attempts() -> None:
    result = judge("connect_failures<1%").results[0]
    assert result.value == pytest.approx(1.0) and not result.passed
    assert result.detail == "1 failed of 100 connect attempts"
    assert judge("connect_failures<=1%").passed
    assert judge("connect_failures=1").passed


def test_no_connect_attempt_in_the_window_is_no_failure() -> None:
    result = judge("connect_failures<1%", RunStats()).results[0]
    assert result.passed and result.value == 0.0
    assert result.detail == "0 failed of 0 connect attempts"


def test_an_action_without_calls_fails_with_no_calls() -> None:
    for text in ("Authorize:p99<10s", "Authorize:errors<100%", "Authorize:timeouts=0"):
        verdict = judge(text)
        result = verdict.results[0]
        assert not verdict.passed
        assert result.value is None and result.value_text == "no calls"
        assert result.detail == "no Authorize calls in the window"
        assert result.to_json()["value"] is None
    result = judge("*:p99<10s", RunStats()).results[0]
    assert not result.passed and result.detail == "no charger calls in the window"


def test_a_latency_of_calls_that_all_went_unanswered_fails() -> None:
    stats = RunStats()
    stats.round_trip("Authorize", 30.0, TIMEOUT)
    result = judge("Authorize:p99<10s", stats).results[0]
    assert not result.passed and result.value is None
    assert result.value_text == "no answers"
    assert result.detail == "none of 1 call was answered"


def test_the_ledger_is_judged_from_the_comparison_or_fails_without_one() -> None:
    assert judge("ledger=0", ledger_discrepancies=0).passed
    result = judge("ledger=0", ledger_discrepancies=2).results[0]
    assert not result.passed and result.value == 2.0
    assert result.detail == "2 ledger discrepancies, whole run"
    result = judge("ledger=0").results[0]
    assert not result.passed and result.value_text == "not judged"


def test_the_verdict_passes_only_when_every_slo_does_and_says_which_failed() -> None:
    slos = [parse_slo(t) for t in ("*:p99<2s", "timeouts=0", "errors<50%")]
    verdict = evaluate(slos, sample_run())
    assert not verdict.passed
    assert [r.passed for r in verdict.results] == [True, False, True]
    assert verdict.window_s == pytest.approx(60.0)
    assert verdict.line() == "SLO verdict: FAIL (1 of 3 not met over 60.0 s: timeouts=0)"
    good = evaluate([slos[0], slos[2]], sample_run())
    assert good.passed and good.line() == "SLO verdict: PASS (2 of 2 met over 60.0 s)"


def test_results_read_as_one_line_and_as_json() -> None:
    verdict = evaluate(
        [parse_slo("StartTransaction:p99<50ms"), parse_slo("Authorize:p99<1s")],
        sample_run(),
        note="the run ended before its ramp did: judged from the start",
    )
    first, second = verdict.results
    assert first.line() == "FAIL StartTransaction:p99<50ms: 100 ms (100 answered calls)"
    assert second.line() == "FAIL Authorize:p99<1s: no calls (no Authorize calls in the window)"
    report = json.loads(json.dumps(verdict.to_json()))
    assert report["passed"] is False
    assert report["window_s"] == 60.0
    assert report["note"] == "the run ended before its ramp did: judged from the start"
    assert report["results"][0] == {
        "slo": "StartTransaction:p99<50ms",
        "value": pytest.approx(100.0, rel=0.01),
        "unit": "ms",
        "op": "<",
        "limit": 50.0,
        "passed": False,
        "detail": "100 answered calls",
    }
    assert report["results"][1]["value"] is None
    counted = evaluate([parse_slo("timeouts=0")], sample_run()).to_json()["results"][0]
    assert counted["unit"] == "count" and counted["value"] == 1.0
    assert "note" not in evaluate([parse_slo("timeouts=0")], sample_run()).to_json()


def test_the_plain_text_table_has_a_row_per_slo_and_the_verdict_last() -> None:
    verdict = evaluate([parse_slo("timeouts=0"), parse_slo("*:max<5s")], sample_run())
    lines = verdict_lines(verdict)
    assert lines[0] == "Service-level objectives (window: 60.0 s after the ramp)"
    assert lines[1].split() == ["SLO", "Measured", "Limit", "Verdict", "Over"]
    assert lines[2].split()[:5] == ["timeouts=0", "1", "=", "0", "FAIL"]
    assert lines[3].split()[:6] == ["*:max<5s", "1", "s", "<", "5", "s"]
    assert "PASS" in lines[3]
    assert lines[-1] == verdict.line()


def test_values_print_with_three_significant_digits() -> None:
    stats = RunStats()
    stats.round_trip("Heartbeat", 0.0004123, OK)
    stats.round_trip("MeterValues", 1.23456, OK)
    assert judge("Heartbeat:max<1s", stats).results[0].value_text == "0.000412 s"
    assert judge("MeterValues:max<1ms", stats).results[0].value_text == "1,235 ms"
    assert judge("Heartbeat:max<1ms", stats).results[0].value_text == "0.412 ms"
    slo = parse_slo("errors<0.5%")
    assert slo.limit_text == "0.5 %"


def test_an_empty_list_of_slos_passes_with_no_results() -> None:
    verdict = evaluate([], RunStats())
    assert verdict.passed and verdict.results == ()


def test_slo_values_are_frozen_and_compare_by_meaning() -> None:
    a = parse_slo("timeouts=0", source="--slo")
    b = parse_slo("timeouts=0", source="x.toml: slo.rules[0]")
    assert a == b and isinstance(a, Slo)
    with pytest.raises(AttributeError):
        a.limit = 3  # type: ignore[misc]
    assert not math.isnan(a.limit)


def test_the_scenario_table_is_documented() -> None:
    docs = (ROOT / "docs" / "scenarios.md").read_text()
    assert "## `[slo]`" in docs and "`slo.rules`" in docs
    grammar = (ROOT / "docs" / "slo.md").read_text()
    for measure in ("p99", "mean", "max", "errors", "timeouts", "connect_failures", "ledger"):
        assert f"`{measure}`" in grammar
