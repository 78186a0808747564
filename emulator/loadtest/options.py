"""The fleet's Locust options: command line, ``locust.conf`` and the web UI's form.

Locust's argument parser is configargparse, so every option here can also be written
in ``locust.conf`` (``scenario = scenarios/demo.toml``) or set as ``LOCUST_SCENARIO``;
options with ``include_in_web_ui`` appear in the web UI's start form, and the master
sends their values to every worker with each spawn message.

Values set in the web UI arrive as strings, so :func:`fleet_options` accepts strings
for every field and converts (and validates) them itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.fleet.runner import parse_address_pool
from emulator.fleet.scenario import Scenario, load_scenario
from emulator.loadtest.partition import DEFAULT_IDS_PER_WORKER
from emulator.loadtest.schedules import SHAPE_NAMES, Schedule, parse_schedule

__all__ = ["FleetOptions", "OptionError", "add_arguments", "fleet_options"]


class OptionError(ValueError):
    """An option value that cannot be used; the message names the option."""


def add_arguments(parser: Any) -> None:
    """Add the fleet's options to Locust's parser (an ``init_command_line_parser`` hook)."""
    # Directly on the parser: only its add_argument takes the web UI keywords
    # (include_in_web_ui, is_required); an argument group's does not.
    group = parser
    group.add_argument(
        "--scenario",
        default="",
        help="scenario TOML file (charger models, sessions); see docs/scenarios.md",
        is_required=True,
    )
    group.add_argument(
        "--csms-url",
        default="",
        help="CSMS OCPP-J endpoint, ws://host:port/path (default: Locust's --host)",
    )
    group.add_argument(
        "--id-prefix", default="", help="charger id prefix (default: the scenario's)"
    )
    group.add_argument("--seed", default="", help="random seed (default: the scenario's, else 1)")
    group.add_argument(
        "--ids-per-worker",
        type=int,
        default=DEFAULT_IDS_PER_WORKER,
        help="charger numbers reserved per worker: worker w uses w*N+1 .. (w+1)*N "
        f"(default {DEFAULT_IDS_PER_WORKER})",
    )
    group.add_argument(
        "--source-addresses",
        default="",
        help="local addresses to bind, e.g. 127.0.0.2-127.0.0.9 (each holds ~28k "
        "connections to one CSMS address; see docs/loadtest.md)",
    )
    group.add_argument(
        "--fleet-shape",
        default="",
        help=f"load shape ({', '.join(SHAPE_NAMES)}) as NAME:key=value,..., e.g. "
        "ramp:users=1000,ramp=5m,hold=30m; read at start-up (the web UI then hides "
        "user count and spawn rate)",
        include_in_web_ui=False,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetOptions:
    scenario_path: Path
    scenario: Scenario
    csms_url: str
    id_prefix: str | None
    seed: int
    ids_per_worker: int
    source_addresses: tuple[str, ...]


def _get(parsed: Any, name: str) -> str:
    value = getattr(parsed, name, None)
    return "" if value is None else str(value).strip()


def fleet_options(parsed: Any, *, host: str | None) -> FleetOptions:
    """Read and check the options (``parsed``: Locust's ``environment.parsed_options``).

    Raises OptionError, or the scenario's ScenarioError, with a message for the user.
    """
    path = _get(parsed, "scenario")
    if not path:
        raise OptionError("--scenario is required: a scenario TOML file (docs/scenarios.md)")
    scenario = load_scenario(path)
    url = _get(parsed, "csms_url") or (host or "").strip()
    if not url:
        raise OptionError("no CSMS: give --csms-url ws://host:port/path (or Locust's --host)")
    if not url.startswith(("ws://", "wss://")):
        raise OptionError(f"--csms-url must start with ws:// or wss://, got {url!r}")
    seed_text = _get(parsed, "seed")
    if seed_text:
        try:
            seed = int(seed_text)
        except ValueError:
            raise OptionError(f"--seed: expected an integer, got {seed_text!r}") from None
    else:
        seed = scenario.seed if scenario.seed is not None else 1
    ids_text = _get(parsed, "ids_per_worker") or str(DEFAULT_IDS_PER_WORKER)
    try:
        ids_per_worker = int(ids_text)
    except ValueError:
        ids_per_worker = 0
    if ids_per_worker < 1:
        raise OptionError(f"--ids-per-worker: expected a positive integer, got {ids_text!r}")
    pool_text = _get(parsed, "source_addresses")
    try:
        pool = tuple(parse_address_pool(pool_text)) if pool_text else ()
    except ValueError as exc:
        raise OptionError(f"--source-addresses: {exc}") from None
    return FleetOptions(
        scenario_path=Path(path),
        scenario=scenario,
        csms_url=url,
        id_prefix=_get(parsed, "id_prefix") or None,
        seed=seed,
        ids_per_worker=ids_per_worker,
        source_addresses=pool,
    )


def shape_schedule(parsed: Any) -> Schedule | None:
    """The ``--fleet-shape`` schedule, or None when no shape was asked for.

    A shape without ``users`` (or ``sizes``) takes the scenario's ``fleet.chargers``.
    """
    spec = _get(parsed, "fleet_shape")
    if not spec:
        return None
    defaults: dict[str, str] = {}
    path = _get(parsed, "scenario")
    if path and "users=" not in spec:
        defaults["users"] = str(load_scenario(path).fleet.chargers)
    return parse_schedule(spec, defaults=defaults)
