"""The benchmark's responder (``bench/responder.py``) in this process, for the Locust tests.

It answers every CALL at once and keeps the books the tests check a fleet against: CALLs
per action, each charger's client address and model, close codes, open transactions.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any, Self

from websockets.asyncio.server import Server, serve

from tests.loadtest.support import ROOT


def _responder_module() -> ModuleType:
    name = "ocpp_fleet_bench_responder"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "responder.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class BooksCsms:
    """``async with BooksCsms() as csms``: listening on 127.0.0.1 (any free port)."""

    def __init__(self) -> None:
        self.responder: Any = _responder_module().Responder(record=False)
        self._server: Server | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self.responder.handle,
            "127.0.0.1",
            0,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            compression=None,
            ping_interval=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    @property
    def books(self) -> Any:
        """bench/responder.py's ``Books``."""
        return self.responder.books
