"""One Locust user is one wallbox."""

from __future__ import annotations

from typing import Any

from locust import User, constant, task

from emulator.loadtest.locust_internals import park
from emulator.loadtest.plugin import plugin_of

__all__ = ["WallboxUser"]


class WallboxUser(User):
    """Base class of a locustfile's wallbox user: subclass it (and call ``register``).

    Starting the user adds a wallbox to this process's fleet (the lowest free charger
    number of this worker's range); the wallbox then lives on the fleet's event loop,
    connecting, booting and charging as its scenario says, and every OCPP exchange is
    reported to Locust.  Stopping the user stops the wallbox cleanly: running
    transactions are stopped (reason Local), their messages get the scenario's drain
    time, and the websocket closes with 1001.  The user's greenlet itself only waits
    (:func:`~emulator.loadtest.locust_internals.park`): no task runs, no timer wakes it.
    """

    abstract = True
    wait_time = constant(60.0)  # nothing to do between the idle task's runs

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.charger_number: int | None = None
        self.charger_id = ""

    def on_start(self) -> None:
        bridge = plugin_of(self.environment).bridge_for_users()
        self.charger_number = bridge.add_user()
        self.charger_id = bridge.charger_id(self.charger_number)

    def run(self) -> None:  # type: ignore[misc]  # final in Locust: park replaces its loop
        park(self)

    @task
    def idle(self) -> None:
        """Never run (see :meth:`run`): Locust wants a user class to have a task."""

    def on_stop(self) -> None:
        number, self.charger_number = self.charger_number, None
        if number is not None:
            plugin_of(self.environment).bridge_for_users().remove_user(number)
