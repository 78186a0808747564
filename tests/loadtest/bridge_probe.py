"""Child process of test_bridge_events: a real bridge under gevent's monkey-patching.

Runs a small fleet against the reference CSMS *in the bridge's loop thread*, makes the
CSMS misbehave in known ways, collects every ``events.request`` the gevent side fires
and what the bridge hands to a Prometheus reporter and collector (scraped on the gevent
side while the fleet runs, and at the end), and prints one JSON document for the test
to check.  Bounded: every wait has a timeout.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.monkey
import locust  # noqa: F401  (monkey-patches before asyncio and websockets are imported)

from emulator.csms import (
    AnswerCallError,
    AnswerGarbage,
    CallErrorReceived,
    Delay,
    ReferenceCsms,
    Silence,
)
from emulator.fleet.scenario import parse_scenario
from emulator.loadtest.bridge import FleetBridge
from emulator.metrics.prometheus import FleetCollector, PrometheusReporter, new_registry
from emulator.run.setup import RunSetup
from tests.loadtest.support import scenario_text

native_id = gevent.monkey.get_original("threading", "get_native_id")
PREFIX = "PB"
DELAY = 0.3


class ThreadRecordingReporter(PrometheusReporter):
    """A PrometheusReporter that notes the native thread of every call it gets."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.threads: set[int] = set()
        for name in (
            "round_trip",
            "csms_call",
            "connected",
            "connect_failed",
            "disconnected",
            "ping_rtt",
            "lateness",
            "loop_lag",
            "count_messages",
        ):
            setattr(self, name, self._recording(getattr(self, name)))

    def _recording(self, method: Any) -> Any:
        def call(*args: Any) -> None:
            self.threads.add(native_id())
            method(*args)

        return call


def samples(registry: Any) -> dict[str, float]:
    """Every ocpp_fleet_* sample but histogram buckets, as 'name{k=v,...}': value."""
    found: dict[str, float] = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name.startswith("ocpp_fleet_") and not s.name.endswith(("_bucket", "_created")):
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                found[f"{s.name}{{{labels}}}"] = s.value
    return found


def main() -> int:
    events: list[dict[str, Any]] = []

    def fire(**kw: Any) -> None:
        exc = kw["exception"]
        events.append(
            {
                "thread": native_id(),
                "request_type": kw["request_type"],
                "name": kw["name"],
                "response_time": kw["response_time"],
                "exception": None if exc is None else str(exc),
                "exception_type": None if exc is None else type(exc).__name__,
            }
        )

    misbehaved: set[str] = set()

    def misbehave(charger_id: str, call: Any) -> Any:
        if call.action != "BootNotification" or charger_id in misbehaved:
            return None
        misbehaved.add(charger_id)
        return {
            f"{PREFIX}000201": Delay(DELAY),
            f"{PREFIX}000202": AnswerCallError("InternalError", "boot refused once"),
            f"{PREFIX}000203": AnswerGarbage(
                json.dumps([3, call.unique_id, {"status": "Maybe", "currentTime": "x"}])
            ),
            f"{PREFIX}000204": Silence(),
        }.get(charger_id)

    registry = new_registry(process=False)
    prometheus = ThreadRecordingReporter(registry=registry)
    bridge = FleetBridge(
        fire=fire,
        drain_interval=0.02,
        snapshot_interval=0.2,
        prometheus=prometheus,
        collector=FleetCollector(registry=registry),
    )
    bridge.start()

    async def start_csms() -> ReferenceCsms:
        csms = ReferenceCsms(misbehave=misbehave)
        await csms.start()
        return csms

    csms: ReferenceCsms = bridge.thread.run(start_csms, timeout=10)
    scenario = parse_scenario(scenario_text(prefix=PREFIX, response_timeout=1.0), source="<probe>")
    bridge.configure(
        RunSetup(
            command="locust",
            scenario_path=Path("<probe>"),
            scenario=scenario,
            csms_url=csms.url,
            seed=1,
            ids_per_worker=100,
        ),
        worker_index=2,  # numbers 201..300: the prefix and range come from the worker
    )
    numbers = [bridge.add_user() for _ in range(5)]
    ids = [bridge.charger_id(n) for n in numbers]

    def wait(predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit(f"probe: timed out waiting for {what}")
            gevent.sleep(0.02)

    def boot_outcomes() -> set[str | None]:
        return {e["exception"] for e in events if e["name"] == "BootNotification"}

    # The delayed one (ok), CALLERROR, schema violation, timeout (response_timeout 1 s).
    wait(lambda: len(boot_outcomes()) >= 4, 20, "every kind of BootNotification outcome")
    wait(lambda: bridge.snapshot.get("booted", 0) >= 2, 10, "two booted wallboxes")

    # CSMS-initiated calls: one answered, one refused by the charger (11 keys > 10).
    async def csms_calls() -> str:
        await csms.call(ids[4], "GetConfiguration", {})
        try:
            await csms.call(ids[4], "GetConfiguration", {"key": [f"K{i}" for i in range(11)]})
        except CallErrorReceived as exc:
            return exc.code
        return "no error"

    refused_with = bridge.thread.run(csms_calls, timeout=10)

    # A stopped user's wallbox closes cleanly; its slot (and charger id) is reused after.
    bridge.remove_user(numbers[0])
    wait(lambda: (bridge.snapshot or {}).get("chargers") == 4, 10, "the removal")
    wait(lambda: bridge._slots is not None and len(bridge._slots) == 4, 10, "the slot")
    again = bridge.add_user()
    wait(lambda: bridge.snapshot.get("connected") == 5, 10, "5 connected wallboxes again")
    running = samples(registry)  # a scrape on the gevent side while the fleet runs

    loop_thread = bridge.thread.thread_id
    bridge.stop_fleet()
    bridge.thread.run(csms.stop, timeout=10)
    records = {cid: r.boot_count for cid, r in csms.chargers.items()}
    closes = {cid: r.disconnects for cid, r in csms.chargers.items()}
    bridge.close()
    json.dump(
        {
            "main_thread": native_id(),
            "loop_thread": loop_thread,
            "numbers": numbers,
            "ids": ids,
            "again": again,
            "refused_with": refused_with,
            "events": events,
            "boots": records,
            "disconnects": closes,
            "delay": DELAY,
            "snapshot": bridge.snapshot,
            "prometheus_threads": sorted(prometheus.threads),
            "metrics_running": running,
            "metrics_end": samples(registry),
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
