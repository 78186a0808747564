"""Locustfile of test_refusals: the project's, whose users first note that they started
(one line each in ``$OCPP_FLEET_TEST_STARTED_USERS``), so a test can show none did."""

from __future__ import annotations

import os

from locust import events

from emulator.loadtest import WallboxUser, register

register(events)


class Wallbox(WallboxUser):
    def on_start(self) -> None:
        with open(os.environ["OCPP_FLEET_TEST_STARTED_USERS"], "a", encoding="utf-8") as marks:
            marks.write("started\n")
        super().on_start()
