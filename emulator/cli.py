"""``ocpp-fleet``: run a fleet of emulated wallboxes, search a CSMS's capacity, run the
embedded reference CSMS, or make the identities a CSMS imports.

The CLI only parses: ``run`` and ``capacity`` build one :class:`~emulator.run.setup.RunSetup`
from their options (:mod:`emulator.run.options` is the table both parsers and Locust's
come from) and hand it to :mod:`emulator.run.commands`.  User mistakes (a bad option,
scenario or output path, an unreachable CSMS, a port in use) end with one line on stderr
and an exit code, never a traceback, and before any work where they can be known:
0 success · 1 an SLO was not met (``--slo``, ``[slo]``) · 2 bad input (usage, scenario,
options) · 3 the run could not start · 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from collections.abc import Coroutine, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from emulator.fleet.runner import FleetStartError
from emulator.fleet.scenario import FleetSettings, ScenarioError
from emulator.fleet.security import SecurityConfigError
from emulator.run.console import error_line, output_console
from emulator.run.identities import DEFAULT_CPO_NAME, VALIDITY_DAYS, IdentitiesRequest
from emulator.run.options import add_to_parser
from emulator.run.setup import SetupError, build_setup

if TYPE_CHECKING:
    from emulator.csms.certificate_authority import CertificateAuthority

EXIT_USAGE = 2
EXIT_START = 3
EXIT_INTERRUPTED = 130
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# What --version names besides ocpp-fleet: the parts a result depends on.
KEY_DEPENDENCIES = ("ocpp", "websockets", "uvloop", "locust", "numpy")


class UsageError(Exception):
    """A mistake of the user's, printed as one line."""


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose mistakes are one line (``--help`` says the rest)."""

    def error(self, message: str) -> NoReturn:
        error_line(f"{self.prog}: {message} (see {self.prog} --help)")
        sys.exit(EXIT_USAGE)


class _Version(argparse.Action):
    """``--version``: one line, unwrapped (argparse's own action wraps it)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        print(version_text())
        parser.exit()


def _run_loop(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ocpp-fleet",
        description="Emulate fleets of OCPP 1.6J AC wallboxes against a CSMS.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the versions and exit")
    _add_log_level(parser, default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a fleet of wallboxes")
    add_to_parser(run, "run")
    capacity = sub.add_parser(
        "capacity",
        help="find how many chargers a CSMS holds within its SLOs (grow, hold, bisect)",
        description="Grow one fleet in steps, judge the SLOs over each step's hold, bisect "
        "between the last passing and the first failing size to within 10 %, and name "
        "what limited it (docs/capacity-planning.md). Exit 0 with a verdict, 1 when "
        "even --start failed, 2 bad input, 3 could not start.",
    )
    add_to_parser(capacity, "capacity")
    _add_csms_parser(sub)
    _add_identities_parser(sub)
    for command in (run, capacity, sub.choices["csms"], sub.choices["identities"]):
        _add_log_level(command, default=argparse.SUPPRESS)  # also after the command
    return parser


def _add_log_level(parser: argparse.ArgumentParser, *, default: str) -> None:
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=default,
        metavar="LEVEL",
        help=f"Python log level: {', '.join(LOG_LEVELS)} (default WARNING)",
    )


def _add_csms_parser(sub: Any) -> None:
    csms = sub.add_parser(
        "csms",
        help="run the embedded reference CSMS",
        description="The reference CSMS alone, until SIGINT or SIGTERM.",
    )
    csms.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    csms.add_argument(
        "--port", type=_port, default=9000, help="port to listen on, 0: any free (default 9000)"
    )
    csms.add_argument(
        "--heartbeat-interval",
        type=_positive_int,
        default=60,
        metavar="SECONDS",
        help="the interval its BootNotification answers give (default 60)",
    )
    csms.add_argument("--certfile", type=Path, help="serve wss:// with this certificate (PEM)")
    csms.add_argument("--keyfile", type=Path, help="its private key (default: in --certfile)")
    csms.add_argument(
        "--client-ca", type=Path, help="require client certificates signed by this CA (profile 3)"
    )
    csms.add_argument(
        "--ca-key",
        type=Path,
        metavar="FILE",
        help="sign chargers' CSRs (SignCertificate) with the --client-ca certificate and this "
        "key (default: a root CA made at start, whose certificate --client-ca trusts too)",
    )
    csms.add_argument(
        "--certificate-days",
        type=_positive_int,
        default=365,
        metavar="DAYS",
        help="validity of the charger certificates the CSMS signs (default 365)",
    )
    csms.add_argument(
        "--password-env",
        metavar="VARIABLE",
        help="require HTTP Basic auth: every charger id with the password in this variable",
    )
    csms.add_argument(
        "--identities",
        type=Path,
        metavar="FILE",
        help="know only these chargers (HTTP 404 for any other id) and check each one's "
        "password from the file (401); --password-env for rows without one (docs/identities.md)",
    )
    csms.add_argument(
        "--cards",
        type=Path,
        metavar="FILE",
        help="know only these cards: each gets its status column, any other Invalid",
    )
    csms.add_argument(
        "--service-time",
        type=_service_time,
        metavar="DURATION",
        help="serve charger CALLs one at a time, DURATION each (e.g. 20ms, 0.02s): a CSMS "
        "of known capacity, 1/DURATION CALLs per second (default: answer at once)",
    )


def _add_identities_parser(sub: Any) -> None:
    identities = sub.add_parser(
        "identities",
        help="make charger ids, passwords, cards and client certificates for a CSMS",
        description="Write the files a CSMS imports and ocpp-fleet reads (docs/identities.md): "
        "an identities file (CSV charger_id,password: the fleet's ids, a random 20-character "
        "password each, mode 0600), a cards file (CSV id_tag,status: 7-byte RFID UIDs) and "
        "per charger a client certificate and key for security profile 3. Existing files "
        "are refused unless --force; nothing prints a password or a key.",
    )
    identities.add_argument(
        "--chargers", type=_positive_int, required=True, metavar="N", help="how many (rows)"
    )
    identities.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="the identities file (CSV)"
    )
    identities.add_argument(
        "--id-prefix",
        metavar="P",
        help="charger ids are P and the number as 6 digits, as [fleet] id_prefix (default "
        f"{FleetSettings().id_prefix})",
    )
    identities.add_argument(
        "--cards", type=_positive_int, metavar="N", help="also write N RFID cards (Accepted)"
    )
    identities.add_argument(
        "--cards-out",
        type=Path,
        metavar="FILE",
        help="the cards file (default: cards.csv in --out's folder)",
    )
    identities.add_argument(
        "--certs",
        type=Path,
        metavar="DIR",
        help="write DIR/<id>.pem (certificate and CA: the chain) and DIR/<id>.key (ECDSA "
        f"P-256, mode 0600) per charger: what [security] client_cert_dir reads. Valid from "
        f"now (5 minutes back, for clock skew) for {VALIDITY_DAYS} days, within the CA's "
        "validity: a test campaign's length, well before the month in which a charger "
        "must renew",
    )
    identities.add_argument(
        "--ca-cert", type=Path, metavar="F", help="the CA certificate that signs (PEM)"
    )
    identities.add_argument(
        "--ca-key", type=Path, metavar="F", help="its private key (PEM, unencrypted)"
    )
    identities.add_argument(
        "--cpo-name",
        metavar="NAME",
        help=f"the certificates' O (organizationName): the CPO's name (default {DEFAULT_CPO_NAME})",
    )
    identities.add_argument("--force", action="store_true", help="replace existing files")


def identities_request(args: argparse.Namespace) -> IdentitiesRequest:
    """The parsed ``identities`` options as the command takes them."""
    return IdentitiesRequest(
        chargers=args.chargers,
        out=args.out,
        id_prefix=args.id_prefix,
        cards=args.cards,
        cards_out=args.cards_out,
        certs=args.certs,
        ca_cert=args.ca_cert,
        ca_key=args.ca_key,
        cpo_name=args.cpo_name,
        force=args.force,
    )


def version_text() -> str:
    """``ocpp-fleet X (ocpp A, websockets B, ...)``: what a result depends on."""

    def of(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    parts = ", ".join(f"{name} {of(name)}" for name in KEY_DEPENDENCIES)
    python = ".".join(str(n) for n in sys.version_info[:3])
    return f"ocpp-fleet {of('ocpp-fleet')} ({parts}; Python {python})"


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def _service_time(text: str) -> float:
    from emulator.csms import parse_service_time

    try:
        return parse_service_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "csms":
            return _run_loop(_csms(args))
        if args.command == "identities":
            from emulator.run.identities import identities_command

            return identities_command(identities_request(args))
        setup = build_setup(args.command, args)
        from emulator.run.commands import capacity_command, run_command

        command = run_command if args.command == "run" else capacity_command
        return _run_loop(command(setup, output_console()))
    except (SetupError, ScenarioError, UsageError) as exc:
        error_line(str(exc))
        return EXIT_USAGE
    except SecurityConfigError as exc:
        error_line(f"{args.scenario}: {exc}")
        return EXIT_USAGE
    except FleetStartError as exc:
        error_line(str(exc))
        return EXIT_START
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _csms_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.certfile is None:
        if args.client_ca is not None or args.keyfile is not None:
            raise UsageError("--client-ca and --keyfile need --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(
            str(args.certfile), None if args.keyfile is None else str(args.keyfile)
        )
        if args.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(args.client_ca))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS certificate or CA: {exc}") from None
    return context


def _csms_ca(args: argparse.Namespace) -> CertificateAuthority:
    """The CA that signs chargers' CSRs: the user's (--client-ca + --ca-key) or a new root."""
    from datetime import timedelta

    from emulator.csms.certificate_authority import CertificateAuthority

    validity = timedelta(days=args.certificate_days)
    if args.ca_key is None:
        return CertificateAuthority.generate(validity=validity)
    if args.client_ca is None:
        raise UsageError("--ca-key needs --client-ca (the CA certificate it belongs to)")
    try:
        return CertificateAuthority.from_files(args.client_ca, args.ca_key, validity=validity)
    except ValueError as exc:  # names the file, never its content
        raise UsageError(f"cannot use the CA: {exc}") from None


def _csms_books(args: argparse.Namespace) -> dict[str, Any]:
    """The chargers, passwords and cards the CSMS knows (``ReferenceCsms`` keywords)."""
    from emulator.csms import PasswordBook
    from emulator.fleet.identities import IdentityFileError, read_cards, read_identities

    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            raise UsageError(
                f"--password-env: the environment variable {args.password_env} is not set"
            )
    books: dict[str, Any] = {}
    try:
        identities = None if args.identities is None else read_identities(args.identities)
        cards = None if args.cards is None else read_cards(args.cards)
    except IdentityFileError as exc:
        raise UsageError(str(exc)) from None
    own = None
    if identities is not None:
        books["known_chargers"] = identities.ids
        own = identities.passwords or None
    if own is not None or password is not None:
        books["basic_auth"] = PasswordBook(own, password)
    if cards is not None:
        books["id_tags"] = {tag: s for s, tags in cards.by_status.items() for tag in tags}
        books["unknown_tag_status"] = "Invalid"
    return books


async def _csms(args: argparse.Namespace) -> int:
    from emulator.csms import ReferenceCsms

    context = _csms_tls(args)
    csms = ReferenceCsms(
        host=args.host,
        port=args.port,
        heartbeat_interval=args.heartbeat_interval,
        ssl=context,
        service_time=args.service_time,
        certificate_authority=_csms_ca(args),
        **_csms_books(args),
    )
    try:
        await csms.start()
    except OSError as exc:
        raise FleetStartError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    print(f"reference CSMS listening on {csms.url}/<chargerId>", flush=True)
    if args.service_time is not None:
        print(
            f"serving CALLs one at a time, {args.service_time * 1000:g} ms each: "
            f"capacity {1 / args.service_time:g} CALLs/s",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await csms.stop()
    print(csms.served.line(), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
