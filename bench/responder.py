"""The benchmark's CSMS: a raw websockets server that answers every CALL at once.

    python bench/responder.py [--port 0] [--record TRACE] [--interval 60]
                              [--status SECONDS] [--summary FILE] [--reuse-port]

Prints ``ready PORT`` when listening.  Each CALL gets a schema-valid CALLRESULT built
from a canned payload per action (a StartTransaction its own transactionId; a
BootNotification the heartbeat ``--interval``), with no validation and no logging, so
that the clients, not the responder, are what a benchmark measures.  With ``--record``,
the first connection of each charger id is recorded (milliseconds since that connection
opened, and each frame as sent) and written as JSON lines to TRACE on SIGTERM/SIGINT:
the floor client replays it.

It also keeps the books a benchmark checks the clients against (:class:`Books`): CALLs
per action and per peer address, connections opened and closed with each close code
the client sent (1006: none), chargers booted, transactions started and not stopped.
``--status SECONDS`` prints them as ``status {json}`` lines that often; ``--summary
FILE`` writes them as JSON on exit.  Several responders can share one port
(``--reuse-port``, the kernel spreads the connections) when one process cannot hold
every socket (its open-file limit).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

ACCEPTED = {"status": "Accepted"}


class Books:
    """What the responder saw; cheap enough to keep on every frame."""

    def __init__(self) -> None:
        self.calls = 0
        self.actions: Counter[str] = Counter()
        self.peer_calls: Counter[str] = Counter()  # CALLs by the client's IP address
        self.peer_open: Counter[str] = Counter()  # connections open now, by client IP
        self.opened = 0
        self.closed = 0
        self.closes: Counter[int] = Counter()  # close code the client sent; 1006: none
        self.booted: set[str] = set()  # charger ids that sent a BootNotification
        # Per charger id (not in the status lines): the client IP of its last connection,
        # the chargePointModel of its last BootNotification.
        self.charger_peer: dict[str, str] = {}
        self.charger_model: dict[str, str] = {}
        self.open_transactions: set[int] = set()
        self.unknown_stops = 0  # StopTransaction of a transaction never started here

    def status(self) -> dict[str, Any]:
        return {
            "time": time.time(),
            "calls": self.calls,
            "actions": dict(self.actions),
            "peer_calls": dict(self.peer_calls),
            "peer_open": {peer: n for peer, n in self.peer_open.items() if n},
            "open": self.opened - self.closed,
            "opened": self.opened,
            "closed": self.closed,
            "closes": {str(code): n for code, n in sorted(self.closes.items())},
            "booted": len(self.booted),
            "open_transactions": len(self.open_transactions),
            "unknown_stops": self.unknown_stops,
        }


class Responder:
    def __init__(self, *, record: bool, interval: int = 60) -> None:
        self.record = record
        self.interval = interval
        self.traces: dict[str, list[tuple[float, str]]] = {}
        self.transaction_ids = itertools.count(1)
        self._now = ""
        self._now_at = 0.0
        self.books = Books()

    @property
    def calls(self) -> int:
        return self.books.calls

    def now(self) -> str:
        t = time.time()
        if t - self._now_at >= 1.0:
            self._now_at = t
            self._now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._now

    def answer(self, action: str, payload: Any, charger: str) -> dict[str, Any]:
        if action == "BootNotification":
            self.books.booted.add(charger)
            if isinstance(payload, dict):
                self.books.charger_model[charger] = str(payload.get("chargePointModel", ""))
            return {"status": "Accepted", "currentTime": self.now(), "interval": self.interval}
        if action == "Heartbeat":
            return {"currentTime": self.now()}
        if action == "StartTransaction":
            transaction = next(self.transaction_ids)
            self.books.open_transactions.add(transaction)
            return {"transactionId": transaction, "idTagInfo": ACCEPTED}
        if action == "StopTransaction":
            try:
                self.books.open_transactions.remove(payload["transactionId"])
            except (KeyError, TypeError):
                self.books.unknown_stops += 1
            return {"idTagInfo": ACCEPTED}
        if action == "Authorize":
            return {"idTagInfo": ACCEPTED}
        if action == "DataTransfer":
            return ACCEPTED
        return {}  # StatusNotification, MeterValues, *StatusNotification

    async def handle(self, ws: ServerConnection) -> None:
        books = self.books
        charger = ws.request.path.rsplit("/", 1)[-1] if ws.request else "?"
        peer = str(ws.remote_address[0]) if ws.remote_address else "?"
        books.opened += 1
        books.peer_open[peer] += 1
        books.charger_peer[charger] = peer
        trace: list[tuple[float, str]] | None = None
        if self.record and charger not in self.traces:
            trace = self.traces[charger] = []
        opened = time.monotonic()
        try:
            async for text in ws:
                try:
                    frame = orjson.loads(text)
                except orjson.JSONDecodeError:
                    continue
                if not (isinstance(frame, list) and len(frame) == 4 and frame[0] == 2):
                    continue
                if trace is not None:
                    trace.append((round((time.monotonic() - opened) * 1000.0, 3), str(text)))
                books.calls += 1
                books.actions[frame[2]] += 1
                books.peer_calls[peer] += 1
                reply = self.answer(frame[2], frame[3], charger)
                await ws.send(orjson.dumps([3, frame[1], reply]).decode())
        except ConnectionClosed:
            pass  # without a close frame (1006): counted below, as every close
        finally:
            received = ws.protocol.close_rcvd
            books.closes[received.code if received is not None else 1006] += 1
            books.closed += 1
            books.peer_open[peer] -= 1


def write_trace(path: str, traces: dict[str, list[tuple[float, str]]]) -> None:
    with open(path, "wb") as f:
        for charger, frames in traces.items():
            f.write(orjson.dumps({"id": charger, "frames": frames}) + b"\n")


def write_summary(path: str, books: Books) -> None:
    with open(path, "wb") as f:
        f.write(orjson.dumps(books.status()))


async def report(books: Books, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        sys.stdout.write("status " + orjson.dumps(books.status()).decode() + "\n")
        sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", help="write the first session of each charger here")
    parser.add_argument(
        "--interval", type=int, default=60, help="heartbeat interval in BootNotification answers"
    )
    parser.add_argument("--status", type=float, default=0.0, help="print the books every N s")
    parser.add_argument("--summary", help="write the books as JSON here on exit")
    parser.add_argument(
        "--reuse-port", action="store_true", help="share the port with other responders"
    )
    args = parser.parse_args()
    # One socket per charger: the clients' process raises its soft open-file limit to the
    # hard one (19,000 wallboxes under a 20,000 limit), so this process must as well.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    responder = Responder(record=args.record is not None, interval=args.interval)
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
        reuse_port=args.reuse_port or None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"ready {port}", flush=True)
        reporter = (
            asyncio.create_task(report(responder.books, args.status)) if args.status else None
        )
        await stop.wait()
        if reporter is not None:
            reporter.cancel()
    if args.record:
        write_trace(args.record, responder.traces)
    if args.summary:
        write_summary(args.summary, responder.books)
    print(f"calls {responder.calls}", flush=True)


if __name__ == "__main__":
    uvloop.run(main())
