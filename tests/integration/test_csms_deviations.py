"""A CSMS that deviates from OCPP 1.6 does not hide behind a green summary: ``ocpp-fleet
run`` keeps going, counts what the CSMS did and says exactly what it was.

Real parts: the CLI in its own process, a websockets CSMS on 127.0.0.1 in this one."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry
from rich.console import Console

from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import parse_scenario
from emulator.metrics import MultiReporter, RunStats
from emulator.metrics.prometheus import PrometheusReporter
from emulator.metrics.summary import conformance_dict, render_conformance
from tests.integration.support import eventually
from tests.integration.tiny_csms import TinyCsms, naive_now

ROOT = Path(__file__).resolve().parents[2]

QUIET = """
[scenario]
name = "deviations"

[fleet]
id_prefix = "DV"
connect_timeout = 5.0
ramp_per_second = 100.0
message_ids = "{ids}"

[[models]]
name = "socket"
[models.configuration]
ClockAlignedDataInterval = 0
MeterValueSampleInterval = 0

[sessions]
mode = "remote-only"
"""


async def _ocpp_fleet(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "emulator.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60.0)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _scenario_file(tmp_path: Path, ids: str = "uuid") -> Path:
    path = tmp_path / "quiet.toml"
    path.write_text(QUIET.format(ids=ids))
    return path


def _run_args(tmp_path: Path, url: str, *extra: str) -> list[str]:
    return [
        "run",
        "--csms-url",
        url,
        "--scenario",
        str(_scenario_file(tmp_path)),
        "--chargers",
        "2",
        "--duration",
        "2",
        "--no-progress",
        "--json",
        str(tmp_path / "summary.json"),
        *extra,
    ]


def test_a_naive_current_time_is_read_as_utc_counted_and_shown(tmp_path: Path) -> None:
    async def main() -> tuple[int, str, str, TinyCsms]:
        async with TinyCsms(current_time=naive_now) as csms:
            code, out, err = await _ocpp_fleet(*_run_args(tmp_path, csms.url))
            return code, out, err, csms

    code, out, err, csms = asyncio.run(main())
    assert code == 0, err
    # The wallboxes were accepted and went on: status notifications reached the CSMS.
    actions = [action for _, _, action, _ in csms.calls]
    assert actions.count("StatusNotification") >= 4
    assert "never accepted" not in out
    assert "CSMS schema violations: 2" in out
    assert "BootNotification.conf PropertyConstraintViolation: 2, 2 accepted" in out
    assert re.search(
        r"DV00000[12]: BootNotification\.conf: currentTime: must be date-time "
        r'\(got "\d{4}-\d\d-\d\dT[\d:.]+"\)',
        out,
    ), out
    warnings = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, err  # one line per kind, not one per wallbox
    assert "currentTime: must be date-time" in warnings[0]
    summary = json.loads((tmp_path / "summary.json").read_text())
    [violation] = summary["csms"]["schemaViolations"]
    assert violation["action"] == "BootNotification" and violation["message"] == "callresult"
    assert (violation["count"], violation["accepted"], violation["refused"]) == (2, 2, 0)
    assert "currentTime: must be date-time" in violation["examples"][0]
    assert summary["csms"]["neverAccepted"] == 0


def test_strict_csms_refuses_and_a_run_where_none_was_accepted_exits_3(tmp_path: Path) -> None:
    async def main() -> tuple[int, str, str]:
        async with TinyCsms(current_time=naive_now) as csms:
            return await _ocpp_fleet(*_run_args(tmp_path, csms.url, "--strict-csms"))

    code, out, err = asyncio.run(main())
    assert code == 3, (out, err)
    assert "2 of 2 wallboxes never accepted by the CSMS" in out
    assert "BootNotification.conf PropertyConstraintViolation: 2, 2 refused" in out
    assert "currentTime: must be date-time" in out
    assert "accepted none of the 2 wallboxes" in err and "Traceback" not in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["csms"]["neverAccepted"] == 2
    assert summary["csms"]["schemaViolations"][0]["refused"] == 2


def test_ledger_against_an_external_csms_says_what_was_written(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"

    async def main() -> tuple[int, str, str]:
        async with TinyCsms() as csms:
            return await _ocpp_fleet(*_run_args(tmp_path, csms.url, "--ledger", str(ledger)))

    code, out, err = asyncio.run(main())
    assert code == 0, err
    assert sorted(p.name for p in ledger.iterdir()) == ["fleet-ledger.json"]
    [line] = [line for line in out.splitlines() if line.startswith("ledger:")]
    assert str(ledger / "fleet-ledger.json") in line
    assert "an external CSMS's books cannot be compared" in line


# -- idTagInfo statuses and cards in two places ----------------------------------------

BUSY = """
[scenario]
name = "busy"

[fleet]
id_prefix = "TG"
connect_timeout = 5.0
ramp_per_second = 200.0

[[models]]
name = "socket"
[models.configuration]
ClockAlignedDataInterval = 0
MeterValueSampleInterval = 0
TransactionMessageRetryInterval = 0

[sessions]
arrivals_per_hour = 7200.0
plug_in_delay = [0.05, 0.1]
dwell_minutes = [0.01, 0.02]
authorize_first_share = 1.0
stop_by_tag_share = 0.0
shared_tags = {shared}
[[sessions.id_tags]]
prefix = "CARD"
count = {cards}
"""


async def _busy_fleet(*, shared: bool, cards: int) -> tuple[TinyCsms, Fleet, CollectorRegistry]:
    """8 chargers busy for a few seconds with ``cards`` cards between them."""
    registry = CollectorRegistry()
    prometheus = PrometheusReporter(registry=registry)
    stats = RunStats()
    text = BUSY.format(shared="true" if shared else "false", cards=cards)
    async with TinyCsms() as csms:
        fleet = Fleet(
            scenario=parse_scenario(text, source="<busy>"),
            csms_url=csms.url,
            chargers=8,
            seed=3,
            reporter=MultiReporter(reporters=(stats, prometheus)),
            strict=True,
        )
        task = asyncio.create_task(fleet.run(duration=300.0))
        try:
            await eventually(
                lambda: sum(csms.start_statuses.values()) >= 30, 20.0, "30 StartTransactions"
            )
        finally:
            fleet.stop()
            await asyncio.wait_for(task, timeout=30.0)
    return csms, fleet, registry


def test_a_card_is_never_drawn_for_two_chargers_at_once() -> None:
    csms, fleet, registry = asyncio.run(_busy_fleet(shared=False, cards=8))
    assert csms.start_statuses["ConcurrentTx"] == 0, csms.start_statuses
    statuses = fleet.conformance.statuses_of("StartTransaction")
    assert statuses["Accepted"] >= 30 and set(statuses) == {"Accepted"}
    labels = {"action": "StartTransaction", "status": "ConcurrentTx"}
    assert registry.get_sample_value("ocpp_fleet_id_tag_statuses_total", labels) == 0


def test_concurrent_tx_answers_are_counted_in_summary_json_and_prometheus() -> None:
    csms, fleet, registry = asyncio.run(_busy_fleet(shared=True, cards=3))
    refused = csms.start_statuses["ConcurrentTx"]
    assert refused > 0, csms.start_statuses
    conformance = fleet.conformance
    statuses = conformance.statuses_of("StartTransaction")
    assert statuses["ConcurrentTx"] == refused
    assert statuses["Accepted"] == csms.start_statuses["Accepted"]
    console = Console(record=True, width=200)
    render_conformance(conformance, console=console, chargers=8, never_accepted=0)
    text = console.export_text()
    assert f"ConcurrentTx {refused}" in text and "StartTransaction idTagInfo:" in text
    data = conformance_dict(conformance, chargers=8, never_accepted=0)
    assert data["idTagStatuses"]["StartTransaction"]["ConcurrentTx"] == refused
    labels = {"action": "StartTransaction", "status": "ConcurrentTx"}
    assert registry.get_sample_value("ocpp_fleet_id_tag_statuses_total", labels) == refused


# -- message ids -------------------------------------------------------------------------


def _ids_run(ids: str) -> TinyCsms:
    async def main() -> TinyCsms:
        async with TinyCsms() as csms:
            stats = RunStats()
            fleet = Fleet(
                scenario=parse_scenario(QUIET.format(ids=ids), source="<ids>"),
                csms_url=csms.url,
                chargers=2,
                seed=1,
                reporter=stats,
                strict=True,
            )
            task = asyncio.create_task(fleet.run(duration=300.0))
            try:
                # BootNotification and the StatusNotifications of connectors 0 and 1.
                await eventually(lambda: len(csms.calls) >= 6, 10.0, "three CALLs each")
            finally:
                fleet.stop()
                await asyncio.wait_for(task, timeout=30.0)
            outcomes = {o.key for a in stats.actions.values() for o in a.outcomes}
            assert outcomes == {"ok"}, stats.actions  # every answer matched its CALL
            assert all(d.ever_accepted for d in fleet.drivers)
            return csms

    return asyncio.run(main())


def test_uuid_message_ids_are_unique_across_the_fleet() -> None:
    csms = _ids_run("uuid")
    ids = csms.ids()
    assert len(ids) == len(set(ids)) >= 6
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


def test_counter_message_ids_count_per_wallbox() -> None:
    csms = _ids_run("counter")
    for charger in ("DV000001", "DV000002"):
        ids = csms.ids(charger)
        assert ids == [str(n) for n in range(1, len(ids) + 1)] and len(ids) >= 3
