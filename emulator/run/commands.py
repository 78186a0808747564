"""The commands a run setup can be handed to: ``ocpp-fleet run`` and ``capacity``."""

from __future__ import annotations

from rich.console import Console

from emulator.run.lifecycle import fleet_run
from emulator.run.outputs import result_of, write_outputs
from emulator.run.search import capacity_command
from emulator.run.setup import RunSetup

__all__ = ["capacity_command", "run_command"]


async def run_command(setup: RunSetup, console: Console) -> int:
    """``ocpp-fleet run``: the fleet for the setup's duration (or until SIGINT or
    SIGTERM), then every output it asked for; the exit code."""
    async with fleet_run(setup, console) as run:
        await run.fleet.run(duration=setup.duration, **run.window.hooks())
    return write_outputs(result_of(run), console)
