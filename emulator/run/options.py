"""Every option of a run, once: ``ocpp-fleet run``, ``ocpp-fleet capacity`` and Locust.

:data:`OPTIONS` is the one table.  Each entry names the commands it belongs to; the CLI's
argparse parsers (:func:`add_to_parser`) and Locust's configargparse parser
(``emulator.loadtest.options.add_arguments``, which adds Locust's keywords: the
environment variable and the web UI) are built from it.  Values arrive as text (a
command line, ``locust.conf``, the environment, the web UI's form), and
:mod:`emulator.run.setup` converts and checks them all in one place, so an option is
added here and in :class:`~emulator.run.setup.RunSetup`, nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["COMMANDS", "OPTIONS", "Command", "Option", "add_to_parser", "options_of"]

Command = Literal["run", "capacity", "locust"]
COMMANDS: tuple[Command, ...] = ("run", "capacity", "locust")
ALL = frozenset(COMMANDS)
CLI = frozenset({"run", "capacity"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """One option: its flag, where it belongs, and its help (per command where the
    meaning differs).  ``kind``: ``"value"`` (text), ``"list"`` (repeatable) or
    ``"flag"``."""

    flag: str
    help: str
    commands: frozenset[str] = ALL
    kind: Literal["value", "list", "flag"] = "value"
    metavar: str | None = None
    required: frozenset[str] = frozenset()  # the commands that need it
    helps: tuple[tuple[str, str], ...] = ()  # (command, help) where it differs
    web_ui: bool = False  # Locust: in the web UI's start form

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        """Locust's environment variable for it (``LOCUST_SCENARIO``)."""
        return "LOCUST_" + self.dest.upper()

    def help_for(self, command: str) -> str:
        return dict(self.helps).get(command, self.help)


_SLO_HELP = (
    'service-level objective, repeatable, e.g. "StartTransaction:p99<800ms", '
    '"errors<0.5%%", "timeouts=0", "ledger=0" (docs/slo.md); judged after the ramp, '
    "with the scenario's [slo] rules: exit code 1 when one is not met"
)

OPTIONS: tuple[Option, ...] = (
    Option(
        flag="--scenario",
        metavar="FILE",
        required=ALL,
        web_ui=True,
        help="scenario TOML file (charger models, sessions; docs/scenarios.md)",
    ),
    Option(
        flag="--csms-url",
        metavar="URL",
        required=frozenset({"capacity"}),
        web_ui=True,
        help="CSMS OCPP-J endpoint, e.g. ws://host:9000/ocpp "
        "(default: start the embedded reference CSMS on a free loopback port)",
        helps=(
            ("capacity", "CSMS OCPP-J endpoint (ws:// or wss://)"),
            ("locust", "CSMS OCPP-J endpoint, ws://host:port/path (default: Locust's --host)"),
        ),
    ),
    Option(
        flag="--chargers",
        metavar="N",
        commands=frozenset({"run"}),
        help="fleet size (default: the scenario's fleet.chargers, else every row of the "
        "identities file, else 10)",
    ),
    Option(
        flag="--duration",
        metavar="DURATION",
        commands=frozenset({"run"}),
        help="how long to run: seconds, or 90s, 10m, 2h (default 60 s)",
    ),
    Option(
        flag="--id-prefix",
        metavar="PREFIX",
        commands=frozenset({"run", "locust"}),
        web_ui=True,
        help="charger id prefix, up to 40 of A-Za-z0-9._~- (default: the scenario's)",
    ),
    Option(
        flag="--identities",
        metavar="FILE",
        web_ui=True,
        help="charger ids, passwords and models from this CSV (docs/identities.md); "
        "replaces the scenario's fleet.identities and --id-prefix",
    ),
    Option(
        flag="--seed",
        metavar="N",
        web_ui=True,
        help="random seed, an integer >= 0 (default: the scenario's, else 1)",
    ),
    Option(
        flag="--start-time",
        metavar="HH:MM|now",
        web_ui=True,
        help="local time of day at which the scenario's virtual clock starts "
        "(default: the scenario's sessions.start_time; now: the wall clock's)",
    ),
    Option(
        flag="--source-addresses",
        metavar="ADDRESSES",
        web_ui=True,
        help="local addresses to connect from, round robin, e.g. 127.0.0.2-127.0.0.9 or "
        "10.1.0.5,10.1.0.6: each holds ~28k connections to one CSMS address (docs/loadtest.md)",
    ),
    Option(
        flag="--transport",
        metavar="websockets|picows",
        web_ui=True,
        help="what pumps the websocket bytes: websockets or picows (less CPU and memory "
        "per wallbox; docs/loadtest.md) (default: the scenario's fleet.transport)",
    ),
    Option(
        flag="--slo",
        kind="list",
        metavar="EXPR",
        help=_SLO_HELP,
        helps=(
            (
                "capacity",
                'service-level objective, repeatable, e.g. "StartTransaction:p99<800ms" '
                "(docs/slo.md); with the scenario's [slo] rules, at least one",
            ),
            (
                "locust",
                'service-level objective, repeatable, e.g. "StartTransaction:p99<800ms", '
                '"errors<0.5%%", "timeouts=0" (docs/slo.md); also $LOCUST_SLO (rules separated '
                'by ";") and the scenario\'s [slo]; judged after spawning completes (with '
                "--fleet-shape steps:..., over each step's hold) by a local run or the master: "
                "exit code 1 when one is not met (steps: when the first step fails)",
            ),
        ),
    ),
    Option(
        flag="--start",
        metavar="N",
        commands=frozenset({"capacity"}),
        help="first fleet size (default 100)",
    ),
    Option(
        flag="--max",
        metavar="N",
        commands=frozenset({"capacity"}),
        help="largest fleet size to try (default: no limit)",
    ),
    Option(
        flag="--growth",
        metavar="FACTOR",
        commands=frozenset({"capacity"}),
        help="factor from one passing step to the next, > 1 (default 1.5)",
    ),
    Option(
        flag="--hold",
        metavar="DURATION",
        commands=frozenset({"capacity"}),
        help="how long each step is held and judged after its wallboxes booted: seconds, "
        "or 90s, 5m (default 60 s)",
    ),
    Option(
        flag="--json",
        metavar="FILE",
        commands=CLI,
        help="also write the summary as JSON to this file",
        helps=(("capacity", "write the verdict JSON to this file"),),
    ),
    Option(
        flag="--verdict-json",
        metavar="FILE",
        commands=frozenset({"locust"}),
        help="with --fleet-shape steps:... and SLOs: write the capacity verdict (the JSON of "
        "`ocpp-fleet capacity --json`) to FILE at the end of the run",
    ),
    Option(
        flag="--ledger",
        metavar="DIR",
        commands=frozenset({"run"}),
        help="write the fleet's ledger (and the embedded CSMS's, and their comparison) to DIR",
    ),
    Option(
        flag="--report",
        metavar="DIR",
        help="write report.html (offline, with plots), result.json and the 10 s time series "
        "(timeseries.json, .csv) to DIR",
        helps=(
            ("capacity", "write report.html and its data to DIR"),
            (
                "locust",
                "with --fleet-shape steps:... and SLOs: write the capacity report "
                "(report.html, result.json, timeseries.json/.csv, as `ocpp-fleet capacity "
                "--report`) into DIR at the end of the run",
            ),
        ),
    ),
    Option(
        flag="--no-progress",
        kind="flag",
        commands=frozenset({"run"}),
        help="no live progress display",
    ),
    Option(
        flag="--strict",
        kind="flag",
        commands=frozenset({"run"}),
        help="validate every outgoing frame against the OCPP 1.6 schemas too",
    ),
    Option(
        flag="--strict-csms",
        kind="flag",
        commands=frozenset({"run"}),
        help="refuse every CSMS message that breaks its OCPP 1.6 schema (default: a "
        "date-time without a UTC offset is read as UTC, as real chargers do, and counted)",
    ),
    Option(
        flag="--metrics-port",
        metavar="PORT",
        commands=frozenset({"run", "locust"}),
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; "
        "default $OCPP_FLEET_METRICS_PORT, else no metrics server)",
        helps=(
            (
                "locust",
                "serve Prometheus metrics (per OCPP action, fleet state, generator health) at "
                "http://HOST:PORT/metrics from a local run or a worker; a master serves none "
                "(0: any free port; default $OCPP_FLEET_METRICS_PORT, else no metrics server)",
            ),
        ),
    ),
    Option(
        flag="--metrics-host",
        metavar="HOST",
        commands=frozenset({"run", "locust"}),
        help="address the metrics server listens on "
        "(default $OCPP_FLEET_METRICS_HOST, else 127.0.0.1)",
    ),
    Option(
        flag="--metrics-port-per-worker",
        kind="flag",
        commands=frozenset({"locust"}),
        help="a worker serves on the metrics port + its worker index (0, 1, ...): for "
        "several workers on one host (--processes); off: every worker uses the port as is",
    ),
    Option(
        flag="--ids-per-worker",
        metavar="N",
        commands=frozenset({"locust"}),
        web_ui=True,
        help="charger numbers reserved per worker: worker w uses w*N+1 .. (w+1)*N (default 100000)",
    ),
    Option(
        flag="--fleet-shape",
        metavar="SHAPE",
        commands=frozenset({"locust"}),
        help="load shape (ramp, steps, boot-storm, soak) as NAME:key=value,..., e.g. "
        "ramp:users=1000,ramp=5m,hold=30m; read at start-up (the web UI then hides "
        "user count and spawn rate)",
    ),
)


def options_of(command: str) -> Iterator[Option]:
    """The options of ``command``, in the table's order."""
    return (o for o in OPTIONS if command in o.commands)


def add_to_parser(
    parser: Any, command: str, more: Callable[[Option], dict[str, Any]] | None = None
) -> None:
    """Add ``command``'s options to an argparse (or configargparse) parser.  Values stay
    text: :func:`emulator.run.setup.build_setup` converts and checks them.  ``more``
    gives an option's further keywords (Locust's)."""
    for option in options_of(command):
        keywords: dict[str, Any] = {"help": option.help_for(command), "dest": option.dest}
        if option.kind == "flag":
            keywords.update(action="store_true", default=False)
        elif option.kind == "list":
            keywords.update(action="append", default=[], metavar=option.metavar)
        else:
            keywords.update(metavar=option.metavar)
        if command in option.required and command != "locust":
            keywords["required"] = True
        if more is not None:
            keywords.update(more(option))
        parser.add_argument(option.flag, **keywords)
