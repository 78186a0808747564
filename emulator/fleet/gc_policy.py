"""Garbage collection for a process that holds thousands of live connections.

A collection walks every object of the generations it collects.  At 10,000 wallboxes
the fleet holds ~1 million objects (a full collection: ~1 s), and even the *young*
generation holds ~150,000: each wallbox's current wait (the coroutines of ``recv``,
its timeout handle, contexts, websockets frames and bound methods, ~15 objects) is
replaced at every wake-up, so it is always young.  With the thresholds raised, a
young collection came every minute or so and took ~150 ms: every deadline due
meanwhile fired that late, the tail of the capacity benchmark's send lateness.

So a fleet process, every quarter second, collects the young generation — only what
was created since the last tick and is still alive: ~1 ms — and then ``gc.freeze()``s
the survivors into the permanent generation, which no collection walks; freezing also
resets the young count, so automatic collections hardly ever run.  Reference counting
still frees frozen objects; only a reference cycle that forms among objects after one
of them was frozen is never collected (a closed connection's, a removed wallbox's).
At 10,000 wallboxes, after 90 s of the benchmark's traffic, unfreezing and collecting
everything found 0 such objects; reconnect waves bound the rest.
"""

from __future__ import annotations

import asyncio
import gc

TICK = 0.25  # seconds between young collections
THRESHOLDS = (50_000, 50, 100)  # in case more than 50,000 objects pile up within a tick


async def keep_collections_short(interval: float = TICK) -> None:
    """Run in the fleet's event loop until cancelled (process-wide: only in processes
    that exist to run a fleet)."""
    gc.set_threshold(*THRESHOLDS)
    while True:
        await asyncio.sleep(interval)
        gc.collect(0)
        gc.freeze()
