"""OCPP timestamps: RFC 3339 in UTC with millisecond precision, as most CSMSs expect."""

from __future__ import annotations

from datetime import UTC, datetime


def format_timestamp(seconds: float) -> str:
    """``1700000000.5`` → ``2023-11-14T22:13:20.500Z``."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float:
    """Accepts ``Z`` or an offset; a naive time is taken as UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
