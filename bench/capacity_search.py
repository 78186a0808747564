"""How long a capacity search takes, where its time goes, and how right its verdict is.

    .venv/bin/python bench/capacity_search.py                      # 15 ms, the defaults
    .venv/bin/python bench/capacity_search.py --service-time 15ms 20ms 50ms

For each service time it starts the reference CSMS serving one CALL at a time
(``ocpp-fleet csms --service-time``: a single server with deterministic service, whose
capacity is known) and runs ``ocpp-fleet capacity`` against it with
``scenarios/capacity-demo.toml`` (every charger charging, sampling every 4 s), each in a
process of its own.  It prints:

* the search's wall time against the sum of its holds and ramps (the time a search cannot
  avoid), and the split the verdict JSON records (ramping, shrinking, settling, holding,
  recovering);
* the verdict against queueing theory: the size at 100 % utilisation (1 / (service time x
  the calls per second per charger the search measured)), and the largest size for which an
  M/D/1 queue (Poisson arrivals at the fleet's measured rate, the same deterministic
  service) keeps the SLO's percentile of the response time under its limit, simulated with
  the Lindley recursion.  Periodic chargers in random phases queue less than Poisson
  arrivals, so a right verdict lies at or above the M/D/1 size, and below 100 %.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
_SLO = re.compile(r"^(?:[^:]+:)?p(\d+(?:\.\d+)?)<(\d+(?:\.\d+)?)ms$")


def parse_ms(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)ms", text)
    if match is None:
        raise SystemExit(f"expected a service time like 15ms, got {text!r}")
    return float(match[1]) / 1000.0


def md1_percentile(rate: float, service: float, q: float, calls: int, seed: int = 1) -> float:
    """The q-th percentile (0-100) of the response time (wait + service) of an M/D/1
    queue, by the Lindley recursion over ``calls`` Poisson arrivals."""
    if rate * service >= 1.0:
        return float("inf")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, calls)
    waits = np.empty(calls)
    wait = 0.0
    for i, gap in enumerate(gaps):  # W(n+1) = max(0, W(n) + D - A(n+1))
        waits[i] = wait
        wait = max(0.0, wait + service - gap)
    warm = calls // 10  # leave out the empty start
    return float(np.percentile(waits[warm:] + service, q))


def md1_size(per_charger: float, service: float, q: float, limit: float, calls: int) -> int:
    """The largest fleet whose M/D/1 response time keeps its q-th percentile under limit."""
    low, high = 0, int(1.0 / (service * per_charger))  # passes, fails (100 %)
    while high - low > 1:
        middle = (low + high) // 2
        if md1_percentile(middle * per_charger, service, q, calls) < limit:
            low = middle
        else:
            high = middle
    return low


def start_csms(service: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [PYTHON, "-m", "emulator.cli", "csms", "--port", "0", "--service-time", service],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(ws://\S+)/<chargerId>", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the reference CSMS did not start: {line!r}")
    return proc, match[1]


def stop_csms(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return out.strip().splitlines()[-1] if out.strip() else ""


def search(args: argparse.Namespace, service: str, out: Path) -> tuple[dict[str, Any], float]:
    csms, url = start_csms(service)
    try:
        began = time.monotonic()
        done = subprocess.run(
            [
                PYTHON, "-m", "emulator.cli", "capacity", "--csms-url", url,
                "--scenario", args.scenario, "--start", str(args.start),
                "--growth", str(args.growth), "--hold", str(args.hold), "--slo", args.slo,
                "--json", str(out),
            ],
            capture_output=True, text=True, cwd=ROOT, timeout=args.timeout, check=False,
        )  # fmt: skip
        took = time.monotonic() - began
    finally:
        served = stop_csms(csms)
    if done.returncode not in (0, 1) or not out.exists():
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"the search against {service} failed (exit {done.returncode})")
    print(f"  CSMS: {served}")
    return json.loads(out.read_text()), took


def report(
    args: argparse.Namespace, service_text: str, verdict: dict[str, Any], took: float
) -> None:
    service = parse_ms(service_text)
    slo = _SLO.match(args.slo.replace(" ", ""))
    assert slo is not None
    q, limit = float(slo[1]), float(slo[2]) / 1000.0
    steps = verdict["steps"]
    rates = [s["calls_per_second"] / s["chargers"] for s in steps if s["chargers"]]
    per_charger = float(np.median(rates))
    full = 1.0 / (service * per_charger)
    md1 = md1_size(per_charger, service, q, limit, args.md1_calls)
    spent = verdict.get("seconds", {})
    unavoidable = spent.get("holding", 0.0) + spent.get("ramping", 0.0)
    capacity = verdict["capacity"] or 0
    sizes = ", ".join(f"{s['chargers']}{'' if s['passed'] else '✗'}" for s in steps)
    print(f"  steps: {sizes}")
    print(f"  verdict: {verdict['verdict']}")
    for step in steps:
        worst = ", ".join(
            f"{a}:p{q:g} {v['p' + format(q, 'g') + '_ms']:.0f} ms ({v['count']})"
            for a, v in step["actions"].items()
            if f"p{q:g}_ms" in v and v[f"p{q:g}_ms"] is not None and v[f"p{q:g}_ms"] >= limit * 1000
        )
        if worst:
            print(f"    {step['chargers']} chargers, over the limit: {worst}")
    print(
        f"  time: {took:.0f} s; holds + ramps {unavoidable:.0f} s: "
        f"{took / max(unavoidable, 1e-9):.2f}× (target ≤ 1.5×)"
    )
    print("  split: " + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()))
    print(
        f"  calls per charger {per_charger:.3f}/s; 100 % utilisation at {full:.0f} chargers; "
        f"M/D/1 keeps p{q:g} < {limit * 1000:g} ms up to {md1} chargers"
    )
    print(
        f"  verdict {capacity} = {capacity / max(md1, 1):.0%} of the M/D/1 size (target ≥ 90 %), "
        f"{capacity / full:.0%} utilisation (target < 100 %)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--service-time", nargs="+", default=["15ms"], metavar="MS")
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "capacity-demo.toml"))
    parser.add_argument("--start", type=int, default=20)
    parser.add_argument("--growth", type=float, default=2.0)
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--slo", default="*:p95<250ms")
    parser.add_argument("--md1-calls", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    print(
        f"capacity search: {args.scenario}, --start {args.start} --growth {args.growth:g} "
        f"--hold {args.hold:g} --slo {args.slo!r}; {machine()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for service in args.service_time:
            parse_ms(service)
            print(f"\nreference CSMS at {service} per CALL:", flush=True)
            verdict, took = search(args, service, Path(tmp) / f"{service}.json")
            report(args, service, verdict, took)
    return 0


if __name__ == "__main__":
    sys.exit(main())
