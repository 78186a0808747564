"""The wallbox's clock runs on while its websocket handshake is slow, hangs or fails.

An overloaded CSMS accepts TCP and holds the HTTP upgrade for seconds, or its load
balancer accepts and closes at once: meter samples due meanwhile still exist (and reach
the CSMS with their own timestamps), a stop is prompt, and every failure is one counted,
retried failure of that wallbox, never a crash of the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from emulator.csms import ReferenceCsms
from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import Scenario, load_scenario
from emulator.metrics.stats import RunStats
from emulator.protocol.codec import Call
from emulator.protocol.timefmt import parse_timestamp
from emulator.transport import driver as driver_module
from emulator.transport.connection import Transport
from tests.integration.support import eventually, running_fleet, scenario

HOLD = 8.0  # seconds an overloaded CSMS holds each websocket upgrade


class HoldingCsms(ReferenceCsms):
    """The reference CSMS; while :attr:`hold` is set, each new websocket handshake is held
    that long (TCP accepted, the HTTP upgrade answered late), as an overloaded CSMS does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold = 0.0
        self.holding = 0  # handshakes being held now
        self.held: list[tuple[float, float]] = []  # wall-clock (start, end) of each held one
        self.released = asyncio.Event()  # ends every hold at once (test teardown)

    async def _process_request(  # type: ignore[override]
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if self.hold > 0:
            started = time.time()
            self.holding += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.released.wait(), self.hold)
            finally:
                self.holding -= 1
            self.held.append((started, time.time()))
        return super()._process_request(connection, request)

    async def __aexit__(self, *exc: Any) -> None:
        self.released.set()
        await super().__aexit__(*exc)


def test_samples_due_while_the_handshake_is_held_reach_the_csms_with_their_own_time(
    transport: Transport,
) -> None:
    async def main() -> None:
        received: list[tuple[float, dict[str, Any]]] = []  # (arrival, payload) of MeterValues

        def record(charger_id: str, call: Call) -> None:
            if call.action == "MeterValues" and "transactionId" in call.payload:
                received.append((time.time(), call.payload))

        async with HoldingCsms(misbehave=record) as csms:
            sc = scenario(transport=transport, arrivals=36000.0, sample=5, energy="[inf, inf]")
            async with running_fleet(sc, csms.url) as (fleet, stats):
                driver = fleet.drivers[0]
                wb = driver.wallbox
                await eventually(
                    lambda: any(t.transaction_id is not None for t in wb.transactions),
                    20.0,
                    "a running, acknowledged transaction",
                )
                csms.hold = HOLD
                await csms.disconnect(wb.charge_point_id, graceful=False)
                await eventually(lambda: bool(csms.held), HOLD + 5.0, "the held handshake")
                csms.hold = 0.0
                start, end = csms.held[0]
                await eventually(lambda: driver.connected, 5.0, "the reconnect")

                def during_hold() -> list[tuple[float, float, int]]:
                    return [
                        (arrival, parse_timestamp(value["timestamp"]), payload["transactionId"])
                        for arrival, payload in received
                        for value in payload["meterValue"]
                        if start <= parse_timestamp(value["timestamp"]) < end
                    ]

                await eventually(lambda: bool(during_hold()), 5.0, "samples taken during the hold")
                # Taken while the upgrade was held (5-s sampling: one or two in 8 s), sent
                # once it completed, each with the time it was taken, not the send time.  The
                # bound is the hold as measured, which a loaded machine may lengthen.
                assert 1 <= len(during_hold()) <= math.ceil((end - start) / 5.0), (start, end)
                for arrival, taken, transaction_id in during_hold():
                    assert arrival >= end > taken
                    assert transaction_id == wb.transactions[0].transaction_id
                assert wb.transactions[0].stopped_at is None  # the same transaction went on
                assert stats.connect_failures == {}  # slow is not failed: one attempt

    asyncio.run(main())


def test_stopping_during_a_hanging_handshake_is_prompt_and_leaves_nothing_pending(
    transport: Transport,
) -> None:
    async def main() -> None:
        async with HoldingCsms() as csms:
            csms.hold = HOLD
            stats = RunStats()
            fleet = Fleet(
                scenario=scenario(transport=transport, mode="remote-only"),
                csms_url=csms.url,
                chargers=3,
                seed=1,
                reporter=stats,
                strict=True,
            )
            run = asyncio.create_task(fleet.run(duration=300.0))
            await eventually(lambda: csms.holding == 3, 5.0, "three handshakes on hold")
            await asyncio.sleep(0.5)
            stopped = asyncio.get_running_loop().time()
            fleet.stop()
            await asyncio.wait_for(run, timeout=HOLD + 5.0)
            took = asyncio.get_running_loop().time() - stopped
            # Waiting for the held handshakes would take 7.5 s more (8 s held, 0.5 s gone);
            # cancelling them takes milliseconds, so 5 s cannot fail on a loaded machine.
            assert took < 5.0, f"the stop waited {took:.1f} s for the held handshakes"
            assert all(d.finished and not d.connected for d in fleet.drivers)
            assert not stats.connects and not stats.connect_failures
            await asyncio.sleep(0)  # let a cancelled task run its last step, if any
            leftovers = [
                t for t in asyncio.all_tasks() if t.get_name().endswith("-connect") and not t.done()
            ]
            assert leftovers == []

    asyncio.run(main())


class _Closer(asyncio.Protocol):
    """Accepts TCP and closes at once, or after half an HTTP response (``partial``)."""

    def __init__(self, partial: bool) -> None:
        self.partial = partial

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.partial:
            transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
        transport.close()


async def _fleet_against_a_closer(
    url: str, chargers: int, reason: str, transport: Transport, sc: Scenario | None = None
) -> None:
    sc = scenario(transport=transport, mode="remote-only") if sc is None else sc
    async with running_fleet(sc, url, chargers=chargers) as (
        fleet,
        stats,
    ):
        # The first retry comes within backoff_initial (1 s), the next within 2 s more.
        await eventually(
            lambda: all(d.connect_failures >= 2 for d in fleet.drivers),
            8.0,
            "every wallbox failing, and retrying",
        )
        assert not any(d.finished for d in fleet.drivers)  # all still running
    assert stats.connects == 0
    assert set(stats.connect_failures) == {reason}
    assert stats.connect_failures[reason] >= 2 * chargers


@pytest.mark.parametrize("partial", [False, True], ids=["closed-at-once", "partial-response"])
def test_a_csms_that_closes_before_the_upgrade_is_a_counted_retried_failure(
    partial: bool, transport: Transport
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Closer(partial), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await _fleet_against_a_closer(
                f"ws://127.0.0.1:{port}/ocpp", 20, "closed_during_handshake", transport
            )
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


class _TlsThenClose(asyncio.Protocol):
    """A TLS 1.2 terminator that completes the TLS handshake and closes at once: its
    Finished and close_notify go out in one write, so the client reads the close with the
    handshake, before it sent its HTTP request (websockets: ConnectionClosedError)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.incoming.write(data)
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self.transport.write(self.outgoing.read())
            return
        except ssl.SSLError:
            self.transport.abort()
            return
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()  # close_notify
        self.transport.write(self.outgoing.read())
        self.transport.close()


def test_a_tls_terminator_that_closes_after_the_tls_handshake_does_not_crash_the_fleet(
    tmp_path: Path,
    transport: Transport,
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "pw").write_text("correct horse battery staple\n")
    (tmp_path / "tls.toml").write_text(
        '[scenario]\nname = "tls"\n[fleet]\nid_prefix = "TLS"\nramp_per_second = 200.0\n'
        "[[models]]\n[models.configuration]\nClockAlignedDataInterval = 0\n"
        '[sessions]\nmode = "remote-only"\n'
        '[security]\nprofile = 2\npassword_file = "pw"\nca_file = "ca.pem"\n'
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the server's Finished comes last

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _TlsThenClose(context), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sc = load_scenario(tmp_path / "tls.toml").with_transport(transport)
        try:
            url = f"wss://127.0.0.1:{port}/ocpp"
            await _fleet_against_a_closer(url, 5, "closed_during_handshake", transport, sc)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_an_unexpected_connect_error_is_logged_once_and_counted_not_a_crash(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    transport: Transport,
) -> None:
    monkeypatch.setattr(driver_module, "_unexpected_logged", set(), raising=False)

    async def main() -> None:
        # websockets raises ValueError (not one of its documented errors) for this URL.
        url = "ws://127.0.0.1:99999/ocpp"
        async with running_fleet(
            scenario(transport=transport, mode="remote-only"), url, chargers=3
        ) as (fleet, stats):
            await eventually(
                lambda: all(d.connect_failures >= 2 for d in fleet.drivers),
                8.0,
                "every wallbox failing, and retrying",
            )
        assert set(stats.connect_failures) == {"ValueError"}

    with caplog.at_level(logging.ERROR, logger=driver_module.__name__):
        asyncio.run(main())
    assert sum("connecting failed unexpectedly" in r.message for r in caplog.records) == 1
