"""ChangeConfiguration AuthorizationKey end to end: a fleet on security profile 1 against the
reference CSMS with Basic authentication, over real websockets on 127.0.0.1.

OCPP 1.6 Security Whitepaper ed. 3: the key is hexadecimal and the Basic password is the
bytes it stands for (§7.2, A00.FR.205); after an Accepted change the charger reconnects
with it (A01) and the CSMS no longer accepts the old password (A01.FR.03).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request

from emulator.core.status import Status
from emulator.csms import ReferenceCsms
from emulator.csms.server import CallErrorReceived, basic_credentials
from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import Scenario, load_scenario
from emulator.metrics.stats import RunStats
from emulator.protocol.authorization_key import PLAIN_TEXT_KEY
from emulator.transport.connection import Transport
from emulator.transport.driver import basic_authorization
from tests.integration.support import eventually

CP = "AK000001"
PASSWORD = "factory-password-0001"
KEY = "AuthorizationKey"
SECRET = b"TopSecretPassword!!"  # 19 printable bytes: their text could leak as well as the hex
SECRET_HEX = SECRET.hex().upper()
BINARY = bytes([0xFF, 0xFE, 0x00, 0x80, 0xC3, 0x28]) + bytes(range(0xA0, 0xAE))  # not UTF-8


class WatchingCsms(ReferenceCsms):
    """The reference CSMS, keeping every Authorization header it was sent."""

    def __init__(self) -> None:
        super().__init__(basic_auth={CP: PASSWORD})
        self.headers: list[str | None] = []

    def _authorised(self, charger_id: str, request: Request) -> bool:
        self.headers.append(request.headers.get("Authorization"))
        return super()._authorised(charger_id, request)


def secure_scenario(folder: Path, transport: Transport) -> Scenario:
    (folder / "pw").write_text(PASSWORD + "\n")
    path = folder / "secure.toml"
    path.write_text(
        '[scenario]\nname = "authorization-key"\n[fleet]\nid_prefix = "AK"\nconnect_timeout = 10.0\n'
        f'transport = "{transport}"\n'
        "[[models]]\n[models.configuration]\nClockAlignedDataInterval = 0\n"
        'MeterValueSampleInterval = 5\n[sessions]\nmode = "remote-only"\n'
        '[security]\nprofile = 1\npassword_file = "pw"\n'
    )
    return load_scenario(path)


@contextlib.asynccontextmanager
async def booted_fleet(
    csms: ReferenceCsms, folder: Path, transport: Transport, *, strict_csms: bool = False
) -> AsyncIterator[tuple[Fleet, RunStats]]:
    """One wallbox on profile 1, booted; stopped gracefully on exit."""
    stats = RunStats()
    fleet = Fleet(
        scenario=secure_scenario(folder, transport),
        csms_url=csms.url,
        chargers=1,
        seed=1,
        reporter=stats,
        strict=True,
        strict_csms=strict_csms,
    )
    task = asyncio.create_task(fleet.run(duration=300.0))
    try:
        await csms.wait_until(lambda: CP in csms.chargers and csms.chargers[CP].booted, 10)
        yield fleet, stats
    finally:
        fleet.stop()
        await asyncio.wait_for(task, timeout=30.0)


async def change_key(csms: ReferenceCsms, value: str) -> str:
    answer = await csms.call(CP, "ChangeConfiguration", {"key": KEY, "value": value})
    return str(answer["status"])


async def reconnected(csms: ReferenceCsms) -> None:
    await eventually(
        lambda: csms.chargers[CP].connects >= 2 and CP in csms.connected, 10.0, "a reconnect"
    )


async def refused_with(csms: ReferenceCsms, password: bytes) -> int | None:
    """The HTTP status a handshake as CP with ``password`` gets (None: it was let in)."""
    header = {"Authorization": basic_authorization(CP, password)}
    try:
        async with connect(f"{csms.url}/{CP}", subprotocols=["ocpp1.6"], additional_headers=header):  # type: ignore[list-item]
            return None
    except InvalidStatus as exc:
        return exc.response.status_code


def test_a_hex_key_is_sent_decoded_after_a_reconnect_and_the_old_password_is_refused(
    tmp_path: Path,
    transport: Transport,
) -> None:
    async def main() -> None:
        async with (
            WatchingCsms() as csms,
            booted_fleet(csms, tmp_path, transport) as (fleet, stats),
        ):
            wb = fleet.wallboxes[0]
            await csms.call(CP, "RemoteStartTransaction", {"idTag": "DRIVER1", "connectorId": 1})
            await eventually(lambda: wb.status() is Status.CHARGING, 5.0, "Charging")
            await eventually(lambda: wb.transactions[0].transaction_id is not None, 5.0, "start")
            tx = wb.transactions[0]
            assert basic_credentials(csms.headers[-1]) == (CP.encode(), PASSWORD.encode())

            assert await change_key(csms, SECRET_HEX) == "Accepted"
            await reconnected(csms)
            # The whitepaper's header: base64(id ":" the key's bytes), not its hex digits.
            header = csms.headers[-1]
            assert basic_credentials(header) == (CP.encode(), SECRET)
            assert header == "Basic " + base64.b64encode(CP.encode() + b":" + SECRET).decode()
            assert stats.disconnects["authorization_key_changed"] == 1
            assert not stats.connect_failures
            # Not a reboot: the transaction runs on and the charger does not boot again.
            assert wb.connectors[1].transaction is tx and wb.status() is Status.CHARGING
            assert csms.chargers[CP].boot_count == 1

            # A01.FR.03: the old credentials, and the hex digits as text, are refused.
            assert await refused_with(csms, PASSWORD.encode()) == 401
            assert await refused_with(csms, SECRET_HEX.encode()) == 401
            # The charger's own later reconnects keep using the new key.
            await csms.disconnect(CP)
            await eventually(lambda: csms.chargers[CP].connects >= 3, 15.0, "a third connect")
            assert basic_credentials(csms.headers[-1]) == (CP.encode(), SECRET)

    asyncio.run(main())


def test_a_binary_key_that_is_not_utf8_works_end_to_end(
    tmp_path: Path, transport: Transport
) -> None:
    async def main() -> None:
        async with (
            WatchingCsms() as csms,
            booted_fleet(csms, tmp_path, transport) as (_fleet, stats),
        ):
            assert await change_key(csms, BINARY.hex()) == "Accepted"
            await reconnected(csms)
            assert basic_credentials(csms.headers[-1]) == (CP.encode(), BINARY)
            assert not stats.connect_failures
            assert await refused_with(csms, BINARY) is None  # the CSMS takes exactly these

    asyncio.run(main())


def test_a_plain_text_key_is_taken_as_is_and_counted_as_a_deviation(
    tmp_path: Path, transport: Transport
) -> None:
    plain = "plain-text-key-18c"

    async def main() -> None:
        async with (
            WatchingCsms() as csms,
            booted_fleet(csms, tmp_path, transport) as (fleet, _stats),
        ):
            assert await change_key(csms, plain) == "Accepted"
            await reconnected(csms)
            assert basic_credentials(csms.headers[-1]) == (CP.encode(), plain.encode())
            kind = fleet.conformance.violations["call", "ChangeConfiguration", PLAIN_TEXT_KEY]
            assert (kind.accepted, kind.refused) == (1, 0)
            assert plain not in orjson.dumps(fleet.conformance.to_json()).decode()

    asyncio.run(main())


def test_with_strict_csms_a_plain_text_key_is_rejected_and_the_old_password_stays(
    tmp_path: Path,
    transport: Transport,
) -> None:
    async def main() -> None:
        async with (
            WatchingCsms() as csms,
            booted_fleet(csms, tmp_path, transport, strict_csms=True) as (fleet, _),
        ):
            assert await change_key(csms, "plain-text-key-18c") == "Rejected"
            kind = fleet.conformance.violations["call", "ChangeConfiguration", PLAIN_TEXT_KEY]
            assert (kind.accepted, kind.refused) == (0, 1)
            assert fleet.wallboxes[0].config.authorization_key is None
            # A01.FR.04: Rejected, so the CSMS keeps the old password; no reconnect either.
            assert csms.chargers[CP].connects == 1
            assert await refused_with(csms, PASSWORD.encode()) is None

    asyncio.run(main())


@pytest.mark.parametrize(
    "value",
    ["s" * 15, "s" * 21, "a" * 33, "z" * 40, "a" * 41],
    ids=["15 chars", "21 chars", "33 hex digits", "40 non-hex", "41 chars"],
)
def test_a_key_of_neither_form_is_rejected_and_nothing_changes(
    tmp_path: Path, value: str, transport: Transport
) -> None:
    async def main() -> None:
        async with (
            WatchingCsms() as csms,
            booted_fleet(csms, tmp_path, transport) as (fleet, _stats),
        ):
            assert await change_key(csms, value) == "Rejected"
            config = fleet.wallboxes[0].config
            assert config.authorization_key is None
            assert config.last_rejection and value not in config.last_rejection
            assert not fleet.conformance.violations  # the charger's refusal, no deviation
            assert csms.chargers[CP].connects == 1
            assert await refused_with(csms, PASSWORD.encode()) is None

    asyncio.run(main())


def test_no_form_of_the_key_reaches_the_logs_at_debug(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    transport: Transport,
) -> None:
    plain = "PlainMarkerSecret#"
    oversized = "OversizedMarker-" + "q" * 500  # breaks CiString500: a schema violation

    async def main() -> None:
        async with (
            WatchingCsms() as csms,
            booted_fleet(csms, tmp_path, transport) as (fleet, _stats),
        ):
            assert await change_key(csms, SECRET_HEX.lower()) == "Accepted"
            await reconnected(csms)
            assert await change_key(csms, plain) == "Accepted"
            await eventually(lambda: csms.chargers[CP].connects >= 3, 10.0, "a second reconnect")
            with pytest.raises(CallErrorReceived, match="TypeConstraintViolation"):
                await csms.call(
                    CP, "ChangeConfiguration", {"key": KEY, "value": oversized}, check_request=False
                )
            outputs = orjson.dumps(fleet.conformance.to_json()).decode()
            outputs += str(fleet.wallboxes[0].config.snapshot())
            outputs += fleet.wallboxes[0].firmware.log.render().decode()
            return outputs

    with caplog.at_level(logging.DEBUG):
        outputs = asyncio.run(main())
    logged = caplog.text + outputs
    # The run was logged at DEBUG, the key's change and its deviation included.
    assert "ChangeConfiguration" in caplog.text and "AuthorizationKey=***" in caplog.text
    for secret in (
        SECRET_HEX,
        SECRET_HEX.lower(),
        SECRET.decode(),
        plain,
        "OversizedMarker",
        base64.b64encode(CP.encode() + b":" + SECRET).decode(),
    ):
        assert secret not in logged, secret
