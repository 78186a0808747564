"""The compatibility suite's harness: a CSMS nobody here wrote, a short fleet run, the verdict.

A compat CSMS is a separate process (tests/compat/ocpp_lib_csms.py, tests/compat/node/csms.js)
that listens on a free loopback port and prints what it sees as JSON lines on its stdout
(here redirected to a file, so a busy run never blocks on a pipe).  The fleet runs as a user
runs it, ``ocpp-fleet run ... --strict --json``, for ``DURATION`` seconds.  Then both sides'
records are compared: the CSMS's validator refused none of our frames, we refused none of
its answers, every transaction settled, every CSMS-initiated call was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "tests" / "compat"
SCENARIO = COMPAT / "compat.toml"
CHARGERS = 10
DURATION = 20.0
PROBE = "PROBE"  # the charger id of the deliberately invalid frames sent before the fleet
#: The ChargePointMaxProfile limit both compat CSMSs set (ocpp_lib_csms.py, node/csms.js):
#: a multiple of 0.1 that is not one in binary floating point (10.1 / 0.1 != 101).
PROFILE_LIMIT = 10.1

#: Events that mean one side refused the other's frame.
FAILURES = ("validation_failure", "callerror_sent", "bad_message")

#: What each CSMS sends every booted charger (besides RemoteStart/RemoteStopTransaction),
#: and how often.
SEQUENCE = Counter(
    {
        "GetConfiguration": 2,
        "ChangeConfiguration": 1,
        "ChangeAvailability": 1,
        "TriggerMessage": 2,
        "ClearCache": 1,
        "GetLocalListVersion": 1,
        "DataTransfer": 1,
        "SetChargingProfile": 1,
        "GetCompositeSchedule": 1,
        "ClearChargingProfile": 1,
    }
)

#: The status the fleet's wallboxes answer, where the call leaves no choice.
EXPECTED_STATUS = {
    "ChangeConfiguration": "Accepted",
    "ChangeAvailability": "Accepted",
    "TriggerMessage": "Accepted",
    "ClearCache": "Accepted",
    "DataTransfer": "UnknownVendorId",
    "SetChargingProfile": "Accepted",
    "GetCompositeSchedule": "Accepted",
    "ClearChargingProfile": "Accepted",
}

#: What ocpp_lib_csms.py --security sends every booted charger after SEQUENCE.
SECURITY_SEQUENCE = Counter(
    {
        "InstallCertificate": 1,
        "GetInstalledCertificateIds": 1,
        "ExtendedTriggerMessage": 7,
        "CertificateSigned": 1,
        "GetLog": 1,
        "SignedUpdateFirmware": 1,
        "DeleteCertificate": 1,
    }
)

#: The status a charger with the security extension answers (security whitepaper): the
#: CSMS's root installed, listed and deleted, every trigger and the signed chain accepted,
#: the log upload and the (later) firmware update accepted.
SECURITY_STATUS = {
    "InstallCertificate": "Accepted",
    "GetInstalledCertificateIds": "Accepted",
    "ExtendedTriggerMessage": "Accepted",
    "CertificateSigned": "Accepted",
    "GetLog": "Accepted",
    "SignedUpdateFirmware": "Accepted",
    "DeleteCertificate": "Accepted",
}

#: Every charger-initiated message of the Core profile that the scenario produces.
CHARGER_CALLS = (
    "BootNotification",
    "StatusNotification",
    "Heartbeat",
    "Authorize",
    "StartTransaction",
    "MeterValues",
    "StopTransaction",
)


@dataclass
class CsmsProcess:
    """A compat CSMS in its own process; ``events`` once it has stopped."""

    argv: list[str]
    workdir: Path
    cwd: Path = ROOT
    port: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def stdout(self) -> Path:
        return self.workdir / "csms-events.jsonl"

    @property
    def stderr(self) -> Path:
        return self.workdir / "csms-stderr.txt"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def start(self, timeout: float = 20.0) -> None:
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self._proc = subprocess.Popen(
                self.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=self.cwd
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self._read():
                if event.get("event") == "listening":
                    self.port = int(event["port"])
                    return
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise AssertionError(
            f"{' '.join(self.argv)} did not start listening within {timeout} s "
            f"(exit {self._proc.returncode}):\n{self.stderr.read_text()[-3000:]}"
        )

    def stop(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"the CSMS did not stop within {timeout} s") from None
        self.events = self._read()
        stopped = [e for e in self.events if e.get("event") == "stopped"]
        assert self._proc.returncode == 0 and stopped, (
            f"the CSMS ended with exit {self._proc.returncode}, "
            f"{'after' if stopped else 'without'} its 'stopped' line:\n"
            f"{self.stderr.read_text()[-3000:]}"
        )
        return self.events

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def _read(self) -> list[dict[str, Any]]:
        events = []
        for line in self.stdout.read_text().splitlines():
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:  # a line still being written, or stray output
                    events.append({"event": "unparsed", "line": line})
        return events


@contextlib.contextmanager
def running_csms(argv: list[str], workdir: Path) -> Iterator[CsmsProcess]:
    csms = CsmsProcess(argv=argv, workdir=workdir)
    csms.start()
    try:
        yield csms
    finally:
        csms.kill()


def probe(url: str) -> dict[str, Any]:
    """The negative controls, as charger PROBE on a raw websocket, before the fleet runs.

    A BootNotification without its required chargePointModel (a validator that is on
    refuses it with a CALLERROR), then a valid one, and to the CSMS's first call (a
    GetConfiguration) an answer whose configurationKey is not an array (a validator that
    is on refuses it).  The CSMS's answers, by what they answered."""

    async def run() -> dict[str, Any]:
        frames: dict[str, Any] = {}
        async with connect(f"{url}/{PROBE}", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]

            async def next_frame() -> Any:
                return json.loads(await asyncio.wait_for(ws.recv(), 10.0))

            boot = {"chargePointVendor": "probe"}
            await ws.send(json.dumps([2, "probe-1", "BootNotification", boot]))
            frames["invalid boot"] = await next_frame()
            boot["chargePointModel"] = "probe"
            await ws.send(json.dumps([2, "probe-2", "BootNotification", boot]))
            frames["valid boot"] = await next_frame()
            first = await next_frame()
            frames["first call"] = first
            await ws.send(json.dumps([3, first[1], {"configurationKey": "not an array"}]))
            # The CSMS goes on with its next call once it has judged that answer.
            frames["second call"] = await next_frame()
        return frames

    return asyncio.run(run())


@dataclass
class FleetRun:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    seconds: float


def run_fleet(url: str, workdir: Path, scenario: Path = SCENARIO) -> FleetRun:
    """``ocpp-fleet run`` against ``url`` with the compat scenario, as a user runs it."""
    report = workdir / "summary.json"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator.cli",
            "run",
            "--csms-url",
            url,
            "--scenario",
            str(scenario),
            "--chargers",
            str(CHARGERS),
            "--duration",
            str(DURATION),
            "--seed",
            "1",
            "--no-progress",
            "--strict",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=DURATION + 60.0,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160"},
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"ocpp-fleet exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return FleetRun(
        done.returncode, done.stdout, done.stderr, json.loads(report.read_text()), seconds
    )


def _values_of(data: Any, key: str) -> Iterator[Any]:
    """Every value stored under ``key`` anywhere in a JSON document."""
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key:
                yield v
            else:
                yield from _values_of(v, key)
    elif isinstance(data, list):
        for item in data:
            yield from _values_of(item, key)


def _show(items: list[Any], limit: int = 10) -> str:
    return "\n".join(json.dumps(i) for i in items[:limit]) + (
        f"\n... and {len(items) - limit} more" if len(items) > limit else ""
    )


def assert_probe_refused(events: list[dict[str, Any]], frames: dict[str, Any]) -> None:
    """The negative controls: the CSMS's validator refused the invalid BootNotification
    with a CALLERROR and the invalid GetConfiguration answer, and recorded both."""
    assert frames["invalid boot"][:2] == [4, "probe-1"], frames
    assert frames["valid boot"][:2] == [3, "probe-2"], frames
    assert frames["valid boot"][2]["status"] == "Accepted", frames
    assert frames["first call"][0] == 2 and frames["first call"][2] == "GetConfiguration", frames
    mine = [e for e in events if e.get("charger") == PROBE]
    refused = {(e["action"], e["message_type"]) for e in mine if e["event"] == "validation_failure"}
    assert ("BootNotification", "CALL") in refused, (
        f"an invalid BootNotification went through: {mine}"
    )
    assert ("GetConfiguration", "CALLRESULT") in refused, f"an invalid answer went through: {mine}"
    judged = [e for e in mine if e["event"] == "csms_call" and e["action"] == "GetConfiguration"]
    assert judged and judged[0]["outcome"] == "invalid", judged


def assert_compatible(events: list[dict[str, Any]], fleet: FleetRun) -> dict[str, Any]:
    """Every check of a compat run; returns a few figures for the test's report."""
    ours = [e for e in events if e.get("charger") != PROBE]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for e in ours:
        by_kind.setdefault(e["event"], []).append(e)

    # Neither side refused a frame of the other.
    failures = [e for e in ours if e["event"] in (*FAILURES, "unparsed")]
    assert not failures, f"the CSMS refused frames of the fleet:\n{_show(failures)}"
    report = fleet.report
    for direction, total in report["totals"].items():
        assert total["errors"] == 0, (
            f"{direction}: {total['errors']} calls failed: {total['outcomes']}\n"
            + _show([a for a in report["actions"] if a["errors"]])
        )
    assert report["connections"]["connect_failures"] == {}, report["connections"]
    # Where the summary keeps the CSMS's deviations (schema violations accepted leniently
    # as well as refused), there are none, and every card was Accepted as the CSMS says.
    for violations in _values_of(report, "schemaViolations"):
        assert not violations, f"the fleet counted CSMS schema violations:\n{_show(violations)}"
    for statuses in _values_of(report, "idTagStatuses"):
        assert all(set(s) == {"Accepted"} for s in statuses.values()), statuses

    # Every charger connected with ocpp1.6, booted and went through every Core message.
    connected = {e["charger"]: e["protocol"] for e in by_kind.get("connected", [])}
    assert len(connected) == CHARGERS and set(connected.values()) == {"ocpp1.6"}, connected
    booted = {e["charger"] for e in by_kind.get("boot", [])}
    assert booted == set(connected), f"connected but not booted: {set(connected) - booted}"
    seen = Counter(e["action"] for e in by_kind.get("call", []))
    missing = [action for action in CHARGER_CALLS if not seen[action]]
    assert not missing, f"the run sent no {missing}; seen: {dict(seen)}"

    # Transactions settled: every StartTransaction the CSMS answered has its
    # StopTransaction, on the same charger, with meterStop >= meterStart.
    starts = {e["transactionId"]: e for e in by_kind.get("start", [])}
    stops: dict[int, dict[str, Any]] = {}
    for e in by_kind.get("stop", []):
        assert e["transactionId"] not in stops, f"stopped twice: {e}"
        stops[e["transactionId"]] = e
    assert starts, "no transaction was started"
    assert not starts.keys() - stops.keys(), _show(
        [starts[t] for t in sorted(starts.keys() - stops.keys())]
    )
    assert not stops.keys() - starts.keys(), _show(
        [stops[t] for t in sorted(stops.keys() - starts.keys())]
    )
    for tx, start in starts.items():
        stop = stops[tx]
        assert stop["charger"] == start["charger"], (start, stop)
        assert stop["meterStop"] >= start["meterStart"], (start, stop)
    counts = report["fleet"]
    assert counts["transactions_started"] == len(starts), (counts, len(starts))
    assert counts["transactions_stopped"] == len(stops), (counts, len(stops))
    assert counts["transaction_backlog"] == 0, counts

    # The CSMS-initiated calls were all answered, validated, and as expected.
    calls = by_kind.get("csms_call", [])
    unanswered = [c for c in calls if c["outcome"] != "ok"]
    assert not unanswered, f"CSMS calls without a valid answer:\n{_show(unanswered)}"
    done = {e["charger"] for e in by_kind.get("sequence_done", [])}
    assert done == booted, f"CSMS call sequence unfinished on {sorted(booted - done)}"
    for charger in booted:
        mine = Counter(c["action"] for c in calls if c["charger"] == charger)
        assert mine & SEQUENCE == SEQUENCE, (charger, dict(mine))
        assert mine["RemoteStartTransaction"] >= 1, (charger, dict(mine))
    for c in calls:
        answer = c["response"]
        if c["action"] in EXPECTED_STATUS:
            assert answer.get("status") == EXPECTED_STATUS[c["action"]], c
        elif c["action"] in ("RemoteStartTransaction", "RemoteStopTransaction"):
            assert answer.get("status") in ("Accepted", "Rejected"), c
    for c in calls:  # the charger's schedule carries the limit back, and both sides took it
        if c["action"] == "GetCompositeSchedule":
            periods = c["response"]["chargingSchedule"]["chargingSchedulePeriod"]
            assert periods[0]["limit"] == PROFILE_LIMIT, c
    for charger in booted:  # GetConfiguration of every key, then of three named ones
        full, selected = (
            c["response"]
            for c in calls
            if c["charger"] == charger and c["action"] == "GetConfiguration"
        )
        assert "HeartbeatInterval" in {k["key"] for k in full["configurationKey"]}, full
        assert selected.get("unknownKey") == ["NoSuchKey"], selected
        assert {k["key"] for k in selected["configurationKey"]} == {
            "HeartbeatInterval",
            "MeterValueSampleInterval",
        }, selected
    # Both sides saw the same CSMS-initiated calls.
    ours_count = Counter(c["action"] for c in calls)
    fleet_count = Counter(
        {a["action"]: a["count"] for a in report["actions"] if a["direction"] == "csms_to_cp"}
    )
    assert ours_count == fleet_count, (dict(ours_count), dict(fleet_count))

    # Remote start and stop worked end to end somewhere in the fleet.
    remote = [
        e["remoteTransactionId"]
        for e in by_kind.get("sequence_done", [])
        if e["remoteTransactionId"] is not None
    ]
    assert remote, "no charger started a transaction on RemoteStartTransaction"
    for tx in remote:
        assert starts[tx]["idTag"].startswith("REMOTE"), starts[tx]
    stopped_remotely = [
        c
        for c in calls
        if c["action"] == "RemoteStopTransaction" and c["response"]["status"] == "Accepted"
    ]
    for c in stopped_remotely:
        tx = next(t for t in remote if starts[t]["charger"] == c["charger"])
        assert stops[tx]["reason"] == "Remote", stops[tx]
    assert stopped_remotely, "no RemoteStopTransaction was Accepted"

    return {
        "transactions": len(starts),
        "remote_transactions": len(remote),
        "csms_calls": len(calls),
        "charger_calls": sum(seen.values()),
        "fleet_seconds": round(fleet.seconds, 1),
    }


def security_scenario(workdir: Path) -> Path:
    """The compat scenario with the security extension on in every model (and a CpoName
    for the chargers' CSRs, A02.FR.13)."""
    lines = []
    for line in SCENARIO.read_text().splitlines():
        lines.append(line)
        if line.startswith("name = ") and lines[-2:-1] == ["[[models]]"]:
            lines.append("security_extension = true")
        elif line == "[models.configuration]":
            lines.append('CpoName = "Compat CPO"')
    path = workdir / "compat-security.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_security_extension(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Every booted charger went through the extension's CSMS calls with the whitepaper's
    answers, sent a CSR for its own id that the CSMS signed, and reported its start-up as
    a security event (A04); the run's other checks are assert_compatible's."""
    ours = [e for e in events if e.get("charger") != PROBE]
    booted = {e["charger"] for e in ours if e["event"] == "boot"}
    calls = [e for e in ours if e["event"] == "csms_call"]
    for charger in booted:
        mine = Counter(c["action"] for c in calls if c["charger"] == charger)
        assert mine & SECURITY_SEQUENCE == SECURITY_SEQUENCE, (charger, dict(mine))
    for c in calls:
        if c["action"] in SECURITY_STATUS:
            assert c["response"].get("status") == SECURITY_STATUS[c["action"]], c
        if c["action"] == "GetInstalledCertificateIds":
            assert c["response"]["certificateHashData"], c
    csrs = [e for e in ours if e["event"] == "csr"]
    assert {e["charger"] for e in csrs} == booted, _show(csrs)
    assert all(e["signed"] and e["cn"] == e["charger"] for e in csrs), _show(csrs)
    missing = [e for e in ours if e["event"] in ("csr_missing", "installed_root_missing")]
    assert not missing, _show(missing)
    started = {e["charger"] for e in ours if e["event"] == "security_event"
               and e["type"] == "StartupOfTheDevice"}  # fmt: skip
    assert started == booted, f"no StartupOfTheDevice from {sorted(booted - started)}"
    uploads = [e for e in ours if e["event"] == "log_status" and e["requestId"] == 41]
    assert {e["charger"] for e in uploads if e["status"] == "Uploaded"} == booted, _show(uploads)
    return {
        "csrs_signed": len(csrs),
        "security_events": sum(1 for e in ours if e["event"] == "security_event"),
    }
