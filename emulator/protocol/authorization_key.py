"""AuthorizationKey: the HTTP Basic password of security profiles 1 and 2, and its two forms.

OCPP 1.6 Security Whitepaper ed. 3, A00.FR.205 / A00.FR.304 and §7.2: "Minimal 16-bytes
long ... Hexadecimal represented (20 bytes maximum, represented as a string of up to 40
hexadecimal digits)".  So a conformant CSMS sends 32 to 40 hexadecimal digits, an even
number of them, either case, and the password the charger puts in its Basic header is the
16 to 20 *bytes* they stand for, not the digits (OCTT TC_085_CS checks exactly that).

Many CSMSs send the password as plain text instead, and chargers in the field use it as
it is.  The two forms cannot be confused: 16 to 20 characters of plain text are too few
to be 16 bytes in hexadecimal, and 32 to 40 characters too many to be plain text.

* :func:`key_form`: :attr:`KeyForm.HEX`, :attr:`KeyForm.PLAIN_TEXT` or None (a value
  no charger takes: under 16 characters, 21 to 31, an odd number of hexadecimal digits,
  32 to 40 characters that are not all hexadecimal digits, over 40);
* :func:`key_bytes`: the password a value stands for (what both the charger and the
  reference CSMS put in and expect from the Basic header);
* :func:`key_refusal`: why a value is refused, in words that never contain the value.

The key is a secret (A01.FR.09, A01.FR.12): wherever a message or a log line would show
it, :data:`REDACTED` stands in.  Pure functions, shared by the charger (emulator.core) and
the reference CSMS (emulator.csms), which both import only this floor.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

__all__ = [
    "KEY_NAME",
    "PLAIN_TEXT_KEY",
    "REDACTED",
    "KeyForm",
    "key_bytes",
    "key_form",
    "key_refusal",
]

KEY_NAME: Final = "AuthorizationKey"
"""The configuration key (Security Whitepaper §7.2)."""

REDACTED: Final = "***"
"""What a message or a log line shows instead of the key."""

PLAIN_TEXT_KEY: Final = "AuthorizationKeyNotHex"
"""The code under which a CSMS's plain-text AuthorizationKey is counted as a deviation
(emulator.metrics.conformance), beside the schema error codes."""

PLAIN_TEXT_LENGTHS: Final = (16, 20)
HEX_DIGITS: Final = (32, 40)

_HEX: Final = re.compile(r"[0-9A-Fa-f]+", re.ASCII)


class KeyForm(StrEnum):
    """How a CSMS wrote an AuthorizationKey value."""

    HEX = "hex"  # 32-40 hexadecimal digits, an even number: the whitepaper's form
    PLAIN_TEXT = "plain text"  # 16-20 characters: used as their UTF-8 bytes (a deviation)


def key_form(value: str) -> KeyForm | None:
    """The form of ``value``, or None when no charger takes it (see the module)."""
    size = len(value)
    low, high = HEX_DIGITS
    if low <= size <= high:
        return KeyForm.HEX if size % 2 == 0 and _HEX.fullmatch(value) else None
    low, high = PLAIN_TEXT_LENGTHS
    return KeyForm.PLAIN_TEXT if low <= size <= high else None


def key_bytes(value: str) -> bytes:
    """The password ``value`` stands for: the bytes of its hexadecimal digits, else its
    UTF-8 bytes (plain text, or a value a charger took although it is neither form)."""
    if key_form(value) is KeyForm.HEX:
        return bytes.fromhex(value)
    return value.encode("utf-8", "surrogateescape")


def key_refusal(value: str) -> str:
    """Why ``value`` is refused (its length at most, never the value), or "" if it is not."""
    size = len(value)
    expected = "16 to 20 characters of plain text or 32 to 40 hexadecimal digits"
    if key_form(value) is not None:
        return ""
    if size < PLAIN_TEXT_LENGTHS[0]:
        return f"{size} characters, expected {expected} (at least 16 bytes, §7.2)"
    if size < HEX_DIGITS[0]:
        return f"{size} characters, expected {expected}"
    if size > HEX_DIGITS[1]:
        return f"{size} characters, expected {expected} (at most 20 bytes, §7.2)"
    if _HEX.fullmatch(value):
        return f"an odd number of hexadecimal digits ({size}): not whole bytes"
    return f"{size} characters that are not all hexadecimal digits, expected {expected}"
