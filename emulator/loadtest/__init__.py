"""Fleets under Locust: one Locust user is one wallbox.

The only package besides ``locustfiles/`` that imports Locust, and so gevent's
monkey-patching: nothing else in ``emulator`` imports it.  A locustfile is a few lines::

    from locust import events

    from emulator.loadtest import WallboxUser, register

    register(events)


    class Wallbox(WallboxUser):
        pass

Modules: :mod:`.bridge` (the fleet engine's event loop in a native thread, results
handed to gevent through a queue), :mod:`.plugin` (Locust's events to one role per
process: :mod:`.local_role`, :mod:`.worker_role`, :mod:`.master_role`, on :mod:`.role`,
:mod:`.fleet_role` and :mod:`.judging`), :mod:`.locust_internals` (every use of Locust's
internals, checked by a test), :mod:`.options` (the options),
:mod:`.users`, :mod:`.shapes` and :mod:`.schedules` (load shapes), :mod:`.partition`
(charger ids and source addresses per worker), :mod:`.view` and :mod:`.webui` (the Fleet
tab), :mod:`.steps` (SLO verdicts from the workers' windows; the steps shape's capacity
verdict), :mod:`.verdicts` (the SLO judge and the steps run of a Locust run),
:mod:`.overload` (when the spawn rate, not the CSMS, is the limit).
See ``docs/loadtest.md``.

Importing this package does not import Locust: the names below are loaded on first
use, so the pure modules (``partition``, ``schedules``, ``view``, ``options``, ``steps``) can be
used, and tested, in a process that must never be monkey-patched.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.loadtest.plugin import FleetPlugin, plugin_of, register
    from emulator.loadtest.shapes import ScheduleShape
    from emulator.loadtest.users import WallboxUser

__all__ = ["FleetPlugin", "ScheduleShape", "WallboxUser", "plugin_of", "register"]

_HOMES = {
    "FleetPlugin": "emulator.loadtest.plugin",
    "plugin_of": "emulator.loadtest.plugin",
    "register": "emulator.loadtest.plugin",
    "ScheduleShape": "emulator.loadtest.shapes",
    "WallboxUser": "emulator.loadtest.users",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home), name)
