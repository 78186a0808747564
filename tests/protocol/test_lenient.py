"""Lenient reading of CSMS messages (naive date-times) and random unique ids."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from emulator.protocol import random_unique_id
from emulator.protocol.errors import RemoteProtocolError
from emulator.protocol.lenient import accept_leniently, field_value
from emulator.protocol.schemas import SchemaRegistry


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry()


def _lenient(registry: SchemaRegistry, action: str, payload: dict[str, Any]) -> Any:
    try:
        registry.validate_response(action, payload)
    except RemoteProtocolError as violation:
        return accept_leniently(lambda p: registry.validate_response(action, p), payload, violation)
    raise AssertionError("expected a schema violation")


def test_a_naive_current_time_is_read_as_utc(registry: SchemaRegistry) -> None:
    # What the ocpp library's older examples answer: datetime.utcnow().isoformat().
    payload = {"status": "Accepted", "currentTime": "2026-12-02T02:16:17.123456", "interval": 60}
    repaired = _lenient(registry, "BootNotification", payload)
    assert repaired == {**payload, "currentTime": "2026-12-02T02:16:17.123456Z"}
    assert payload["currentTime"] == "2026-12-02T02:16:17.123456"  # the original is kept


def test_several_nested_naive_times_are_all_repaired(registry: SchemaRegistry) -> None:
    payload = {
        "transactionId": 7,
        "idTagInfo": {"status": "Accepted", "expiryDate": "2027-01-01T00:00:00"},
    }
    repaired = _lenient(registry, "StartTransaction", payload)
    assert repaired["idTagInfo"]["expiryDate"] == "2027-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "current_time",
    ["yesterday", "2026-12-02", "2026-12-02 02:16:17", "2026-13-02T02:16:17"],
)
def test_other_broken_times_stay_refused(registry: SchemaRegistry, current_time: str) -> None:
    payload = {"status": "Accepted", "currentTime": current_time, "interval": 60}
    assert _lenient(registry, "BootNotification", payload) is None


def test_a_naive_time_next_to_another_violation_is_refused(registry: SchemaRegistry) -> None:
    payload = {"status": "Sure", "currentTime": "2026-12-02T02:16:17", "interval": 60}
    assert _lenient(registry, "BootNotification", payload) is None


def test_field_value_follows_schema_paths() -> None:
    payload = {"meterValue": [{"timestamp": "t0", "sampledValue": [{"value": "1"}]}]}
    assert field_value(payload, "meterValue[0].timestamp") == "t0"
    assert field_value(payload, "meterValue[0].sampledValue[0].value") == "1"
    assert field_value(payload, "meterValue[3].timestamp") is None
    assert field_value(payload, "nothing.here") is None


def test_random_unique_ids_are_uuid4_strings() -> None:
    """What one costs, next to ``str(uuid.uuid4())``, is printed by bench/unique_ids.py."""
    ids = [random_unique_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert all(re.fullmatch(r"[0-9a-f-]{36}", text) for text in ids)
