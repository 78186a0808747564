"""Wires the fleet into Locust's events, through one object per Locust role.

A locustfile calls :func:`register` once with ``locust.events``; nothing here runs at
import time.  As Locust has a ``LocalRunner``, a ``MasterRunner`` and a
``WorkerRunner``, ocpp-fleet has a role for each, chosen once at ``init`` from the
runner (:meth:`FleetPlugin.on_init`), to which every event then goes:

* :class:`~emulator.loadtest.local_role.LocalRole`: a fleet, and the judge of its own
  SLO or steps verdict;
* :class:`~emulator.loadtest.worker_role.WorkerRole`: a fleet run with its master's
  options, its snapshot (and windows) in every report to the master;
* :class:`~emulator.loadtest.master_role.MasterRole`: no wallboxes; the workers' fleets
  summed for the Fleet tab, their windows judged, their wallboxes stopped before it quits.

The two fleet processes share :class:`~emulator.loadtest.fleet_role.FleetRole` (the loop
bridge, metrics, the generator's connect timeouts, windows); the two judging ones a
:class:`~emulator.loadtest.judging.Judging`.  Every role reads its options in one method
and refuses a mistake in one line before any work (:mod:`.role`); every use of Locust's
internals is in :mod:`.locust_internals`.

SLOs (``--slo``, ``$LOCUST_SLO``, the scenario's ``[slo]``) are judged by a local run or
the master.  A local run without a ``steps`` shape judges the request events it fires
itself (exactly); otherwise the fleet processes cut their measurements into windows
(:mod:`emulator.loadtest.steps`): a worker sends one with every report to the master,
a local run hands itself one every second, and the judging process merges them, for the
window after spawning or for each step's hold of the ``steps`` shape, whose verdict
(``--verdict-json``, ``--report``) is shaped like ``ocpp-fleet capacity``'s.

When the generator is the limit (:mod:`emulator.loadtest.overload`): a worker counts a
handshake that timed out while its loop lagged as the generator's
("timeout while the load generator lagged"), not as a CSMS connect failure; the master
(or a local run) names the spawn rate that overloaded a worker, and such timeouts alone
do not make the exit code 1.

Prometheus metrics (``--metrics-port``, else ``$OCPP_FLEET_METRICS_PORT``): a local run
and every worker serve the same ``/metrics`` as ``ocpp-fleet run`` (per-action
latencies and errors, connections, fleet gauges, generator health, process metrics),
fed on the gevent side (see :mod:`emulator.loadtest.bridge`).  A master runs no
wallboxes and serves none: Prometheus sums the workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from emulator.loadtest.local_role import LocalRole
from emulator.loadtest.master_role import MasterRole
from emulator.loadtest.options import add_arguments
from emulator.loadtest.role import Refused, Role
from emulator.loadtest.spawn_messages import cache_default_args
from emulator.loadtest.worker_role import WorkerRole

if TYPE_CHECKING:
    from emulator.loadtest.bridge import FleetBridge

__all__ = ["FleetPlugin", "plugin_of", "register", "role_for"]

_ATTRIBUTE = "ocpp_fleet"

# The Locust events a role answers (its method is "on_" + the event's name).
_EVENTS = (
    "test_start",
    "spawning_complete",
    "test_stopping",
    "test_stop",
    "quitting",
    "quit",
    "report_to_master",
    "worker_report",
)


def register(events: Any) -> FleetPlugin:
    """Hook the fleet into ``events`` (``locust.events``); call once, in the locustfile."""
    cache_default_args()  # a worker's spawn messages would otherwise starve its heartbeats
    plugin = FleetPlugin()
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(plugin.on_init)
    for name in _EVENTS:
        getattr(events, name).add_listener(plugin.forward(name))
    return plugin


def role_for(environment: Environment, runner: Any) -> Role:
    """The role of this process, from its runner (None: a local run used as a library)."""
    if isinstance(runner, MasterRunner):
        return MasterRole(environment=environment, runner=runner)
    if isinstance(runner, WorkerRunner):
        return WorkerRole(environment=environment, runner=runner)
    return LocalRole(environment=environment, runner=runner)


def plugin_of(environment: Environment) -> FleetPlugin:
    plugin = getattr(environment, _ATTRIBUTE, None)
    if plugin is None:
        raise RuntimeError(
            "ocpp-fleet is not set up: call emulator.loadtest.register(events) in the locustfile"
        )
    assert isinstance(plugin, FleetPlugin)
    return plugin


class FleetPlugin:
    """This process's ocpp-fleet: its role once ``init`` has chosen it."""

    def __init__(self) -> None:
        self.role: Role | None = None

    def on_init(
        self, environment: Environment, runner: Any = None, web_ui: Any = None, **_: Any
    ) -> None:
        setattr(environment, _ATTRIBUTE, self)
        role = self.role = role_for(environment, runner or environment.runner)
        try:
            role.start(web_ui)
        except Refused:  # logged, the exit code set, the runner quitting
            return
        if web_ui is not None:
            from emulator.loadtest.webui import install

            install(web_ui, role)

    def forward(self, event: str) -> Callable[..., None]:
        """A listener that hands ``event`` to the role (nothing before ``init``)."""
        method = f"on_{event}"

        def listener(**kwargs: Any) -> None:
            if self.role is not None:
                getattr(self.role, method)(**kwargs)

        listener.__name__ = method
        return listener

    # What the users, the Fleet tab and the benchmarks ask of this process.

    @property
    def bridge(self) -> FleetBridge | None:
        return self.role.bridge if self.role is not None else None

    def bridge_for_users(self) -> FleetBridge:
        if self.role is None:
            raise RuntimeError("ocpp-fleet is not started: Locust's init event did not fire")
        return self.role.bridge_for_users()

    def fleet_view(self) -> dict[str, Any]:
        if self.role is None:
            raise RuntimeError("ocpp-fleet is not started: Locust's init event did not fire")
        return self.role.fleet_view()
