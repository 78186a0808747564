"""Shared by the benchmark's processes: what one process measures about itself."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def baseline_rss() -> int:
    gc.collect()
    return rss()


def cpu() -> float:
    """CPU seconds (user + system) this process used so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def emit(result: dict[str, Any]) -> None:
    """The phase's result: one JSON line on stdout (logs go to stderr)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def phase_parser() -> argparse.ArgumentParser:
    """The options every benchmark phase takes from bench/capacity.py."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--chargers", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--measure", type=float, default=60.0)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    return parser


def machine() -> str:
    """The host, for the first line of a benchmark's report."""
    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu_model}), "
        f"Python {platform.python_version()}"
    )
