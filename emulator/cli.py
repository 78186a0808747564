"""``ocpp-fleet``: run a fleet of emulated wallboxes, or the embedded reference CSMS.

User mistakes (a bad scenario, an unreachable CSMS, a port in use) end with one
clear line on stderr and a non-zero exit code, never a traceback:
0 success · 1 an SLO was not met (``--slo``, ``[slo]``) · 2 bad input (usage, scenario)
· 3 the run could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from emulator.capacity import CapacityUsageError
from emulator.capacity import command as capacity_command
from emulator.fleet.faults import csms_misbehaviour
from emulator.fleet.health import HealthSnapshot
from emulator.fleet.ledger import compare as compare_ledgers
from emulator.fleet.ledger import fleet_ledger
from emulator.fleet.runner import Fleet, FleetStartError, parse_address_pool
from emulator.fleet.scenario import Scenario, ScenarioError, load_scenario, parse_start_time
from emulator.fleet.security import SecurityConfigError
from emulator.metrics import MultiReporter, Reporter
from emulator.metrics.fleetview import FleetCounts
from emulator.metrics.slo import (
    Slo,
    SloError,
    Verdict,
    evaluate,
    ledger_slo,
    option_sources,
    parse_rules,
    scenario_sources,
)
from emulator.metrics.stats import Direction, RunStats
from emulator.metrics.summary import (
    conformance_dict,
    render_conformance,
    render_summary,
    summary_dict,
)
from emulator.metrics.timeseries import TimeSeries
from emulator.report import ReportData, machine, run_parameters, run_step, versions, write_report

if TYPE_CHECKING:
    from emulator.csms import ReferenceCsms
    from emulator.csms.operations import OperationSchedule
    from emulator.metrics.prometheus import MetricsEndpoint

EXIT_SLO_FAILED = 1
EXIT_USAGE = 2
EXIT_START = 3


class UsageError(Exception):
    """A mistake of the user's, printed as one line."""


def _run_loop(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocpp-fleet",
        description="Emulate fleets of OCPP 1.6J AC wallboxes against a CSMS.",
    )
    parser.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a fleet of wallboxes")
    run.add_argument(
        "--csms-url",
        help="CSMS OCPP-J endpoint, e.g. ws://host:9000/ocpp "
        "(default: start the embedded reference CSMS on a free loopback port)",
    )
    run.add_argument(
        "--chargers", type=_positive_int, help="fleet size (default: from the scenario)"
    )
    run.add_argument("--scenario", required=True, type=Path, help="scenario TOML file")
    run.add_argument(
        "--duration", type=_positive_float, default=60.0, help="seconds to run (default 60)"
    )
    run.add_argument("--id-prefix", help="charger id prefix (default: from the scenario)")
    run.add_argument(
        "--source-addresses",
        type=_address_pool,
        default=(),
        help="local addresses to connect from, round robin, e.g. 127.0.0.2-127.0.0.9 or "
        "10.1.0.5,10.1.0.6: each holds ~28k connections to one CSMS address (docs/loadtest.md)",
    )
    run.add_argument("--seed", type=int, help="random seed (default: scenario seed, else 1)")
    run.add_argument(
        "--start-time",
        type=_start_time,
        metavar="HH:MM|now",
        help="local time of day at which the scenario's virtual clock starts "
        "(default: sessions.start_time of the scenario; now: the wall clock's)",
    )
    run.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    run.add_argument(
        "--ledger",
        type=Path,
        metavar="DIR",
        help="write the fleet's ledger (and the embedded CSMS's, and their comparison) to DIR",
    )
    run.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="EXPR",
        help='service-level objective, repeatable, e.g. "StartTransaction:p99<800ms", '
        '"errors<0.5%%", "timeouts=0", "ledger=0" (docs/slo.md); judged after the ramp, '
        "with the scenario's [slo] rules: exit code 1 when one is not met",
    )
    run.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write report.html (offline, with plots), result.json and the 10 s time series "
        "(timeseries.json, .csv) to DIR",
    )
    run.add_argument("--no-progress", action="store_true", help="no live progress display")
    run.add_argument(
        "--strict",
        action="store_true",
        help="validate every outgoing frame against the OCPP 1.6 schemas too",
    )
    run.add_argument(
        "--strict-csms",
        action="store_true",
        help="refuse every CSMS message that breaks its OCPP 1.6 schema (default: a date-time "
        "without a UTC offset is read as UTC, as real chargers do, and counted)",
    )
    run.add_argument(
        "--metrics-port",
        type=_port,
        default=os.environ.get("OCPP_FLEET_METRICS_PORT") or None,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; "
        "default $OCPP_FLEET_METRICS_PORT, else no metrics server)",
    )
    run.add_argument(
        "--metrics-host",
        default=os.environ.get("OCPP_FLEET_METRICS_HOST") or "127.0.0.1",
        help="address the metrics server listens on "
        "(default $OCPP_FLEET_METRICS_HOST, else 127.0.0.1)",
    )

    _add_capacity_parser(sub)

    csms = sub.add_parser("csms", help="run the embedded reference CSMS")
    csms.add_argument("--host", default="127.0.0.1")
    csms.add_argument("--port", type=int, default=9000)
    csms.add_argument("--heartbeat-interval", type=int, default=60)
    csms.add_argument("--certfile", type=Path, help="serve wss:// with this certificate (PEM)")
    csms.add_argument("--keyfile", type=Path, help="its private key (default: in --certfile)")
    csms.add_argument(
        "--client-ca", type=Path, help="require client certificates signed by this CA (profile 3)"
    )
    csms.add_argument(
        "--password-env",
        help="require HTTP Basic auth: every charger id with the password in this variable",
    )
    csms.add_argument(
        "--service-time",
        metavar="DURATION",
        help="serve charger CALLs one at a time, DURATION each (e.g. 20ms, 0.02s): a CSMS "
        "of known capacity, 1/DURATION CALLs per second (default: answer at once)",
    )
    return parser


def _start_time(text: str) -> str:
    try:
        parse_start_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_capacity_parser(sub: Any) -> None:
    capacity = sub.add_parser(
        "capacity",
        help="find how many chargers a CSMS holds within its SLOs (grow, hold, bisect)",
        description="Grow one fleet in steps, judge the SLOs over each step's hold, bisect "
        "between the last passing and the first failing size to within 10 %%, and name "
        "what limited it (docs/capacity-planning.md). Exit 0 with a verdict, 1 when "
        "even --start failed, 2 bad input, 3 could not start.",
    )
    capacity.add_argument(
        "--csms-url", required=True, help="CSMS OCPP-J endpoint (ws:// or wss://)"
    )
    capacity.add_argument("--scenario", required=True, type=Path, help="scenario TOML file")
    capacity.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="EXPR",
        help='service-level objective, repeatable, e.g. "StartTransaction:p99<800ms" '
        "(docs/slo.md); with the scenario's [slo] rules, at least one",
    )
    capacity.add_argument(
        "--start", type=_positive_int, default=100, help="first fleet size (default 100)"
    )
    capacity.add_argument("--max", type=_positive_int, help="largest fleet size to try")
    capacity.add_argument(
        "--growth",
        type=_positive_float,
        default=1.5,
        help="factor from one passing step to the next (default 1.5)",
    )
    capacity.add_argument(
        "--hold",
        type=_positive_float,
        default=60.0,
        help="seconds each step is held and judged, after its wallboxes booted (default 60)",
    )
    capacity.add_argument("--seed", type=int, help="random seed (default: scenario seed, else 1)")
    capacity.add_argument(
        "--start-time",
        type=_start_time,
        metavar="HH:MM|now",
        help="local time of day at which the scenario's virtual clock starts",
    )
    capacity.add_argument(
        "--source-addresses",
        type=_address_pool,
        default=(),
        help="local addresses to connect from, round robin (docs/loadtest.md)",
    )
    capacity.add_argument("--json", type=Path, help="write the verdict JSON to this file")
    capacity.add_argument(
        "--report", type=Path, metavar="DIR", help="write report.html and its data to DIR"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def _address_pool(text: str) -> list[str]:
    try:
        return parse_address_pool(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    err = Console(stderr=True, soft_wrap=True)  # an error stays one line in a pipe
    try:
        if args.command == "run":
            return _run_loop(_run(args))
        if args.command == "capacity":
            console = Console(width=None if sys.stdout.isatty() else 132)
            return _run_loop(capacity_command(args, console))
        return _run_loop(_csms(args))
    except ScenarioError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    except (UsageError, CapacityUsageError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    except SecurityConfigError as exc:
        err.print(f"[red]error:[/] {args.scenario}: {exc}", highlight=False)
        return EXIT_USAGE
    except FleetStartError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_START
    except KeyboardInterrupt:
        return 130


class _AnyCharger(dict[str, str]):
    """Basic-auth table that knows every charger id, all with one password."""

    def __init__(self, password: str) -> None:
        super().__init__()
        self._password = password

    def get(self, key: str, default: Any = None) -> Any:
        return self._password

    def __repr__(self) -> str:
        return "_AnyCharger(***)"


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


async def _csms(args: argparse.Namespace) -> int:
    from emulator.csms import ReferenceCsms, parse_service_time

    service_time = None
    if args.service_time is not None:
        try:
            service_time = parse_service_time(args.service_time)
        except ValueError as exc:
            raise UsageError(f"--service-time {exc}") from None
    context = _csms_tls(args)
    basic_auth = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            raise UsageError(
                f"--password-env: the environment variable {args.password_env} is not set"
            )
        basic_auth = _AnyCharger(password)
    csms = ReferenceCsms(
        host=args.host,
        port=args.port,
        heartbeat_interval=args.heartbeat_interval,
        ssl=context,
        basic_auth=basic_auth,
        service_time=service_time,
    )
    try:
        await csms.start()
    except OSError as exc:
        raise FleetStartError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    print(f"reference CSMS listening on {csms.url}/<chargerId>", flush=True)
    if service_time is not None:
        print(
            f"serving CALLs one at a time, {service_time * 1000:g} ms each: "
            f"capacity {1 / service_time:g} CALLs/s",
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


async def _run(args: argparse.Namespace) -> int:
    scenario: Scenario = load_scenario(args.scenario)
    if args.start_time is not None:
        scenario = scenario.with_start_time(args.start_time)
    slos = _parse_slos(args, scenario)
    # A pipe or CI log gets a wide table instead of rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 132)
    if args.metrics_port is None:
        return await _run_fleet(args, scenario, console, None, slos)
    from emulator.metrics.prometheus import MetricsEndpoint, disable_created_series

    disable_created_series()
    try:
        metrics = MetricsEndpoint(host=args.metrics_host, port=args.metrics_port)
    except OSError as exc:
        raise FleetStartError(
            f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: "
            f"{exc.strerror or exc}"
        ) from None
    console.print(f"Prometheus metrics on {metrics.url}")
    try:
        return await _run_fleet(args, scenario, console, metrics, slos)
    finally:
        metrics.close()


async def _run_fleet(
    args: argparse.Namespace,
    scenario: Scenario,
    console: Console,
    metrics: MetricsEndpoint | None,
    slos: Sequence[Slo] = (),
) -> int:
    chargers = args.chargers or scenario.fleet.chargers
    seed = (
        args.seed if args.seed is not None else (scenario.seed if scenario.seed is not None else 1)
    )
    stats = RunStats()
    reporter: Reporter = stats
    if metrics is not None:
        reporter = MultiReporter(reporters=(stats, metrics.reporter))
    csms = None
    background: list[asyncio.Task[None]] = []
    url = args.csms_url
    if url is None:
        from emulator.csms import ReferenceCsms

        # The embedded CSMS knows the scenario's invalid, blocked and expired cards.
        csms = ReferenceCsms(host="127.0.0.1", port=0, id_tags=scenario.csms_id_tags())
        await csms.start()
        url = csms.url
        console.print(f"embedded reference CSMS on {url}")
        csms.misbehave = csms_misbehaviour(scenario.faults, np.random.default_rng([seed, 1]))
        if scenario.faults.csms_restart_seconds > 0:
            background.append(
                asyncio.create_task(
                    _restart_later(
                        csms, scenario.faults.csms_restart_at, scenario.faults.csms_restart_seconds
                    )
                )
            )
    elif not url.startswith(("ws://", "wss://")):
        raise UsageError(f"--csms-url must start with ws:// or wss://, got {url!r}")
    fleet = Fleet(
        scenario=scenario,
        csms_url=url,
        chargers=chargers,
        seed=seed,
        reporter=reporter,
        id_prefix=args.id_prefix,
        strict=args.strict,
        source_addresses=args.source_addresses,
        tune_gc=True,  # this process runs the fleet: keep collection pauses short
        strict_csms=args.strict_csms,
    )
    fleet.health.on_change = lambda snapshot: _health_changed(console, snapshot)
    if metrics is not None:
        metrics.collector.add(fleet)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, fleet.stop)
    sessions = scenario.sessions
    console.print(
        f"{chargers} wallboxes, scenario [bold]{scenario.name}[/], seed {seed}, "
        f"start {sessions.start_time}{' (warm)' if sessions.warm_start else ''}, "
        f"{args.duration:g} s → {url}"
    )
    operations = _csms_operations(scenario, csms, fleet, chargers, seed, console)
    started = time.monotonic()
    progress_task = None
    live = None
    if not args.no_progress:
        live = Live(
            _progress(fleet.counts(), stats, 0.0, 0.0), console=console, refresh_per_second=2
        )
        live.start()
        progress_task = asyncio.create_task(_show_progress(live, fleet, stats, started))
    window = _SloWindow(stats, args.duration)
    series = recording = None
    if args.report is not None:
        series = TimeSeries(
            stats, fleet=fleet.gauges, generator=lambda: fleet.health.snapshot().as_dict()
        )
        recording = asyncio.create_task(series.record(), name="timeseries")
    try:
        if metrics is None:
            await fleet.run(duration=args.duration, **window.hooks())
        else:
            async with metrics.loop_lag_monitor():
                await fleet.run(duration=args.duration, **window.hooks())
    finally:
        stats.stop()
        if recording is not None and series is not None:
            recording.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recording
            series.finish()
        if progress_task is not None:
            progress_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress_task
        if live is not None:
            live.update(_progress(fleet.counts(), stats, time.monotonic() - started, 0.0))
            live.stop()
        if operations is not None:
            await operations.stop()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if csms is not None:
            await csms.stop()
    render_summary(stats, console=console, chargers=chargers)
    _health_summary(console, fleet)
    counts = fleet.counts()
    console.print(
        f"transactions: {counts.transactions_started} started, "
        f"{counts.transactions_stopped} stopped; transaction messages not delivered: "
        f"{counts.transaction_backlog}"
    )
    never_accepted = _conformance_summary(console, fleet, chargers)
    books = fleet_ledger(fleet.wallboxes)
    discrepancies: int | None = None
    if args.ledger:
        args.ledger.mkdir(parents=True, exist_ok=True)
        (args.ledger / "fleet-ledger.json").write_text(json.dumps(books, indent=1))
        if csms is None:
            _external_ledger_note(console, args.ledger)
    if csms is not None:
        ledger = csms.ledger.to_json()
        console.print(f"reference CSMS ledger: {_ledger_line(ledger)}")
        comparison = compare_ledgers(books, ledger)
        discrepancies = len(comparison.discrepancies)
        verdict = "[green]ledgers agree[/]" if comparison.consistent else "[red]LEDGERS DISAGREE[/]"
        console.print(
            f"{verdict}: {comparison.matched} transactions matched, "
            f"{len(comparison.explained)} differences explained by rules, "
            f"{len(comparison.discrepancies)} discrepancies"
        )
        for line in comparison.discrepancies[:20]:
            console.print(f"  [red]✗[/] {line}", highlight=False)
        if args.ledger:
            (args.ledger / "csms-ledger.json").write_text(json.dumps(ledger, indent=1))
            (args.ledger / "comparison.json").write_text(json.dumps(comparison.to_json(), indent=1))
    if operations is not None:
        console.print("reference CSMS operations (answers per charger):")
        for outcome in operations.outcomes:
            console.print(f"  {outcome.line()}", highlight=False)
    slo_verdict = window.judge(slos, ledger_discrepancies=discrepancies) if slos else None
    if slo_verdict is not None:
        _render_verdict(console, slo_verdict)
    if args.json:
        report = summary_dict(stats, chargers=chargers)
        report["fleet"] = counts.__dict__ if hasattr(counts, "__dict__") else _counts_dict(counts)
        if operations is not None:
            report["csmsOperations"] = [o.to_json() for o in operations.outcomes]
        report["generator"] = fleet.health.report()
        report["csms"] = conformance_dict(
            fleet.conformance, chargers=len(fleet.drivers), never_accepted=never_accepted
        )
        if slo_verdict is not None:
            report["slo"] = slo_verdict.to_json()
        args.json.write_text(json.dumps(report, indent=2))
    if args.report is not None and series is not None:
        _write_run_report(
            args, console, scenario, seed, chargers, url, window, slo_verdict, fleet, series
        )
    if fleet.drivers and never_accepted == len(fleet.drivers):
        return _none_accepted(fleet)
    return EXIT_SLO_FAILED if slo_verdict is not None and not slo_verdict.passed else 0


def _conformance_summary(console: Console, fleet: Fleet, chargers: int) -> int:
    """The CSMS's schema violations, idTagInfo answers, wallboxes it never accepted, and
    arrivals that found every card in use; returns how many wallboxes were never accepted."""
    never_accepted = fleet.never_accepted
    render_conformance(
        fleet.conformance,
        console=console,
        chargers=len(fleet.drivers) or chargers,
        never_accepted=never_accepted,
    )
    if fleet.tags is not None and fleet.tags.exhausted:
        console.print(
            f"{fleet.tags.exhausted:,} arrivals found every idTag of the scenario at a charger "
            "and did not happen (more tags: sessions.id_tags count)",
            highlight=False,
            soft_wrap=True,
        )
    return never_accepted


def _none_accepted(fleet: Fleet) -> int:
    """No wallbox was ever accepted: the run could not start (exit code 3)."""
    err = Console(stderr=True, soft_wrap=True)
    boots = [k for k in fleet.conformance.sorted_violations() if k.action == "BootNotification"]
    hint = ""
    if boots:
        kind = boots[0]
        hint = f"; the CSMS broke the schema of {kind.where} ({kind.code}) {kind.count:,} times"
    err.print(
        f"[red]error:[/] the CSMS accepted none of the {len(fleet.drivers):,} wallboxes "
        f"(BootNotification){hint}",
        highlight=False,
    )
    return EXIT_START


def _external_ledger_note(console: Console, directory: Path) -> None:
    """``--ledger`` against an external CSMS: only the fleet's books exist."""
    console.print(
        f"ledger: wrote {directory / 'fleet-ledger.json'} (the fleet's books only: an "
        "external CSMS's books cannot be compared; the embedded reference CSMS keeps its own)",
        highlight=False,
        soft_wrap=True,
    )


def _write_run_report(
    args: argparse.Namespace,
    console: Console,
    scenario: Scenario,
    seed: int,
    chargers: int,
    url: str,
    window: _SloWindow,
    verdict: Verdict | None,
    fleet: Fleet,
    series: TimeSeries,
) -> None:
    """``--report DIR``: the run as one step (its window after the ramp)."""
    after_ramp, note = window.window()
    health = fleet.health.report()
    step = run_step(
        after_ramp,
        chargers=chargers,
        connected=fleet.counts().booted,
        slo=[] if verdict is None else [r.to_json() for r in verdict.results],
        generator={
            "lateness_p99_ms": round(health["worstLatenessP99"] * 1000.0, 3),
            "loop_lag_p99_ms": round(health["worstLoopLagP99"] * 1000.0, 3),
            "lateness_limit_ms": health["latenessLimit"] * 1000.0,
            "loop_lag_limit_ms": health["lagLimit"] * 1000.0,
        },
    )
    sentence = _run_sentence(chargers, after_ramp, verdict)
    result: dict[str, Any] = {
        "capacity": None,
        "verdict": sentence,
        "steps": [step],
        "scenario": scenario.name,
        "seed": seed,
        "start_time": scenario.sessions.start_time,
        "versions": versions(),
        "machine": machine(),
    }
    if verdict is not None:
        result["slo"] = verdict.to_json()
    if note:
        result["note"] = note
    files = write_report(
        args.report,
        ReportData(
            kind="run",
            verdict=sentence,
            result=result,
            rows=series.rows,
            interval=series.interval,
            parameters=run_parameters(
                scenario=scenario.name,
                seed=seed,
                start_time=scenario.sessions.start_time,
                chargers=chargers,
                duration_s=args.duration,
                csms_url=url,
                slo=", ".join(r.slo.text for r in verdict.results) if verdict else "none",
            ),
        ),
    )
    console.print(f"report: {files.html}")


def _run_sentence(chargers: int, window: RunStats, verdict: Verdict | None) -> str:
    """The report's headline for a run."""
    calls = sum(a.count for (d, _), a in window.actions.items() if d is Direction.CP_TO_CSMS)
    errors = sum(a.errors for (d, _), a in window.actions.items() if d is Direction.CP_TO_CSMS)
    load = (
        f"{chargers:,} chargers sent {calls:,} calls in the {window.elapsed:.0f} s after the "
        f"ramp, {errors:,} failed"
    )
    if verdict is None:
        return f"{load}; no SLOs were set."
    if verdict.passed:
        return f"{load}; all {len(verdict.results)} SLOs were met."
    missed = "; ".join(f"{r.slo.text} was {r.value_text}" for r in verdict.failed)
    return f"{load}; {len(verdict.failed)} of {len(verdict.results)} SLOs were not met: {missed}."


def _parse_slos(args: argparse.Namespace, scenario: Scenario) -> list[Slo]:
    """The scenario's ``[slo]`` rules and every ``--slo``; a bad one is a usage error
    naming where it was written."""
    rules = scenario_sources(scenario.slo.rules, str(args.scenario))
    rules += option_sources("--slo", args.slo)
    try:
        slos = parse_rules(rules)
    except SloError as exc:
        raise UsageError(str(exc)) from None
    ledger = ledger_slo(slos)
    if ledger is not None and args.csms_url is not None:
        raise UsageError(
            f"{ledger.source}: the ledger SLO cannot be judged against an external CSMS "
            "(only the embedded reference CSMS keeps a ledger): run without --csms-url, "
            "or without this SLO"
        )
    return slos


class _SloWindow:
    """What an SLO verdict judges: from the end of the ramp (the last wallbox started) to
    the end of the duration, before the shutdown drain; a snapshot at each end."""

    def __init__(self, stats: RunStats, duration: float) -> None:
        self.stats = stats
        self.start = stats.snapshot()
        self.planned_end = _moment(self.start) + duration
        self.ramped: RunStats | None = None
        self.ended: RunStats | None = None

    def hooks(self) -> dict[str, Any]:
        return {"on_ramped": self._ramped, "on_ending": self._ending}

    def _ramped(self) -> None:
        self.ramped = self.stats.snapshot()

    def _ending(self) -> None:
        self.ended = self.stats.snapshot()

    def window(self) -> tuple[RunStats, str | None]:
        """The measurements after the ramp, and a note when that is not the window."""
        end = self.ended if self.ended is not None else self.stats
        note = None
        start = self.ramped
        if start is None:
            note = "the run ended before its ramp did: judged from the start"
            start = self.start
        elif _moment(start) >= self.planned_end:
            note = "the run was shorter than its ramp: judged from the start"
            start = self.start
        return end.since(start), note

    def judge(self, slos: Sequence[Slo], *, ledger_discrepancies: int | None) -> Verdict:
        window, note = self.window()
        return evaluate(slos, window, ledger_discrepancies=ledger_discrepancies, note=note)


def _moment(snapshot: RunStats) -> float:
    """When a :meth:`RunStats.snapshot` was taken (its clock)."""
    return snapshot.stopped if snapshot.stopped is not None else snapshot.started


def _render_verdict(console: Console, verdict: Verdict) -> None:
    """The SLO table after the summary, and the final verdict line."""
    table = Table(
        title=f"Service-level objectives (window: {verdict.window_s:.1f} s after the ramp)"
        if verdict.note is None
        else f"Service-level objectives (window: {verdict.window_s:.1f} s; {verdict.note})",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("SLO", no_wrap=True)
    table.add_column("Measured", justify="right", no_wrap=True)
    table.add_column("Limit", justify="right", no_wrap=True)
    table.add_column("Verdict", no_wrap=True)
    table.add_column("Over")
    for result in verdict.results:
        table.add_row(
            Text(result.slo.text),
            Text(result.value_text),
            Text(f"{result.slo.op} {result.slo.limit_text}"),
            Text("PASS", style="bold green") if result.passed else Text("FAIL", style="bold red"),
            Text(result.detail),
        )
    console.print(table)
    style = "bold green" if verdict.passed else "bold red"
    console.print(Text(verdict.line(), style=style), soft_wrap=True)


def _csms_operations(
    scenario: Scenario,
    csms: ReferenceCsms | None,
    fleet: Fleet,
    chargers: int,
    seed: int,
    console: Console,
) -> OperationSchedule | None:
    """Start the scenario's ``[[csms.operations]]`` on the embedded CSMS, if it runs."""
    operations = scenario.csms.operations
    if not operations:
        return None
    if csms is None:
        console.print(
            f"[yellow]note:[/] the scenario's {len(operations)} csms.operations are not run: "
            "only the embedded reference CSMS runs them (no --csms-url)"
        )
        return None
    from emulator.csms.operations import OperationSchedule

    schedule = OperationSchedule(
        csms=csms,
        operations=operations,
        charger_ids=[fleet.charger_id(n) for n in range(1, chargers + 1)],
        seed=seed,
    )
    schedule.start()
    return schedule


def _health_changed(console: Console, snapshot: HealthSnapshot) -> None:
    """The generator's verdict flipped (emulator.fleet.health): say so at once."""
    if snapshot.overloaded:
        console.print(
            f"[bold red]warning:[/] the load generator is the bottleneck ({snapshot.describe()}): "
            "latencies measured now include its own delays; run fewer wallboxes per process",
            highlight=False,
        )
    else:
        console.print(f"the load generator keeps up again ({snapshot.describe()})", highlight=False)


def _health_summary(console: Console, fleet: Fleet) -> None:
    health = fleet.health
    report = health.report()
    line = (
        f"generator: worst p99 send lateness {report['worstLatenessP99'] * 1000:.0f} ms "
        f"(limit {health.lateness_limit * 1000:.0f}), worst p99 loop lag "
        f"{report['worstLoopLagP99'] * 1000:.0f} ms (limit {health.lag_limit * 1000:.0f})"
    )
    if report["overloadedSeconds"] > 0:
        console.print(
            f"{line}\n[bold red]WARNING:[/] the load generator was the bottleneck for "
            f"{report['overloadedSeconds']:.0f} s of this run: latencies measured then include "
            "its own delays. Run fewer wallboxes per process (or more processes).",
            highlight=False,
        )
    else:
        console.print(f"{line}: kept up", highlight=False)


async def _restart_later(csms: ReferenceCsms, at: float, down_for: float) -> None:
    await asyncio.sleep(at)
    await csms.restart(down_for=down_for)


def _counts_dict(counts: FleetCounts) -> dict[str, int]:
    return {name: getattr(counts, name) for name in counts.__slots__}


def _ledger_line(ledger: dict[str, Any]) -> str:
    transactions = ledger.get("transactions", [])
    stopped = sum(1 for t in transactions if t.get("meterStop") is not None)
    energy = sum(t.get("energyWh") or 0 for t in transactions)
    return f"{len(transactions)} transactions, {stopped} stopped, {energy / 1000:.1f} kWh"


async def _show_progress(live: Live, fleet: Fleet, stats: RunStats, started: float) -> None:
    last_total = stats.messages_sent + stats.messages_received
    last_time = time.monotonic()
    while True:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        total = stats.messages_sent + stats.messages_received
        rate = (total - last_total) / max(1e-9, now - last_time)
        last_total, last_time = total, now
        live.update(_progress(fleet.counts(), stats, now - started, rate))


def _progress(counts: FleetCounts, stats: RunStats, elapsed: float, rate: float) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{elapsed:5.0f} s[/]",
        f"connected [bold]{counts.connected}[/]/{counts.chargers}",
        f"booted {counts.booted}",
        f"charging [bold green]{counts.charging}[/]",
        f"tx {counts.transactions_started}↑ {counts.transactions_stopped}↓",
        f"[bold]{rate:6.0f}[/] msg/s",
        f"queued {counts.queue_depth}",
    )
    return table


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
