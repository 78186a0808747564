"""A SecurityProfile raise over real sockets (OCPP 1.6 Security Whitepaper A05): a fleet at
profile 1 (ws://, Basic) is raised to 2 and reconnects over TLS; a raise the CSMS cannot
serve falls back to profile 1 and keeps working.  127.0.0.1 only, certificates by trustme.

The charger keeps the CSMS's host and port and changes the scheme (emulator.transport.driver
``profile_url``).  The reference CSMS serves either ws or wss on a port, so the first test
puts a ws and a wss one behind one port: :class:`SchemeFront` sends a connection whose first
byte opens a TLS handshake to the wss one, any other to the ws one, as a CSMS behind one
address that terminates TLS for some of its chargers.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
import trustme

from emulator.csms import ReferenceCsms
from emulator.fleet.scenario import Scenario, load_scenario
from tests.integration.support import eventually, running_fleet

CHARGER = "SEC000001"
PASSWORD = "correct horse battery staple"
RECONFIGURED = "ReconfigurationOfSecurityParameters"


class SchemeFront:
    """One port on 127.0.0.1 in front of a ws and a wss server: a TLS record (0x16, a
    ClientHello) goes to ``wss_port``, anything else to ``ws_port``, byte for byte."""

    def __init__(self, *, ws_port: int, wss_port: int) -> None:
        self.ws_port = ws_port
        self.wss_port = wss_port
        self.port = 0
        self.tls_connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._forward(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.read(1)
            if not first:
                return
            tls = first == b"\x16"
            self.tls_connections += tls
            port = self.wss_port if tls else self.ws_port
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            up_writer.write(first)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def scenario_at_profile_1(folder: Path, ca: trustme.CA) -> Scenario:
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    path = folder / "raise.toml"
    path.write_text(
        '[scenario]\nname = "raise"\n[fleet]\nid_prefix = "SEC"\n'
        "[[models]]\nsecurity_extension = true\n"
        "[models.configuration]\nClockAlignedDataInterval = 0\n"
        '[sessions]\nmode = "remote-only"\n'
        '[security]\nprofile = 1\npassword_env = "CSMS_PW"\nca_file = "ca.pem"\n'
    )
    return load_scenario(path)


def tls_server(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def security_profile(csms: ReferenceCsms) -> str:
    answer = await csms.call(CHARGER, "GetConfiguration", {"key": ["SecurityProfile"]})
    value: str = answer["configurationKey"][0]["value"]
    return value


def test_a_raise_to_2_reconnects_over_tls_with_basic_auth(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CSMS_PW", PASSWORD)
    scenario = scenario_at_profile_1(tmp_path, ca)
    auth = {CHARGER: PASSWORD}

    async def main() -> None:
        async with (
            ReferenceCsms(basic_auth=auth) as plain,
            ReferenceCsms(basic_auth=auth, ssl=tls_server(ca)) as secure,
            SchemeFront(ws_port=plain.port, wss_port=secure.port) as front,
        ):
            url = f"ws://127.0.0.1:{front.port}/ocpp"
            async with running_fleet(scenario, url) as (fleet, stats):
                await eventually(lambda: CHARGER in plain.connected, 10.0, "a ws connection")
                await eventually(lambda: plain.chargers[CHARGER].booted, 10.0, "a boot")
                assert front.tls_connections == 0
                answer = await plain.call(
                    CHARGER, "ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}
                )
                assert answer == {"status": "Accepted"}
                # A05.FR.06/07: the ws connection closes, a TLS one with Basic comes.
                await eventually(lambda: CHARGER in secure.connected, 15.0, "a wss connection")
                assert CHARGER not in plain.connected
                assert front.tls_connections >= 1
                assert await security_profile(secure) == "2"
                assert stats.disconnects["security_profile_changed"] == 1
                await eventually(
                    lambda: (
                        secure.chargers[CHARGER].security_events.get(RECONFIGURED, 0)
                        + plain.chargers[CHARGER].security_events.get(RECONFIGURED, 0)
                        >= 1
                    ),
                    10.0,
                    "the ReconfigurationOfSecurityParameters event",
                )
                assert fleet.wallboxes[0].profile_raise is None  # confirmed
                # Lower or equal is Rejected (A05.FR.01), and nothing reconnects.
                for value in ("2", "1"):
                    answer = await secure.call(
                        CHARGER, "ChangeConfiguration", {"key": "SecurityProfile", "value": value}
                    )
                    assert answer == {"status": "Rejected"}
                assert stats.disconnects["security_profile_changed"] == 1

    asyncio.run(main())


def test_a_raise_the_csms_cannot_serve_falls_back_and_keeps_working(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CSMS_PW", PASSWORD)
    scenario = scenario_at_profile_1(tmp_path, ca)

    async def main() -> None:
        # ws only: a TLS handshake on this port fails, so profile 2 cannot connect.
        async with ReferenceCsms(basic_auth={CHARGER: PASSWORD}) as csms:
            async with running_fleet(scenario, csms.url) as (fleet, stats):
                await eventually(lambda: csms.chargers.get(CHARGER) is not None, 10.0, "connect")
                await eventually(lambda: csms.chargers[CHARGER].booted, 10.0, "a boot")
                record = csms.chargers[CHARGER]
                answer = await csms.call(
                    CHARGER, "ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}
                )
                assert answer == {"status": "Accepted"}
                await eventually(lambda: not record.connected, 10.0, "the disconnect")
                # A05.FR.08: back to profile 1 after the bounded failed attempts.
                await eventually(lambda: record.connected, 30.0, "a reconnect with profile 1")
                failed = sum(stats.connect_failures.values())
                assert failed >= 3
                assert await security_profile(csms) == "1"
                assert fleet.wallboxes[0].profile_raise is None
                await eventually(
                    lambda: record.security_events.get(RECONFIGURED, 0) >= 2,
                    10.0,
                    "the events of the raise and of the fallback",
                )
                # It keeps working: the CSMS's calls are answered over profile 1.
                answer = await csms.call(
                    CHARGER, "TriggerMessage", {"requestedMessage": "Heartbeat"}
                )
                assert answer == {"status": "Accepted"}
                assert sum(stats.connect_failures.values()) == failed  # no more failures

    asyncio.run(main())
