"""The one mapping between the fleet's measurements and Locust's request fields.

The failure texts are those docs/loadtest.md ("What Locust records") documents."""

from __future__ import annotations

import pytest

from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
from emulator.loadtest.requests import (
    Connected,
    ConnectFailed,
    CsmsCallDone,
    LocustRequest,
    Measurement,
    PingAnswered,
    RoundTripDone,
    from_locust,
    to_locust,
)

CASES: list[tuple[Measurement, LocustRequest]] = [
    (RoundTripDone("Heartbeat", 0.25, OK), LocustRequest("OCPP", "Heartbeat", 250.0, None)),
    (
        RoundTripDone("Authorize", 0.5, Outcome.callerror("InternalError")),
        LocustRequest("OCPP", "Authorize", 500.0, "CALLERROR InternalError"),
    ),
    (
        RoundTripDone("MeterValues", 0.125, Outcome.schema("FormationViolation")),
        LocustRequest("OCPP", "MeterValues", 125.0, "schema violation (FormationViolation)"),
    ),
    (
        RoundTripDone("MeterValues", 0.125, Outcome.schema()),
        LocustRequest("OCPP", "MeterValues", 125.0, "schema violation"),
    ),
    (
        RoundTripDone("StartTransaction", 30.0, TIMEOUT),
        LocustRequest(
            "OCPP", "StartTransaction", 30000.0, "timeout: no answer within response_timeout"
        ),
    ),
    (
        RoundTripDone("StatusNotification", 1.0, DISCONNECTED),
        LocustRequest("OCPP", "StatusNotification", 1000.0, "disconnected before the answer"),
    ),
    (
        CsmsCallDone("DataTransfer", 0.5, None),
        LocustRequest("OCPP", "DataTransfer (CSMS call)", 500.0, None),
    ),
    (
        CsmsCallDone("GetConfiguration", 0.25, "OccurenceConstraintViolation"),
        LocustRequest(
            "OCPP",
            "GetConfiguration (CSMS call)",
            250.0,
            "answered CALLERROR OccurenceConstraintViolation",
        ),
    ),
    (Connected(0.5), LocustRequest("WebSocket", "connect", 500.0, None)),
    (
        ConnectFailed("http_401"),
        LocustRequest("WebSocket", "connect", 0.0, "connect failed: http_401"),
    ),
    (PingAnswered(0.125), LocustRequest("WebSocket", "ping", 125.0, None)),
]


@pytest.mark.parametrize(("measurement", "request_"), CASES)
def test_each_measurement_is_the_documented_request_and_reads_back(
    measurement: Measurement, request_: LocustRequest
) -> None:
    assert to_locust(measurement) == request_
    assert from_locust(*request_) == measurement


def test_requests_the_fleet_did_not_make_read_as_nothing() -> None:
    assert from_locust("HTTP", "/", 1.0, None) is None
    assert from_locust("OCPP", "Heartbeat", 1.0, "something else went wrong") is None
    assert from_locust("WebSocket", "upgrade", 1.0, None) is None


def test_a_rewritten_connect_failure_keeps_its_words_as_the_reason() -> None:
    text = "connect failed: timeout while the load generator lagged"
    assert from_locust("WebSocket", "connect", 0.0, text) == ConnectFailed(
        "timeout while the load generator lagged"
    )
