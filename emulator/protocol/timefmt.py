"""OCPP timestamps: RFC 3339 in UTC with millisecond precision, as most CSMSs expect."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:?\d\d)?"
)
"""OCPP 1.6 dateTime (RFC 3339, §5.6): what the schema's ``date-time`` lets through, and
the naive form (no offset) older CSMSs send.  Digits are matched like the schema's own
pattern does (any Unicode decimal digit); ``int`` and ``float`` read them all."""

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def format_timestamp(seconds: float) -> str:
    """``1700000000.5`` → ``2023-11-14T22:13:20.500Z``."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float:
    """Epoch seconds of an OCPP dateTime; raises ``ValueError`` (only) for anything else.

    Accepts ``Z`` or an offset (``+01:00``, also ``+0100``); a naive time is taken as UTC.
    A leap second (``23:59:60``, RFC 3339 §5.7) is the second after ``:59``, as in POSIX
    time, which has no leap seconds: ``2016-12-31T23:59:60Z`` is ``2017-01-01T00:00:00Z``.
    Years 0000-9999 all parse (no ``datetime`` range limits); other ISO 8601 forms
    (``2026-01-01T08:00Z``) go through ``datetime.fromisoformat``.
    """
    value = text.strip()
    match = _RFC3339.fullmatch(value)
    if match is not None:
        return _from_fields(text, match)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"{text!r} is not a dateTime") from exc


def _from_fields(text: str, match: re.Match[str]) -> float:
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS_IN_MONTH[month - 1] + (leap and month == 2):
        raise ValueError(f"{text!r}: no such day")
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second
        raise ValueError(f"{text!r}: no such time of day")
    shift = 0
    if offset is not None and offset not in ("Z", "z"):
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise ValueError(f"{text!r}: no such offset")
        shift = (hours * 3600 + minutes * 60) * (-1 if offset[0] == "-" else 1)
    days = _days_from_civil(year, month, day)
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - shift
    return seconds + (float("0" + fraction) if fraction else 0.0)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
