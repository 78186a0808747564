"""Loop lag and send lateness: when is the generator the bottleneck?"""

from __future__ import annotations

import asyncio
import time

from emulator.fleet.health import GeneratorHealth, HealthSnapshot


def windows(health: GeneratorHealth, lateness: list[float]) -> list[HealthSnapshot]:
    """One closed window per value, each with 100 deadlines that late."""
    result = []
    for late in lateness:
        for _ in range(100):
            health.late(late)
        result.append(health.close_window())
    return result


def test_one_slow_window_is_not_a_verdict_but_a_sustained_run_of_them_is() -> None:
    health = GeneratorHealth(window=5.0, sustain=3)
    snaps = windows(health, [0.001, 0.4, 0.4, 0.001, 0.4, 0.4, 0.4, 0.4])
    assert [s.overloaded for s in snaps] == [False, False, False, False, False, False, True, True]
    assert snaps[-1].overloaded_seconds == 20.0  # the three that proved it, and one more
    assert snaps[-1].lateness_p99 > 0.25
    assert snaps[-1].worst_lateness_p99 > 0.25


def test_one_window_within_the_limits_ends_the_overload_and_calls_back_each_flip() -> None:
    flips: list[bool] = []
    health = GeneratorHealth(sustain=2, on_change=lambda s: flips.append(s.overloaded))
    snaps = windows(health, [0.3, 0.3, 0.3, 0.01, 0.3])
    assert [s.overloaded for s in snaps] == [False, True, True, False, False]
    assert flips == [True, False]


def test_loop_lag_alone_can_make_the_verdict() -> None:
    health = GeneratorHealth(sustain=1)
    health.lagged(0.5)
    assert health.close_window().overloaded
    health.lagged(0.01)
    assert not health.close_window().overloaded


def test_a_deadline_served_early_is_not_lateness() -> None:
    health = GeneratorHealth()
    health.late(-0.5)  # woken before the deadline (a stop or an outside stimulus)
    assert health.close_window().deadlines == 0


def test_the_probe_sees_a_blocked_loop() -> None:
    async def main() -> HealthSnapshot:
        health = GeneratorHealth(window=0.2, sample_interval=0.02)
        probe = asyncio.create_task(health.monitor())
        try:
            loop = asyncio.get_running_loop()
            for _ in range(8):
                loop.call_soon(time.sleep, 0.15)  # a callback that holds the loop
                await asyncio.sleep(0.03)
            return health.snapshot()
        finally:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)

    snap = asyncio.run(main())
    assert snap.worst_loop_lag_p99 > 0.1  # a lower bound: the loop was held 150 ms
