"""How many wallboxes can one ocpp-fleet process hold?  The capacity benchmark.

    .venv/bin/python bench/capacity.py --chargers 10000

Against a minimal responder (bench/responder.py, its own process, answering every CALL
at once), it runs in turn, each in a fresh process against a fresh responder:

  (b) ocpp-fleet's standalone engine (the Fleet of `ocpp-fleet run`) with steady traffic
      (bench/steady-traffic.toml): every CSMS answer is checked against the OCPP 1.6
      schemas; the responder records the frames each charger sent; during the window it
      also records the 10 s time series of `--report`, and counts the CPU that costs;
  (a) the floor client (bench/floor.py): raw websockets + uvloop replaying exactly those
      frames on the same schedule;
  (c) the same fleet under Locust (one process, bench/locust_phase.py).

With ``--identities`` it runs (b) twice instead, side by side: as above, and with its
chargers, passwords and cards read from files (an identities file of --chargers rows, a
password each, and a cards file as large as the scenario's first pool), and prints what
the files cost per wallbox.

Each connects all its chargers at once (Locust at --spawn-rate), waits --warmup seconds,
then measures for --measure seconds: RSS per wallbox above the process's baseline
(taken before the fleet exists), CPU seconds per OCPP round trip, connect rate, how
late scheduled sends went out (p99) and, for (b), the connections lost in the window.
Timings are printed, never asserted.

With ``--fleet-only`` it runs (b) alone: how many wallboxes one process holds, e.g.
``--chargers 19000 --measure 600 --fleet-only`` (the open-file limit, raised to the hard
limit by every process here, the responder too, is the ceiling: one socket a wallbox).
When the scenario's first card pool is smaller than --chargers, a copy with one card per
charger is used, so that every charger still finds a driver (a card is at one charger at
a time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
KIB = 1024


def start_responder(record: Path | None) -> tuple[subprocess.Popen[str], str]:
    cmd = [PYTHON, str(HERE / "responder.py")]
    if record is not None:
        cmd += ["--record", str(record)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "ready":
        proc.kill()
        raise SystemExit("the responder did not start")
    return proc, f"ws://127.0.0.1:{line[1]}/ocpp"


def stop_responder(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()


def phase(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{ROOT}")
    done = subprocess.run(
        [PYTHON, str(HERE / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )
    sys.stderr.write(done.stderr[-4000:])
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{script} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def derived(r: dict[str, Any]) -> dict[str, float]:
    n = max(1, r["chargers"])
    return {
        "rss_kib": (r["steady_rss"] - r["baseline_rss"]) / KIB / n,
        "cpu_us_per_rt": r["cpu_seconds"] / max(1, r["round_trips"]) * 1e6,
        "connect_rate": r["connected"] / r["connect_seconds"] if r["connect_seconds"] else math.nan,
        "boot_rate": r["booted"] / r["boot_seconds"] if r["boot_seconds"] else math.nan,
        "throughput": r["round_trips"] / r["window_seconds"],
        "lateness_p99_ms": r["lateness_p99"] * 1000.0,
        "cpu_share": r["cpu_seconds"] / r["window_seconds"] * 100.0,
    }


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("wallboxes connected/booted", lambda r, d: f"{r['connected']}/{r['booted']}"),
        ("RSS per wallbox above baseline", lambda r, d: f"{d['rss_kib']:.1f} KiB"),
        ("connect: all connected after", lambda r, d: f"{r['connect_seconds']:.2f} s"),
        ("connect: all booted after", lambda r, d: f"{r['boot_seconds']:.2f} s"),
        ("connect rate", lambda r, d: f"{d['connect_rate']:.0f} /s"),
        ("connect + boot rate", lambda r, d: f"{d['boot_rate']:.0f} /s"),
        ("CPU until all booted", lambda r, d: f"{r['connect_cpu']:.2f} s"),
        ("OCPP round trips in window", lambda r, d: f"{r['round_trips']}"),
        ("throughput", lambda r, d: f"{d['throughput']:.0f} rt/s"),
        ("CPU in window", lambda r, d: f"{d['cpu_share']:.0f} % of a core"),
        ("CPU per round trip", lambda r, d: f"{d['cpu_us_per_rt']:.0f} µs"),
        ("send lateness p50", lambda r, d: f"{r['lateness_p50'] * 1000:.1f} ms"),
        ("send lateness p99", lambda r, d: f"{d['lateness_p99_ms']:.1f} ms"),
        (
            "loop lag p99",
            lambda r, d: (
                f"{r['loop_lag_p99'] * 1000:.1f} ms" if not math.isnan(r["loop_lag_p99"]) else "-"
            ),
        ),
        ("connect failures / timeouts", lambda r, d: f"{r['connect_failures']} / {r['timeouts']}"),
    ]
    names = [r["client"] for r in results]
    width = max(len(label) for label, _ in rows) + 2
    cols = [max(len(n), 14) + 2 for n in names]
    out = ["".ljust(width) + "".join(n.rjust(c) for n, c in zip(names, cols, strict=True))]
    for label, fn in rows:
        cells = [fn(r, derived(r)) for r in results]
        out.append(
            label.ljust(width) + "".join(v.rjust(c) for v, c in zip(cells, cols, strict=True))
        )
    return "\n".join(out)


def verdicts(
    floor: dict[str, Any],
    picows_floor: dict[str, Any],
    fleet: dict[str, Any],
    under: dict[str, Any] | None,
) -> str:
    """The targets; "floor" is the websockets floor client, the one a user would write."""
    f, p, b = derived(floor), derived(picows_floor), derived(fleet)
    lines = ["", f"ratios and targets (ocpp-fleet over {fleet.get('transport', '?')} vs floor):"]

    def check(label: str, value: str, ok: bool, target: str) -> None:
        lines.append(f"  {label:<44}{value:>12}   target {target:<12} {'ok' if ok else 'MISSED'}")

    check(
        "RSS per wallbox above baseline", f"{b['rss_kib']:.1f} KiB", b["rss_kib"] <= 20, "≤ 20 KiB"
    )
    cpu_ratio = b["cpu_us_per_rt"] / f["cpu_us_per_rt"]
    check("CPU per round trip, ocpp-fleet / floor", f"{cpu_ratio:.2f}×", cpu_ratio <= 1.0, "≤ 1×")
    picows_ratio = b["cpu_us_per_rt"] / p["cpu_us_per_rt"]
    check("CPU per round trip, ocpp-fleet / picows floor", f"{picows_ratio:.2f}×", True, "(info)")
    floors = p["cpu_us_per_rt"] / f["cpu_us_per_rt"]
    check("CPU per round trip, picows / websockets floor", f"{floors:.2f}×", True, "(info)")
    rate_ratio = b["connect_rate"] / f["connect_rate"]
    check("connect rate, ocpp-fleet / floor", f"{rate_ratio:.2f}×", rate_ratio >= 0.7, "≥ 0.7×")
    boot_ratio = b["boot_rate"] / f["boot_rate"]
    check("connect + boot rate, ocpp-fleet / floor", f"{boot_ratio:.2f}×", True, "(info)")
    check(
        "send lateness p99",
        f"{b['lateness_p99_ms']:.0f} ms",
        b["lateness_p99_ms"] < 100,
        "< 100 ms",
    )
    if fleet.get("timeseries_rows"):
        share = fleet["timeseries_cpu"] / max(fleet["cpu_seconds"], 1e-9) * 100.0
        check(
            f"time series ({fleet['timeseries_rows']} rows), share of CPU",
            f"{share:.2f} %",
            share < 2.0,
            "< 2 %",
        )
    if under is not None:
        u = derived(under)
        share = u["throughput"] / b["throughput"]
        same = u["lateness_p99_ms"] < 250
        check(
            "throughput under Locust / standalone",
            f"{share * 100:.0f} %",
            share >= 0.8 and same,
            "≥ 80 %",
        )
        check("send lateness p99 under Locust", f"{u['lateness_p99_ms']:.0f} ms", same, "< 250 ms")
        check(
            "CPU per round trip, Locust / standalone",
            f"{u['cpu_us_per_rt'] / b['cpu_us_per_rt']:.2f}×",
            True,
            "(info)",
        )
    return "\n".join(lines)


def enough_cards(scenario: Path, chargers: int, folder: Path) -> Path:
    """``scenario``, or a copy in ``folder`` whose first card pool has ``chargers`` cards
    when it had fewer."""
    text = scenario.read_text()
    found = re.search(r"^count = (\d+)$", text, flags=re.MULTILINE)
    if found is None or int(found.group(1)) >= chargers:
        return scenario
    copy = folder / f"{scenario.stem}-{chargers}-cards.toml"
    copy.write_text(text[: found.start()] + f"count = {chargers}" + text[found.end() :])
    return copy


def held(fleet: dict[str, Any]) -> str:
    """Did one process hold every wallbox through the window?  The check line."""
    d = derived(fleet)
    lost = fleet.get("lost_in_window", math.nan)
    ok = (
        fleet["connected"] == fleet["chargers"]
        and fleet["booted"] == fleet["chargers"]
        and lost == 0
        and d["lateness_p99_ms"] < 250
    )
    reasons = fleet.get("lost_reasons") or {}
    return (
        f"one process held {fleet['connected']} of {fleet['chargers']} wallboxes (booted "
        f"{fleet['booted']}) for {fleet['window_seconds']:.0f} s: {lost} connections lost"
        + (f" {reasons}" if reasons else "")
        + f", {fleet['reconnects_in_window']} reconnects, p99 send lateness "
        f"{d['lateness_p99_ms']:.0f} ms (target: none lost, < 250 ms) " + ("ok" if ok else "MISSED")
    )


def fleet_only(args: argparse.Namespace, scenario: str, common: list[str], budget: float) -> int:
    """Phase (b) alone, with its held check."""
    transport = "websockets" if args.transport == "both" else args.transport
    responder, url = start_responder(None)
    try:
        fleet_args = ["--url", url, "--scenario", scenario, "--transport", transport]
        fleet = phase("fleet_phase.py", [*fleet_args, *common], budget)
    finally:
        stop_responder(responder)
    print()
    print(table([fleet]))
    print()
    print(held(fleet))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": [fleet]}, indent=2))
    return 0


def with_identity_files(scenario: Path, chargers: int, folder: Path) -> Path:
    """A copy of ``scenario`` whose chargers and cards come from files made here."""
    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits
    rows = (f"BENCH-{n:06d},{''.join(rng.choices(alphabet, k=20))}" for n in range(1, chargers + 1))
    (folder / "ids.csv").write_text("charger_id,password\n" + "\n".join(rows) + "\n")
    text = scenario.read_text()
    cards = int(re.search(r"count = (\d+)", text).group(1))  # type: ignore[union-attr]
    (folder / "cards.csv").write_text(
        "id_tag\n" + "\n".join(f"{rng.getrandbits(56):014X}" for _ in range(cards)) + "\n"
    )
    text = re.sub(r"^chargers = \d+\n", "", text, flags=re.MULTILINE)  # --chargers decides
    text = text.replace("[fleet]\n", '[fleet]\nidentities = "ids.csv"\n', 1)
    text = re.sub(
        r"\[\[sessions.id_tags\]\][^\[]*", '[[sessions.id_tags]]\nfile = "cards.csv"\n', text
    )
    copy = folder / "with-identities.toml"
    copy.write_text(text)
    return copy


def identities_cost(args: argparse.Namespace, common: list[str], budget: float) -> int:
    """Phase (b) without and with identity files, side by side."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = with_identity_files(Path(args.scenario), args.chargers, Path(tmp))
        for scenario in (args.scenario, str(files)):
            time.sleep(1.0)
            responder, url = start_responder(None)
            try:
                result = phase(
                    "fleet_phase.py", ["--url", url, "--scenario", scenario, *common], budget
                )
            finally:
                stop_responder(responder)
            results.append(result)
    plain, files_result = results
    files_result["client"] = "with files"
    print()
    print(table(results))
    delta = derived(files_result)["rss_kib"] - derived(plain)["rss_kib"]
    cpu = derived(files_result)["cpu_us_per_rt"] / derived(plain)["cpu_us_per_rt"]
    print(
        f"\nidentities and cards from files, per wallbox: {delta:+.2f} KiB (target ≤ 1 KiB: "
        f"{'ok' if delta <= 1.0 else 'MISSED'}); CPU per round trip {cpu:.2f}× without"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--scenario", default=str(HERE / "steady-traffic.toml"))
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds after all booted")
    parser.add_argument("--measure", type=float, default=60.0, help="measurement window, s")
    parser.add_argument("--spawn-rate", type=float, default=1000.0, help="Locust users/s")
    parser.add_argument("--no-locust", action="store_true", help="skip phase (c)")
    parser.add_argument(
        "--transport",
        choices=("websockets", "picows", "both"),
        default="both",
        help="the byte pump of phase (b): one, or both side by side (default)",
    )
    parser.add_argument(
        "--fleet-only",
        action="store_true",
        help="only phase (b): does one process hold --chargers wallboxes for --measure s?",
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument(
        "--identities",
        action="store_true",
        help="instead: the standalone fleet without and with identity and card files",
    )
    args = parser.parse_args()
    common = [
        "--chargers",
        str(args.chargers),
        "--warmup",
        str(args.warmup),
        "--measure",
        str(args.measure),
    ]
    budget = 300.0 + 2 * (args.warmup + args.measure)
    print(
        f"capacity benchmark: {args.chargers} wallboxes, warm-up {args.warmup:g} s, "
        f"window {args.measure:g} s; {machine()}",
        flush=True,
    )
    if args.identities:
        return identities_cost(args, common, budget)
    # A copy of the scenario with enough cards, if one is needed (removed at exit).
    cards = tempfile.TemporaryDirectory()
    args.scenario = str(enough_cards(Path(args.scenario), args.chargers, Path(cards.name)))
    if args.fleet_only:
        return fleet_only(args, args.scenario, common, budget)
    transports = ["websockets", "picows"] if args.transport == "both" else [args.transport]
    fleets = []
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.jsonl"
        for number, transport in enumerate(transports):
            if number:
                time.sleep(1.0)
            # The first fleet's frames are the trace the floors replay.
            responder, url = start_responder(None if number else trace)
            try:
                fleet_args = ["--url", url, "--scenario", args.scenario, "--transport", transport]
                fleets.append(phase("fleet_phase.py", [*fleet_args, *common], budget))
            finally:
                stop_responder(responder)
        floors = []
        for transport in ("websockets", "picows"):
            time.sleep(1.0)
            responder, url = start_responder(None)
            try:
                replay = ["--url", url, "--trace", str(trace), "--transport", transport]
                floors.append(phase("floor.py", [*replay, *common], budget))
            finally:
                stop_responder(responder)
        floor, picows_floor = floors
    under = None
    if not args.no_locust:
        time.sleep(1.0)
        responder, url = start_responder(None)
        try:
            under = phase(
                "locust_phase.py",
                [
                    "--url",
                    url,
                    "--scenario",
                    args.scenario,
                    "--spawn-rate",
                    str(args.spawn_rate),
                    *common,
                ],
                budget + args.chargers / args.spawn_rate,
            )
        finally:
            stop_responder(responder)
    results = [floor, picows_floor, *fleets] + ([under] if under else [])
    print()
    print(table(results))
    for fleet in fleets:
        print(verdicts(floor, picows_floor, fleet, under))
        print(f"  {held(fleet)}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
