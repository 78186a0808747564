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

:func:`picows_logger` is the same for picows (``--transport picows``), which logs the
handshake request whole (its ``Authorization`` line) and received bytes at its level 9:
such an argument shows ``Authorization: Basic ***``, one naming the AuthorizationKey is
left out.  picows' INFO lines are per connection (established, disconnected), so they
are logged at DEBUG: the driver reports what matters.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any, Final

from emulator.protocol.authorization_key import KEY_NAME, REDACTED

__all__ = ["PicowsLogger", "RedactingLogger", "picows_logger", "websockets_logger"]

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


class PicowsLogger(logging.LoggerAdapter[logging.Logger]):
    """A picows logger: DEBUG at most, without Basic credentials and AuthorizationKeys."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        level = min(level, logging.DEBUG)
        if not self.isEnabledFor(level):
            return
        if args:
            args = tuple(_picows_redacted(arg) for arg in args)
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        super().log(level, msg, *args, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


_BASIC_BYTES: Final = re.compile(rb"((?:proxy-)?authorization:[ \t]*)(\S+)[^\r\n]*", re.IGNORECASE)
_BASIC_TEXT: Final = re.compile(r"((?:proxy-)?authorization:[ \t]*)(\S+)[^\r\n]*", re.IGNORECASE)


def _picows_redacted(arg: object) -> object:
    if isinstance(arg, bytes | bytearray | memoryview):
        data = bytes(arg)
        if _KEY in data.lower():
            return f"{REDACTED} (names {KEY_NAME}) [{len(data)} bytes]"
        return _BASIC_BYTES.sub(rb"\1\2 " + REDACTED.encode(), data)
    if isinstance(arg, str):
        if _KEY.decode() in arg.lower():
            return f"{REDACTED} (names {KEY_NAME}) [{len(arg)} characters]"
        return _BASIC_TEXT.sub(r"\1\2 " + REDACTED, arg)
    return arg


def picows_logger(name: str) -> PicowsLogger:
    """The logger ``name`` ("picows.client") for picows' ``ws_connect``."""
    return PicowsLogger(logging.getLogger(name), None)


def websockets_logger(name: str) -> RedactingLogger:
    """The logger ``name`` ("websockets.client" or "websockets.server") for websockets."""
    return RedactingLogger(logging.getLogger(name), None)
