"""``ocpp-fleet identities`` as a user runs it: the files it writes, what a CSMS and the fleet
make of them, and its refusals (one line, exit 2, nothing written)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import re
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from emulator.cli import main
from emulator.csms import ReferenceCsms
from emulator.fleet.scenario import load_scenario
from tests.integration.support import eventually, running_fleet

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()  # an ECDSA P-256 CA


def ca_files(ca: trustme.CA, folder: Path, name: str = "ca") -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    ca.cert_pem.write_to_path(str(cert))
    ca.private_key_pem.write_to_path(str(key))
    return cert, key


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def header(path: Path) -> str:
    return path.read_text(encoding="utf-8").splitlines()[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_identities_file_has_the_fleets_ids_and_a_different_strong_password_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "chargers.csv"
    assert main(["identities", "--chargers", "12", "--id-prefix", "LAB-", "--out", str(out)]) == 0
    assert header(out) == "charger_id,password"
    table = rows(out)
    assert [row["charger_id"] for row in table] == [f"LAB-{i:06d}" for i in range(1, 13)]
    passwords = [row["password"] for row in table]
    assert all(re.fullmatch(r"[A-Za-z0-9]{20}", password) for password in passwords)
    assert len(set(passwords)) == 12
    assert mode(out) == 0o600
    printed = capsys.readouterr()
    assert printed.out.strip() == f"{out}: 12 chargers with passwords (mode 0600)"
    assert not any(password in printed.out + printed.err for password in passwords)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chargers.csv"]  # no temporary left


def test_without_a_prefix_the_ids_are_the_ones_the_fleet_uses_without_a_file(
    tmp_path: Path,
) -> None:
    out = tmp_path / "ids.csv"
    assert main(["identities", "--chargers", "3", "--out", str(out)]) == 0
    assert [row["charger_id"] for row in rows(out)] == ["CP000001", "CP000002", "CP000003"]


def test_cards_are_unique_seven_byte_uids_beside_the_identities_or_where_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ids.csv"
    assert main(["identities", "--chargers", "2", "--out", str(out), "--cards", "20"]) == 0
    cards = tmp_path / "cards.csv"
    assert header(cards) == "id_tag,status"
    table = rows(cards)
    tags = [row["id_tag"] for row in table]
    assert len(tags) == 20 and len(set(tags)) == 20
    assert all(re.fullmatch(r"[0-9A-F]{14}", tag) for tag in tags)
    # uid0 a chip maker's code (04: NXP), uid3 never the cascade tag 88
    assert all(tag[:2] == "04" and tag[6:8] != "88" for tag in tags)
    assert {row["status"] for row in table} == {"Accepted"}
    assert f"{cards}: 20 cards" in capsys.readouterr().out
    elsewhere = tmp_path / "sub" / "tags.csv"
    elsewhere.parent.mkdir()
    argv = ["identities", "--chargers", "2", "--out", str(tmp_path / "b.csv"), "--cards", "5"]
    assert main([*argv, "--cards-out", str(elsewhere)]) == 0
    assert len(rows(elsewhere)) == 5


def make_certs(tmp_path: Path, ca: trustme.CA, *extra: str, chargers: int = 6) -> Path:
    ca_cert, ca_key = ca_files(ca, tmp_path)
    certs = tmp_path / "certs"
    argv = ["identities", "--chargers", str(chargers), "--out", str(tmp_path / "ids.csv")]
    argv += ["--certs", str(certs), "--ca-cert", str(ca_cert), "--ca-key", str(ca_key), *extra]
    assert main(argv) == 0
    return certs


def check_certificate(certs: Path, charger_id: str, ca: trustme.CA, cpo: str) -> x509.Certificate:
    chain = x509.load_pem_x509_certificates((certs / f"{charger_id}.pem").read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    assert len(chain) == 2 and chain[1] == ca_cert  # the certificate, then the CA's
    cert = chain[0]
    cert.verify_directly_issued_by(ca_cert)  # raises unless the CA signed it
    subject = cert.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [charger_id]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [cpo]
    key = serialization.load_pem_private_key(
        (certs / f"{charger_id}.key").read_bytes(), password=None
    )
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    assert mode(certs / f"{charger_id}.key") == 0o600
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):  # a dnsName would override the CN
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return cert


def test_each_certificate_is_signed_by_the_ca_names_the_charger_and_cpo_and_fits_its_key(
    tmp_path: Path, ca: trustme.CA
) -> None:
    before = dt.datetime.now(dt.UTC)
    certs = make_certs(tmp_path, ca, "--cpo-name", "Example CPO", "--id-prefix", "SEC")
    ids = [row["charger_id"] for row in rows(tmp_path / "ids.csv")]
    serials = set()
    for charger_id in ids:
        cert = check_certificate(certs, charger_id, ca, "Example CPO")
        serials.add(cert.serial_number)
        assert cert.not_valid_before_utc <= before <= cert.not_valid_after_utc
        assert cert.not_valid_after_utc > before + dt.timedelta(days=300)
    assert len(serials) == len(ids) == 6
    assert mode(certs) == 0o700


def test_an_rsa_ca_signs_with_rsa_pss(tmp_path: Path) -> None:
    rsa_ca = trustme.CA(key_type=trustme.KeyType.RSA)
    certs = make_certs(tmp_path, rsa_ca, chargers=2)
    cert = check_certificate(certs, "CP000002", rsa_ca, "ocpp-fleet")
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    return context


def test_the_reference_csms_accepts_wallboxes_with_the_generated_certificates(
    tmp_path: Path, ca: trustme.CA
) -> None:
    make_certs(tmp_path, ca, "--id-prefix", "TLS", chargers=3)
    path = tmp_path / "secure.toml"
    path.write_text(  # the fleet's chargers are the identities file's: profile 3 finds their certs
        '[scenario]\nname = "secure"\n[fleet]\nidentities = "ids.csv"\nconnect_timeout = 10.0\n'
        '[sessions]\nmode = "remote-only"\n'
        '[security]\nprofile = 3\nca_file = "ca.pem"\nclient_cert_dir = "certs"\n'
    )
    scenario = load_scenario(path)

    async def run() -> None:
        async with ReferenceCsms(ssl=server_context(ca)) as csms:
            async with running_fleet(scenario, csms.url, chargers=3) as (_, stats):
                await eventually(
                    lambda: all(
                        (record := csms.chargers.get(f"TLS{i:06d}")) is not None and record.booted
                        for i in (1, 2, 3)
                    ),
                    15.0,
                    "three boots over TLS with the generated client certificates",
                )
                assert not stats.connect_failures

    asyncio.run(run())


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one error line of a refused command (exit 2)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_an_existing_file_is_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ids.csv"
    out.write_text("mine\n")
    out.chmod(0o644)
    argv = ["identities", "--chargers", "2", "--out", str(out)]
    assert str(out) in refused(capsys, argv)
    assert out.read_text() == "mine\n"
    (tmp_path / "cards.csv").write_text("mine too\n")
    out.unlink()
    assert "cards.csv" in refused(capsys, [*argv, "--cards", "3"])
    assert not out.exists()
    assert main([*argv, "--cards", "3", "--force"]) == 0
    assert len(rows(out)) == 2 and len(rows(tmp_path / "cards.csv")) == 3
    assert mode(out) == 0o600


def test_an_existing_certificate_or_key_is_refused_unless_forced(
    tmp_path: Path, ca: trustme.CA, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_cert, ca_key = ca_files(ca, tmp_path)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "CP000002.key").write_text("old key\n")
    argv = ["identities", "--chargers", "3", "--out", str(tmp_path / "ids.csv"), "--certs"]
    argv += [str(certs), "--ca-cert", str(ca_cert), "--ca-key", str(ca_key)]
    assert str(certs / "CP000002.key") in refused(capsys, argv)
    assert sorted(p.name for p in certs.iterdir()) == ["CP000002.key"]
    assert not (tmp_path / "ids.csv").exists()
    assert main([*argv, "--force"]) == 0
    check_certificate(certs, "CP000002", ca, "ocpp-fleet")


def test_bad_certificate_options_and_cas_are_one_line_each(
    tmp_path: Path, ca: trustme.CA, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_cert, ca_key = ca_files(ca, tmp_path)
    _, other_key = ca_files(trustme.CA(), tmp_path, "other")
    base = ["identities", "--chargers", "2", "--out", str(tmp_path / "ids.csv")]
    certs = ["--certs", str(tmp_path / "certs")]
    assert "--ca-key" in refused(capsys, [*base, *certs, "--ca-cert", str(ca_cert)])
    missing = tmp_path / "nowhere.pem"
    assert str(missing) in refused(
        capsys, [*base, *certs, "--ca-cert", str(missing), "--ca-key", str(ca_key)]
    )
    err = refused(capsys, [*base, *certs, "--ca-cert", str(ca_cert), "--ca-key", str(other_key)])
    assert "does not match" in err
    err = refused(capsys, [*base, *certs, "--ca-cert", str(ca_key), "--ca-key", str(ca_key)])
    assert "no PEM certificate" in err
    assert "--certs" in refused(capsys, [*base, "--ca-cert", str(ca_cert)])
    assert "--id-prefix" in refused(capsys, [*base, "--id-prefix", "a/b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ca.pem", "ca.key", "other.pem", "other.key"]
    )


def test_the_command_line_refuses_a_bad_count_in_one_line_without_a_traceback(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator.cli", "identities", "--chargers", "0",
         "--out", str(tmp_path / "ids.csv")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--chargers" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "ids.csv").exists()
