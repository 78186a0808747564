"""Every use ocpp-fleet makes of Locust's internals, in one place.

Checked against Locust 2.47.0 (:data:`CHECKED_ON`).  The rest of :mod:`emulator.loadtest`
uses Locust's documented API only: ``events``, the runner classes (to tell the roles
apart), ``runner.quit``/``stop``/``register_message``/``send_message``,
``runner.worker_index``, ``environment.process_exit_code``, ``LoadTestShape.runner``, the
web UI's ``app``, ``template_args`` and ``auth_required_if_enabled``.  What lives here
is not: module globals raised at start-up, a runner's method replaced, a private method
called, runner states and a master's worker bookkeeping, the web UI's endpoint name, the
spawn handler's option test, how an ``init`` listener may end the process, and a user's
life in its greenlet (:func:`park`).

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
import locust.user.users as locust_users
import locust.web
from gevent import GreenletExit, get_hub
from locust import User, argument_parser
from locust.exception import StopTest, StopUser
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
    "park",
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


# --------------------------------------------------------------------------- users


def park(user: User) -> None:
    """A user's life without tasks, in place of ``User.run``: ``on_start``, then wait in
    its greenlet until Locust kills it, then ``on_stop``.

    ``User.run`` makes a ``DefaultTaskSet`` and loops over the tasks: a wallbox user's
    greenlet woke every ``wait_time`` to do nothing, with a timer each and a deep stack
    saved at every switch.  Parked, it is a greenlet switched out at the hub with no
    watcher: only Locust's kill (``GreenletExit`` thrown in) resumes it.  It waits in
    Locust's ``LOCUST_STATE_WAITING``, so a graceful stop (``stop_timeout``) kills it at
    once, as it would a user sleeping between tasks.  An ``on_start`` failure is logged
    and reported as ``User.run`` does (``user_error``)."""
    user._state = locust_users.LOCUST_STATE_RUNNING
    try:
        try:
            user.on_start()
        except Exception as exc:
            log.exception("a wallbox user could not start")
            if not isinstance(exc, (StopUser, StopTest)):
                user.environment.events.user_error.fire(
                    user_instance=user, exception=exc, tb=exc.__traceback__
                )
            raise
        user._state = locust_users.LOCUST_STATE_WAITING
        get_hub().switch()  # nothing switches back: only a kill ends the wait
    except (GreenletExit, StopUser, StopTest):
        user.on_stop()


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


def _master_silence_is_read_at_each_check() -> bool:
    return isinstance(
        getattr(locust_runners, "MASTER_HEARTBEAT_TIMEOUT", None), int
    ) and "time.time() - MASTER_HEARTBEAT_TIMEOUT" in _source(
        WorkerRunner.heartbeat_timeout_checker
    )


def _liveness_is_read_when_a_worker_beats() -> bool:
    handler = _source(MasterRunner.handle_message)
    return (
        isinstance(getattr(locust_runners, "HEARTBEAT_LIVENESS", None), int)
        and "heartbeat_liveness=HEARTBEAT_LIVENESS" in handler
        and "c.heartbeat = HEARTBEAT_LIVENESS" in handler
    )


def _master_quit_waits_half_a_second() -> bool:
    source = _source(MasterRunner.quit)
    return (
        _parameters(MasterRunner.quit) == ["self"]
        and 'Message("quit"' in source
        and "gevent.sleep(0.5)" in source
    )


def _send_stats_reports_now() -> bool:
    return _parameters(WorkerRunner._send_stats) == ["self"] and "report_to_master.fire" in _source(
        WorkerRunner._send_stats
    )


def _worker_bookkeeping() -> bool:
    nodes = locust_runners.WorkerNodes
    return all(
        isinstance(getattr(nodes, name, None), property)
        for name in ("ready", "spawning", "running")
    ) and _parameters(MasterRunner.get_worker_index) == ["self", "client_id"]


def _spawn_handler_tests_default_args() -> bool:
    return _parameters(argument_parser.default_args_dict) == [] and bool(
        re.search(
            r"if k not in argument_parser\.default_args_dict\(\)",
            _source(WorkerRunner.handle_message),
        )
    )


def _init_listener_can_end_the_process() -> bool:
    fire = _source(locust.event.EventHook.fire)
    return "except Exception:" in fire and "BaseException" not in fire


def _init_fires_before_a_headless_start() -> bool:
    main = _source(locust.main)
    init_at = main.find("events.init.fire(")
    return 0 <= init_at < main.find("start_automatic_run()", init_at)


def _a_user_lives_in_run_and_a_waiting_one_is_killed_at_once() -> bool:
    start, stop, run = _source(User.start), _source(User.stop), _source(User.run)
    return (
        "user.run()" in start
        and "self._state in (None, LOCUST_STATE_WAITING)" in stop
        and "self._group.killone(self._greenlet)" in stop
        and "except (GreenletExit, StopUser, StopTest):" in run
        and "self.on_stop()" in run
        and "user_error.fire(user_instance=self, exception=e, tb=e.__traceback__)" in run
    )


def _swarm_endpoint_refuses_with_a_message() -> bool:
    web = _source(locust.web)
    return (
        SWARM_ENDPOINT == "locust.swarm"
        and 'Blueprint("locust"' in web
        and '@app_blueprint.route("/swarm", methods=["POST"])' in web
        and "def swarm()" in web
        and '{"success": False, "message": err_msg' in web
    )


# What this module relies on: (the assumption, its check).
_ASSUMPTIONS: tuple[tuple[str, Callable[[], bool]], ...] = (
    (
        "runners.MASTER_HEARTBEAT_TIMEOUT is an int a worker reads at each check",
        _master_silence_is_read_at_each_check,
    ),
    (
        "runners.HEARTBEAT_LIVENESS is an int a master reads when a worker connects or beats",
        _liveness_is_read_when_a_worker_beats,
    ),
    (
        "MasterRunner.quit() tells the workers to quit and waits only half a second",
        _master_quit_waits_half_a_second,
    ),
    (
        "Locust's main calls runner.quit() on the instance (a replaced quit is called)",
        lambda: "runner.quit()" in _source(locust.main),
    ),
    (
        "WorkerRunner._send_stats() fires report_to_master and sends the report now",
        _send_stats_reports_now,
    ),
    (
        "locust.log.unhandled_greenlet_exception is a bool",
        lambda: isinstance(getattr(locust.log, "unhandled_greenlet_exception", None), bool),
    ),
    (
        "a worker's worker_state is STATE_SPAWNING while it spawns",
        lambda: "self.worker_state = STATE_SPAWNING" in _source(WorkerRunner.handle_message),
    ),
    (
        "a master's clients have ready/spawning/running and get_worker_index(client_id)",
        _worker_bookkeeping,
    ),
    (
        "a master keeps its spawn rate in runner.spawn_rate",
        lambda: "self.spawn_rate = spawn_rate" in _source(MasterRunner.start),
    ),
    (
        "a statistics error row has method, error and occurrences",
        lambda: (
            {"method", "error", "occurrences"} <= set(_parameters(locust.stats.StatsError.__init__))
        ),
    ),
    (
        "a worker keeps the spawn message's options not in argument_parser.default_args_dict()",
        _spawn_handler_tests_default_args,
    ),
    (
        "an event listener's SystemExit is not caught (an init listener can end the process)",
        _init_listener_can_end_the_process,
    ),
    (
        "Locust fires init before a headless run starts its users",
        _init_fires_before_a_headless_start,
    ),
    (
        "a user's greenlet calls user.run(), whose GreenletExit runs on_stop; stop() kills a "
        "user in LOCUST_STATE_WAITING at once (park)",
        _a_user_lives_in_run_and_a_waiting_one_is_killed_at_once,
    ),
    (
        f"the web UI's POST /swarm is the endpoint {SWARM_ENDPOINT} and refuses a start with "
        '{"success": False, "message": ...}',
        _swarm_endpoint_refuses_with_a_message,
    ),
)


def broken_assumptions() -> list[str]:
    """What this module relies on and the installed Locust no longer does (empty: all
    holds), each named."""
    return [what for what, holds in _ASSUMPTIONS if not holds()]
