"""Locust ``LoadTestShape`` classes over the pure schedules of :mod:`.schedules`.

``--fleet-shape NAME:key=value,...`` picks one at start-up (see :mod:`.schedules` for
the names and keys).  A locustfile can also define its own, which Locust then offers
like any shape class::

    class NightlySoak(ScheduleShape):
        spec = "soak:users=5000,ramp=10m,hold=8h,every=30m,share=0.1"

Reconnect waves (soak, boot-storm with ``every``) are sent as the custom message
:data:`DROP_MESSAGE` to every worker (or to the local runner), whose bridge then cuts
that share of its open connections.
"""

from __future__ import annotations

from typing import ClassVar

from locust import LoadTestShape

from emulator.loadtest.schedules import Schedule, parse_schedule

__all__ = ["DROP_MESSAGE", "ScheduleShape"]

DROP_MESSAGE = "ocpp_fleet_drop_connections"


class ScheduleShape(LoadTestShape):
    """Follows a :class:`~emulator.loadtest.schedules.Schedule` (given, or from ``spec``)."""

    abstract: ClassVar[bool] = True
    spec: ClassVar[str] = ""

    def __init__(self, schedule: Schedule | None = None) -> None:
        super().__init__()
        self.schedule: Schedule = schedule if schedule is not None else parse_schedule(self.spec)
        self.waves_sent = 0

    def reset_time(self) -> None:
        super().reset_time()
        self.waves_sent = 0

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        due = self.schedule.waves_before(t)
        if due > self.waves_sent:
            self.waves_sent = due
            if self.runner is not None:
                self.runner.send_message(DROP_MESSAGE, {"share": self.schedule.wave_share})
        step = self.schedule.tick(t)
        return None if step is None else (step.users, step.spawn_rate)
