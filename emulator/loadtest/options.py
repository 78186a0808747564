"""The fleet's Locust options: command line, ``locust.conf`` and the web UI's form.

Locust's argument parser is configargparse, so every option here can also be written
in ``locust.conf`` (``scenario = scenarios/demo.toml``) or set in the environment
(``LOCUST_SCENARIO``: each option names its variable, Locust derives none itself);
options with ``include_in_web_ui`` appear in the web UI's start form, and the master
sends their values to every worker with each spawn message, which overwrite the
worker's.  Some options belong to the process by nature (:data:`PER_WORKER_OPTIONS`):
the metrics options, read once at start-up (:func:`metrics_address`), and the source
addresses, which must be the worker's host's.  A worker keeps its own values of those
(:func:`worker_options`); a pool of source addresses given only to the master (or the
same pool to both, as workers forked by ``--processes`` have) is split into disjoint
slices, one per worker.

Values set in the web UI arrive as strings, so :func:`fleet_options` accepts strings
for every field and converts (and validates) them itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.fleet.runner import parse_address_pool
from emulator.fleet.scenario import Scenario, load_scenario
from emulator.loadtest.partition import DEFAULT_IDS_PER_WORKER, address_slice
from emulator.loadtest.schedules import SHAPE_NAMES, Schedule, parse_schedule
from emulator.metrics.slo import (
    Slo,
    SloError,
    ledger_slo,
    option_sources,
    parse_rules,
    scenario_sources,
)

__all__ = [
    "METRICS_HOST_ENV",
    "METRICS_PORT_ENV",
    "PER_WORKER_OPTIONS",
    "SLO_ENV",
    "WINDOWS_OPTION",
    "WORKERS_OPTION",
    "FleetOptions",
    "MetricsAddress",
    "OptionError",
    "WorkerOptions",
    "add_arguments",
    "command_line_slos",
    "fleet_options",
    "metrics_address",
    "own_options",
    "scenario_slos",
    "verdict_outputs",
    "worker_options",
]

# The container image sets these (the CLI's --metrics-port reads them too).
METRICS_PORT_ENV = "OCPP_FLEET_METRICS_PORT"
METRICS_HOST_ENV = "OCPP_FLEET_METRICS_HOST"
# SLO rules separated by ";" (added to every --slo).
SLO_ENV = "LOCUST_SLO"
# Set by a judging master on its parsed options, which every spawn message carries to the
# workers: "send me your windows" (emulator.loadtest.steps).
WINDOWS_OPTION = "ocpp_fleet_windows"
# Set by the master on its parsed options at each test start: the sorted indexes of the
# workers it starts, so that each worker knows its position for its slice of an address
# pool (worker_options).
WORKERS_OPTION = "ocpp_fleet_workers"
# A process's own options, whatever a master's spawn message says (worker_options).
PER_WORKER_OPTIONS: tuple[str, ...] = (
    "source_addresses",
    "metrics_port",
    "metrics_host",
    "metrics_port_per_worker",
)


class OptionError(ValueError):
    """An option value that cannot be used; the message names the option."""


def add_arguments(parser: Any) -> None:
    """Add the fleet's options to Locust's parser (an ``init_command_line_parser`` hook)."""
    # Directly on the parser: only its add_argument takes the web UI keywords
    # (include_in_web_ui, is_required); an argument group's does not.
    group = parser
    group.add_argument(
        "--scenario",
        env_var="LOCUST_SCENARIO",
        default="",
        help="scenario TOML file (charger models, sessions); see docs/scenarios.md",
        is_required=True,
    )
    group.add_argument(
        "--csms-url",
        env_var="LOCUST_CSMS_URL",
        default="",
        help="CSMS OCPP-J endpoint, ws://host:port/path (default: Locust's --host)",
    )
    group.add_argument(
        "--id-prefix",
        env_var="LOCUST_ID_PREFIX",
        default="",
        help="charger id prefix (default: the scenario's)",
    )
    group.add_argument(
        "--seed",
        env_var="LOCUST_SEED",
        default="",
        help="random seed (default: the scenario's, else 1)",
    )
    group.add_argument(
        "--start-time",
        env_var="LOCUST_START_TIME",
        default="",
        help='local time of day at which the scenario\'s virtual clock starts, "HH:MM" or '
        '"now" (default: the scenario\'s sessions.start_time)',
    )
    group.add_argument(
        "--ids-per-worker",
        env_var="LOCUST_IDS_PER_WORKER",
        type=int,
        default=DEFAULT_IDS_PER_WORKER,
        help="charger numbers reserved per worker: worker w uses w*N+1 .. (w+1)*N "
        f"(default {DEFAULT_IDS_PER_WORKER})",
    )
    group.add_argument(
        "--source-addresses",
        env_var="LOCUST_SOURCE_ADDRESSES",
        default="",
        help="local addresses to bind, e.g. 127.0.0.2-127.0.0.9 (each holds ~28k "
        "connections to one CSMS address; see docs/loadtest.md)",
    )
    group.add_argument(
        "--fleet-shape",
        env_var="LOCUST_FLEET_SHAPE",
        default="",
        help=f"load shape ({', '.join(SHAPE_NAMES)}) as NAME:key=value,..., e.g. "
        "ramp:users=1000,ramp=5m,hold=30m; read at start-up (the web UI then hides "
        "user count and spawn rate)",
        include_in_web_ui=False,
    )
    # Per process, read at start-up: not in the web UI's form.
    group.add_argument(
        "--metrics-port",
        env_var="LOCUST_METRICS_PORT",
        default="",
        help="serve Prometheus metrics (per OCPP action, fleet state, generator health) at "
        "http://HOST:PORT/metrics from a local run or a worker; a master serves none "
        f"(0: any free port; default ${METRICS_PORT_ENV}, else no metrics server)",
        include_in_web_ui=False,
    )
    group.add_argument(
        "--metrics-host",
        env_var="LOCUST_METRICS_HOST",
        default="",
        help=f"address the metrics server listens on (default ${METRICS_HOST_ENV}, else 127.0.0.1)",
        include_in_web_ui=False,
    )
    group.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="EXPR",
        help='service-level objective, repeatable, e.g. "StartTransaction:p99<800ms", '
        f'"errors<0.5%%", "timeouts=0" (docs/slo.md); also ${SLO_ENV} (rules separated '
        'by ";") and the scenario\'s [slo]; judged after spawning completes (with '
        "--fleet-shape steps:..., over each step's hold) by a local run or the master: "
        "exit code 1 when one is not met (steps: when the first step fails)",
        include_in_web_ui=False,
    )
    group.add_argument(
        "--verdict-json",
        env_var="LOCUST_VERDICT_JSON",
        default="",
        metavar="FILE",
        help="with --fleet-shape steps:... and SLOs: write the capacity verdict (the JSON of "
        "`ocpp-fleet capacity --json`) to FILE at the end of the run",
        include_in_web_ui=False,
    )
    group.add_argument(
        "--report",
        env_var="LOCUST_REPORT",
        default="",
        metavar="DIR",
        help="with --fleet-shape steps:... and SLOs: write the capacity report (report.html, "
        "result.json, timeseries.json/.csv, as `ocpp-fleet capacity --report`) into DIR at "
        "the end of the run",
        include_in_web_ui=False,
    )
    group.add_argument(
        "--metrics-port-per-worker",
        env_var="LOCUST_METRICS_PORT_PER_WORKER",
        action="store_true",
        default=False,
        help="a worker serves on the metrics port + its worker index (0, 1, ...): for "
        "several workers on one host (--processes); off: every worker uses the port as is",
        include_in_web_ui=False,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetOptions:
    scenario_path: Path
    scenario: Scenario
    csms_url: str
    id_prefix: str | None
    seed: int
    ids_per_worker: int
    source_addresses: tuple[str, ...]


def _get(parsed: Any, name: str) -> str:
    value = getattr(parsed, name, None)
    return "" if value is None else str(value).strip()


def fleet_options(parsed: Any, *, host: str | None) -> FleetOptions:
    """Read and check the options (``parsed``: Locust's ``environment.parsed_options``).

    Raises OptionError, or the scenario's ScenarioError, with a message for the user.
    """
    path = _get(parsed, "scenario")
    if not path:
        raise OptionError("--scenario is required: a scenario TOML file (docs/scenarios.md)")
    scenario = load_scenario(path)
    start_time = _get(parsed, "start_time")
    if start_time:
        try:
            scenario = scenario.with_start_time(start_time)
        except ValueError as exc:
            raise OptionError(f"--start-time: {exc}") from None
    url = _get(parsed, "csms_url") or (host or "").strip()
    if not url:
        raise OptionError("no CSMS: give --csms-url ws://host:port/path (or Locust's --host)")
    if not url.startswith(("ws://", "wss://")):
        raise OptionError(f"--csms-url must start with ws:// or wss://, got {url!r}")
    seed_text = _get(parsed, "seed")
    if seed_text:
        try:
            seed = int(seed_text)
        except ValueError:
            raise OptionError(f"--seed: expected an integer, got {seed_text!r}") from None
    else:
        seed = scenario.seed if scenario.seed is not None else 1
    ids_text = _get(parsed, "ids_per_worker") or str(DEFAULT_IDS_PER_WORKER)
    try:
        ids_per_worker = int(ids_text)
    except ValueError:
        ids_per_worker = 0
    if ids_per_worker < 1:
        raise OptionError(f"--ids-per-worker: expected a positive integer, got {ids_text!r}")
    pool_text = _get(parsed, "source_addresses")
    try:
        pool = tuple(parse_address_pool(pool_text)) if pool_text else ()
    except ValueError as exc:
        raise OptionError(f"--source-addresses: {exc}") from None
    return FleetOptions(
        scenario_path=Path(path),
        scenario=scenario,
        csms_url=url,
        id_prefix=_get(parsed, "id_prefix") or None,
        seed=seed,
        ids_per_worker=ids_per_worker,
        source_addresses=pool,
    )


def own_options(parsed: Any) -> dict[str, Any]:
    """This process's values of :data:`PER_WORKER_OPTIONS`, as it was started (read them
    at start-up, before a master's spawn message overwrites them)."""
    return {name: getattr(parsed, name, None) for name in PER_WORKER_OPTIONS}


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """A worker's options for one test: ``parsed`` is a copy of what the master sent with
    the worker's own per-worker values; ``addresses`` says where its source addresses
    came from (for the log); ``shared``: they may be another worker's too."""

    parsed: Any
    addresses: str
    shared: bool = False


def _pool(text: str, source: str) -> tuple[str, ...]:
    try:
        return tuple(parse_address_pool(text)) if text else ()
    except ValueError as exc:
        raise OptionError(f"--source-addresses ({source}): {exc}") from None


def worker_options(parsed: Any, own: Mapping[str, Any], *, worker_index: int) -> WorkerOptions:
    """What a worker runs a test with: the master's options (``parsed``, as its spawn
    message left them), but its own (``own``, from :func:`own_options`) per-worker ones.

    Source addresses: a pool given to this worker and not the same as the master's is
    the worker's own; a pool given only to the master, or the same pool to both, is the
    master's to split: this worker binds to its slice (:func:`address_slice`) by its
    position among the workers the master started (:data:`WORKERS_OPTION`).  Raises
    OptionError for a pool that is not one.
    """
    view = copy(parsed)
    for name in PER_WORKER_OPTIONS:
        if name != "source_addresses" and name in own:
            setattr(view, name, own[name])
    own_text = str(own.get("source_addresses") or "").strip()
    master_text = _get(parsed, "source_addresses")
    own_pool = _pool(own_text, "this worker's")
    master_pool = _pool(master_text, "the master's")
    if own_pool and own_pool != master_pool:
        view.source_addresses = own_text
        return WorkerOptions(view, f"{own_text} (this worker's own)")
    pool = master_pool or own_pool
    if not pool:
        view.source_addresses = ""
        return WorkerOptions(view, "none (the kernel picks)")
    workers = getattr(parsed, WORKERS_OPTION, None)
    indexes = [int(i) for i in workers] if isinstance(workers, list | tuple) else []
    if worker_index in indexes:
        position, count = indexes.index(worker_index), len(indexes)
        addresses = address_slice(pool, position, count)
        shared = len(pool) < count
        how = f"slice {position + 1} of {count} of the pool {master_text or own_text}"
        if shared:
            how += ", shared: fewer addresses than workers"
    elif indexes:  # a worker that joined after the test started
        count = len(indexes)
        addresses = address_slice(pool, worker_index % count, count)
        shared = True
        how = (
            f"slice {worker_index % count + 1} of {count} of the pool {master_text or own_text}, "
            "shared with another worker: this worker joined after the test started"
        )
    else:  # a master that does not say which workers it starts
        addresses, shared = pool, True
        how = f"the whole pool {master_text or own_text}, shared with every other worker"
    view.source_addresses = ",".join(addresses)
    return WorkerOptions(view, f"{view.source_addresses} ({how})", shared=shared)


@dataclass(frozen=True, slots=True)
class MetricsAddress:
    host: str
    port: int  # 0: any free port


def flag(parsed: Any, name: str) -> bool:
    """A boolean Locust option, also when it came from the environment as text."""
    value = getattr(parsed, name, False)
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def metrics_address(
    parsed: Any, *, environ: Mapping[str, str], worker_index: int | None
) -> MetricsAddress | None:
    """Where this Locust process serves /metrics, or None: not asked for.

    The port is ``--metrics-port`` (or ``LOCUST_METRICS_PORT``), else
    ``$OCPP_FLEET_METRICS_PORT``; the host likewise, else 127.0.0.1.  ``worker_index``
    is None for a local run, the worker's index for a worker: with
    ``--metrics-port-per-worker`` a worker adds it to the port (port 0 stays 0).
    Raises OptionError for a port that is not one.
    """
    text, source = _get(parsed, "metrics_port"), "--metrics-port"
    if not text:
        text, source = environ.get(METRICS_PORT_ENV, "").strip(), f"${METRICS_PORT_ENV}"
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise OptionError(f"{source}: expected a port number 0-65535, got {text!r}")
    host = _get(parsed, "metrics_host") or environ.get(METRICS_HOST_ENV, "").strip() or "127.0.0.1"
    if port and worker_index is not None and flag(parsed, "metrics_port_per_worker"):
        port += worker_index
        if port > 65535:
            raise OptionError(
                f"--metrics-port-per-worker: worker {worker_index} would serve on port {port}"
            )
    return MetricsAddress(host=host, port=port)


def shape_schedule(parsed: Any) -> Schedule | None:
    """The ``--fleet-shape`` schedule, or None when no shape was asked for.

    A shape without ``users`` (or ``sizes``) takes the scenario's ``fleet.chargers``.
    """
    spec = _get(parsed, "fleet_shape")
    if not spec:
        return None
    defaults: dict[str, str] = {}
    path = _get(parsed, "scenario")
    if path and "users=" not in spec:
        defaults["users"] = str(load_scenario(path).fleet.chargers)
    return parse_schedule(spec, defaults=defaults)


@dataclass(frozen=True, slots=True)
class VerdictOutputs:
    """Where the steps verdict goes: ``--verdict-json FILE`` and ``--report DIR``."""

    verdict_json: Path | None
    report: Path | None

    def __bool__(self) -> bool:
        return self.verdict_json is not None or self.report is not None


def verdict_outputs(parsed: Any) -> VerdictOutputs:
    json_path, report = _get(parsed, "verdict_json"), _get(parsed, "report")
    return VerdictOutputs(
        verdict_json=Path(json_path) if json_path else None,
        report=Path(report) if report else None,
    )


# --------------------------------------------------------------------------- SLOs


def command_line_slos(parsed: Any, *, environ: Mapping[str, str]) -> list[Slo]:
    """The rules of ``$LOCUST_SLO`` (separated by ``;``) and every ``--slo``.

    Raises OptionError naming the bad rule and where it was written."""
    env_rules = [r for r in environ.get(SLO_ENV, "").split(";") if r.strip()]
    given = getattr(parsed, "slo", None) or []
    if isinstance(given, str):  # one value from a config file or a form
        given = [r for r in given.split(";") if r.strip()]
    rules = option_sources(f"${SLO_ENV}", env_rules) + option_sources("--slo", given)
    try:
        slos = parse_rules(rules)
    except SloError as exc:
        raise OptionError(str(exc)) from None
    _refuse_ledger(slos)
    return slos


def scenario_slos(scenario: Scenario, path: str | Path) -> list[Slo]:
    """The scenario's ``[slo]`` rules; OptionError names the file and ``slo.rules[i]``."""
    try:
        slos = parse_rules(scenario_sources(scenario.slo.rules, str(path)))
    except SloError as exc:
        raise OptionError(str(exc)) from None
    _refuse_ledger(slos)
    return slos


def _refuse_ledger(slos: list[Slo]) -> None:
    ledger = ledger_slo(slos)
    if ledger is not None:
        raise OptionError(
            f"{ledger.source}: the ledger SLO cannot be judged under Locust: only "
            "`ocpp-fleet run` against its embedded reference CSMS compares ledgers"
        )
