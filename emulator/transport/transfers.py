"""File transfers for Firmware Management: FTP upload and download on the event loop.

The reference charger uploads diagnostics and downloads firmware by FTP (reference §3.1).
Transfers run as asyncio tasks with aioftp — never in a thread pool, which a
gevent-patched (Locust) process must not use from its asyncio thread — so a transfer
never blocks the loop that serves the fleet's websockets.  One :class:`FileTransfers`
is shared by a fleet: its semaphore bounds the FTP sessions open at once, so a
fleet-wide roll-out queues instead of opening 10,000 sessions against one server.

Credentials come from the URL (``ftp://user:password@host:port/path``, percent-encoded
as RFC 3986 wants; anonymous without them).  No message, log line or exception text
carries the password (aioftp itself logs ``PASS ****``).

Hostnames are resolved by the loop: uvloop (the Locust bridge, ``ocpp-fleet run``)
resolves in libuv, and an IP literal is never resolved at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import unquote, urlsplit

import aioftp

from emulator.core.firmware import TransferFailure

DEFAULT_MAX_CONCURRENT: Final = 64
BLOCK_SIZE: Final = 64 * 1024


class TransferError(Exception):
    """A transfer failed; ``str(error)`` says where and why (never with the password),
    ``failure`` what kind of failure it was (GetLog reports it, security whitepaper N01)."""

    def __init__(self, message: str, failure: TransferFailure = TransferFailure.FAILED) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class FtpLocation:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    path: str  # as on the server, percent-decoded

    @classmethod
    def parse(cls, url: str) -> FtpLocation:
        try:
            parts = urlsplit(url)
            port = parts.port or 21
        except ValueError as exc:  # a bad port, an unbalanced [ ... ]
            raise TransferError(f"invalid location: {exc}", TransferFailure.BAD_MESSAGE) from None
        if parts.scheme.lower() != "ftp":
            raise TransferError(
                f"unsupported scheme {parts.scheme or '(none)'!r}: only ftp",
                TransferFailure.NOT_SUPPORTED,
            )
        if not parts.hostname:
            raise TransferError("invalid location: no host", TransferFailure.BAD_MESSAGE)
        user = unquote(parts.username) if parts.username else "anonymous"
        password = unquote(parts.password) if parts.password is not None else "anon@"
        return cls(
            host=parts.hostname,
            port=port,
            user=user,
            password=password,
            path=unquote(parts.path),
        )


class FileTransfers:
    """FTP uploads and downloads, at most ``max_concurrent`` at once (per process/fleet).

    ``connect_timeout`` bounds opening a connection, ``idle_timeout`` any wait for the
    server (a stalled transfer), ``total_timeout`` the whole attempt once it has a slot
    (the wait for a free slot is unbounded, and cancellable).
    """

    def __init__(
        self,
        *,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        connect_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        total_timeout: float = 600.0,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.max_concurrent = max_concurrent
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.total_timeout = total_timeout
        self._slots = asyncio.Semaphore(max_concurrent)
        self.active = 0  # sessions open now
        self.waiting = 0  # transfers queued for a slot
        self.peak_active = 0
        self.completed = 0
        self.failed = 0

    # ------------------------------------------------------------------ public

    async def upload(self, url: str, filename: str, data: bytes) -> str:
        """Store ``data`` as ``filename`` in the directory ``url``; returns a summary."""
        location = FtpLocation.parse(url)
        target = str(PurePosixPath(location.path or ".") / filename)
        async with self._session(location) as (client, stage):
            stage[0] = "STOR"
            async with client.upload_stream(target) as stream:
                await stream.write(data)
            _honour_cancellation()
            stage[0] = "QUIT"
            with contextlib.suppress(Exception):  # the file is stored; a rude QUIT is fine
                await client.quit()
        return f"{len(data)} bytes stored as {target}"

    async def download(self, url: str, *, sink: Callable[[bytes], object] | None = None) -> str:
        """Fetch the file at ``url`` (counted, not kept); returns a summary.

        ``sink`` is given each block as it arrives (``hashlib.sha256().update``: a signed
        firmware's digest), so the file is never held whole.
        """
        location = FtpLocation.parse(url)
        if not location.path or location.path.endswith("/"):
            raise TransferError("invalid location: no file name", TransferFailure.BAD_MESSAGE)
        async with self._session(location) as (client, stage):
            stage[0] = "SIZE"
            expected: int | None = None
            try:
                _code, info = await client.command(f"SIZE {location.path}", "213")
                expected = int(info[-1].strip())
            except (aioftp.StatusCodeError, ValueError):
                expected = None  # SIZE is an extension (RFC 3659); RETR decides
            _honour_cancellation()
            stage[0] = "RETR"
            received = 0
            async with client.download_stream(location.path) as stream:
                async for block in stream.iter_by_block(BLOCK_SIZE):
                    received += len(block)
                    if sink is not None:
                        sink(block)
                    _honour_cancellation()
            _honour_cancellation()
            if expected is not None and received != expected:
                raise TransferError(f"RETR: connection lost after {received} of {expected} bytes")
            stage[0] = "QUIT"
            with contextlib.suppress(Exception):
                await client.quit()
        return f"{received} bytes"

    # ------------------------------------------------------------------ sessions

    @contextlib.asynccontextmanager
    async def _session(
        self, location: FtpLocation
    ) -> AsyncIterator[tuple[aioftp.Client, list[str]]]:
        """A logged-in client holding one of the slots; failures become TransferError."""
        stage = ["connect"]
        ok = False
        # Waiting for a slot is not part of the attempt: a roll-out to 10,000 wallboxes
        # queues for a long time, and each transfer then still gets its full time.
        client = aioftp.Client(
            socket_timeout=self.idle_timeout,
            connection_timeout=self.connect_timeout,
            path_timeout=self.idle_timeout,
        )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            async with asyncio.timeout(self.total_timeout):
                await client.connect(location.host, location.port)
                stage[0] = "login"
                await client.login(location.user, location.password)
                _honour_cancellation()
                yield client, stage
                ok = True
        except TransferError:
            raise
        except aioftp.StatusCodeError as exc:
            message = _redact(f"{stage[0]}: {_status(exc)}", location)
            raise TransferError(message, _failure_of(exc)) from None
        except TimeoutError:
            raise TransferError(f"{stage[0]}: timed out") from None
        except (ConnectionError, asyncio.IncompleteReadError, EOFError):
            raise TransferError(f"{stage[0]}: connection lost") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise TransferError(_redact(f"{stage[0]}: {reason}", location)) from None
        except aioftp.AIOFTPException as exc:
            raise TransferError(_redact(f"{stage[0]}: {type(exc).__name__}", location)) from None
        finally:
            client.close()
            self.active -= 1
            self._slots.release()
            if ok:
                self.completed += 1
            else:
                self.failed += 1


def _honour_cancellation() -> None:
    """Raise CancelledError if this task was asked to stop.

    aioftp wraps every socket read and write in ``asyncio.wait_for``, which on Python
    3.11 swallows a cancellation that arrives as the inner operation completes
    (CPython gh-86296, fixed in 3.12); the transfer would then run to its end.  The
    request is still visible as ``Task.cancelling()``, so check it between steps.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


PERMISSION_CODES: Final = frozenset({"530", "532", "550", "553"})
"""RFC 959 replies that refuse the user or the file: not logged in, need an account,
file unavailable (no access / not found), file name not allowed."""
NOT_SUPPORTED_CODES: Final = frozenset({"502", "504"})
"""RFC 959: command not implemented (for that parameter)."""
BAD_MESSAGE_CODES: Final = frozenset({"500", "501"})
"""RFC 959: syntax error in the command or in its parameters."""


def _failure_of(exc: aioftp.StatusCodeError) -> TransferFailure:
    """The kind of a refusal, from the server's reply code (never from its text)."""
    codes = {str(code) for code in exc.received_codes}
    if codes & PERMISSION_CODES:
        return TransferFailure.PERMISSION_DENIED
    if codes & NOT_SUPPORTED_CODES:
        return TransferFailure.NOT_SUPPORTED
    if codes & BAD_MESSAGE_CODES:
        return TransferFailure.BAD_MESSAGE
    return TransferFailure.FAILED


def _status(exc: aioftp.StatusCodeError) -> str:
    codes = "/".join(str(code) for code in exc.received_codes)
    info = " ".join(line.strip() for line in exc.info if line.strip())
    return f"{codes} {info}".strip()[:200]


def _redact(text: str, location: FtpLocation) -> str:
    """A server may echo what it got; never let the password through."""
    if len(location.password) >= 3:
        text = text.replace(location.password, "***")
    return text
