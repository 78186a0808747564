"""OCPP 1.6 schema validation and the CALLERROR code each failed rule maps to."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest

from emulator.protocol import schemas
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.schemas import CHARGER_INITIATED, CSMS_INITIATED, SchemaRegistry


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry()


def status_notification(**fields: Any) -> dict[str, Any]:
    return {"connectorId": 1, "errorCode": "NoError", "status": "Available", **fields}


def meter_values(*sampled: dict[str, Any]) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2024-05-01T10:00:00Z", "sampledValue": list(sampled)}],
    }


def charging_profile(limit: Any) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        },
    }


def refusal(registry: SchemaRegistry, action: str, payload: Any) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        registry.validate_request(action, payload)
    return caught.value


def test_every_action_of_the_tables_has_both_schemas_shipped_by_ocpp_and_they_compile() -> None:
    """The tables (1.6 §4 and §5 with the security whitepaper's) are the source of truth:
    the ``ocpp`` package ships exactly a request and a response schema for each of their 39
    actions, so an upgrade that drops or adds one fails here, and every one compiles."""
    expected = CHARGER_INITIATED | CSMS_INITIATED
    assert len(expected) == 39  # 10 + 4 security from the charger, 19 + 7 from the CSMS
    shipped = {entry.name for entry in files("ocpp.v16").joinpath("schemas").iterdir()}
    assert shipped == {f"{a}{suffix}.json" for a in expected for suffix in ("", "Response")}
    registry = SchemaRegistry()
    assert registry.known_actions() == expected
    registry.compile_all()


def test_every_action_with_a_schema_is_sent_by_a_charger_or_a_csms(
    registry: SchemaRegistry,
) -> None:
    assert registry.known_actions() <= CHARGER_INITIATED | CSMS_INITIATED
    assert registry.known_actions("charger") | registry.known_actions("csms") == (
        registry.known_actions()
    )


def test_only_data_transfer_is_sent_both_ways(registry: SchemaRegistry) -> None:
    both = registry.known_actions("charger") & registry.known_actions("csms")
    assert both == {"DataTransfer"}


def test_charger_actions_include_the_core_profile_ones(registry: SchemaRegistry) -> None:
    assert {"BootNotification", "Heartbeat", "StartTransaction"} <= registry.known_actions(
        "charger"
    )
    assert {"Reset", "SetChargingProfile"} <= registry.known_actions("csms")


def test_valid_payloads_pass(registry: SchemaRegistry) -> None:
    registry.validate_request(
        "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
    )
    registry.validate_request("MeterValues", meter_values({"value": "12.5", "unit": "kWh"}))
    registry.validate_response("Heartbeat", {"currentTime": "2024-05-01T10:00:00.123+02:00"})


# (payload for StatusNotification / MeterValues, code, field path named)
MAPPINGS = {
    "a wrong JSON type": (
        "StatusNotification",
        status_notification(connectorId="1"),
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "connectorId",
    ),
    "a string over its CiString length": (
        "StatusNotification",
        status_notification(info="x" * 51),
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "info",
    ),
    "a missing required field": (
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError"},
        ErrorCode.PROTOCOL_ERROR,
        "status",
    ),
    "a field the schema does not define": (
        "StatusNotification",
        status_notification(colour="blue"),
        ErrorCode.FORMATION_VIOLATION,
        "colour",
    ),
    "a value outside the enum": (
        "StatusNotification",
        status_notification(status="Sleeping"),
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        "status",
    ),
    "a timestamp without a time zone": (
        "StatusNotification",
        status_notification(timestamp="2024-05-01T10:00:00"),
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        "timestamp",
    ),
    "an empty array that needs one item": (
        "MeterValues",
        {"connectorId": 1, "meterValue": []},
        ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
        "meterValue",
    ),
    "a wrong type deep inside arrays": (
        "MeterValues",
        meter_values({"value": 12.5}),
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "meterValue[0].sampledValue[0].value",
    ),
    "a missing field deep inside arrays": (
        "MeterValues",
        meter_values({"unit": "Wh"}),
        ErrorCode.PROTOCOL_ERROR,
        "meterValue[0].sampledValue[0].value",
    ),
    "a limit that is not a multiple of 0.1": (
        "SetChargingProfile",
        charging_profile(4.11),
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit",
    ),
    "a payload that is not an object": (
        "Heartbeat",
        [],
        ErrorCode.FORMATION_VIOLATION,
        "",
    ),
}


@pytest.mark.parametrize(
    ("action", "payload", "code", "field"), MAPPINGS.values(), ids=MAPPINGS.keys()
)
def test_a_schema_failure_maps_to_its_ocpp_code_and_names_the_field(
    registry: SchemaRegistry, action: str, payload: Any, code: ErrorCode, field: str
) -> None:
    error = refusal(registry, action, payload)
    assert error.code is code
    assert error.details["field"] == field
    assert f"{action}.req: {field or '<payload>'}:" in error.description


def test_a_response_failure_names_the_conf_message(registry: SchemaRegistry) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        registry.validate_response("Reset", {"status": "Maybe"})
    assert caught.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert caught.value.description.startswith("Reset.conf: status:")


@pytest.mark.parametrize(
    ("rule", "schema", "value", "code"),
    [
        ("minimum", {"type": "integer", "minimum": 0}, -1, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
        ("maximum", {"type": "integer", "maximum": 9}, 10, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
        (
            "pattern",
            {"type": "string", "pattern": "^[0-9]+$"},
            "a",
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        ),
        (
            "maxItems",
            {"type": "array", "maxItems": 1},
            [1, 2],
            ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
        ),
    ],
)
def test_rules_absent_from_the_1_6_schemas_map_too(
    tmp_path: Path, rule: str, schema: dict[str, Any], value: Any, code: ErrorCode
) -> None:
    (tmp_path / "Probe.json").write_text(
        json.dumps({"type": "object", "properties": {"field": schema}})
    )
    (tmp_path / "ProbeResponse.json").write_text(json.dumps({"type": "object"}))
    error = refusal(SchemaRegistry(schema_dir=tmp_path), "Probe", {"field": value})
    assert (error.code, error.details) == (code, {"field": "field", "rule": rule})


@pytest.mark.parametrize("action", ["NoSuchAction", "../BootNotification", ""])
def test_an_action_without_a_schema_is_not_implemented(
    registry: SchemaRegistry, action: str
) -> None:
    assert refusal(registry, action, {}).code is ErrorCode.NOT_IMPLEMENTED
    with pytest.raises(RemoteProtocolError) as caught:
        registry.validate_response(action, {})
    assert caught.value.code is ErrorCode.NOT_IMPLEMENTED


def test_every_one_decimal_limit_as_sent_on_the_wire_is_a_multiple_of_0_1(
    registry: SchemaRegistry,
) -> None:
    # As received: the float orjson parses from text like "7.3" (fastjsonschema checks
    # Decimal(repr(value)), exact for the shortest representation).
    for tenths in range(0, 10_001):
        text = f"{tenths // 10}.{tenths % 10}"
        payload = orjson.loads(orjson.dumps(charging_profile(orjson.loads(text))))
        registry.validate_request("SetChargingProfile", payload)


@pytest.mark.parametrize("limit", [7.3, 10.1, 21.4, 0.3, 16, 16.0, 32.0, 1e6])
def test_limits_with_at_most_one_decimal_pass(registry: SchemaRegistry, limit: float) -> None:
    registry.validate_request("SetChargingProfile", charging_profile(limit))


def test_a_limit_computed_without_rounding_is_refused_so_senders_must_round(
    registry: SchemaRegistry,
) -> None:
    unrounded = 1.1 * 3  # 3.3000000000000003
    assert refusal(registry, "SetChargingProfile", charging_profile(unrounded)).code is (
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    )
    registry.validate_request("SetChargingProfile", charging_profile(round(unrounded, 1)))


def test_format_checks_can_be_turned_off() -> None:
    lenient = SchemaRegistry(check_formats=False)
    lenient.validate_request("StatusNotification", status_notification(timestamp="yesterday"))


def test_a_registry_compiles_each_schema_once(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    real_compile = fastjsonschema.compile

    def counting_compile(definition: dict[str, Any], **kwargs: Any) -> Any:
        compiled.append(definition["title"])
        return real_compile(definition, **kwargs)

    monkeypatch.setattr(schemas.fastjsonschema, "compile", counting_compile)
    registry = SchemaRegistry()
    for _ in range(3):
        registry.validate_request("Heartbeat", {})
        registry.validate_response("Heartbeat", {"currentTime": "2024-05-01T10:00:00Z"})
    assert compiled == ["HeartbeatRequest", "HeartbeatResponse"]


def test_validation_leaves_the_payload_untouched(registry: SchemaRegistry) -> None:
    payload = meter_values({"value": "1"})
    before = orjson.dumps(payload)
    registry.validate_request("MeterValues", payload)
    assert orjson.dumps(payload) == before
