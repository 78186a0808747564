"""How does ocpp-fleet scale out under Locust?  The distributed benchmark.

    .venv/bin/python bench/distributed.py --chargers 4000 --workers 2
    .venv/bin/python bench/distributed.py --chargers 4000 --workers 2 --scenario steady

Starts, all on this host: the minimal responder (bench/responder.py, answering every CALL
at once; several processes sharing one port when one cannot hold every socket), a
Locust master and W Locust workers (separate processes), each worker bound to its own
source addresses (worker k: 127.0.0.{2+k}, or --addresses-per-worker of them; with
--pool-on-master the master gets the whole pool and hands each worker its slice).  It
raises its open-file limit to the hard limit (the children inherit it) and refuses a
plan that needs more sockets in one process than that allows.

Then, like a person at the web UI: once every worker is ready it notes each worker's
memory (their fleets do not exist yet), starts N users at --spawn-rate (POST /swarm),
waits until the responder has N connections and N chargers booted, lets --settle
seconds pass, holds for --hold seconds, and stops the run the way Kubernetes does
(SIGTERM to the master: it stops the workers' wallboxes and waits for their last
reports before it quits).

Traffic: --scenario idle (bench/idle-traffic.toml: heartbeat 300 s, ping 60 s, no
sessions), steady (scenarios/steady.toml: sessions, samples, half the fleet charging, so
the shutdown stops transactions) or a scenario file.

Prints: the time until all were connected and booted, connections lost during the
hold (must be 0), the master's CPU and RSS, each worker's RSS per wallbox above its
baseline and CPU per round trip (its OCPP CALLs, counted by the responder from its
source addresses, and its share of the WebSocket pings the master counted), how
the websockets closed at the stop (must all be 1001), whether every transaction
started was stopped (the responder's ledger), and whether the master's request counts
equal what the responder counted.  Timings are printed, never asserted; the exit code
is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
LOCUST = str(Path(PYTHON).with_name("locust"))
LOCUSTFILE = str(ROOT / "locustfiles" / "ocpp_fleet.py")
SCENARIOS = {"idle": HERE / "idle-traffic.toml", "steady": ROOT / "scenarios" / "steady.toml"}
KIB = 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
# Sockets and files a process needs besides its wallboxes' (Locust, ZeroMQ, logs).
FD_OVERHEAD = 1000
# Connections one source address holds towards one CSMS address and port.
EPHEMERAL_PORTS = 28_000


# ------------------------------------------------------------------ processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def stop(proc: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` s; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class Responder:
    """One bench/responder.py process; its latest ``status`` line, read by a thread."""

    def __init__(self, *, port: int, reuse: bool, interval: int, summary: Path) -> None:
        cmd = [PYTHON, str(HERE / "responder.py"), "--port", str(port), "--status", "0.5"]
        cmd += ["--interval", str(interval), "--summary", str(summary)]
        if reuse:
            cmd.append("--reuse-port")
        self.summary = summary
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            self.proc.kill()
            raise SystemExit("the responder did not start")
        self.port = int(line[1])
        self.status: dict[str, Any] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("status "):
                self.status = json.loads(line[7:])

    def finish(self) -> dict[str, Any]:
        stop(self.proc, 30)
        try:
            final: dict[str, Any] = json.loads(self.summary.read_text())
        except (OSError, ValueError):
            final = self.status
        return final


def summed(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """The books of several responders as one."""
    total: dict[str, Any] = {}
    for status in statuses:
        for key, value in status.items():
            if key == "time":
                continue
            if isinstance(value, dict):
                bucket = total.setdefault(key, Counter())
                bucket.update(value)
            else:
                total[key] = total.get(key, 0) + value
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in total.items()}


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    addresses: set[str] = field(default_factory=set)
    baseline_rss: int = 0

    def find_addresses(self) -> set[str]:
        """The source addresses this worker logged it binds to."""
        if not self.addresses:
            text = self.log.read_text(errors="replace")
            found = re.findall(r"worker \d+: source addresses (\S+)", text)
            if found:
                self.addresses = set(found[-1].split(","))
        return self.addresses


def http(url: str, data: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=timeout) as response:
        return json.loads(response.read())


def master_pings(web: str) -> int:
    """WebSocket pings (ping → pong round trips) the master has counted so far."""
    for entry in http(f"{web}/stats/requests").get("stats", []):
        if entry.get("method") == "WebSocket" and entry.get("name") == "ping":
            return int(entry.get("num_requests", 0))
    return 0


def generator_timeouts(log: str) -> int:
    """Connection attempts the master counted as timed out while a worker's loop lagged
    (its end-of-run line, emulator/loadtest/overload.py)."""
    found = re.findall(r"(\d+) connection attempts timed out while the load generator", log)
    return int(found[-1]) if found else 0


def wait_for(predicate: Any, timeout: float, what: str, every: float = 0.1) -> float:
    """Poll until ``predicate()``; the monotonic time it became true.  SystemExit on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(every)
    return time.monotonic()


def addresses_of(worker: int, per_worker: int) -> list[str]:
    first = 2 + worker * per_worker
    return [f"127.0.0.{n}" for n in range(first, first + per_worker)]


# ------------------------------------------------------------------ the run


def plan(args: argparse.Namespace, limit: int) -> int:
    """Check the plan against the open-file limit and the ports; the responders needed."""
    per_worker = math.ceil(args.chargers / args.workers)
    if per_worker + FD_OVERHEAD > limit:
        need = math.ceil(args.chargers / (limit - FD_OVERHEAD))
        raise SystemExit(
            f"{per_worker} wallboxes per worker need {per_worker + FD_OVERHEAD} open files, the "
            f"limit is {limit} (hard): run at least {need} workers"
        )
    per_address = per_worker / args.addresses_per_worker
    if per_address > EPHEMERAL_PORTS:
        raise SystemExit(
            f"{per_address:.0f} connections per source address: one address holds about "
            f"{EPHEMERAL_PORTS} towards one CSMS address; raise --addresses-per-worker"
        )
    if 2 + args.workers * args.addresses_per_worker > 255:
        raise SystemExit("too many source addresses for 127.0.0.2-127.0.0.254")
    if args.responders:
        return int(args.responders)
    # The kernel spreads connections over responders sharing a port: leave a margin.
    return max(1, math.ceil(args.chargers / (0.8 * (limit - FD_OVERHEAD))))


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    limit = raise_fd_limit()
    responders_needed = plan(args, limit)
    scenario = str(SCENARIOS.get(args.scenario, args.scenario))
    print(
        f"distributed benchmark: {args.chargers} wallboxes, {args.workers} workers, spawn rate "
        f"{args.spawn_rate:g}/s, hold {args.hold:g} s, scenario {scenario}; open-file limit "
        f"{limit}; {responders_needed} responder process(es); {machine()}",
        flush=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "OCPP_FLEET_"))}
    env["PYTHONPATH"] = str(ROOT)
    responders: list[Responder] = []
    workers: list[Worker] = []
    master: subprocess.Popen[bytes] | None = None
    try:
        port = 0
        for i in range(responders_needed):
            responders.append(
                Responder(
                    port=port,
                    reuse=responders_needed > 1,
                    interval=args.heartbeat,
                    summary=tmp / f"responder-{i}.json",
                )
            )
            port = responders[0].port
        url = f"ws://127.0.0.1:{port}/ocpp"

        def books() -> dict[str, Any]:
            return summed([r.status for r in responders])

        master_port, web_port = free_port(), free_port()
        stats_prefix = tmp / "master-stats"
        master_log = tmp / "master.log"
        pool = [a for w in range(args.workers) for a in addresses_of(w, args.addresses_per_worker)]
        master_cmd = [
            *(LOCUST, "-f", LOCUSTFILE, "--master", "--master-bind-host", "127.0.0.1"),
            *("--master-bind-port", str(master_port), "--web-host", "127.0.0.1"),
            *("--web-port", str(web_port), "--scenario", scenario, "--csms-url", url),
            *("--json-file", str(stats_prefix)),
        ]
        if args.pool_on_master:
            master_cmd += ["--source-addresses", ",".join(pool)]
        with master_log.open("wb") as out:
            master = subprocess.Popen(
                master_cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env
            )
        for w in range(args.workers):
            log = tmp / f"worker-{w}.log"
            cmd = [
                *(LOCUST, "-f", LOCUSTFILE, "--worker", "--master-host", "127.0.0.1"),
                *("--master-port", str(master_port), "--scenario", scenario),
            ]
            own = addresses_of(w, args.addresses_per_worker)
            if not args.pool_on_master:
                cmd += ["--source-addresses", ",".join(own)]
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env
                )
            workers.append(Worker(proc=proc, log=log))
        web = f"http://127.0.0.1:{web_port}"

        def ready() -> bool:
            try:
                return int(http(f"{web}/stats/requests").get("worker_count", 0)) >= args.workers
            except OSError:
                return False

        wait_for(ready, 120, "the workers to connect to the master", every=0.5)
        time.sleep(3.0)  # the workers' fleet threads are up and idle
        for worker in workers:
            worker.baseline_rss = rss_bytes(worker.proc.pid)
        master_cpu0, worker_cpu0 = (
            cpu_seconds(master.pid),
            [cpu_seconds(w.proc.pid) for w in workers],
        )

        # ---- spawn
        started = time.monotonic()
        answer = http(
            f"{web}/swarm", {"user_count": str(args.chargers), "spawn_rate": str(args.spawn_rate)}
        )
        if not answer.get("success", False):
            raise SystemExit(f"the master refused to start: {answer}")
        budget = args.chargers / args.spawn_rate + args.connect_timeout
        connected_at = wait_for(
            lambda: books().get("open", 0) >= args.chargers, budget, "all wallboxes connected"
        )
        booted_at = wait_for(
            lambda: books().get("booted", 0) >= args.chargers,
            budget - (connected_at - started),
            "all wallboxes booted",
        )
        spawn_cpu = [cpu_seconds(w.proc.pid) - c for w, c in zip(workers, worker_cpu0, strict=True)]
        print(
            f"all {args.chargers} connected after {connected_at - started:.1f} s, booted after "
            f"{booted_at - started:.1f} s",
            flush=True,
        )

        # ---- hold
        time.sleep(args.settle)
        before = books()
        pings0 = master_pings(web)
        t0 = time.monotonic()
        m0 = cpu_seconds(master.pid)
        w0 = [cpu_seconds(w.proc.pid) for w in workers]
        master_rss_peak = rss_bytes(master.pid)
        while (remaining := t0 + args.hold - time.monotonic()) > 0:
            time.sleep(min(1.0, remaining))
            master_rss_peak = max(master_rss_peak, rss_bytes(master.pid))
        t1 = time.monotonic()
        after = books()
        pings = master_pings(web) - pings0
        m1 = cpu_seconds(master.pid)
        w1 = [cpu_seconds(w.proc.pid) for w in workers]
        worker_rss = [rss_bytes(w.proc.pid) for w in workers]

        # ---- stop, as Kubernetes does: SIGTERM to the master
        stopping = time.monotonic()
        master.send_signal(signal.SIGTERM)
        open_at_stop = after.get("open", 0)
        closed_at = wait_for(
            lambda: books().get("open", 1) == 0, 120, "every websocket closed", every=0.2
        )
        master_code = master.wait(timeout=180)
        worker_codes = [w.proc.wait(timeout=60) for w in workers]
        final_books = summed([r.finish() for r in responders])
        responders = []
        for worker in workers:
            worker.find_addresses()
    finally:
        for proc in [*(w.proc for w in workers), *([master] if master is not None else [])]:
            if proc.poll() is None:
                stop(proc, 30)
        for responder in responders:
            stop(responder.proc, 30)

    window = t1 - t0
    entries = json.loads(Path(f"{stats_prefix}.json").read_text())
    master_out = master_log.read_text(errors="replace")
    per_worker = []
    open_total = max(1, after.get("open", 0))
    for i, worker in enumerate(workers):
        addresses = worker.addresses
        wallboxes = sum(after.get("peer_open", {}).get(a, 0) for a in addresses)
        calls = sum(after.get("peer_calls", {}).get(a, 0) for a in addresses) - sum(
            before.get("peer_calls", {}).get(a, 0) for a in addresses
        )
        # Pings are round trips too (the idle traffic has little else): the master's count
        # in the hold (its windows lag by up to a report interval at both ends), each
        # worker's share by its wallboxes.
        worker_pings = round(pings * wallboxes / open_total)
        round_trips = calls + worker_pings
        cpu = w1[i] - w0[i]
        per_worker.append(
            {
                "worker": i,
                "addresses": sorted(addresses),
                "wallboxes": wallboxes,
                "baseline_rss": worker.baseline_rss,
                "rss": worker_rss[i],
                "rss_kib_per_wallbox": (worker_rss[i] - worker.baseline_rss)
                / KIB
                / max(1, wallboxes),
                "ocpp_calls": calls,
                "pings": worker_pings,
                "round_trips": round_trips,
                "cpu_seconds": cpu,
                "cpu_us_per_round_trip": cpu / round_trips * 1e6 if round_trips else math.nan,
                "cpu_share": cpu / window * 100.0 if window else math.nan,
                "spawn_cpu_ms_per_wallbox": spawn_cpu[i] / max(1, wallboxes) * 1000.0,
                "exit_code": worker_codes[i],
            }
        )
    ocpp = {
        e["name"]: e["num_requests"]
        for e in entries
        if e["method"] == "OCPP" and not e["name"].endswith("(CSMS call)")
    }
    connects = next(
        (e for e in entries if e["method"] == "WebSocket" and e["name"] == "connect"), {}
    )
    closes_at_stop = Counter(final_books.get("closes", {})) - Counter(after.get("closes", {}))
    actions = final_books.get("actions", {})
    return {
        "machine": machine(),
        "chargers": args.chargers,
        "workers": args.workers,
        "scenario": scenario,
        "spawn_rate": args.spawn_rate,
        "pool_on_master": args.pool_on_master,
        "fd_limit": limit,
        "responders": responders_needed,
        "connected_seconds": connected_at - started,
        "booted_seconds": booted_at - started,
        "hold_seconds": window,
        "lost_in_hold": after.get("closed", 0) - before.get("closed", 0),
        "reconnects_in_hold": after.get("opened", 0) - before.get("opened", 0),
        "master_cpu_share": (m1 - m0) / window * 100.0 if window else math.nan,
        "master_cpu_spawn_seconds": m0 - master_cpu0,
        "master_rss": master_rss_peak,
        "per_worker": per_worker,
        "open_at_stop": open_at_stop,
        "stop_seconds": closed_at - stopping,
        "closes_at_stop": {str(k): v for k, v in sorted(closes_at_stop.items())},
        "closes_total": final_books.get("closes", {}),
        "opened_total": final_books.get("opened", 0),
        "transactions_started": actions.get("StartTransaction", 0),
        "transactions_stopped": actions.get("StopTransaction", 0),
        "open_transactions": final_books.get("open_transactions", 0),
        "unknown_stops": final_books.get("unknown_stops", 0),
        "master_ocpp": ocpp,
        "responder_actions": actions,
        "master_connects": connects.get("num_requests", 0),
        "master_connect_failures": connects.get("num_failures", 0),
        "master_failures": sum(e["num_failures"] for e in entries),
        "generator_timeouts": generator_timeouts(master_out),
        "master_exit_code": master_code,
        "peers": sorted(final_books.get("peer_calls", {})),
        "master_summary": [
            line
            for line in master_out.splitlines()
            if line.startswith("  ") and ("generator" in line or "LIMIT" in line)
        ],
    }


# ------------------------------------------------------------------ the report


def report(r: dict[str, Any]) -> tuple[str, bool]:
    """The printed figures and checks; whether every check passed."""
    lines = [
        "",
        f"{r['chargers']} wallboxes on {r['workers']} workers ({r['scenario']}), spawn rate "
        f"{r['spawn_rate']:g}/s:",
        f"  all connected after {r['connected_seconds']:.1f} s, all booted after "
        f"{r['booted_seconds']:.1f} s",
        f"  master: {r['master_cpu_share']:.1f} % of a core in the hold, "
        f"{r['master_cpu_spawn_seconds']:.2f} CPU s while spawning, RSS "
        f"{r['master_rss'] / KIB / KIB:.0f} MiB",
    ]
    for w in r["per_worker"]:
        lines.append(
            f"  worker {w['worker']} ({', '.join(w['addresses'])}): {w['wallboxes']} wallboxes, "
            f"RSS {w['rss'] / KIB / KIB:.0f} MiB, {w['rss_kib_per_wallbox']:.1f} KiB per wallbox "
            f"above its baseline; {w['cpu_share']:.1f} % of a core in the hold, "
            f"{w['cpu_us_per_round_trip']:.0f} µs CPU per round trip "
            f"({w['ocpp_calls']} OCPP + {w['pings']} pings in {r['hold_seconds']:.0f} s); "
            f"{w['spawn_cpu_ms_per_wallbox']:.2f} ms CPU per connect + boot"
        )
    lines += r["master_summary"]
    checks: list[tuple[str, bool]] = []
    checks.append(
        (
            f"connections lost during the {r['hold_seconds']:.0f} s hold: "
            f"{r['lost_in_hold']} (reconnects {r['reconnects_in_hold']})",
            r["lost_in_hold"] == 0 and r["reconnects_in_hold"] == 0,
        )
    )
    closes = r["closes_at_stop"]
    checks.append(
        (
            f"stop (SIGTERM to the master): {r['open_at_stop']} websockets closed after "
            f"{r['stop_seconds']:.1f} s, close codes {closes}",
            closes == {"1001": r["open_at_stop"]},
        )
    )
    checks.append(
        (
            f"transactions: {r['transactions_started']} started, {r['transactions_stopped']} "
            f"stopped, {r['open_transactions']} left open, {r['unknown_stops']} unknown stops",
            r["open_transactions"] == 0
            and r["unknown_stops"] == 0
            and r["transactions_started"] == r["transactions_stopped"],
        )
    )
    master_total = sum(r["master_ocpp"].values())
    responder_total = sum(r["responder_actions"].values())
    differ = {
        a: (r["master_ocpp"].get(a, 0), r["responder_actions"].get(a, 0))
        for a in set(r["master_ocpp"]) | set(r["responder_actions"])
        if r["master_ocpp"].get(a, 0) != r["responder_actions"].get(a, 0)
    }
    checks.append(
        (
            f"master's OCPP requests {master_total} vs the responder's CALLs {responder_total}"
            + (f": differ {differ}" if differ else ": equal, per action"),
            not differ,
        )
    )
    generator = r["generator_timeouts"]
    checks.append(
        (
            f"master's failed requests: {r['master_failures']}, of which {generator} handshakes "
            f"timed out while the generator lagged (connect attempts {r['master_connects']}, "
            f"{r['master_connect_failures']} failed; the responder saw {r['opened_total']} "
            "connections)",
            r["master_failures"] == generator,
        )
    )
    peers = set(r["peers"])
    addresses = [set(w["addresses"]) for w in r["per_worker"]]
    disjoint = all(a and not (a & b) for i, a in enumerate(addresses) for b in addresses[i + 1 :])
    checks.append(
        (
            f"source addresses: the responder saw {', '.join(sorted(peers))}; each worker its own",
            disjoint and peers == set().union(*addresses) and all(addresses),
        )
    )
    checks.append(
        (
            f"exit codes: master {r['master_exit_code']}, workers "
            f"{', '.join(str(w['exit_code']) for w in r['per_worker'])}",
            r["master_exit_code"] == 0 and all(w["exit_code"] == 0 for w in r["per_worker"]),
        )
    )
    lines.append("checks:")
    lines += [f"  {'ok    ' if ok else 'FAILED'} {text}" for text, ok in checks]
    return "\n".join(lines), all(ok for _, ok in checks)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chargers", type=int, default=2000, help="wallboxes (Locust users)")
    parser.add_argument("--workers", type=int, default=2, help="Locust worker processes")
    parser.add_argument(
        "--scenario", default="idle", help="idle, steady or a scenario file (default idle)"
    )
    parser.add_argument("--spawn-rate", type=float, default=500.0, help="users/s, all workers")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds measured after boot")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before the hold")
    parser.add_argument(
        "--connect-timeout", type=float, default=120.0, help="beyond chargers / spawn rate, s"
    )
    parser.add_argument(
        "--addresses-per-worker", type=int, default=1, help="source addresses of each worker"
    )
    parser.add_argument(
        "--pool-on-master",
        action="store_true",
        help="give the whole address pool to the master (each worker takes its slice)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=300,
        help="interval the responder answers BootNotification with",
    )
    parser.add_argument(
        "--responders", type=int, default=0, help="responder processes (0: as needed)"
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this directory")
    args = parser.parse_args()
    if args.workers < 1 or args.chargers < 1:
        parser.error("--workers and --chargers must be >= 1")
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        result = run(args, args.logs)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args, Path(tmp))
    text, ok = report(result)
    print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
