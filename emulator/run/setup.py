"""The one run setup: every option of a run, converted and checked before any work.

``ocpp-fleet run``, ``ocpp-fleet capacity`` and every Locust role build a
:class:`RunSetup` with :func:`build_setup` from their parser's values (an argparse
namespace or Locust's ``parsed_options``: the same names, :mod:`emulator.run.options`).
Whatever is wrong (a scenario field, a URL, a seed, an output path that cannot be
written, a port out of range, a file the security profile names) raises one :class:`SetupError` whose message names the
option or the file and field: the doors print it as one line and exit 2, before a
wallbox connects.  Values arrive as text from every parser (the web UI's form too), so
each is converted here once.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emulator.capacity import SearchSettings
from emulator.fleet.runner import parse_address_pool
from emulator.fleet.scenario import Scenario, ScenarioError, load_scenario
from emulator.fleet.security import SecurityConfigError
from emulator.fleet.security import resolve as resolve_security
from emulator.metrics.slo import (
    Slo,
    SloError,
    ledger_slo,
    option_sources,
    parse_rules,
    scenario_sources,
)
from emulator.report.html import REPORT, RESULT, TIMESERIES_CSV, TIMESERIES_JSON

__all__ = [
    "DEFAULT_DURATION",
    "METRICS_HOST_ENV",
    "METRICS_PORT_ENV",
    "SLO_ENV",
    "MetricsAddress",
    "Outputs",
    "RunSetup",
    "SetupError",
    "build_setup",
    "option_flag",
    "option_text",
    "parse_duration",
    "read_metrics",
    "read_outputs",
    "read_slos",
]

DEFAULT_DURATION = 60.0
DEFAULT_IDS_PER_WORKER = 100_000  # charger numbers per Locust worker (loadtest.partition)
# The container image sets these (the CLI and Locust read them the same way).
METRICS_PORT_ENV = "OCPP_FLEET_METRICS_PORT"
METRICS_HOST_ENV = "OCPP_FLEET_METRICS_HOST"
# Locust: SLO rules separated by ";" (added to every --slo).
SLO_ENV = "LOCUST_SLO"
# What --ledger writes (emulator.run.outputs).
LEDGER_FILES = ("fleet-ledger.json", "csms-ledger.json", "comparison.json")
REPORT_FILES = (REPORT, RESULT, TIMESERIES_JSON, TIMESERIES_CSV)


class SetupError(ValueError):
    """An option, file or field a run cannot start with; the message is one line for the
    user (it may hold square brackets: print it as plain text)."""


@dataclass(frozen=True, slots=True)
class MetricsAddress:
    host: str
    port: int  # 0: any free port


@dataclass(frozen=True, slots=True, kw_only=True)
class Outputs:
    """The files a run writes at its end, checked writable before it starts (a missing
    folder is created when they are written)."""

    json: Path | None = None  # run: the summary; capacity and Locust steps: the verdict
    report: Path | None = None  # a directory: report.html and its data
    ledger: Path | None = None  # a directory: the ledgers and their comparison


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSetup:
    """Everything a run needs, checked.  ``command``: ``"run"``, ``"capacity"`` or
    ``"locust"``."""

    command: str
    scenario_path: Path
    scenario: Scenario  # with --start-time and --id-prefix applied
    csms_url: str | None  # None: the embedded reference CSMS (``run`` only)
    seed: int
    chargers: int = 0  # run: the fleet size; capacity grows from 0
    duration: float = DEFAULT_DURATION  # run
    slos: tuple[Slo, ...] = ()  # the scenario's [slo] and the command line's, in that order
    outputs: Outputs = field(default_factory=Outputs)
    source_addresses: tuple[str, ...] = ()
    strict: bool = False
    strict_csms: bool = False
    progress: bool = True
    metrics: MetricsAddress | None = None
    search: SearchSettings | None = None  # capacity
    ids_per_worker: int = DEFAULT_IDS_PER_WORKER  # Locust
    fleet_shape: str = ""  # Locust: the --fleet-shape text (emulator.loadtest.schedules)

    @property
    def embedded_csms(self) -> bool:
        return self.csms_url is None

    @property
    def id_prefix(self) -> str:
        return self.scenario.fleet.id_prefix


def build_setup(
    command: str,
    values: Any,
    *,
    environ: Mapping[str, str] | None = None,
    host: str | None = None,
    outputs: bool = True,
) -> RunSetup:
    """The checked setup of ``command`` from ``values`` (an object with an attribute per
    option: :attr:`emulator.run.options.Option.dest`).  ``host``: Locust's ``--host``,
    the CSMS URL when ``--csms-url`` is not given.  ``outputs``: False for a process
    that writes none (a Locust worker: the paths are its master's, on another host).
    Raises :class:`SetupError`."""
    env = os.environ if environ is None else environ
    read = _Reader(values)
    path = read.text("scenario")
    if not path:
        raise SetupError("--scenario is required: a scenario TOML file (docs/scenarios.md)")
    scenario = _scenario(path, read)
    url = _url(command, read.text("csms_url") or (host or "").strip())
    seed = read.integer("seed", minimum=0, default=1 if scenario.seed is None else scenario.seed)
    scenario_rules, command_rules = read_slos(
        command, values, environ=env, scenario=scenario, path=path
    )
    chargers = read.integer("chargers", minimum=1, default=scenario.fleet_size)
    identities = scenario.identities
    if identities is not None and chargers > len(identities):
        raise SetupError(
            f"--chargers {chargers}: the identities file {identities.path} has "
            f"{len(identities)} rows, one per charger"
        )
    search = _search(read, scenario) if command == "capacity" else None
    _check_security(command, path, scenario, url, chargers)
    if command == "capacity" and not (scenario_rules or command_rules):
        raise SetupError(
            "a capacity search needs SLOs to judge each step: give --slo EXPR "
            '(e.g. --slo "*:p99<500ms" --slo "errors<0.5%") or [slo] rules in the scenario'
        )
    return RunSetup(
        command=command,
        scenario_path=Path(path),
        scenario=scenario,
        csms_url=url,
        seed=seed,
        chargers=chargers,
        duration=read.duration("duration", default=DEFAULT_DURATION),
        slos=(*scenario_rules, *command_rules),
        outputs=read_outputs(command, values) if outputs else Outputs(),
        source_addresses=read.address_pool("source_addresses"),
        strict=read.flag("strict"),
        strict_csms=read.flag("strict_csms"),
        progress=not read.flag("no_progress"),
        metrics=read_metrics(values, env),
        search=search,
        ids_per_worker=read.integer("ids_per_worker", minimum=1, default=DEFAULT_IDS_PER_WORKER),
        fleet_shape=read.text("fleet_shape"),
    )


# --------------------------------------------------------------------------- values


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"``: seconds (every duration option of
    ocpp-fleet and its Locust shapes).  Raises ValueError."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration like 90, 90s, 10m or 2h, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def option_text(values: Any, dest: str) -> str:
    """An option's value as text, stripped ("" when not given)."""
    value = getattr(values, dest, None)
    return "" if value is None or isinstance(value, bool) else str(value).strip()


def option_flag(values: Any, dest: str) -> bool:
    """A flag, also when it came as text (the environment, ``locust.conf``, a form)."""
    value = getattr(values, dest, False)
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


class _Reader:
    """Reads one option at a time from a parser's values, as text, and converts it; a
    value that cannot be used raises SetupError naming the option."""

    def __init__(self, values: Any) -> None:
        self.values = values

    def raw(self, dest: str) -> Any:
        return getattr(self.values, dest, None)

    def text(self, dest: str) -> str:
        return option_text(self.values, dest)

    def flag(self, dest: str) -> bool:
        return option_flag(self.values, dest)

    def integer(self, dest: str, *, minimum: int, default: int) -> int:
        text = self.text(dest)
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise SetupError(f"{_flag(dest)}: expected {what}, got {text!r}")
        return value

    def number(self, dest: str, *, default: float) -> float:
        text = self.text(dest)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            raise SetupError(f"{_flag(dest)}: expected a number, got {text!r}") from None
        return value

    def duration(self, dest: str, *, default: float) -> float:
        text = self.text(dest)
        if not text:
            return default
        try:
            value = parse_duration(text)
        except ValueError as exc:
            raise SetupError(f"{_flag(dest)}: {exc}") from None
        if not (math.isfinite(value) and value > 0):
            raise SetupError(f"{_flag(dest)}: expected a duration > 0, got {text!r}")
        return value

    def address_pool(self, dest: str) -> tuple[str, ...]:
        text = self.text(dest)
        try:
            return tuple(parse_address_pool(text)) if text else ()
        except ValueError as exc:
            raise SetupError(f"{_flag(dest)}: {exc}") from None

    def rules(self, dest: str) -> list[str]:
        given = self.raw(dest) or []
        if isinstance(given, str):  # one value from a config file or a form
            given = given.split(";")
        return [str(r) for r in given if str(r).strip()]


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _scenario(path: str, read: _Reader) -> Scenario:
    """The scenario with the options that replace its fields, in this order: an
    identities file before an id prefix (which it refuses)."""
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        raise SetupError(str(exc)) from None
    replacements: tuple[tuple[str, Callable[[Scenario, str], Scenario]], ...] = (
        ("identities", Scenario.with_identities),
        ("start_time", Scenario.with_start_time),
        ("id_prefix", Scenario.with_id_prefix),
        ("transport", Scenario.with_transport),
    )
    for dest, replace in replacements:
        text = read.text(dest)
        if text:
            try:
                scenario = replace(scenario, text)
            except ValueError as exc:
                raise SetupError(f"{_flag(dest)}: {exc}") from None
    return scenario


def _check_security(
    command: str, path: str, scenario: Scenario, url: str | None, chargers: int
) -> None:
    """The files and URL the scenario's security profile needs (a password file, a CA, a
    client certificate per charger of a ``run``), checked as the fleet will load them."""
    ids = [scenario.charger_id(n) for n in range(1, chargers + 1)] if command == "run" else []
    try:
        resolve_security(scenario, charger_ids=ids, url=url or "ws://127.0.0.1/")
    except SecurityConfigError as exc:
        raise SetupError(f"{path}: {exc}") from None


def _url(command: str, url: str) -> str | None:
    """The CSMS URL, checked; None for ``run``'s embedded CSMS."""
    if not url:
        if command == "run":
            return None
        if command == "locust":
            raise SetupError("no CSMS: give --csms-url ws://host:port/path (or Locust's --host)")
        raise SetupError("--csms-url is required: the CSMS's OCPP-J endpoint, ws://host:port/path")
    if not url.startswith(("ws://", "wss://")):
        raise SetupError(f"--csms-url must start with ws:// or wss://, got {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise SetupError(f"--csms-url: a port is 1-65535, got {url!r}") from None
    if not parts.hostname:
        raise SetupError(f"--csms-url: no host in {url!r}")
    return url


def read_slos(
    command: str,
    values: Any,
    *,
    environ: Mapping[str, str],
    scenario: Scenario | None = None,
    path: str = "",
) -> tuple[list[Slo], list[Slo]]:
    """The SLOs of ``scenario`` (none without one) and of the command line, checked
    (a ledger SLO is refused under Locust and against an external CSMS)."""
    read = _Reader(values)
    rules = () if scenario is None else scenario.slo.rules
    url = read.text("csms_url") or None
    given = _given_rules(command, read, environ)
    try:
        from_scenario = parse_rules(scenario_sources(rules, path))
        from_command = parse_rules(given)
    except SloError as exc:
        raise SetupError(str(exc)) from None
    ledger = ledger_slo([*from_scenario, *from_command])
    if ledger is not None and not (command == "run" and url is None):
        raise SetupError(f"{ledger.source}: {_NO_LEDGER[command]}")
    return from_scenario, from_command


def _given_rules(command: str, read: _Reader, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    given = option_sources("--slo", read.rules("slo"))
    if command == "locust":
        env_rules = [r for r in environ.get(SLO_ENV, "").split(";") if r.strip()]
        given = option_sources(f"${SLO_ENV}", env_rules) + given
    return given


_NO_LEDGER = {
    "run": "the ledger SLO cannot be judged against an external CSMS (only the embedded "
    "reference CSMS keeps a ledger): run without --csms-url, or without this SLO",
    "capacity": "a ledger SLO needs the embedded CSMS's books, which a capacity search "
    "against --csms-url does not have",
    "locust": "the ledger SLO cannot be judged under Locust: only `ocpp-fleet run` against "
    "its embedded reference CSMS compares ledgers",
}


def _search(read: _Reader, scenario: Scenario) -> SearchSettings:
    """The search's settings; with an identities file it grows to the file's rows at
    most (the CSMS knows no other chargers)."""
    max_text = read.text("max")
    rows = None if scenario.identities is None else len(scenario.identities)
    settings = SearchSettings(
        start=read.integer("start", minimum=1, default=100 if rows is None else min(100, rows)),
        max=read.integer("max", minimum=1, default=1) if max_text else rows,
        growth=read.number("growth", default=1.5),
        hold=read.duration("hold", default=60.0),
    )
    if rows is not None and scenario.identities is not None:
        for flag, size in (("--start", settings.start), ("--max", settings.max or 0)):
            if size > rows:
                raise SetupError(
                    f"{flag} {size}: the identities file {scenario.identities.path} has "
                    f"{rows} rows, one per charger"
                )
    try:
        settings.check()
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    return settings


def read_metrics(values: Any, environ: Mapping[str, str]) -> MetricsAddress | None:
    """Where this process serves /metrics (``--metrics-port``, else
    ``$OCPP_FLEET_METRICS_PORT``), or None."""
    read = _Reader(values)
    text, source = read.text("metrics_port"), "--metrics-port"
    if not text:
        text, source = environ.get(METRICS_PORT_ENV, "").strip(), f"${METRICS_PORT_ENV}"
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise SetupError(f"{source}: expected a port number 0-65535, got {text!r}")
    host = read.text("metrics_host") or environ.get(METRICS_HOST_ENV, "").strip() or "127.0.0.1"
    return MetricsAddress(host=host, port=port)


# --------------------------------------------------------------------------- outputs


def read_outputs(command: str, values: Any) -> Outputs:
    """The output paths, checked: a file's folder exists and is writable, a folder is not
    a file, and no two outputs write the same file."""
    read = _Reader(values)
    json_dest = "verdict_json" if command == "locust" else "json"
    outputs = Outputs(
        json=_path(read, json_dest),
        report=_path(read, "report"),
        ledger=_path(read, "ledger"),
    )
    if outputs.json is not None:
        _writable_file(outputs.json, _flag(json_dest))
    written: dict[Path, str] = {}
    if outputs.json is not None:
        written[outputs.json.resolve()] = _flag(json_dest)
    for dest, folder, names in (
        ("report", outputs.report, REPORT_FILES),
        ("ledger", outputs.ledger, LEDGER_FILES),
    ):
        if folder is None:
            continue
        _writable_folder(folder, _flag(dest))
        for name in names:
            target = (folder / name).resolve()
            if target in written:
                raise SetupError(
                    f"{_flag(dest)} {folder} would write {folder / name}, which "
                    f"{written[target]} writes too: give them different paths"
                )
            written[target] = _flag(dest)
    return outputs


def _path(read: _Reader, dest: str) -> Path | None:
    text = read.text(dest)
    return Path(text).expanduser() if text else None


def _writable_file(path: Path, option: str) -> None:
    """A file that can be written: not a folder, in a folder that exists or can be
    created (the writers create it)."""
    if path.is_dir():
        raise SetupError(f"{option} {path}: is a directory, expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise SetupError(f"{option} {path}: not writable")
    _writable_folder(path.parent, option, given=path)


def _writable_folder(path: Path, option: str, *, given: Path | None = None) -> None:
    """A folder that exists and is writable, or can be created under one that is."""
    named = path if given is None else given
    if path.exists() and not path.is_dir():
        raise SetupError(f"{option} {named}: {path} is a file, expected a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SetupError(f"{option} {named}: {existing} is a file, expected a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SetupError(f"{option} {named}: cannot write in {existing}")


def slo_texts(slos: Sequence[Slo]) -> str:
    """The SLOs as the report's parameters show them."""
    return ", ".join(s.text for s in slos) or "none"
