"""A real FTP server (pyftpdlib) on 127.0.0.1 in a background thread, for transfer tests.

pyftpdlib runs its own select/epoll loop; a thread keeps it off the asyncio loop the
wallboxes run on (fine in tests: the emulator itself never uses threads for FTP).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler, ThrottledDTPHandler
from pyftpdlib.servers import FTPServer


@dataclass
class FtpStats:
    """What the server saw (updated on its thread; read after the fact)."""

    logins: int = 0
    failed_logins: list[float] = field(default_factory=list)
    files_sent: int = 0
    incomplete_sends: int = 0
    files_received: list[str] = field(default_factory=list)
    open_now: int = 0
    peak_open: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FtpServer:
    """``with FtpServer(root, users={"fw": "secret"}) as ftp: ftp.url("fw", "secret", "x")``.

    ``drop_after``: close the control and data connections after sending that many bytes
    of a file (a connection that drops mid-transfer).  ``rate``: bytes per second a
    download is throttled to.
    """

    def __init__(
        self,
        root: Path,
        *,
        users: dict[str, str],
        drop_after: int | None = None,
        rate: int | None = None,
    ) -> None:
        self.root = root
        self.stats = FtpStats()
        authorizer = DummyAuthorizer()
        for user, password in users.items():
            authorizer.add_user(user, password, str(root), perm="elradfmwMT")
        stats = self.stats
        dtp: type[DTPHandler] = DTPHandler
        if rate is not None:
            dtp = type("SlowDTP", (ThrottledDTPHandler,), {"read_limit": rate, "write_limit": rate})
        if drop_after is not None:
            dtp = type("DroppingDTP", (_DroppingDTP,), {"drop_after": drop_after})

        class Handler(FTPHandler):
            def on_connect(self) -> None:
                with stats.lock:
                    stats.open_now += 1
                    stats.peak_open = max(stats.peak_open, stats.open_now)

            def on_disconnect(self) -> None:
                with stats.lock:
                    stats.open_now -= 1

            def on_login(self, username: str) -> None:
                with stats.lock:
                    stats.logins += 1

            def on_login_failed(self, username: str, password: str) -> None:
                with stats.lock:
                    stats.failed_logins.append(time.monotonic())

            def on_file_sent(self, file: str) -> None:
                with stats.lock:
                    stats.files_sent += 1

            def on_incomplete_file_sent(self, file: str) -> None:
                with stats.lock:
                    stats.incomplete_sends += 1

            def on_file_received(self, file: str) -> None:
                with stats.lock:
                    stats.files_received.append(file)

        Handler.authorizer = authorizer
        Handler.dtp_handler = dtp
        Handler.use_sendfile = False  # every byte goes through DTPHandler.send
        Handler.banner = "ocpp-fleet test FTP"
        Handler.auth_failed_timeout = 0.05  # pyftpdlib waits 3 s after a bad password
        self._handler = Handler
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.port = 0

    def __enter__(self) -> FtpServer:
        self._server = FTPServer(("127.0.0.1", 0), self._handler)
        self._server.max_cons = 1024
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="ftp-server", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        server = self._server
        while not self._stop.is_set():  # the loop of serve_forever, minus its logging
            server.ioloop.loop(timeout=0.05, blocking=False)
        server.close_all()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)

    def url(self, user: str, password: str, path: str) -> str:
        return f"ftp://{user}:{password}@127.0.0.1:{self.port}/{path.lstrip('/')}"


class _DroppingDTP(DTPHandler):
    drop_after = 1024

    def send(self, data: bytes) -> int:
        remaining = self.drop_after - self.tot_bytes_sent
        if remaining <= 0:
            # The line goes dead: no 226, no 426, both connections just close.
            self.cmd_channel.ioloop.call_later(0, self.cmd_channel.close)
            return 0
        sent: int = super().send(data[:remaining])
        return sent
