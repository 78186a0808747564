"""OCPP-J 1.6 framing, error codes and schema validation (no I/O)."""

from emulator.protocol.codec import (
    Call,
    CallError,
    CallResult,
    Frame,
    FrameError,
    MessageTypeId,
    UniqueIdGenerator,
    decode,
    encode,
    encode_call,
    encode_error,
    encode_result,
    random_unique_id,
)
from emulator.protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from emulator.protocol.schemas import SchemaRegistry

__all__ = [
    "Call",
    "CallError",
    "CallResult",
    "ErrorCode",
    "Frame",
    "FrameError",
    "LocalProtocolError",
    "MessageTypeId",
    "RemoteProtocolError",
    "SchemaRegistry",
    "UniqueIdGenerator",
    "decode",
    "encode",
    "encode_call",
    "encode_error",
    "encode_result",
    "random_unique_id",
]
