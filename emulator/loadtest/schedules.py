"""Load shapes as pure schedules: fleet size and connection rate as a function of run time.

No Locust here: :mod:`emulator.loadtest.shapes` wraps each schedule in a
``LoadTestShape``, and the tests call :meth:`Schedule.tick` with plain numbers.

A shape is chosen with one option, ``--fleet-shape NAME:key=value,...``::

    ramp:users=10000,ramp=10m,hold=30m           linear ramp, then hold
    steps:sizes=1000/2000/5000,hold=5m,rate=100  hold each fleet size for a while
    boot-storm:users=10000,within=10s,hold=10m   the whole fleet connects within seconds
    soak:users=5000,ramp=10m,hold=8h,every=30m,share=0.1
                                                 hold for hours; every 30 min 10 % of the
                                                 connections drop and reconnect

Durations take ``s``, ``m``, ``h`` suffixes (``90`` is 90 s).  A schedule returns
``None`` when the run is over, as Locust's ``tick()`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from emulator.run.setup import parse_duration as run_duration

__all__ = [
    "BootStorm",
    "LinearRamp",
    "Schedule",
    "ScheduleError",
    "Soak",
    "Steps",
    "Tick",
    "parse_duration",
    "parse_schedule",
]


class ScheduleError(ValueError):
    """A ``--fleet-shape`` value that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Tick:
    users: int  # fleet size to reach
    spawn_rate: float  # wallboxes started (or stopped) per second on the way there


class Schedule(Protocol):
    def tick(self, t: float) -> Tick | None:
        """Target at ``t`` seconds into the run; None: the run is over."""

    def waves_before(self, t: float) -> int:
        """How many reconnect waves are due by ``t`` (each drops ``wave_share``)."""

    @property
    def wave_share(self) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LinearRamp:
    """From 0 to ``users`` linearly over ``ramp`` seconds, then ``hold`` seconds."""

    users: int
    ramp: float
    hold: float
    wave_share: float = 0.0

    def tick(self, t: float) -> Tick | None:
        if t >= self.ramp + self.hold:
            return None
        return Tick(self.users, _rate_over(self.users, self.ramp))

    def waves_before(self, t: float) -> int:
        return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Steps:
    """Each size of ``sizes`` in turn, held ``hold`` seconds (reached at ``rate``/s)."""

    sizes: tuple[int, ...]
    hold: float
    rate: float
    wave_share: float = 0.0

    def tick(self, t: float) -> Tick | None:
        step = int(t // self.hold) if self.hold > 0 else len(self.sizes)
        if step >= len(self.sizes):
            return None
        return Tick(self.sizes[step], self.rate)

    def waves_before(self, t: float) -> int:
        return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BootStorm:
    """The whole fleet connects within ``within`` seconds, then ``hold`` seconds.

    With ``every`` > 0, every ``every`` seconds all connections drop at once (a CSMS or
    load-balancer restart) and the fleet storms back with its reconnect backoff.
    """

    users: int
    within: float
    hold: float
    every: float = 0.0
    wave_share: float = 1.0

    def tick(self, t: float) -> Tick | None:
        if t >= self.within + self.hold:
            return None
        return Tick(self.users, _rate_over(self.users, self.within))

    def waves_before(self, t: float) -> int:
        return _waves(t, start=self.within, end=self.within + self.hold, every=self.every)


@dataclass(frozen=True, slots=True, kw_only=True)
class Soak:
    """Ramp to ``users`` over ``ramp`` s, hold ``hold`` s; every ``every`` s (after the
    ramp) a reconnect wave drops ``share`` of the connections, which come back with the
    wallboxes' own backoff."""

    users: int
    ramp: float
    hold: float
    every: float
    share: float

    @property
    def wave_share(self) -> float:
        return self.share

    def tick(self, t: float) -> Tick | None:
        if t >= self.ramp + self.hold:
            return None
        return Tick(self.users, _rate_over(self.users, self.ramp))

    def waves_before(self, t: float) -> int:
        if self.share <= 0:
            return 0
        return _waves(t, start=self.ramp, end=self.ramp + self.hold, every=self.every)


def _rate_over(users: int, seconds: float) -> float:
    """Spawn rate that reaches ``users`` in ``seconds`` (0 s: all within one second)."""
    return max(users, 1) / seconds if seconds > 0 else float(max(users, 1))


def _waves(t: float, *, start: float, end: float, every: float) -> int:
    """Waves at start + every, start + 2 every, ... strictly before ``end``, up to ``t``."""
    if every <= 0 or t < start + every:
        return 0
    last = min(t, math.nextafter(end, -math.inf))
    return max(0, int((last - start) // every))


# --------------------------------------------------------------------------- parsing


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"``: seconds, as every duration option of
    ocpp-fleet reads them (:func:`emulator.run.setup.parse_duration`)."""
    try:
        return run_duration(text)
    except ValueError as exc:
        raise ScheduleError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ScheduleError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise ScheduleError(f"expected a number >= 0, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScheduleError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise ScheduleError(f"expected a number > 0, got {text!r}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScheduleError(f"expected a share between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ScheduleError(f"expected a share between 0 and 1, got {text!r}")
    return value


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(_count(part) for part in text.split("/") if part.strip())
    if not sizes:
        raise ScheduleError("expected fleet sizes separated by /, e.g. 1000/2000/5000")
    return sizes


_Field = tuple[Callable[[str], object], object]  # parser, default (None: required)

_SHAPES: dict[str, tuple[type, dict[str, _Field]]] = {
    "ramp": (
        LinearRamp,
        {"users": (_count, None), "ramp": (parse_duration, 60.0), "hold": (parse_duration, 600.0)},
    ),
    "steps": (
        Steps,
        {"sizes": (_sizes, None), "hold": (parse_duration, 300.0), "rate": (_rate, 100.0)},
    ),
    "boot-storm": (
        BootStorm,
        {
            "users": (_count, None),
            "within": (parse_duration, 10.0),
            "hold": (parse_duration, 600.0),
            "every": (parse_duration, 0.0),
        },
    ),
    "soak": (
        Soak,
        {
            "users": (_count, None),
            "ramp": (parse_duration, 600.0),
            "hold": (parse_duration, 8 * 3600.0),
            "every": (parse_duration, 1800.0),
            "share": (_share, 0.1),
        },
    ),
}

SHAPE_NAMES: tuple[str, ...] = tuple(_SHAPES)


def parse_schedule(spec: str, *, defaults: Mapping[str, str] | None = None) -> Schedule:
    """``"NAME:key=value,..."`` → a schedule.  ``defaults`` fill keys the spec leaves out
    (the bridge passes ``users`` = the scenario's fleet size)."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if name not in _SHAPES:
        raise ScheduleError(f"unknown fleet shape {name!r}; choose one of {', '.join(_SHAPES)}")
    cls, fields = _SHAPES[name]
    given: dict[str, str] = dict(defaults or {})
    for item in (p.strip() for p in rest.split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ScheduleError(f"{name}: expected key=value, got {item!r}")
        if key not in fields:
            raise ScheduleError(f"{name}: unknown key {key!r}; {name} takes {', '.join(fields)}")
        given[key] = value.strip()
    values: dict[str, object] = {}
    for key, (parse, default) in fields.items():
        if key in given:
            try:
                values[key] = parse(given[key])
            except ScheduleError as exc:
                raise ScheduleError(f"{name}: {key}: {exc}") from None
        elif default is None:
            raise ScheduleError(f"{name}: {key} is required")
        else:
            values[key] = default
    schedule: Schedule = cls(**values)
    return schedule
