"""OCPP-J 1.6 §4 frames: decoding, encoding and the error each broken frame earns."""

from __future__ import annotations

import pytest

from emulator.protocol.codec import (
    MAX_UNIQUE_ID_LENGTH,
    Call,
    CallError,
    CallResult,
    FrameError,
    UniqueIdGenerator,
    decode,
    encode,
    encode_call,
    encode_error,
    encode_result,
)
from emulator.protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError

FORMATION = ErrorCode.FORMATION_VIOLATION
LONG_ID = "x" * (MAX_UNIQUE_ID_LENGTH + 1)


def test_a_call_decodes_into_id_action_and_payload() -> None:
    assert decode('[2, "19223201", "BootNotification", {"chargePointVendor": "V"}]') == Call(
        "19223201", "BootNotification", {"chargePointVendor": "V"}
    )


def test_a_callresult_decodes_into_id_and_payload() -> None:
    assert decode('[3, "19223201", {"currentTime": "2024-01-01T00:00:00Z"}]') == CallResult(
        "19223201", {"currentTime": "2024-01-01T00:00:00Z"}
    )


def test_a_callerror_decodes_with_a_1_6_code_as_error_code() -> None:
    frame = decode('[4, "1", "NotImplemented", "no such action", {"a": 1}]')
    assert frame == CallError("1", ErrorCode.NOT_IMPLEMENTED, "no such action", {"a": 1})
    assert isinstance(frame, CallError)
    assert frame.error_code is ErrorCode.NOT_IMPLEMENTED


def test_a_callerror_with_a_code_1_6_lacks_is_kept_as_the_raw_string() -> None:
    frame = decode('[4, "1", "FormatViolation", "2.0 spelling", {}]')
    assert isinstance(frame, CallError)
    assert frame.code == "FormatViolation"
    assert frame.error_code is None


def test_bytes_decode_like_text() -> None:
    assert decode(b'[2, "1", "Heartbeat", {}]') == Call("1", "Heartbeat", {})


@pytest.mark.parametrize(
    "frame",
    [
        Call("a-1", "MeterValues", {"connectorId": 1, "meterValue": [{"x": "é"}]}),
        CallResult("a-2", {"status": "Accepted", "nested": {"list": [1, 2.5, None, True]}}),
        CallError("a-3", ErrorCode.GENERIC_ERROR, "oops", {"why": "because"}),
    ],
)
def test_every_frame_survives_an_encode_decode_round_trip(frame: Call) -> None:
    assert decode(encode(frame)) == frame


def test_the_encode_functions_write_the_ocpp_j_arrays() -> None:
    assert encode_call("1", "Heartbeat", {}) == '[2,"1","Heartbeat",{}]'
    assert encode_result("1", {}) == '[3,"1",{}]'
    assert encode_error("1", ErrorCode.NOT_SUPPORTED, "no") == '[4,"1","NotSupported","no",{}]'


def test_encode_error_includes_the_details_given() -> None:
    assert (
        encode_error("1", "GenericError", "x", {"k": "v"}) == '[4,"1","GenericError","x",{"k":"v"}]'
    )


def test_encoding_a_call_with_an_id_over_36_characters_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        encode_call(LONG_ID, "Heartbeat", {})


def test_an_over_long_peer_id_is_still_echoed_in_the_answer() -> None:
    assert LONG_ID in encode_error(LONG_ID, FORMATION, "too long")


def test_encoding_a_payload_json_cannot_hold_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        encode_result("1", {"x": object()})


def test_encoding_a_non_string_unique_id_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        encode_result(1, {})  # type: ignore[arg-type]


# -- decode errors ---------------------------------------------------------------------
# (text, code, unique_id read from it, whether a CALLERROR may answer it)
DECODE_ERRORS = {
    "invalid JSON": ('[2, "1", "Heartbeat", {', FORMATION, None, False),
    "empty text": ("", FORMATION, None, False),
    "a JSON object": ('{"a": 1}', FORMATION, None, False),
    "a JSON string": ('"hello"', FORMATION, None, False),
    "an empty array": ("[]", FORMATION, None, False),
    "a string MessageTypeId": ('["2", "1", "Heartbeat", {}]', FORMATION, None, False),
    "a boolean MessageTypeId": ('[true, "1", "Heartbeat", {}]', FORMATION, None, False),
    "a float MessageTypeId": ('[2.0, "1", "Heartbeat", {}]', FORMATION, None, False),
    "an unknown MessageTypeId": ('[5, "1", "Heartbeat", {}]', ErrorCode.PROTOCOL_ERROR, "1", False),
    "a CALL of 3 elements": ('[2, "1", "Heartbeat"]', FORMATION, "1", True),
    "a CALL of 5 elements": ('[2, "1", "Heartbeat", {}, {}]', FORMATION, "1", True),
    "a CALL with an integer id": ('[2, 1, "Heartbeat", {}]', FORMATION, None, False),
    "a CALL with an id over 36 characters": (
        f'[2, "{LONG_ID}", "Heartbeat", {{}}]',
        FORMATION,
        LONG_ID,
        True,
    ),
    "a CALL with an integer action": ('[2, "1", 7, {}]', FORMATION, "1", True),
    "a CALL with an array payload": ('[2, "1", "Heartbeat", []]', FORMATION, "1", True),
    "a CALL with a null payload": ('[2, "1", "Heartbeat", null]', FORMATION, "1", True),
    "a CALLRESULT of 2 elements": ('[3, "1"]', FORMATION, "1", False),
    "a CALLRESULT of 4 elements": ('[3, "1", {}, {}]', FORMATION, "1", False),
    "a CALLRESULT with an integer id": ("[3, 1, {}]", FORMATION, None, False),
    "a CALLRESULT with a string payload": ('[3, "1", "ok"]', FORMATION, "1", False),
    "a CALLERROR of 4 elements": ('[4, "1", "GenericError", "x"]', FORMATION, "1", False),
    "a CALLERROR with an integer code": ('[4, "1", 3, "x", {}]', FORMATION, "1", False),
    "a CALLERROR with a null description": (
        '[4, "1", "GenericError", null, {}]',
        FORMATION,
        "1",
        False,
    ),
    "a CALLERROR with array details": ('[4, "1", "GenericError", "x", []]', FORMATION, "1", False),
}


@pytest.mark.parametrize(
    ("text", "code", "unique_id", "answerable"),
    DECODE_ERRORS.values(),
    ids=DECODE_ERRORS.keys(),
)
def test_a_broken_frame_raises_the_code_and_id_to_answer_with(
    text: str, code: ErrorCode, unique_id: str | None, answerable: bool
) -> None:
    with pytest.raises(FrameError) as caught:
        decode(text)
    assert caught.value.code is code
    assert caught.value.unique_id == unique_id
    assert caught.value.answerable is answerable


def test_a_frame_error_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        decode("not json")


def test_a_frame_error_remembers_the_message_type_it_read() -> None:
    with pytest.raises(FrameError) as caught:
        decode('[3, "1", []]')
    assert caught.value.message_type_id == 3


# -- unique ids ------------------------------------------------------------------------


def test_unique_ids_are_the_prefix_and_an_increasing_counter() -> None:
    next_id = UniqueIdGenerator(prefix="cp7-")
    assert [next_id() for _ in range(3)] == ["cp7-1", "cp7-2", "cp7-3"]


def test_unique_ids_never_repeat() -> None:
    next_id = UniqueIdGenerator()
    assert len({next_id() for _ in range(10_000)}) == 10_000


def test_unique_ids_stay_within_36_characters_with_the_longest_prefix() -> None:
    next_id = UniqueIdGenerator(prefix="p" * UniqueIdGenerator.MAX_PREFIX_LENGTH, start=10**19)
    assert len(next_id()) <= MAX_UNIQUE_ID_LENGTH


def test_a_unique_id_prefix_over_16_characters_is_refused() -> None:
    with pytest.raises(ValueError):
        UniqueIdGenerator(prefix="p" * 17)
