"""OCPP-J 1.6 CALLERROR codes and the two kinds of protocol error.

OCPP-J 1.6 §4.2.3 lists the error codes a CALLERROR may carry.  Like h11, we keep
apart the errors *we* must answer because the peer broke the protocol
(:class:`RemoteProtocolError`, carried back to the peer as a CALLERROR) and the
bugs where *we* would have broken it (:class:`LocalProtocolError`, never sent).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """CALLERROR codes of OCPP-J 1.6 §4.2.3 (1.6 spells "Occurence" with one r)."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    FORMATION_VIOLATION = "FormationViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"


class RemoteProtocolError(Exception):
    """The peer sent something we must refuse; answered with a CALLERROR.

    ``unique_id`` is the id of the offending CALL when it could be read, else None.
    """

    def __init__(
        self,
        code: ErrorCode,
        description: str,
        *,
        unique_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.unique_id = unique_id
        self.details: dict[str, Any] = details or {}


class LocalProtocolError(Exception):
    """We were about to break the protocol (a bug in ocpp-fleet, never a CSMS fault)."""
