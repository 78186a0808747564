"""AuthorizationKey as OCPP 1.6 Security Whitepaper ed. 3 §7.2 and A01 say.

The key is 32 to 40 hexadecimal digits standing for 16 to 20 bytes; 16 to 20 characters of
plain text are what many CSMSs send instead (taken, counted, refused with --strict-csms);
anything else is Rejected.  After an Accepted change the charger closes its connection and
connects again at once with the new password (A01 steps 2-4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from emulator.core.configuration import Configuration, ConfigurationStatus, ConfigurationValueError
from emulator.core.model import ALL_PROFILES
from emulator.protocol.authorization_key import PLAIN_TEXT_KEY, KeyForm, key_form
from emulator.protocol.codec import CallError

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]

KEY = "AuthorizationKey"
HEX_20 = "0123456789abcdefABCDEF0123456789abcdef01"  # 40 digits, both cases: 20 bytes
HEX_16 = "00ff" * 8  # 32 digits: 16 bytes, the minimum
PLAIN = "plain-text-secret!"  # 18 characters


def configuration(profile: int = 1) -> Configuration:
    return Configuration(profiles=ALL_PROFILES, security_profile=profile)


@pytest.mark.parametrize(
    ("value", "password"),
    [
        (HEX_20, bytes.fromhex(HEX_20)),
        (HEX_16, b"\x00\xff" * 8),
        ("AB" * 17, b"\xab" * 17),  # 34 digits, upper case
        ("p" * 16, b"p" * 16),
        ("é" * 20, "é".encode() * 20),  # 20 characters, 40 UTF-8 bytes: plain text
        ("0123456789abcdef", b"0123456789abcdef"),  # 16 hex digits are 8 bytes: plain text
        (PLAIN, PLAIN.encode()),
    ],
    ids=["40 hex", "32 hex", "34 upper-case hex", "16 chars", "20 non-ASCII", "16 hex", "18"],
)
def test_a_key_in_either_form_is_accepted_and_the_password_is_what_it_stands_for(
    value: str, password: bytes
) -> None:
    config = configuration()
    assert config.change(KEY, value) is ConfigurationStatus.ACCEPTED
    assert config.authorization_key == password


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "0 characters"),
        ("s" * 15, "15 characters"),
        ("s" * 21, "21 characters"),
        ("a" * 31, "31 characters"),
        ("a" * 33, "odd number of hexadecimal digits (33)"),
        ("g" + "a" * 39, "40 characters that are not all hexadecimal"),
        ("0x" + "a" * 32, "34 characters that are not all hexadecimal"),
        (" " + "a" * 32, "33 characters that are not all hexadecimal"),
        ("a" * 41, "41 characters"),
        ("a" * 42, "42 characters"),
    ],
    ids=["empty", "15", "21", "31", "33 hex", "40 non-hex", "0x", "space", "41", "42 hex"],
)
def test_any_other_value_is_rejected_with_a_reason_that_never_holds_it(
    value: str, reason: str
) -> None:
    config = configuration()
    config.change(KEY, HEX_16)
    assert config.change(KEY, value) is ConfigurationStatus.REJECTED
    assert reason in config.last_rejection
    assert config.last_rejection.startswith(f"{KEY}: ")
    if value.strip():
        assert value.strip() not in config.last_rejection
    assert config.authorization_key == b"\x00\xff" * 8  # the old key stays


def test_the_form_tells_the_whitepapers_hex_from_plain_text_and_refusals() -> None:
    assert key_form(HEX_20) is KeyForm.HEX
    assert key_form(PLAIN) is KeyForm.PLAIN_TEXT
    assert key_form("a" * 33) is None


def test_no_key_until_one_is_set_and_none_without_a_security_profile() -> None:
    assert configuration().authorization_key is None
    insecure = configuration(profile=0)
    assert not insecure.knows(KEY)
    assert insecure.change(KEY, HEX_20) is ConfigurationStatus.NOT_SUPPORTED
    assert insecure.authorization_key is None


def test_the_key_is_write_only_and_shown_as_stars_in_a_snapshot() -> None:
    config = configuration()
    assert config.snapshot()[KEY] == ""  # unset: nothing to hide
    config.change(KEY, HEX_20)
    known, unknown = config.get_configuration(None)
    assert KEY not in {k.key for k in known} and KEY not in unknown
    assert config.snapshot()[KEY] == "***"
    assert HEX_20 not in str(config.snapshot())


def test_a_scenario_key_the_charger_refuses_is_an_error_without_the_value() -> None:
    secret = "too-short-secret"[:15]
    with pytest.raises(ConfigurationValueError) as caught:
        Configuration(profiles=ALL_PROFILES, overrides={KEY: secret}, security_profile=1)
    assert "AuthorizationKey = ***" in str(caught.value)
    assert secret not in str(caught.value)


# ---------------------------------------------------------------- over the link


class Sink:
    """A conformance sink that keeps every deviation it is told of."""

    def __init__(self) -> None:
        self.violations: list[dict[str, Any]] = []

    def schema_violation(self, **details: Any) -> None:
        self.violations.append(details)

    def id_tag_status(self, action: str, status: str) -> None:
        pass


def secure_csms(make_csms: MakeCsms, *, profile: int = 1, lenient: bool = True) -> FakeCsms:
    csms = make_csms(security_profile=profile)
    csms.link.conformance = Sink()
    csms.link.lenient = lenient
    return csms


def test_an_accepted_key_closes_the_connection_after_the_answer_and_reconnects_at_once(
    make_csms: MakeCsms,
) -> None:
    csms = secure_csms(make_csms)
    tx = csms.start_charging()
    boots = len(csms.sent_of("BootNotification"))
    frames = csms.call_frames("ChangeConfiguration", {"key": KEY, "value": HEX_20})
    assert frames[0] == '[3,"csms-raw",{"status":"Accepted"}]'  # the answer goes out first
    assert csms.reconnects == [csms.now] and csms.wb.online  # the close waits for run_until
    csms.exchange(frames)
    csms.advance(0.0)
    assert csms.wb.online and csms.wb.accepted
    assert csms.wb.config.authorization_key == bytes.fromhex(HEX_20)
    # Not a restart: the transaction goes on and no BootNotification follows.
    assert csms.wb.connectors[1].transaction is tx and tx.stop_reason is None
    assert len(csms.sent_of("BootNotification")) == boots
    assert not csms.reboots
    assert "security: AuthorizationKey changed" in csms.wb.firmware.log.render().decode()
    assert HEX_20 not in csms.wb.firmware.log.render().decode()
    assert not csms.link.conformance.violations  # type: ignore[attr-defined]


def test_a_rejected_key_keeps_the_connection_and_the_old_password(make_csms: MakeCsms) -> None:
    csms = secure_csms(make_csms)
    assert csms.change_configuration(KEY, "a" * 33) == "Rejected"
    assert not csms.reconnects and csms.wb.config.authorization_key is None


def test_with_client_certificates_the_key_is_stored_without_a_reconnect(
    make_csms: MakeCsms,
) -> None:
    csms = secure_csms(make_csms, profile=3)
    assert csms.change_configuration(KEY, HEX_16) == "Accepted"
    assert not csms.reconnects  # A01's prerequisite: profile 1 or 2
    assert csms.wb.config.authorization_key == b"\x00\xff" * 8


def test_a_plain_text_key_is_taken_and_counted_as_the_csmss_deviation(
    make_csms: MakeCsms,
) -> None:
    csms = secure_csms(make_csms)
    assert csms.change_configuration(KEY, PLAIN) == "Accepted"
    assert csms.wb.config.authorization_key == PLAIN.encode()
    assert csms.reconnects
    [violation] = csms.link.conformance.violations  # type: ignore[attr-defined]
    assert violation["code"] == PLAIN_TEXT_KEY and violation["accepted"] is True
    assert (violation["message"], violation["action"]) == ("call", "ChangeConfiguration")
    assert PLAIN not in violation["description"] and "***" in violation["description"]


def test_a_strict_link_rejects_a_plain_text_key_and_counts_it_refused(
    make_csms: MakeCsms,
) -> None:
    csms = secure_csms(make_csms, lenient=False)
    assert csms.change_configuration(KEY, PLAIN) == "Rejected"
    assert csms.wb.config.authorization_key is None and not csms.reconnects
    assert "plain text" in csms.wb.config.last_rejection
    [violation] = csms.link.conformance.violations  # type: ignore[attr-defined]
    assert violation["code"] == PLAIN_TEXT_KEY and violation["accepted"] is False
    assert csms.change_configuration(KEY, HEX_20) == "Accepted"  # hex is no deviation
    assert len(csms.link.conformance.violations) == 1  # type: ignore[attr-defined]


def test_a_key_that_breaks_the_schema_is_never_shown_in_the_violation(
    make_csms: MakeCsms,
) -> None:
    csms = secure_csms(make_csms)
    secret = "SECRET-MARKER-" + "x" * 500  # over CiString500
    answer = csms.send_call("ChangeConfiguration", {"key": KEY, "value": secret})
    assert isinstance(answer, CallError)  # the schema's CALLERROR
    [violation] = csms.link.conformance.violations  # type: ignore[attr-defined]
    assert "SECRET-MARKER" not in violation["description"]
    assert "(got ***)" in violation["description"]
