"""OCPP 1.6 security profiles 1-3 with real certificates made at test time (trustme)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from emulator.csms import ReferenceCsms
from emulator.fleet.scenario import Scenario, load_scenario
from emulator.fleet.security import SecurityConfigError
from emulator.transport.connection import Transport
from tests.integration.support import eventually, running_fleet

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *, client_certs: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if client_certs:
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
    return context


def write_scenario(folder: Path, security: str, transport: Transport) -> Scenario:
    path = folder / "secure.toml"
    path.write_text(
        '[scenario]\nname = "secure"\n[fleet]\nid_prefix = "SEC"\nconnect_timeout = 10.0\n'
        f'transport = "{transport}"\n'
        "[[models]]\n[models.configuration]\nClockAlignedDataInterval = 0\n"
        f'[sessions]\nmode = "remote-only"\n[security]\n{security}\n'
    )
    return load_scenario(path)


def booted(csms: ReferenceCsms, charger: str) -> bool:
    record = csms.chargers.get(charger)
    return record is not None and record.booted


def test_profile_2_tls_and_basic_auth_connects_and_a_wrong_password_is_counted(
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    transport: Transport,
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("CSMS_PW", PASSWORD)
    scenario = write_scenario(
        tmp_path, 'profile = 2\npassword_env = "CSMS_PW"\nca_file = "ca.pem"', transport
    )

    async def main() -> None:
        auth = {"SEC000001": PASSWORD, "SEC000002": "something else entirely"}
        async with ReferenceCsms(
            ssl=server_context(ca, client_certs=False), basic_auth=auth
        ) as csms:
            assert csms.url.startswith("wss://")
            async with running_fleet(scenario, csms.url, chargers=2) as (fleet, stats):
                await eventually(lambda: booted(csms, "SEC000001"), 10.0, "a TLS boot")
                await eventually(lambda: stats.connect_failures["http_401"] >= 1, 10.0, "401")
                config = fleet.wallboxes[0].config
                assert config.get("SecurityProfile") == "2"
                known, _ = config.get_configuration(None)
                assert "AuthorizationKey" not in {k.key for k in known}  # write-only

    asyncio.run(main())


def test_an_unknown_ca_fails_with_a_clear_counted_reason(
    ca: trustme.CA, tmp_path: Path, transport: Transport
) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    scenario = write_scenario(
        tmp_path, 'profile = 2\npassword_file = "pw"\nca_file = "other-ca.pem"', transport
    )

    async def main() -> None:
        async with ReferenceCsms(ssl=server_context(ca, client_certs=False)) as csms:
            async with running_fleet(scenario, csms.url) as (fleet, stats):
                await eventually(
                    lambda: stats.connect_failures["tls_unknown_ca"] >= 1, 10.0, "unknown CA"
                )
                assert not fleet.drivers[0].ever_connected

    asyncio.run(main())


def issue_client_cert(ca: trustme.CA, folder: Path, charger: str, **validity: dt.datetime) -> None:
    cert = ca.issue_cert(f"{charger.lower()}.chargers.test", common_name=charger, **validity)
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / f"{charger}.pem"))


def test_profile_3_client_certificates_and_an_expired_one_is_refused(
    ca: trustme.CA,
    tmp_path: Path,
    transport: Transport,
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    certs = tmp_path / "certs"
    certs.mkdir()
    issue_client_cert(ca, certs, "SEC000001")
    now = dt.datetime.now(dt.UTC)
    issue_client_cert(
        ca,
        certs,
        "SEC000002",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    scenario = write_scenario(
        tmp_path, 'profile = 3\nca_file = "ca.pem"\nclient_cert_dir = "certs"', transport
    )

    async def main() -> None:
        async with ReferenceCsms(ssl=server_context(ca, client_certs=True)) as csms:
            async with running_fleet(scenario, csms.url, chargers=2) as (fleet, stats):
                await eventually(
                    lambda: booted(csms, "SEC000001"), 10.0, "a boot with a client cert"
                )
                await eventually(
                    lambda: stats.connect_failures["tls_client_cert_expired"] >= 1,
                    10.0,
                    "expired cert",
                )
                assert not fleet.drivers[1].ever_connected

    asyncio.run(main())


def test_a_missing_client_certificate_is_one_clear_error_before_connecting(
    ca: trustme.CA,
    tmp_path: Path,
    transport: Transport,
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "certs").mkdir()
    scenario = write_scenario(
        tmp_path, 'profile = 3\nca_file = "ca.pem"\nclient_cert_dir = "certs"', transport
    )
    with pytest.raises(SecurityConfigError, match=r"no client certificate .*SEC000001"):
        asyncio.run(_fleet_only(scenario))
    result = subprocess.run(
        [sys.executable, "-m", "emulator.cli", "run", "--scenario", str(tmp_path / "secure.toml"),
         "--csms-url", "wss://127.0.0.1:9/ocpp", "--no-progress", "--chargers", "1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no client certificate" in result.stderr and "Traceback" not in result.stderr


async def _fleet_only(scenario: Scenario) -> None:
    async with running_fleet(scenario, "wss://127.0.0.1:9/ocpp"):
        pass


def test_an_unset_password_variable_is_a_clear_error_and_secrets_never_reach_the_output(
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    transport: Transport,
) -> None:
    scenario_path = tmp_path / "secure.toml"
    write_scenario(tmp_path, 'profile = 1\npassword_env = "NOT_SET_ANYWHERE"', transport)
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "emulator.cli", "run", "--scenario", str(scenario_path), "--no-progress"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2 and "NOT_SET_ANYWHERE is not set" in result.stderr
    # With the password set, a whole run (summary, ledger, JSON) never prints it.
    write_scenario(tmp_path, 'profile = 1\npassword_env = "FLEET_PW"', transport)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "emulator.cli", "--log-level", "DEBUG", "run", "--scenario", str(scenario_path),
         "--no-progress", "--chargers", "2", "--duration", "2", "--json", str(report),
         "--ledger", str(tmp_path / "ledger")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**_env(), "FLEET_PW": PASSWORD},
    )  # fmt: skip
    everything = result.stdout + result.stderr + report.read_text()
    everything += "".join(p.read_text() for p in (tmp_path / "ledger").iterdir())
    assert PASSWORD not in everything


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
