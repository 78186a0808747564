"""websockets' DEBUG log without the secrets it would print: Basic passwords and AuthorizationKeys.

At DEBUG (``ocpp-fleet --log-level DEBUG``) websockets logs every handshake header, the
``Authorization`` header included (base64 is not a secret's protection), and every frame,
shortened to its beginning and end: the end of a ChangeConfiguration.req is its value.
OCPP 1.6 Security Whitepaper A01.FR.09 and A01.FR.12: passwords and the AuthorizationKey
are not put in log files or debug information.

:func:`websockets_logger` is the logger to pass to websockets' ``connect`` and ``serve``
(their ``logger`` argument): the same logger ("websockets.client", "websockets.server"),
so logging configuration is unchanged, behind an adapter that shows such a header as
``Basic ***`` and such a frame as ``TEXT *** (sets AuthorizationKey) [N bytes]``.
websockets builds those lines only when DEBUG is on, so this costs nothing otherwise.
A ChangeConfiguration split over several frames (no sender here does that) would show
its fragments.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any, Final

from emulator.protocol.authorization_key import KEY_NAME, REDACTED

__all__ = ["RedactingLogger", "websockets_logger"]

_HEADER_LINES: Final = frozenset({"> %s: %s", "< %s: %s"})
_FRAME_LINES: Final = frozenset({"> %s", "< %s"})
_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization"})
_KEY: Final = KEY_NAME.lower().encode()


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A websockets logger that leaves out Basic credentials and AuthorizationKey frames."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if args and self.isEnabledFor(level):
            args = _redacted(msg, args)
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1  # websockets' line, not ours
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs  # no extra: the records are websockets' own


def _redacted(msg: object, args: tuple[object, ...]) -> tuple[object, ...]:
    if msg in _HEADER_LINES and len(args) == 2 and str(args[0]).lower() in _SECRET_HEADERS:
        scheme = str(args[1]).partition(" ")[0]
        return args[0], f"{scheme} {REDACTED}"
    if msg in _FRAME_LINES and len(args) == 1:
        frame = args[0]
        data = getattr(frame, "data", None)
        if isinstance(data, bytes | bytearray | memoryview) and _KEY in bytes(data).lower():
            opcode = getattr(getattr(frame, "opcode", None), "name", "frame")
            return (f"{opcode} {REDACTED} (sets {KEY_NAME}) [{len(data)} bytes]",)
    return args


def websockets_logger(name: str) -> RedactingLogger:
    """The logger ``name`` ("websockets.client" or "websockets.server") for websockets."""
    return RedactingLogger(logging.getLogger(name), None)
