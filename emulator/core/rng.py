"""Random streams that cost nothing until drawn from.

A numpy ``Generator`` with its ``PCG64`` and ``SeedSequence`` takes ~1.2 KiB.  A wallbox
has several independent streams (metering, sessions, network jitter, faults, firmware
failures) so that one never shifts another's draws; most wallboxes never draw from the
rare ones (no faults configured, no firmware update, no reconnect).  A deferred stream
builds its Generator on first use, from the same seed material, so it draws exactly the
numbers an eager one would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np


def child_generator(entropy: int, spawn_key: tuple[int, ...]) -> np.random.Generator:
    """The Generator ``SeedSequence(entropy).spawn(...)`` would hand out at ``spawn_key``
    (child ``k`` of child ``n`` is ``(n, k)``), built directly."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=spawn_key))
    )


class _Deferred:
    __slots__ = ("_generator", "_make")

    def __init__(self, make: Callable[[], np.random.Generator]) -> None:
        self._make: Callable[[], np.random.Generator] | None = make
        self._generator: np.random.Generator | None = None

    def __getattr__(self, name: str) -> Any:  # only for names not in __slots__
        generator = self._generator
        if generator is None:
            assert self._make is not None
            generator = self._generator = self._make()
            self._make = None
        return getattr(generator, name)

    @property
    def built(self) -> bool:
        return self._generator is not None


def deferred(make: Callable[[], np.random.Generator]) -> np.random.Generator:
    """A stand-in for ``make()`` that calls it on the first attribute access (a draw).

    About 100 bytes until then.  Each later draw pays one ``__getattr__`` hop (~0.2 µs):
    use it for streams drawn from rarely, never for per-sample ones."""
    return cast(np.random.Generator, _Deferred(make))


def is_built(rng: np.random.Generator) -> bool:
    """False for a deferred stream nobody has drawn from yet (tests, memory accounting)."""
    return not isinstance(rng, _Deferred) or rng.built
