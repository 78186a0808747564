"""Child process of test_load_shapes: a ScheduleShape's tick() outputs and wave messages
(Locust imported, but no Locust run: the shape's clock is set by hand)."""

from __future__ import annotations

import json
import sys
from typing import Any

from emulator.loadtest.schedules import parse_schedule
from emulator.loadtest.shapes import DROP_MESSAGE, ScheduleShape


class Runner:
    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []

    def send_message(self, msg_type: str, data: Any = None, client_id: str | None = None) -> None:
        self.messages.append((msg_type, data))


class Spec(ScheduleShape):
    spec = "soak:users=50,ramp=10,hold=100,every=30,share=0.2"


def main() -> int:
    out: dict[str, Any] = {"drop_message": DROP_MESSAGE}
    for name, shape in (
        ("soak", Spec()),
        ("steps", ScheduleShape(parse_schedule("steps:sizes=5/10,hold=20,rate=5"))),
    ):
        runner = Runner()
        shape.runner = runner  # type: ignore[assignment]
        now = {"t": 0.0}
        shape.get_run_time = lambda now=now: now["t"]  # type: ignore[method-assign]
        ticks = []
        for t in (0, 9, 39, 40, 41, 70, 109, 110):
            now["t"] = float(t)
            ticks.append([t, shape.tick(), len(runner.messages)])
        out[name] = {"ticks": ticks, "messages": runner.messages}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
