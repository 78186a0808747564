"""Every use ocpp-fleet makes of Locust's internals, in one place.

Checked against Locust 2.47.0 (:data:`CHECKED_ON`).  The rest of :mod:`emulator.loadtest`
uses Locust's documented API only: ``events``, the runner classes (to tell the roles
apart), ``runner.quit``/``stop``/``register_message``/``send_message``,
``runner.worker_index``, ``environment.process_exit_code``, ``LoadTestShape.runner``, the
web UI's ``app``, ``template_args`` and ``auth_required_if_enabled``.  What lives here
is not: module globals raised at start-up, a runner's method replaced, a private method
called, runner states and a master's worker bookkeeping, the web UI's endpoint name, the
spawn handler's option test, and how an ``init`` listener may end the process.

:func:`broken_assumptions` lists what of that an installed Locust no longer does;
``tests/loadtest/test_locust_internals.py`` runs it in a child process after every
upgrade (and with every test run), so a Locust that changed under us fails a test instead
of a run.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import locust
import locust.event
import locust.log
import locust.main
import locust.runners as locust_runners
import locust.stats
import locust.web
from locust import argument_parser
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

__all__ = [
    "CHECKED_ON",
    "SWARM_ENDPOINT",
    "allow_master_silence",
    "allow_missed_heartbeats",
    "broken_assumptions",
    "default_args_dict",
    "error_rows",
    "live_client_ids",
    "replace_default_args_dict",
    "run_before_quit",
    "running_workers",
    "send_stats_now",
    "spawning",
    "started_workers",
    "test_running",
    "unhandled_greenlet_exception",
    "user_exceptions",
    "worker_count",
]

log = logging.getLogger("ocpp_fleet")

CHECKED_ON: tuple[str, ...] = ("2.47.0",)

# The endpoint of Locust's POST /swarm: its blueprint is "locust", its view "swarm".
SWARM_ENDPOINT = "locust.swarm"


# --------------------------------------------------------------------------- heartbeats


def allow_master_silence(seconds: int) -> None:
    """A worker quits when it heard nothing from its master for
    ``runners.MASTER_HEARTBEAT_TIMEOUT`` s (read at each check): raise it to ``seconds``."""
    if locust_runners.MASTER_HEARTBEAT_TIMEOUT < seconds:
        locust_runners.MASTER_HEARTBEAT_TIMEOUT = seconds


def allow_missed_heartbeats(beats: int) -> None:
    """A master calls a worker missing after ``runners.HEARTBEAT_LIVENESS`` missed
    heartbeats (read when a worker connects or beats): raise it to ``beats``."""
    if locust_runners.HEARTBEAT_LIVENESS < beats:
        locust_runners.HEARTBEAT_LIVENESS = beats


# --------------------------------------------------------------------------- runners


def run_before_quit(runner: Any, before: Callable[[], None]) -> None:
    """Make ``runner.quit()`` call ``before()`` first (a failure is logged, the quit goes
    on).  Locust calls ``runner.quit()`` on the instance (``--run-time``, SIGTERM, the end
    of a shape), so replacing the bound method reaches every caller."""
    quit_now = runner.quit

    def quit() -> None:
        try:
            before()
        except Exception:
            log.exception("stopping the workers before quitting failed")
        quit_now()

    runner.quit = quit


def send_stats_now(runner: WorkerRunner) -> None:
    """A worker's report to its master now (``report_to_master`` fires), not in 3 s."""
    runner._send_stats()


def unhandled_greenlet_exception() -> bool:
    """Whether an exception escaped a greenlet or an event listener (Locust then exits 2)."""
    return bool(locust.log.unhandled_greenlet_exception)


def spawning(runner: Any) -> bool:
    """Whether this process's runner spawns users now (a worker: at its master's word)."""
    if isinstance(runner, WorkerRunner):
        return bool(runner.worker_state == STATE_SPAWNING)
    return runner is not None and runner.state == STATE_SPAWNING


def test_running(runner: Any) -> bool:
    """Whether a test runs (spawning or running)."""
    return runner is not None and runner.state in (STATE_SPAWNING, STATE_RUNNING)


def started_workers(runner: MasterRunner) -> list[int]:
    """The sorted indexes of the workers a master's start reaches (not missing ones)."""
    clients = runner.clients
    return sorted(
        int(runner.get_worker_index(client.id))
        for client in (*clients.ready, *clients.spawning, *clients.running)
    )


def running_workers(runner: MasterRunner) -> set[int]:
    """The indexes of the workers that run a test (spawning or running)."""
    clients = runner.clients
    return {int(runner.get_worker_index(c.id)) for c in (*clients.spawning, *clients.running)}


def live_client_ids(runner: Any) -> set[str]:
    """The client ids of a master's connected workers (none elsewhere)."""
    return set(getattr(runner, "clients", {}) or {})


def worker_count(runner: Any) -> int:
    return len(getattr(runner, "clients", {}) or {})


def error_rows(runner: Any) -> Iterator[tuple[str, str, int]]:
    """(request type, failure text, occurrences) of every failure row of the statistics."""
    errors = getattr(getattr(runner, "stats", None), "errors", None) or {}
    for error in errors.values():
        yield str(error.method), str(error.error), int(error.occurrences)


def user_exceptions(runner: Any) -> bool:
    """Whether user code raised (Locust's "exceptions" tab is not empty)."""
    return bool(getattr(runner, "exceptions", None))


# --------------------------------------------------------------------------- option names


def default_args_dict() -> Callable[[], dict[str, Any]]:
    """Locust's ``argument_parser.default_args_dict`` as installed now."""
    current: Callable[[], dict[str, Any]] = argument_parser.default_args_dict
    return current


def replace_default_args_dict(function: Callable[[], dict[str, Any]]) -> None:
    """Install ``function`` where Locust's spawn handler and web UI look it up."""
    argument_parser.default_args_dict = function


# --------------------------------------------------------------------------- the checks


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def broken_assumptions() -> list[str]:
    """What this module relies on and the installed Locust no longer does (empty: all
    holds).  Each entry names the assumption."""
    broken: list[str] = []

    def need(ok: object, what: str) -> None:
        if not ok:
            broken.append(what)

    runners_source = _source(locust_runners)
    need(
        isinstance(getattr(locust_runners, "MASTER_HEARTBEAT_TIMEOUT", None), int)
        and "time.time() - MASTER_HEARTBEAT_TIMEOUT"
        in _source(WorkerRunner.heartbeat_timeout_checker),
        "runners.MASTER_HEARTBEAT_TIMEOUT is an int the worker reads at each check",
    )
    listener = _source(MasterRunner.handle_message)
    need(
        isinstance(getattr(locust_runners, "HEARTBEAT_LIVENESS", None), int)
        and "heartbeat_liveness=HEARTBEAT_LIVENESS" in listener
        and "c.heartbeat = HEARTBEAT_LIVENESS" in listener,
        "runners.HEARTBEAT_LIVENESS is an int the master reads when a worker connects or beats",
    )
    need(
        _parameters(MasterRunner.quit) == ["self"]
        and 'Message("quit"' in _source(MasterRunner.quit)
        and "gevent.sleep(0.5)" in _source(MasterRunner.quit),
        "MasterRunner.quit() tells the workers to quit and waits only half a second",
    )
    main_source = _source(locust.main)
    need(
        "runner.quit()" in main_source,
        "Locust's main calls runner.quit() on the instance (a replaced quit is called)",
    )
    need(
        _parameters(WorkerRunner._send_stats) == ["self"]
        and "report_to_master.fire" in _source(WorkerRunner._send_stats),
        "WorkerRunner._send_stats() fires report_to_master and sends the report now",
    )
    need(
        isinstance(getattr(locust.log, "unhandled_greenlet_exception", None), bool),
        "locust.log.unhandled_greenlet_exception is a bool",
    )
    need(
        "self.worker_state = STATE_SPAWNING" in _source(WorkerRunner.handle_message),
        "a worker's worker_state is STATE_SPAWNING while it spawns",
    )
    need(
        all(
            isinstance(getattr(locust_runners.WorkerNodes, name, None), property)
            for name in ("ready", "spawning", "running")
        )
        and _parameters(MasterRunner.get_worker_index) == ["self", "client_id"],
        "a master's clients have ready/spawning/running and get_worker_index(client_id)",
    )
    need(
        "self.spawn_rate = spawn_rate" in runners_source,
        "a master keeps its spawn rate in runner.spawn_rate",
    )
    stats_error = _parameters(locust.stats.StatsError.__init__)
    need(
        all(name in stats_error for name in ("method", "error", "occurrences")),
        "a statistics error row has method, error and occurrences",
    )
    need(
        _parameters(argument_parser.default_args_dict) == []
        and re.search(
            r"if k not in argument_parser\.default_args_dict\(\)",
            _source(WorkerRunner.handle_message),
        ),
        "a worker keeps the spawn message's options not in argument_parser.default_args_dict()",
    )
    fire = _source(locust.event.EventHook.fire)
    need(
        "except Exception:" in fire and "BaseException" not in fire,
        "an event listener's SystemExit is not caught (an init listener can end the process)",
    )
    init_at = main_source.find("events.init.fire(")
    start_at = main_source.find("start_automatic_run()", init_at)
    need(
        0 <= init_at < start_at,
        "Locust fires init before a headless run starts its users",
    )
    web_source = _source(locust.web)
    need(
        'Blueprint("locust"' in web_source
        and '@app_blueprint.route("/swarm", methods=["POST"])' in web_source
        and "def swarm()" in web_source
        and '{"success": False, "message": err_msg' in web_source,
        f"the web UI's POST /swarm is the endpoint {SWARM_ENDPOINT} and refuses with "
        '{"success": False, "message": ...}',
    )
    return broken
