"""``ocpp-fleet identities``: the files a user imports into their CSMS and hands to the fleet.

* the identities file: CSV (UTF-8, header ``charger_id,password``), row *i* is charger *i*,
  whose id is the one the fleet gives it without a file (``FleetSettings.charger_id``), and
  whose password is 20 random characters from A-Za-z0-9 (about 119 bits; the whitepaper's
  A00.FR.304 asks for at least 16 random bytes as 32-40 hex digits, and a 20-character
  plain-text key also fits the 16-20 characters many CSMSs send as AuthorizationKey);
  different chargers get different passwords (whitepaper §2.3: they SHOULD);
* the cards file (``--cards``): CSV ``id_tag,status``, RFID UIDs as real cards carry them;
* with ``--certs``: per charger ``<id>.pem`` (its certificate, then the CA's: the chain) and
  ``<id>.key`` (its private key), what profile 3's ``client_cert_dir`` loads
  (:mod:`emulator.fleet.security`), made as the OCPP 1.6 Security Whitepaper ed. 3 §2.6.1
  "Certificate Properties" says, signed in a process pool over the machine's cores.

Everything the command can refuse is refused before anything is written.  Every file is
written to a temporary name in its folder and renamed, so Ctrl-C never leaves half a file;
the identities file is written last, so it exists only when everything it names does.
Secret files (the identities file, every key) are created with mode 0600; nothing here
prints, logs or formats a password or a key.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import secrets
import signal
import string
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulator.fleet.scenario import FleetSettings, Scenario
from emulator.run.setup import SetupError

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 20  # log2(62) x 20 = 119 bits
# A 7-byte (double-size) ISO/IEC 14443-3 UID: uid0 is the chip maker's code (ISO/IEC 7816-6;
# 04h is NXP, whose MIFARE and NTAG chips carry most 7-byte UIDs), and uid3, which opens the
# second cascade level, is never 88h, the cascade tag.
CARD_MANUFACTURER = 0x04
CASCADE_TAG = 0x88
CARD_STATUS = "Accepted"
DEFAULT_CPO_NAME = "ocpp-fleet"
# A year: long enough for a test campaign and a soak, well before the month in which a
# charger must start renewing (A03.FR.02), short enough that a forgotten test key stops
# working.  Five minutes back-dated, so a CSMS whose clock runs a little behind does not
# find a certificate "not yet valid"; both ends clipped to the CA's own validity.
VALIDITY_DAYS = 365
CLOCK_SKEW = dt.timedelta(minutes=5)
# X.520 upper bound of an organizationName (and of a commonName).
_NAME_MAX = 64
_CHUNK_MAX = 1000  # certificates per pool task
_SECRET_MODE = 0o600
_PUBLIC_MODE = 0o666  # less the umask, as any new file


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentitiesRequest:
    """What ``ocpp-fleet identities`` was asked for (the CLI's options)."""

    chargers: int
    out: Path
    id_prefix: str | None = None  # None: the fleet's default
    cards: int | None = None
    cards_out: Path | None = None  # None: cards.csv beside out
    certs: Path | None = None
    ca_cert: Path | None = None
    ca_key: Path | None = None
    cpo_name: str | None = None  # None: DEFAULT_CPO_NAME
    force: bool = False


@dataclass(frozen=True, kw_only=True)
class Issuer:
    """The CA, in the form a pool process takes (PEM bytes pickle; key objects do not)."""

    key_pem: bytes = field(repr=False)
    chain_pem: bytes  # the CA file's certificates, the issuer first
    cpo_name: str
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    ids: list[str]
    out: Path
    cards: int
    cards_out: Path | None
    certs: Path | None
    issuer: Issuer | None


def identities_command(request: IdentitiesRequest, *, workers: int | None = None) -> int:
    """``ocpp-fleet identities``: every check, then the files, then one line per file.

    Raises :class:`SetupError` (one line, exit 2) for every mistake, before writing."""
    plan = _plan(request, now=dt.datetime.now(dt.UTC))
    written: list[str] = []
    if plan.certs is not None and plan.issuer is not None:
        issue_certificates(plan.issuer, plan.certs, plan.ids, workers=workers or _cores())
        written.append(
            f"{plan.certs}{os.sep}: {len(plan.ids)} client certificates (<id>.pem, the chain) "
            "and keys (<id>.key, mode 0600)"
        )
    if plan.cards_out is not None:
        rows = [(uid, CARD_STATUS) for uid in new_card_uids(plan.cards)]
        _write(plan.cards_out, _csv(("id_tag", "status"), rows), mode=_PUBLIC_MODE)
        written.append(f"{plan.cards_out}: {plan.cards} cards")
    rows = list(zip(plan.ids, new_passwords(len(plan.ids)), strict=True))
    _write(plan.out, _csv(("charger_id", "password"), rows), mode=_SECRET_MODE)
    written.append(f"{plan.out}: {len(plan.ids)} chargers with passwords (mode 0600)")
    for line in written:
        print(line, flush=True)
    return 0


def _plan(request: IdentitiesRequest, *, now: dt.datetime) -> _Plan:
    """The request checked: every refusal the command can make, before any file."""
    if request.chargers < 1:
        raise SetupError(f"--chargers: expected a positive integer, got {request.chargers}")
    fleet = _fleet(request.id_prefix)
    ids = [fleet.charger_id(index) for index in range(1, request.chargers + 1)]
    cards_out = _cards_out(request)
    _check_output(request.out, "--out", force=request.force)
    if cards_out is not None:
        if cards_out.resolve() == request.out.resolve():
            raise SetupError(f"--cards-out: {cards_out} is also the identities file (--out)")
        _check_output(cards_out, "--cards-out", force=request.force)
    issuer = _issuer(request, fleet, now=now)
    if request.certs is not None:
        _check_cert_folder(request.certs, ids, force=request.force)
    return _Plan(
        ids=ids,
        out=request.out,
        cards=request.cards or 0,
        cards_out=cards_out,
        certs=request.certs,
        issuer=issuer,
    )


def _fleet(id_prefix: str | None) -> FleetSettings:
    """The fleet's own id rule: ``[fleet] id_prefix``'s check, ``charger_id``'s format."""
    if id_prefix is None:
        return FleetSettings()
    try:
        return Scenario(name="identities").with_id_prefix(id_prefix).fleet
    except ValueError as exc:
        raise SetupError(f"--id-prefix: {exc}") from None


def _cards_out(request: IdentitiesRequest) -> Path | None:
    if request.cards is None:
        if request.cards_out is not None:
            raise SetupError("--cards-out needs --cards N")
        return None
    if request.cards < 1:
        raise SetupError(f"--cards: expected a positive integer, got {request.cards}")
    return request.cards_out or request.out.parent / "cards.csv"


def _check_output(path: Path, option: str, *, force: bool) -> None:
    if path.is_dir():
        raise SetupError(f"{option}: {path} is a folder; expected a file name")
    if not path.parent.is_dir():
        raise SetupError(f"{option}: the folder of {path} does not exist")
    if path.exists() and not force:
        raise SetupError(f"{option}: {path} exists (--force replaces it)")


def _check_cert_folder(folder: Path, ids: Sequence[str], *, force: bool) -> None:
    try:
        present = set(os.listdir(folder))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise SetupError(f"--certs: {folder} is a file; expected a folder") from None
    except OSError as exc:
        raise SetupError(f"--certs: cannot read {folder}: {exc.strerror or exc}") from None
    if force:
        return
    for charger_id in ids:
        for name in (f"{charger_id}.key", f"{charger_id}.pem"):
            if name in present:
                raise SetupError(f"--certs: {folder / name} exists (--force replaces it)")


def new_passwords(count: int) -> list[str]:
    """``count`` different passwords (whitepaper §2.3: different per charge point)."""
    seen: set[str] = set()
    passwords: list[str] = []
    while len(passwords) < count:
        password = new_password()
        if password not in seen:
            seen.add(password)
            passwords.append(password)
    return passwords


def new_password() -> str:
    """20 characters, each uniform over A-Za-z0-9 from the OS's CSPRNG.

    One read of random bytes per password, not one per character (what ``secrets.choice``
    does: 40 µs a password); bytes of 248 and up are dropped, so ``% 62`` has no bias."""
    limit = 256 - 256 % len(PASSWORD_ALPHABET)
    chars: list[str] = []
    while len(chars) < PASSWORD_LENGTH:
        chars.extend(
            PASSWORD_ALPHABET[byte % len(PASSWORD_ALPHABET)]
            for byte in secrets.token_bytes(PASSWORD_LENGTH + 4)
            if byte < limit
        )
    return "".join(chars[:PASSWORD_LENGTH])


def new_card_uids(count: int) -> list[str]:
    """``count`` different 7-byte card UIDs as 14 uppercase hex digits (``04A1B2C3D4E5F6``)."""
    seen: set[str] = set()
    uids: list[str] = []
    while len(uids) < count:
        rest = secrets.token_bytes(6)
        if rest[2] == CASCADE_TAG:
            continue
        uid = (bytes((CARD_MANUFACTURER,)) + rest).hex().upper()
        if uid not in seen:
            seen.add(uid)
            uids.append(uid)
    return uids


def _csv(header: tuple[str, str], rows: Sequence[tuple[str, str]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def _write(path: Path, data: bytes, *, mode: int) -> None:
    try:
        write_atomically(path, data, mode=mode)
    except OSError as exc:
        raise SetupError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_atomically(path: str | Path, data: bytes, *, mode: int, tag: str = "") -> None:
    """``data`` in ``path`` or nothing: a temporary file in the same folder, created with
    ``mode`` (so a secret is never readable by others, not even for a moment), renamed.
    ``tag`` makes the temporary name unique (default: random)."""
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{tag or secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        rest = memoryview(data)
        while rest:
            rest = rest[os.write(fd, rest) :]
        os.close(fd)
        fd = -1
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with suppress(OSError):
            os.unlink(temporary)
        raise


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# --- the certificates --------------------------------------------------------------------


CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _issuer(request: IdentitiesRequest, fleet: FleetSettings, *, now: dt.datetime) -> Issuer | None:
    ca_options = (request.ca_cert, request.ca_key)
    if request.certs is None:
        if any(option is not None for option in ca_options):
            raise SetupError("--ca-cert and --ca-key need --certs DIR")
        if request.cpo_name is not None:
            raise SetupError("--cpo-name needs --certs DIR")
        return None
    if request.ca_cert is None or request.ca_key is None:
        missing = "--ca-cert" if request.ca_cert is None else "--ca-key"
        raise SetupError(f"--certs needs --ca-cert F and --ca-key F ({missing} is missing)")
    cpo_name = DEFAULT_CPO_NAME if request.cpo_name is None else request.cpo_name
    if not 1 <= len(cpo_name) <= _NAME_MAX:
        raise SetupError(f"--cpo-name: expected 1 to {_NAME_MAX} characters, got {cpo_name!r}")
    if re.fullmatch(r"[0-9.]*\.[0-9.]*", fleet.id_prefix):
        # A00.FR.511: a charge point's CN must not read as an IP address.
        raise SetupError(
            f"--id-prefix: {fleet.id_prefix!r} makes charger ids that read as IP addresses, "
            "which a certificate's CN may not be (whitepaper A00.FR.511)"
        )
    return load_issuer(request.ca_cert, request.ca_key, cpo_name=cpo_name, now=now)


def load_issuer(cert_path: Path, key_path: Path, *, cpo_name: str, now: dt.datetime) -> Issuer:
    """The CA of ``--ca-cert``/``--ca-key``, checked: readable, a CA, the same key pair,
    not expired, a key the whitepaper allows (A00.FR.502/503)."""
    chain = _read_ca_certs(cert_path)
    key = _read_ca_key(key_path)
    ca = chain[0]
    if _public(key.public_key()) != _public(ca.public_key()):
        raise SetupError(f"--ca-key {key_path} does not match --ca-cert {cert_path}")
    with suppress(x509.ExtensionNotFound):
        if not ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise SetupError(f"--ca-cert: {cert_path} is not a CA certificate (CA:FALSE)")
    if ca.not_valid_after_utc <= now:
        raise SetupError(f"--ca-cert: {cert_path} expired on {ca.not_valid_after_utc:%Y-%m-%d}")
    return Issuer(
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        chain_pem=b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain),
        cpo_name=cpo_name,
        not_before=max(now - CLOCK_SKEW, ca.not_valid_before_utc),
        not_after=min(now + dt.timedelta(days=VALIDITY_DAYS), ca.not_valid_after_utc),
    )


def _read_ca_certs(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SetupError(f"--ca-cert: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise SetupError(f"--ca-cert: {path} holds no PEM certificate") from None


def _read_ca_key(path: Path) -> CaKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SetupError(f"--ca-key: cannot read {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SetupError(f"--ca-key: {path} is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SetupError(f"--ca-key: {path} holds no PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 224:
        return key
    raise SetupError(
        f"--ca-key: {path} is not an RSA key of 2048 bits or more or an elliptic-curve key "
        "of 224 bits or more (whitepaper A00.FR.502/503)"
    )


def _public(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def issue_certificates(issuer: Issuer, folder: Path, ids: Sequence[str], *, workers: int) -> None:
    """``<folder>/<id>.key`` and ``<id>.pem`` for every id, in ``workers`` processes."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds private keys
    except OSError as exc:
        raise SetupError(f"--certs: cannot make {folder}: {exc.strerror or exc}") from None
    size = max(1, min(_CHUNK_MAX, -(-len(ids) // (workers * 8))))
    chunks = [ids[start : start + size] for start in range(0, len(ids), size)]
    with ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint) as pool:
        try:
            futures = [pool.submit(issue_chunk, issuer, str(folder), chunk) for chunk in chunks]
            for future in as_completed(futures):
                future.result()
        except OSError as exc:
            pool.shutdown(cancel_futures=True)
            raise SetupError(f"--certs: cannot write in {folder}: {exc.strerror or exc}") from None
        except BaseException:  # Ctrl-C: finish the chunks under way (whole files), no more
            pool.shutdown(cancel_futures=True)
            raise


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: the parent stops the pool, and each
    # worker finishes its files rather than dying with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def issue_chunk(issuer: Issuer, folder: str, ids: Sequence[str]) -> int:
    """One pool task: a key and a certificate per id, the key written first (a
    certificate never stands without its key).  Returns how many."""
    ca_key = serialization.load_pem_private_key(issuer.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    ca = x509.load_pem_x509_certificates(issuer.chain_pem)[0]
    base = _base_builder(issuer, ca)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"  # one random read per chunk, not per file
    for charger_id in ids:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            base.subject_name(_subject(charger_id, issuer.cpo_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())  # A00.FR.508
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        certificate = _sign(builder, ca_key).public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = os.path.join(folder, charger_id)
        write_atomically(f"{path}.key", key_pem, mode=_SECRET_MODE, tag=tag)
        write_atomically(f"{path}.pem", certificate + issuer.chain_pem, mode=_PUBLIC_MODE, tag=tag)
    return len(ids)


def _subject(charger_id: str, cpo_name: str) -> x509.Name:
    """CN = the charger's id (A00.FR.511, its unique serial number as the CSMS knows it),
    O = the CPO's name (A00.FR.509; a CSMS checks it, A00.FR.404)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cpo_name),
            x509.NameAttribute(NameOID.COMMON_NAME, charger_id),
        ]
    )


def _base_builder(issuer: Issuer, ca: x509.Certificate) -> x509.CertificateBuilder:
    """What every charger's certificate shares.  Key usage restricted to what a TLS client
    with an ECDSA key does (A00.FR.512); no subjectAltName, which would override the CN
    (A00.FR.511's note)."""
    try:
        authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key())  # type: ignore[arg-type]
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .issuer_name(ca.subject)
        .not_valid_before(issuer.not_before)
        .not_valid_after(issuer.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(authority, critical=False)
    )


def _sign(builder: x509.CertificateBuilder, ca_key: CaKey) -> x509.Certificate:
    """SHA-256 (A00.FR.506), by ECDSA or RSA-PSS (A00.FR.505) as the CA's key is."""
    if isinstance(ca_key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        return builder.sign(ca_key, hashes.SHA256(), rsa_padding=pss)
    return builder.sign(ca_key, hashes.SHA256())
