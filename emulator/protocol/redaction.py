"""Credentials never reach a log: websockets' handshake lines are redacted.

At DEBUG, websockets logs every handshake header, one record per header with the name
and the value as arguments (``"> %s: %s"``).  The ``Authorization`` header is the HTTP
Basic password in base64, which is the password (OCPP 1.6 Security Whitepaper A01.FR.09:
no passwords in log files).  :func:`redact_websockets_logs` puts a filter on websockets'
client and server loggers that keeps the record and replaces the value; the charger side
(:mod:`emulator.transport.driver`) and the reference CSMS (:mod:`emulator.csms.server`)
install it when they are imported.
"""

from __future__ import annotations

import logging

__all__ = ["REDACTED", "redact_websockets_logs"]

REDACTED = "[redacted]"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
_LOGGERS = ("websockets.client", "websockets.server")


class _HideCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() in _SECRET_HEADERS:
            record.args = (args[0], REDACTED)
        return True


_FILTER = _HideCredentials()


def redact_websockets_logs() -> None:
    """Install the filter (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
