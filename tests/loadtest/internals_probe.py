"""Child process of test_locust_internals: what of Locust's internals ocpp-fleet relies on
and the installed Locust no longer does.  Prints one JSON document.

``--break``: first take away two of them (the global a master reads for a worker's
missed heartbeats, and the half-second wait of a master's quit), as an upgrade could.
"""

from __future__ import annotations

import json
import sys

import locust
import locust.runners

from emulator.loadtest import locust_internals

if "--break" in sys.argv:
    del locust.runners.HEARTBEAT_LIVENESS

    def quit_without_waiting(self: object) -> None:
        """A master's quit that tells no worker."""

    locust.runners.MasterRunner.quit = quit_without_waiting  # type: ignore[method-assign]

print(
    json.dumps(
        {
            "version": locust.__version__,
            "checked_on": list(locust_internals.CHECKED_ON),
            "docstring": locust_internals.__doc__,
            "broken": locust_internals.broken_assumptions(),
        }
    )
)
