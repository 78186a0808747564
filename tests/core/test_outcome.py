"""The one outcome type: its keys (the serialized form), interning, and what it says."""

from __future__ import annotations

import copy
import pickle

import pytest

from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome, OutcomeKind

# Every key a run writes (stats wire windows, summary JSON, time series, report).
KEYS = (
    "ok",
    "callerror:InternalError",
    "callerror:SomethingACsmsMadeUp",
    "schema:FormationViolation",
    "schema",
    "timeout",
    "disconnected",
)


@pytest.mark.parametrize("key", KEYS)
def test_every_key_parses_back_to_the_one_instance_with_that_key(key: str) -> None:
    outcome = Outcome.parse(key)
    assert outcome.key == str(outcome) == key
    assert Outcome.parse(key) is outcome
    assert pickle.loads(pickle.dumps(outcome)) is outcome
    assert copy.deepcopy(outcome) is outcome


def test_constructors_and_constants_are_the_parsed_instances() -> None:
    assert Outcome.parse("ok") is OK
    assert Outcome.parse("timeout") is TIMEOUT
    assert Outcome.parse("disconnected") is DISCONNECTED
    assert Outcome.callerror("NotImplemented") is Outcome.parse("callerror:NotImplemented")
    assert Outcome.schema("TypeConstraintViolation") is Outcome.parse(
        "schema:TypeConstraintViolation"
    )
    assert Outcome.schema() is Outcome.parse("schema")
    assert Outcome.callerror("InternalError") != Outcome.callerror("NotImplemented")


def test_answered_outcomes_are_timed_and_everything_but_ok_failed() -> None:
    answered = {key for key in KEYS if Outcome.parse(key).answered}
    failed = {key for key in KEYS if Outcome.parse(key).failed}
    assert answered == set(KEYS) - {"timeout", "disconnected"}
    assert failed == set(KEYS) - {"ok"}
    assert {kind for kind in OutcomeKind if kind.answered} == {
        OutcomeKind.OK,
        OutcomeKind.CALLERROR,
        OutcomeKind.SCHEMA,
    }


def test_kind_code_and_label() -> None:
    refused = Outcome.callerror("InternalError")
    assert (refused.kind, refused.code, refused.label) == (
        OutcomeKind.CALLERROR,
        "InternalError",
        "InternalError",
    )
    broken = Outcome.schema("FormationViolation")
    assert (broken.kind, broken.code, broken.label) == (
        OutcomeKind.SCHEMA,
        "FormationViolation",
        "schema:FormationViolation",
    )
    assert (TIMEOUT.kind, TIMEOUT.code, TIMEOUT.label) == (OutcomeKind.TIMEOUT, None, "timeout")


@pytest.mark.parametrize(
    "key", ["", "OK", "callerror", "callerror:", "timeout:Late", "ok:x", "refused", "schema:"]
)
def test_a_key_that_is_no_outcome_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not an outcome"):
        Outcome.parse(key)
