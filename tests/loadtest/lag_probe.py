"""Locustfile of test_generator_limit: a fleet whose event loop is held 0.5 s of every
0.7 s (as a spawn burst holds it), and wallboxes added only after 6 s, when the
generator's health windows have seen that lag."""

from __future__ import annotations

from typing import Any

import gevent
import gevent.monkey
from locust import events

from emulator.loadtest import WallboxUser, plugin_of, register

register(events)
_block = gevent.monkey.get_original("time", "sleep")  # a native sleep: it holds the loop


@events.test_start.add_listener
def _hold_the_loop(environment: Any, **_: Any) -> None:
    def hold() -> None:
        while True:
            bridge = plugin_of(environment).bridge
            if bridge is not None and bridge.thread.running:
                bridge.thread.call(_block, 0.5)
            gevent.sleep(0.7)

    gevent.spawn(hold)


class Wallbox(WallboxUser):
    def on_start(self) -> None:
        gevent.sleep(6.0)
        super().on_start()
