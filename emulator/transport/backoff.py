"""Reconnect delays: exponential backoff with full jitter (pure, like websockets' backoff()).

Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads a fleet
that lost its CSMS at once over the whole window instead of re-synchronising it into
waves, which is what a CSMS restart would otherwise face.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def backoff(
    rng: np.random.Generator,
    *,
    initial: float = 1.0,
    factor: float = 2.0,
    maximum: float = 60.0,
) -> Iterator[float]:
    """Yield delays uniformly drawn from [0, min(maximum, initial·factorⁿ)] for n = 0, 1, …"""
    ceiling = initial
    while True:
        yield float(rng.uniform(0.0, ceiling))
        ceiling = min(maximum, ceiling * factor)
