"""A tiny CSMS on a real websockets server: answers what a deviating CSMS answers.

It records every charger CALL with the charger id and unique id, answers BootNotification
with a ``currentTime`` the test chooses (e.g. a naive one), and keeps open transactions by
idTag like a real CSMS: a StartTransaction with a card that is already charging elsewhere
gets idTagInfo ``ConcurrentTx``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection

from tests.integration.support import LoopbackServer


def naive_now() -> str:
    """What the ocpp library's older examples answer: ``datetime.utcnow().isoformat()``."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def utc_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class TinyCsms(LoopbackServer):
    def __init__(self, *, current_time: Callable[[], str] = utc_now) -> None:
        self.current_time = current_time
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []  # charger, id, action, payload
        self.open_tags: Counter[str] = Counter()  # idTag -> transactions running with it
        self._by_tx: dict[int, str] = {}
        self.start_statuses: Counter[str] = Counter()
        self._tx_ids = itertools.count(1)

    def ids(self, charger: str | None = None) -> list[str]:
        return [uid for cp, uid, _, _ in self.calls if charger is None or cp == charger]

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        charger = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        async for text in ws:
            frame = orjson.loads(text)
            if frame[0] != 2:
                continue
            _, unique_id, action, payload = frame
            self.calls.append((charger, unique_id, action, payload))
            await ws.send(orjson.dumps([3, unique_id, self.answer(action, payload)]).decode())

    def answer(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": self.current_time(), "interval": 60}
        if action == "Heartbeat":
            return {"currentTime": self.current_time()}
        if action == "Authorize":
            return {"idTagInfo": {"status": "Accepted"}}
        if action == "StartTransaction":
            tag = payload["idTag"]
            status = "ConcurrentTx" if self.open_tags[tag] else "Accepted"
            self.start_statuses[status] += 1
            tx = next(self._tx_ids)
            self._by_tx[tx] = tag
            self.open_tags[tag] += 1
            return {"transactionId": tx, "idTagInfo": {"status": status}}
        if action == "StopTransaction":
            tag = self._by_tx.pop(payload["transactionId"], None)
            if tag is not None:
                self.open_tags[tag] -= 1
            return {}
        return {}
