"""A worker reads each spawn message in microseconds, not seconds.

While a distributed run ramps up, the master sends every worker a spawn message about once
a second, carrying all of the master's options (Locust's 56 and ours: 70).  Locust's worker
keeps the ones that are not Locust's own with::

    {k: v for k, v in job["parsed_options"].items() if k not in default_args_dict()}

and ``default_args_dict()`` builds Locust's whole argument parser and parses an empty
command line: 9 ms on a quiet core of this 2-core host, 80 ms with four workers, a
responder and a master sharing it.  Once per option, so one spawn message cost a worker
0.6 s of its gevent thread quiet, and several seconds when the host was busy.  The messages
then queued faster than the worker read them, and its heartbeat greenlet, which shares that
thread, did not run: at ~25,000 charging wallboxes on 4 workers, the master and the workers
lost each other for 60 s and the run collapsed.  It was also half the CPU a wallbox cost
while Locust spawned it: 8.7 ms per connect + boot before, 4.4 ms after (40,000 idle
wallboxes on 4 workers; ~1 ms standalone).

Only the *names* of Locust's options are used (by the spawn handler and by the web UI's
``ui_extra_args_dict``), and they are fixed once Locust is imported, so the first answer is
kept and each call gets a shallow copy of it.  :func:`cache_default_args` is idempotent;
:func:`emulator.loadtest.plugin.register` calls it in every Locust process; where Locust
keeps the function is :mod:`.locust_internals`'s to know.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.loadtest.locust_internals import default_args_dict, replace_default_args_dict

__all__ = ["cache_default_args"]


class _CachedDefaults:
    """Stands in for ``argument_parser.default_args_dict``: computed once, copied out."""

    def __init__(self, compute: Callable[[], dict[str, Any]]) -> None:
        self.compute = compute  # Locust's own, kept for tests and for undoing
        self._defaults: dict[str, Any] | None = None

    def __call__(self) -> dict[str, Any]:
        if self._defaults is None:
            self._defaults = self.compute()
        return dict(self._defaults)


def cache_default_args() -> None:
    """Make ``locust.argument_parser.default_args_dict`` build Locust's parser only once."""
    current = default_args_dict()
    if not isinstance(current, _CachedDefaults):
        replace_default_args_dict(_CachedDefaults(current))
