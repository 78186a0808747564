"""OCPP 1.6 payload validation with the JSON schemas shipped by the ``ocpp`` package.

A :class:`SchemaRegistry` compiles each schema with fastjsonschema the first time its
action is seen (about 1.5 ms per schema, once per action per registry) and then costs a
few microseconds per message; there is no thread pool and no logging per message.

Failures are mapped to OCPP-J 1.6 §4.2.3 CALLERROR codes from the JSON-schema rule that
failed (see :data:`RULE_TO_ERROR_CODE`), and the description names the field path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final, Literal

import fastjsonschema
import orjson

from emulator.protocol.errors import ErrorCode, RemoteProtocolError

__all__ = [
    "CHARGER_INITIATED",
    "CSMS_INITIATED",
    "RULE_TO_ERROR_CODE",
    "SchemaRegistry",
    "Sender",
]

Sender = Literal["charger", "csms"]
Validator = Callable[[Any], Any]

#: OCPP 1.6 §4 "Operations initiated by Charge Point", plus the charger-initiated
#: messages of the OCPP 1.6 security whitepaper whose schemas the ``ocpp`` package ships.
CHARGER_INITIATED: Final = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        # security whitepaper
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
    }
)

#: The security whitepaper's CSMS-initiated operations (known to OCPP 1.6 implementations
#: that take the whitepaper; the reference charger answers them NotSupported).
CSMS_SECURITY_EXTENSION: Final = frozenset(
    {
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "SignedUpdateFirmware",
    }
)

#: OCPP 1.6 §5 "Operations initiated by Central System", plus the security whitepaper's.
CSMS_INITIATED: Final = CSMS_SECURITY_EXTENSION | frozenset(
    {
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
    }
)

#: JSON-schema rule -> OCPP-J 1.6 §4.2.3 code. Rules not listed give FormationViolation.
#:
#: * ``type``, ``maxLength``: TypeConstraintViolation, "violates data type constraints";
#:   in OCPP 1.6 the length is part of the type (CiString20Type, CiString50Type, ...).
#: * ``required``: ProtocolError, which 1.6 defines as "Payload for Action is incomplete".
#: * ``additionalProperties``: FormationViolation, "not conform the PDU structure".
#: * ``enum``, ``minimum``, ``maximum``, ``multipleOf``, ``format``, ``pattern``, ...:
#:   PropertyConstraintViolation, "at least one field contains an invalid value" (the
#:   JSON type is right, the value is not; a malformed dateTime is a string, wrongly spelt).
#: * ``minItems``, ``maxItems``: OccurenceConstraintViolation (1.6 spelling).
RULE_TO_ERROR_CODE: Final[dict[str, ErrorCode]] = {
    "type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "maxLength": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "minLength": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "required": ErrorCode.PROTOCOL_ERROR,
    "additionalProperties": ErrorCode.FORMATION_VIOLATION,
    "enum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "const": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "minimum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "maximum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMinimum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMaximum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "multipleOf": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "format": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "pattern": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "minItems": ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
    "maxItems": ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
}

_REQUEST: Final = ""
_RESPONSE: Final = "Response"


def _default_schema_dir() -> Traversable:
    return files("ocpp.v16").joinpath("schemas")


class SchemaRegistry:
    """Compiled OCPP 1.6 validators, one per action and direction, compiled on first use.

    ``schema_dir`` defaults to ``ocpp/v16/schemas`` of the installed ``ocpp`` package.
    ``check_formats=False`` skips ``format`` checks (``date-time``, ``uri``); by default a
    timestamp without a time zone is refused, as RFC 3339 (which 1.6 dateTime follows)
    requires one.

    ``multipleOf: 0.1`` (charging-schedule limits) is judged by fastjsonschema on the
    shortest decimal ``repr`` of the float, which is exactly the number as written on the
    wire: ``7.3`` and ``10.1`` pass, ``4.11`` does not, and neither does ``1.1 * 3``
    (``3.3000000000000003``), so a sender must round limits to one decimal before encoding.
    """

    __slots__ = ("_actions", "_check_formats", "_requests", "_responses", "_schema_dir")

    def __init__(
        self, *, schema_dir: Traversable | Path | None = None, check_formats: bool = True
    ) -> None:
        self._schema_dir: Traversable = _default_schema_dir() if schema_dir is None else schema_dir
        self._check_formats = check_formats
        self._requests: dict[str, Validator] = {}
        self._responses: dict[str, Validator] = {}
        # The only file system access outside compilation: one directory listing. It also
        # keeps peer-chosen action names (e.g. "../x") away from path construction.
        self._actions: frozenset[str] = frozenset(
            entry.name[: -len(".json")]
            for entry in self._schema_dir.iterdir()
            if entry.name.endswith(".json") and not entry.name.endswith("Response.json")
        )

    def known_actions(self, sent_by: Sender | None = None) -> frozenset[str]:
        """Actions with a schema; only those a charger / a CSMS sends, if ``sent_by``."""
        if sent_by is None:
            return self._actions
        if sent_by == "charger":
            return self._actions & CHARGER_INITIATED
        if sent_by == "csms":
            return self._actions & CSMS_INITIATED
        raise ValueError(f"sent_by must be 'charger' or 'csms', not {sent_by!r}")

    def validate_request(self, action: str, payload: Any) -> None:
        """Check a CALL payload; raise :class:`RemoteProtocolError` if it is invalid.

        An action without a schema raises with ``NotImplemented`` ("Requested Action is
        not known by receiver", OCPP-J 1.6 §4.2.3).
        """
        validator = self._requests.get(action)
        if validator is None:
            validator = self._compile(action, _REQUEST)
        try:
            validator(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _to_remote_error(action, _REQUEST, exc) from None

    def validate_response(self, action: str, payload: Any) -> None:
        """Check a CALLRESULT payload for ``action``; raise like :meth:`validate_request`."""
        validator = self._responses.get(action)
        if validator is None:
            validator = self._compile(action, _RESPONSE)
        try:
            validator(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _to_remote_error(action, _RESPONSE, exc) from None

    def compile_all(self, actions: Iterable[str] | None = None) -> None:
        """Pay every compilation up front (e.g. before a ramp-up), instead of lazily."""
        for action in self._actions if actions is None else actions:
            if action not in self._requests:
                self._compile(action, _REQUEST)
            if action not in self._responses:
                self._compile(action, _RESPONSE)

    def _compile(self, action: str, suffix: str) -> Validator:
        if action not in self._actions:
            raise RemoteProtocolError(ErrorCode.NOT_IMPLEMENTED, f"unknown action {action!r}")
        schema = orjson.loads(self._schema_dir.joinpath(f"{action}{suffix}.json").read_bytes())
        validator: Validator = fastjsonschema.compile(
            schema, use_default=False, use_formats=self._check_formats
        )
        (self._responses if suffix else self._requests)[action] = validator
        return validator


def _to_remote_error(
    action: str, suffix: str, exc: fastjsonschema.JsonSchemaValueException
) -> RemoteProtocolError:
    rule = exc.rule or ""
    path = _field_path(exc.name)
    reason = exc.message
    if rule == "required" and isinstance(exc.value, dict):
        missing = [key for key in exc.rule_definition or () if key not in exc.value]
        path = _join(path, missing[0] if missing else "?")
        reason = "required field missing"
    elif rule == "additionalProperties" and isinstance(exc.value, dict):
        allowed = (exc.definition or {}).get("properties", {})
        extra = sorted(key for key in exc.value if key not in allowed)
        path = _join(path, extra[0] if extra else "?")
        reason = "field not allowed"
    else:
        # "data.connectorId must be integer" -> "must be integer"
        reason = reason.removeprefix(exc.name or "").strip()
    if rule == "type" and not path:
        # The payload itself is not an object: the PDU structure is wrong, as in codec.
        code = ErrorCode.FORMATION_VIOLATION
    else:
        code = RULE_TO_ERROR_CODE.get(rule, ErrorCode.FORMATION_VIOLATION)
    where = f"{action}{'.conf' if suffix else '.req'}"
    return RemoteProtocolError(
        code,
        f"{where}: {path or '<payload>'}: {reason}",
        details={"field": path, "rule": rule},
    )


def _field_path(name: str | None) -> str:
    """fastjsonschema's ``data.meterValue[0].value`` -> ``meterValue[0].value``."""
    if not name or name == "data":
        return ""
    return name.removeprefix("data").lstrip(".")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
