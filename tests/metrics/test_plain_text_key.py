"""The plain-text AuthorizationKey as a counted CSMS deviation: its summary line, its WARNING
and its Prometheus series say what was done, and none of them shows the key."""

from __future__ import annotations

import logging

import pytest
from rich.console import Console

from emulator.metrics.conformance import CsmsConformance
from emulator.metrics.prometheus import PrometheusReporter, new_registry
from emulator.metrics.summary import render_conformance
from emulator.protocol.authorization_key import PLAIN_TEXT_KEY

DESCRIPTION = "AuthorizationKey=*** sent as plain text, not as 32 to 40 hexadecimal digits"


def _deviation(conformance: CsmsConformance, charger: str, *, accepted: bool) -> None:
    conformance.schema_violation(
        message="call",
        action="ChangeConfiguration",
        code=PLAIN_TEXT_KEY,
        description=DESCRIPTION,
        charger_id=charger,
        accepted=accepted,
        repairable=True,
    )


def test_an_accepted_plain_text_key_is_summarised_and_warned_about_as_such(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conformance = CsmsConformance()
    with caplog.at_level(logging.WARNING, logger="emulator.csms_conformance"):
        _deviation(conformance, "CP000001", accepted=True)
        _deviation(conformance, "CP000002", accepted=True)
    [warning] = caplog.records
    text = warning.getMessage()
    assert "Security Whitepaper" in text and "ChangeConfiguration.req" in text
    assert "plain-text key used as its UTF-8 bytes" in text and "time" not in text
    console = Console(record=True, width=200)
    render_conformance(conformance, console=console, chargers=2, never_accepted=0)
    summary = console.export_text()
    assert (
        f"ChangeConfiguration.req {PLAIN_TEXT_KEY}: 2, 2 accepted (key used as its UTF-8 bytes)"
        in summary
    )


def test_a_refused_one_says_what_a_lenient_charger_would_have_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conformance = CsmsConformance()
    with caplog.at_level(logging.WARNING, logger="emulator.csms_conformance"):
        _deviation(conformance, "CP000001", accepted=False)
    text = caplog.records[0].getMessage()
    assert "refused" in text and "without it, the key is used as its UTF-8 bytes" in text


def test_prometheus_counts_it_under_its_own_code_accepted_or_refused() -> None:
    registry = new_registry(process=False)
    reporter = PrometheusReporter(registry=registry)
    conformance = CsmsConformance()
    conformance.listeners.append(reporter)
    _deviation(conformance, "CP000001", accepted=True)
    _deviation(conformance, "CP000002", accepted=False)  # a Rejected, not a CALLERROR
    labels = {"message": "call", "action": "ChangeConfiguration", "code": PLAIN_TEXT_KEY}
    assert registry.get_sample_value("ocpp_fleet_schema_violations_total", labels) == 2
