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

import math
from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from emulator.fleet.runner import parse_address_pool
from emulator.fleet.scenario import Scenario, load_scenario
from emulator.loadtest.partition import address_slice
from emulator.loadtest.schedules import Schedule, parse_schedule
from emulator.metrics.slo import Slo
from emulator.run.options import Option, add_to_parser
from emulator.run.setup import (
    METRICS_HOST_ENV,
    METRICS_PORT_ENV,
    SLO_ENV,
    MetricsAddress,
    RunSetup,
    build_setup,
    option_flag,
    option_text,
    read_metrics,
    read_outputs,
    read_slos,
)
from emulator.run.setup import SetupError as OptionError

__all__ = [
    "METRICS_HOST_ENV",
    "METRICS_PORT_ENV",
    "PER_WORKER_OPTIONS",
    "SLO_ENV",
    "WINDOWS_OPTION",
    "WORKERS_OPTION",
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


def add_arguments(parser: Any) -> None:
    """Add the fleet's options to Locust's parser (an ``init_command_line_parser`` hook):
    the run options' table (:mod:`emulator.run.options`) with Locust's keywords, each
    option's environment variable (``LOCUST_SCENARIO``) and whether the web UI's form
    shows it.  Directly on the parser: only its add_argument takes the web UI keywords
    (include_in_web_ui, is_required); an argument group's does not."""

    def locust_keywords(option: Option) -> dict[str, Any]:
        keywords: dict[str, Any] = {"include_in_web_ui": option.web_ui}
        if option.kind != "list":  # $LOCUST_SLO: rules separated by ";", read by the setup
            keywords["env_var"] = option.env
        if option.kind == "value":
            keywords["default"] = ""
        if "locust" in option.required:
            keywords["is_required"] = True
        return keywords

    add_to_parser(parser, "locust", locust_keywords)


def fleet_options(parsed: Any, *, host: str | None, outputs: bool = True) -> RunSetup:
    """Read and check the options (``parsed``: Locust's ``environment.parsed_options``)
    into the run setup that ``ocpp-fleet run`` and ``capacity`` build too (``outputs``:
    False for a worker, which writes none).

    With an identities file and no ``--ids-per-worker``, each worker takes an equal block
    of its rows: the rows over the workers the master started the test with (one block,
    every row, for a local run).

    Raises OptionError (:class:`~emulator.run.setup.SetupError`) with one line for the
    user."""
    setup = build_setup("locust", parsed, host=host, outputs=outputs)
    identities = setup.scenario.identities
    if identities is None or option_text(parsed, "ids_per_worker"):
        return setup
    workers = getattr(parsed, WORKERS_OPTION, None)
    count = len(workers) if isinstance(workers, list | tuple) and workers else 1
    return replace(setup, ids_per_worker=math.ceil(len(identities) / count))


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
    master_text = option_text(parsed, "source_addresses")
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


def metrics_address(
    parsed: Any, *, environ: Mapping[str, str], worker_index: int | None
) -> MetricsAddress | None:
    """Where this Locust process serves /metrics, or None: not asked for
    (:func:`emulator.run.setup.read_metrics`: ``--metrics-port``, else
    ``$OCPP_FLEET_METRICS_PORT``).  ``worker_index`` is None for a local run, the
    worker's index for a worker: with ``--metrics-port-per-worker`` a worker adds it to
    the port (port 0 stays 0).  Raises OptionError for a port that is not one.
    """
    address = read_metrics(parsed, environ)
    if address is None:
        return None
    port = address.port
    if port and worker_index is not None and option_flag(parsed, "metrics_port_per_worker"):
        port += worker_index
        if port > 65535:
            raise OptionError(
                f"--metrics-port-per-worker: worker {worker_index} would serve on port {port}"
            )
    return MetricsAddress(host=address.host, port=port)


def shape_schedule(parsed: Any) -> Schedule | None:
    """The ``--fleet-shape`` schedule, or None when no shape was asked for.

    A shape without ``users`` (or ``sizes``) takes the scenario's fleet size (its
    ``fleet.chargers``, else the rows of its identities file or ``--identities``).
    """
    spec = option_text(parsed, "fleet_shape")
    if not spec:
        return None
    defaults: dict[str, str] = {}
    path = option_text(parsed, "scenario")
    if path and "users=" not in spec:
        scenario = load_scenario(path)
        identities = option_text(parsed, "identities")
        if identities:
            try:
                scenario = scenario.with_identities(identities)
            except ValueError as exc:
                raise OptionError(f"--identities: {exc}") from None
        defaults["users"] = str(scenario.fleet_size)
    return parse_schedule(spec, defaults=defaults)


@dataclass(frozen=True, slots=True)
class VerdictOutputs:
    """Where the steps verdict goes: ``--verdict-json FILE`` and ``--report DIR``."""

    verdict_json: Path | None
    report: Path | None

    def __bool__(self) -> bool:
        return self.verdict_json is not None or self.report is not None


def verdict_outputs(parsed: Any) -> VerdictOutputs:
    """``--verdict-json`` and ``--report``, checked writable (OptionError)."""
    outputs = read_outputs("locust", parsed)
    return VerdictOutputs(verdict_json=outputs.json, report=outputs.report)


# --------------------------------------------------------------------------- SLOs


def command_line_slos(parsed: Any, *, environ: Mapping[str, str]) -> list[Slo]:
    """The rules of ``$LOCUST_SLO`` (separated by ``;``) and every ``--slo``.

    Raises OptionError naming the bad rule and where it was written."""
    return read_slos("locust", parsed, environ=environ)[1]


def scenario_slos(scenario: Scenario, path: str | Path) -> list[Slo]:
    """The scenario's ``[slo]`` rules; OptionError names the file and ``slo.rules[i]``."""
    return read_slos("locust", None, environ={}, scenario=scenario, path=str(path))[0]
