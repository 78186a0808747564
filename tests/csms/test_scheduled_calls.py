"""OperationSchedule runs any ScheduledCall, not only a scenario's ``[[csms.operations]]``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator.csms.operations import OperationSchedule
from emulator.protocol.timefmt import format_timestamp

NOW = 1_767_225_600.0


@dataclass(frozen=True)
class Call:
    """A CALL on a schedule, written by hand: no scenario involved."""

    at: float
    action: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    target: str | float | Sequence[int | str] = "all"
    every: float | None = None


class AnsweringCsms:
    """Stands in for ReferenceCsms.call_all: every charger answers ``answer``."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.sent: list[tuple[str, dict[str, Any], list[str]]] = []

    async def call_all(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        charger_ids: list[str],
        timeout: float | None,
        check_request: bool,
    ) -> dict[str, Any]:
        self.sent.append((action, payload, list(charger_ids)))
        return dict.fromkeys(charger_ids, self.answer)


def test_a_hand_written_schedule_is_sent_filled_in_and_counted() -> None:
    csms = AnsweringCsms({"status": "Accepted"})
    schedule = OperationSchedule(
        csms=csms,  # type: ignore[arg-type]
        operations=[
            Call(at=0.0, action="ReserveNow", payload={"expiryDate": "now+60"}, target=[2, "X"]),
            Call(at=0.0, action="TriggerMessage", payload={"requestedMessage": "Heartbeat"}),
        ],
        charger_ids=["A", "B", "C"],
        seed=1,
        clock=lambda: NOW,
    )
    asyncio.run(asyncio.wait_for(schedule.run(), 5))
    sent = sorted(csms.sent)
    assert sent == [
        ("ReserveNow", {"expiryDate": format_timestamp(NOW + 60)}, ["B", "X"]),
        ("TriggerMessage", {"requestedMessage": "Heartbeat"}, ["A", "B", "C"]),
    ]
    reserve, trigger = schedule.outcomes
    assert (reserve.runs, reserve.calls, dict(reserve.answers)) == (1, 2, {"Accepted": 2})
    assert (trigger.runs, trigger.calls) == (1, 3)
