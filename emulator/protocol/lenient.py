"""What a real charger lets through although OCPP 1.6 forbids it: naive timestamps.

OCPP 1.6 dateTime follows RFC 3339, which requires a UTC offset, and the 1.6 JSON schemas
say ``"format": "date-time"``.  CSMSs built on the ``ocpp`` library's older examples answer
``datetime.utcnow().isoformat()`` (``2026-12-02T02:16:17.123456``, no offset), and
chargers in the field read such a time as UTC rather than refuse the answer: a charger
that refused the BootNotification.conf would never boot.

:func:`accept_leniently` does what those chargers do: a payload whose only violations are
date-times without an offset is repaired (the time read as UTC, ``Z`` appended) and then
used; anything else stays refused.  The violation is still the CSMS's, and the caller
counts it.  :func:`field_value` reads the offending value for reports.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any, Final

from emulator.protocol.errors import RemoteProtocolError

__all__ = ["MAX_REPAIRS", "accept_leniently", "field_value", "show_value"]

#: Fields repaired in one payload at most (a MeterValues of many naive timestamps is still
#: one message; beyond this it is refused).
MAX_REPAIRS: Final = 64

# RFC 3339 date-time without its (mandatory) offset: the naive ISO form.
_NAIVE: Final = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?", re.ASCII)
_SEGMENT: Final = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    """``meterValue[0].timestamp`` -> ``["meterValue", 0, "timestamp"]``."""
    return [name if name else int(index) for name, index in _SEGMENT.findall(path) if name or index]


def field_value(payload: Any, path: str) -> Any:
    """The value at ``path`` (a schema error's ``details["field"]``), or None."""
    node = payload
    for step in _steps(path):
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return None
        elif not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    return node


def show_value(value: Any, limit: int = 60) -> str:
    """A short, quoted rendering of a JSON value for a report line."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[: limit - 3] + "..."
        return f'"{text}"'
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "an array"
    return repr(value)


def _set(payload: Any, path: str, value: Any) -> None:
    steps = _steps(path)
    node = payload
    for step in steps[:-1]:
        node = node[step]
    node[steps[-1]] = value


def accept_leniently(
    validate: Callable[[Any], None], payload: dict[str, Any], violation: RemoteProtocolError
) -> dict[str, Any] | None:
    """``payload`` repaired as a lenient charger reads it, or None if it must be refused.

    ``validate`` raises :class:`RemoteProtocolError` (a :class:`SchemaRegistry` method
    bound to the action); ``violation`` is what it raised for ``payload``.  Only naive
    date-times are repaired (read as UTC); the repaired copy must then pass ``validate``.
    ``payload`` itself is never changed.
    """
    repaired: dict[str, Any] | None = None
    for _ in range(MAX_REPAIRS):
        if violation.details.get("rule") != "format":
            return None
        path = str(violation.details.get("field", ""))
        current = repaired if repaired is not None else payload
        value = field_value(current, path)
        if not path or not isinstance(value, str) or _NAIVE.fullmatch(value) is None:
            return None
        if repaired is None:
            repaired = copy.deepcopy(payload)
        _set(repaired, path, value + "Z")
        try:
            validate(repaired)
        except RemoteProtocolError as again:
            violation = again
            continue
        return repaired
    return None
