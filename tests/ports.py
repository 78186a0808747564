"""Ports for servers a test starts later (a Locust master, a metrics endpoint, Prometheus).

A port the kernel hands out with ``bind(("127.0.0.1", 0))`` comes from the ephemeral range
(32768-60999 here), the range outgoing connections take their source ports from.  Between
choosing it and the server binding it (a Locust process takes seconds to start) any
connection of a test running beside it (``make test`` runs 4 processes, whose fleets open
hundreds) may take it.  So these are drawn from below that range, where no connection
takes its source port, and checked free when drawn.
"""

from __future__ import annotations

import random
import socket

__all__ = ["free_port", "free_port_pair"]

LOW, HIGH = 20_000, 32_000  # below net.ipv4.ip_local_port_range
_draw = random.SystemRandom()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free on 127.0.0.1 now, outside the ephemeral range."""
    for _ in range(200):
        port = _draw.randrange(LOW, HIGH)
        if _bindable(port):
            return port
    raise AssertionError(f"no free port in {LOW}-{HIGH}")


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 now (the per-worker metrics rule)."""
    for _ in range(200):
        port = _draw.randrange(LOW, HIGH - 1)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise AssertionError(f"no two consecutive free ports in {LOW}-{HIGH}")
