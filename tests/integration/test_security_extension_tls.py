"""A certificate a CSMS signs over OCPP (CertificateSigned) is the charger's profile-3
client certificate from its next connection on: real TLS on 127.0.0.1, a real CA."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import trustme

from emulator.csms import ReferenceCsms
from emulator.fleet.scenario import load_scenario
from tests.integration.support import eventually, running_fleet

CHARGER = "SEC000001"


def test_a_signed_certificate_is_used_for_the_next_profile_3_connection(
    tmp_path: Path,
) -> None:
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    certs = tmp_path / "certs"
    certs.mkdir()
    first = certs / f"{CHARGER}.pem"
    ca.issue_cert(
        "factory.chargers.test", common_name=CHARGER
    ).private_key_and_cert_chain_pem.write_to_path(str(first))
    scenario_path = tmp_path / "renew.toml"
    scenario_path.write_text(
        '[scenario]\nname = "renew"\n[fleet]\nid_prefix = "SEC"\n'
        "[[models]]\nsecurity_extension = true\n"
        '[models.configuration]\nClockAlignedDataInterval = 0\nCpoName = "Test CPO"\n'
        '[sessions]\nmode = "remote-only"\n'
        '[security]\nprofile = 3\nca_file = "ca.pem"\nclient_cert_dir = "certs"\n'
    )
    scenario = load_scenario(scenario_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    server.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server)

    async def main() -> None:
        async with ReferenceCsms(ssl=server) as csms:
            async with running_fleet(scenario, csms.url) as (_fleet, stats):
                record = lambda: csms.chargers.get(CHARGER)  # noqa: E731
                await eventually(lambda: bool(record() and record().booted), 10.0, "a boot")
                answer = await csms.call(
                    CHARGER,
                    "ExtendedTriggerMessage",
                    {"requestedMessage": "SignChargePointCertificate"},
                )
                assert answer == {"status": "Accepted"}
                # The CSMS's CA signs the CSR and sends CertificateSigned; the charger
                # checks the chain against its CSR's key and accepts it.
                await eventually(
                    lambda: record().certificate_signed_answers.get("Accepted", 0) == 1,
                    10.0,
                    "CertificateSigned accepted",
                )
                assert record().certificates_issued == 1
                # The factory certificate is gone: only the signed one can connect now.
                first.unlink()
                connects = record().connects
                await csms.disconnect(CHARGER)
                await eventually(
                    lambda: record().connects > connects and record().connected,
                    15.0,
                    "a reconnect with the signed certificate",
                )
                assert stats.connect_failures["tls_client_cert_missing"] == 0

    asyncio.run(main())
