"""The benchmark's CSMS: a raw websockets server that answers every CALL at once.

    python bench/responder.py [--port 0] [--record TRACE]

Prints ``ready PORT`` when listening.  Each CALL gets a schema-valid CALLRESULT built
from a canned payload per action (a StartTransaction its own transactionId), with no
validation, no state and no logging, so that the clients, not the responder, are what a
benchmark measures.  With ``--record``, the first connection of each charger id is
recorded (milliseconds since that connection opened, and each frame as sent) and
written as JSON lines to TRACE on SIGTERM/SIGINT: the floor client replays it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, serve

ACCEPTED = {"status": "Accepted"}


class Responder:
    def __init__(self, *, record: bool) -> None:
        self.record = record
        self.traces: dict[str, list[tuple[float, str]]] = {}
        self.transaction_ids = itertools.count(1)
        self._now = ""
        self._now_at = 0.0
        self.calls = 0

    def now(self) -> str:
        t = time.time()
        if t - self._now_at >= 1.0:
            self._now_at = t
            self._now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._now

    def answer(self, action: str) -> dict[str, Any]:
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": self.now(), "interval": 60}
        if action == "Heartbeat":
            return {"currentTime": self.now()}
        if action == "StartTransaction":
            return {"transactionId": next(self.transaction_ids), "idTagInfo": ACCEPTED}
        if action in ("Authorize", "StopTransaction"):
            return {"idTagInfo": ACCEPTED}
        if action == "DataTransfer":
            return ACCEPTED
        return {}  # StatusNotification, MeterValues, *StatusNotification

    async def handle(self, ws: ServerConnection) -> None:
        charger = ws.request.path.rsplit("/", 1)[-1] if ws.request else "?"
        trace: list[tuple[float, str]] | None = None
        if self.record and charger not in self.traces:
            trace = self.traces[charger] = []
        opened = time.monotonic()
        async for text in ws:
            try:
                frame = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if not (isinstance(frame, list) and len(frame) == 4 and frame[0] == 2):
                continue
            if trace is not None:
                trace.append((round((time.monotonic() - opened) * 1000.0, 3), str(text)))
            self.calls += 1
            await ws.send(orjson.dumps([3, frame[1], self.answer(frame[2])]).decode())


def write_trace(path: str, traces: dict[str, list[tuple[float, str]]]) -> None:
    with open(path, "wb") as f:
        for charger, frames in traces.items():
            f.write(orjson.dumps({"id": charger, "frames": frames}) + b"\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", help="write the first session of each charger here")
    args = parser.parse_args()
    responder = Responder(record=args.record is not None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        responder.handle,
        "127.0.0.1",
        args.port,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        compression=None,
        ping_interval=None,  # the chargers ping; the server only answers
        max_queue=16,
        backlog=8192,
        server_header=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"ready {port}", flush=True)
        await stop.wait()
    if args.record:
        write_trace(args.record, responder.traces)
    print(f"calls {responder.calls}", flush=True)


if __name__ == "__main__":
    uvloop.run(main())
