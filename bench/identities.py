"""How long ``ocpp-fleet identities`` takes for a fleet, without and with client certificates.

    .venv/bin/python bench/identities.py [--chargers 100000] [--dir FOLDER]

The issue asks for 100,000 chargers' certificates in under a minute on a 2-core machine.
This makes a throw-away ECDSA P-256 CA, then runs the command as a user does (a new
``python -m emulator.cli`` process, so start-up counts) twice into a temporary folder
under ``--dir``: identities and cards only, then identities with ``--certs``.  It prints
the wall time, the CPU time of the command's processes and the disk it wrote.
Each charger's certificate is two files (``<id>.pem``, ``<id>.key``), so the folder's
file system counts as much as the cores: give ``--dir`` the disk you will use.  On ext4,
files created within minutes of deleting many (this benchmark's own clean-up, say) cost
several times more kernel time (``recently_deleted`` in the inode allocator, seen with
``perf``): wait five minutes between runs.  Printed, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent


def make_ca(folder: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 CA, valid for two years."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ocpp-fleet bench"),
            x509.NameAttribute(NameOID.COMMON_NAME, "ocpp-fleet bench CA"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "ca.pem", folder / "ca.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one ``ocpp-fleet`` command (its pool's processes included)."""
    cpu = children_cpu()
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "emulator.cli", *args],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return time.perf_counter() - began, children_cpu() - cpu


def disk_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in folder.rglob("*") if entry.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    options = parser.parse_args()
    n = options.chargers
    print(machine())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(dir=options.dir, prefix="ocpp-fleet-identities-") as tmp:
        folder = Path(tmp)
        ca_cert, ca_key = make_ca(folder)
        plain = ["identities", "--chargers", str(n), "--cards", str(n)]
        (folder / "plain").mkdir()
        wall, cpu = timed([*plain, "--out", str(folder / "plain" / "ids.csv")])
        print(
            f"{n:,} chargers and {n:,} cards, no certificates: {wall:.1f} s wall, "
            f"{cpu:.1f} s CPU, {disk_bytes(folder / 'plain') / 1e6:.1f} MB"
        )
        certs = folder / "certs"
        wall, cpu = timed(
            ["identities", "--chargers", str(n), "--out", str(folder / "ids.csv"), "--certs",
             str(certs), "--ca-cert", str(ca_cert), "--ca-key", str(ca_key)]
        )  # fmt: skip
        print(
            f"{n:,} chargers with client certificates (ECDSA P-256 CA, {os.cpu_count()} cores): "
            f"{wall:.1f} s wall, {cpu:.1f} s CPU, {disk_bytes(certs) / 1e6:.1f} MB in "
            f"{2 * n:,} files, {wall / n * 1e6:.0f} µs per charger"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
