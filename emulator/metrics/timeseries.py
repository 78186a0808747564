"""A run as a time series: one row per interval (10 s by default), for reports and plots.

Each row is the window between two :meth:`RunStats.snapshot` calls
(:meth:`RunStats.since`), so recording costs nothing per message: every ``interval``
seconds the recorder copies the run's histograms once and subtracts the previous copy.
A row holds, for that window:

* per OCPP action and direction: the number of calls, p50/p95/p99 latency in ms (None
  when no call was answered) and the failures by outcome, in its serialized form
  (:attr:`emulator.core.outcome.Outcome.key` of every failed outcome:
  ``callerror:<code>``, ``timeout``, ``schema:<code>``, ``disconnected``);
* connects, disconnects, connect failures by reason, messages sent and received;
* from the fleet, read at the end of the window (a ``fleet`` callable returning
  :class:`FleetGauges`, e.g. ``Fleet.counts``): chargers, connected, charging, queue depth;
* from the generator (a ``generator`` callable returning a mapping in seconds, e.g.
  ``lambda: fleet.health.snapshot().as_dict()``): its loop lag and send lateness, in ms
  (:func:`generator_figures`).  A :class:`~emulator.fleet.health.GeneratorHealth`
  snapshot describes its last closed window (5 s), not the whole row.

This module knows nothing about the fleet or Locust: what it reads from them comes
through those two callables.

Rows are written as JSON (``{"interval_s": ..., "rows": [...]}``) and as CSV with one
column per action and figure (``cp_to_csms.StartTransaction.p99_ms``,
``cp_to_csms.StartTransaction.failures.timeout``, ``connect_failures.refused``,
``generator.lateness_p99_ms``); both read back to the same rows (:func:`read_json`,
:func:`read_csv`).  In CSV column names, ``%`` and ``.`` inside an action name, outcome
or reason are written ``%25`` and ``%2E``, so any name a CSMS sends stays one column.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from emulator.metrics.stats import ActionStats, Direction, RunStats

__all__ = [
    "ActionRow",
    "FleetGauges",
    "Row",
    "TimeSeries",
    "generator_figures",
    "read_csv",
    "read_json",
    "row_from_window",
    "write_csv",
    "write_json",
]

DEFAULT_INTERVAL = 10.0
_QUANTILES = (50.0, 95.0, 99.0)
_DIRECTIONS = tuple(Direction)

# HealthSnapshot.as_dict() keys in seconds -> the row's keys in ms.
_GENERATOR_SECONDS = {
    "loop_lag_p99": "loop_lag_p99_ms",
    "loop_lag_max": "loop_lag_max_ms",
    "lateness_p99": "lateness_p99_ms",
    "lateness_max": "lateness_max_ms",
    "worst_loop_lag_p99": "worst_loop_lag_p99_ms",
    "worst_lateness_p99": "worst_lateness_p99_ms",
    "lag_limit": "loop_lag_limit_ms",
    "lateness_limit": "lateness_limit_ms",
}


class FleetGauges(Protocol):
    """What a row reads from the fleet at the end of each window.

    :class:`emulator.metrics.fleetview.FleetGauges` (``Fleet.gauges()``) and
    :class:`~emulator.metrics.fleetview.FleetCounts` (``Fleet.counts()``) are ones."""

    @property
    def chargers(self) -> int: ...

    @property
    def connected(self) -> int: ...

    @property
    def charging(self) -> int: ...

    @property
    def queue_depth(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRow:
    """One action in one direction during one row's window (latencies in ms)."""

    direction: str  # Direction value: "cp_to_csms" or "csms_to_cp"
    action: str
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    failures: dict[str, int] = field(default_factory=dict)  # outcome -> calls

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "action": self.action,
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "failures": dict(self.failures),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionRow:
        return cls(
            direction=str(data["direction"]),
            action=str(data["action"]),
            count=int(data["count"]),
            p50_ms=_optional_float(data.get("p50_ms")),
            p95_ms=_optional_float(data.get("p95_ms")),
            p99_ms=_optional_float(data.get("p99_ms")),
            failures={str(k): int(v) for k, v in dict(data.get("failures") or {}).items()},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One window of the run.

    ``start_s``/``end_s``: seconds since the run's statistics began (``RunStats.started``);
    ``time``: the wall-clock end of the window, ISO 8601 UTC; ``partial``: the window is
    shorter than the interval (the last one of a run).  Fleet gauges are None when no
    ``fleet`` callable was given; ``generator`` is empty without a ``generator`` one.
    """

    start_s: float
    end_s: float
    time: str
    partial: bool = False
    actions: tuple[ActionRow, ...] = ()
    connects: int = 0
    disconnects: int = 0
    connect_failures: dict[str, int] = field(default_factory=dict)
    messages_sent: int = 0
    messages_received: int = 0
    chargers: int | None = None
    connected: int | None = None
    charging: int | None = None
    queue_depth: int | None = None
    generator: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def calls(self) -> int:
        return sum(a.count for a in self.actions)

    @property
    def failures(self) -> int:
        return sum(a.errors for a in self.actions)

    def action(self, name: str, direction: str = Direction.CP_TO_CSMS.value) -> ActionRow | None:
        for row in self.actions:
            if row.action == name and row.direction == direction:
                return row
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "time": self.time,
            "partial": self.partial,
            "actions": [a.to_json() for a in self.actions],
            "connects": self.connects,
            "disconnects": self.disconnects,
            "connect_failures": dict(self.connect_failures),
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "chargers": self.chargers,
            "connected": self.connected,
            "charging": self.charging,
            "queue_depth": self.queue_depth,
            "generator": dict(self.generator),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        return cls(
            start_s=float(data["start_s"]),
            end_s=float(data["end_s"]),
            time=str(data["time"]),
            partial=bool(data.get("partial", False)),
            actions=tuple(ActionRow.from_json(a) for a in data.get("actions") or ()),
            connects=int(data.get("connects", 0)),
            disconnects=int(data.get("disconnects", 0)),
            connect_failures={
                str(k): int(v) for k, v in dict(data.get("connect_failures") or {}).items()
            },
            messages_sent=int(data.get("messages_sent", 0)),
            messages_received=int(data.get("messages_received", 0)),
            chargers=_optional_int(data.get("chargers")),
            connected=_optional_int(data.get("connected")),
            charging=_optional_int(data.get("charging")),
            queue_depth=_optional_int(data.get("queue_depth")),
            generator={str(k): float(v) for k, v in dict(data.get("generator") or {}).items()},
        )


# --------------------------------------------------------------------------- building rows


def generator_figures(figures: Mapping[str, object]) -> dict[str, float]:
    """The generator's figures for a row: seconds become ms (``loop_lag_p99`` ->
    ``loop_lag_p99_ms``, ``lag_limit`` -> ``loop_lag_limit_ms``), booleans 0/1, other
    numbers as they are; NaN and non-numbers are left out.  Takes
    ``HealthSnapshot.as_dict()``."""
    out: dict[str, float] = {}
    for key, value in figures.items():
        if isinstance(value, bool):
            out[key] = float(value)
            continue
        if not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if key in _GENERATOR_SECONDS:
            out[_GENERATOR_SECONDS[key]] = round(float(value) * 1000.0, 3)
        else:
            out[key] = round(float(value), 6)
    return out


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) or math.isinf(seconds) else round(seconds * 1000.0, 3)


def _action_row(stats: ActionStats) -> ActionRow:
    latency = stats.latency
    if latency.count:
        p50, p95, p99 = (_ms(v) for v in latency.percentiles(_QUANTILES))
    else:
        p50 = p95 = p99 = None
    return ActionRow(
        direction=stats.direction.value,
        action=stats.action,
        count=stats.count,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        failures=dict(sorted((o.key, n) for o, n in stats.outcomes.items() if o.failed and n > 0)),
    )


def row_from_window(
    window: RunStats,
    *,
    origin: float,
    wall_time: float,
    partial: bool = False,
    gauges: FleetGauges | None = None,
    generator: Mapping[str, object] | None = None,
) -> Row:
    """The row of ``window`` (a :meth:`RunStats.since` window).

    ``origin``: the stats clock reading that ``start_s``/``end_s`` count from;
    ``wall_time``: the window's end as a Unix time; ``partial``: the window is shorter
    than the series' interval."""
    started = window.started
    ended = window.stopped if window.stopped is not None else started
    actions = sorted(
        window.actions.values(), key=lambda a: (_DIRECTIONS.index(a.direction), a.action)
    )
    return Row(
        start_s=round(started - origin, 3),
        end_s=round(ended - origin, 3),
        time=_iso(wall_time),
        partial=partial,
        actions=tuple(_action_row(a) for a in actions if a.count),
        connects=window.connects,
        disconnects=window.disconnects.total(),
        connect_failures=dict(sorted(window.connect_failures.items())),
        messages_sent=window.messages_sent,
        messages_received=window.messages_received,
        chargers=None if gauges is None else int(gauges.chargers),
        connected=None if gauges is None else int(gauges.connected),
        charging=None if gauges is None else int(gauges.charging),
        queue_depth=None if gauges is None else int(gauges.queue_depth),
        generator={} if generator is None else generator_figures(generator),
    )


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


class TimeSeries:
    """Samples ``stats`` every ``interval`` seconds into :attr:`rows`.

    Run :meth:`record` as a task (or use :meth:`running`) beside the fleet; at the end
    call :meth:`finish` for the last, partial row.  The first row starts when this object
    is created.  :meth:`sample` is synchronous: a cancelled :meth:`record` never leaves a
    half-made row.  ``fleet`` and ``generator`` are called once per row.
    """

    def __init__(
        self,
        stats: RunStats,
        *,
        interval: float = DEFAULT_INTERVAL,
        fleet: Callable[[], FleetGauges] | None = None,
        generator: Callable[[], Mapping[str, object]] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a number of seconds > 0, got {interval}")
        self.stats = stats
        self.interval = interval
        self.fleet = fleet
        self.generator = generator
        self.wall_clock = wall_clock
        self.rows: list[Row] = []
        self._last = stats.snapshot()

    def sample(self, *, final: bool = False) -> Row | None:
        """Close the current window now and append its row (returned).

        With ``final``, an empty window (no time passed, nothing happened) adds no row
        and returns None."""
        now = self.stats.snapshot()
        window = now.since(self._last)
        duration = (window.stopped or window.started) - window.started
        if final and duration <= 0 and not _anything(window):
            return None
        self._last = now
        row = row_from_window(
            window,
            origin=self.stats.started,
            wall_time=self.wall_clock(),
            partial=final and duration < self.interval,
            gauges=None if self.fleet is None else self.fleet(),
            generator=None if self.generator is None else self.generator(),
        )
        self.rows.append(row)
        return row

    def finish(self) -> Row | None:
        """The last row, from the end of the previous one to now (or to when ``stats``
        was stopped): usually shorter than the interval, marked ``partial``."""
        return self.sample(final=True)

    async def record(self) -> None:
        """Sample every ``interval`` seconds on a fixed cadence until cancelled.  A late
        wake-up (a busy loop) makes a longer row; missed ticks are skipped, not piled up."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.sample()
            now = loop.time()
            due += self.interval
            if now >= due:
                due += self.interval * math.ceil((now - due) / self.interval + 1e-9)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TimeSeries]:
        """``async with series.running():`` records while the block runs, then takes the
        final row (also when the block raises or is cancelled)."""
        task = asyncio.create_task(self.record(), name="timeseries")
        try:
            yield self
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    self.finish()
                    raise
            self.finish()

    def write(self, directory: Path | str) -> tuple[Path, Path]:
        """``timeseries.json`` and ``timeseries.csv`` in ``directory`` (created)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = folder / "timeseries.json", folder / "timeseries.csv"
        write_json(json_path, self.rows, interval=self.interval)
        write_csv(csv_path, self.rows)
        return json_path, csv_path


def _anything(window: RunStats) -> bool:
    return bool(
        window.actions
        or window.connects
        or window.connect_failures
        or window.disconnects
        or window.messages_sent
        or window.messages_received
    )


# --------------------------------------------------------------------------- files


def write_json(path: Path | str, rows: Iterable[Row], *, interval: float | None = None) -> None:
    document = {"interval_s": interval, "rows": [r.to_json() for r in rows]}
    Path(path).write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", "utf-8")


def read_json(path: Path | str) -> list[Row]:
    document = json.loads(Path(path).read_text("utf-8"))
    return [Row.from_json(r) for r in document["rows"]]


_BASE = (
    "start_s",
    "end_s",
    "time",
    "partial",
    "chargers",
    "connected",
    "charging",
    "queue_depth",
    "connects",
    "disconnects",
    "messages_sent",
    "messages_received",
)
_ACTION_FIELDS = ("count", "errors", "p50_ms", "p95_ms", "p99_ms")
_CONNECT_FAILURES = "connect_failures."
_GENERATOR = "generator."
_FAILURES = "failures."


def _quote(name: str) -> str:
    return name.replace("%", "%25").replace(".", "%2E")


def _unquote(name: str) -> str:
    return name.replace("%2E", ".").replace("%25", "%")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(path: Path | str, rows: Sequence[Row]) -> None:
    """One line per row; per action ``<direction>.<action>.<count|errors|p50_ms|p95_ms|
    p99_ms>`` and ``<direction>.<action>.failures.<outcome>``, over every action any row
    has (0 calls in rows without it); ``connect_failures.<reason>``, ``generator.<figure>``.
    """
    actions: dict[tuple[int, str, str], set[str]] = {}
    reasons: set[str] = set()
    figures: set[str] = set()
    for row in rows:
        for a in row.actions:
            key = (_direction_order(a.direction), a.direction, a.action)
            actions.setdefault(key, set()).update(a.failures)
        reasons.update(row.connect_failures)
        figures.update(row.generator)
    columns: list[str] = list(_BASE)
    columns += [_CONNECT_FAILURES + _quote(r) for r in sorted(reasons)]
    columns += [_GENERATOR + _quote(g) for g in sorted(figures)]
    action_keys = sorted(actions)
    for key in action_keys:
        _, direction, action = key
        prefix = f"{direction}.{_quote(action)}."
        columns += [prefix + f for f in _ACTION_FIELDS]
        columns += [prefix + _FAILURES + _quote(o) for o in sorted(actions[key])]
    with Path(path).open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in rows:
            cells: list[object] = [getattr(row, name) for name in _BASE]
            cells += [row.connect_failures.get(r, 0) for r in sorted(reasons)]
            cells += [row.generator.get(g) for g in sorted(figures)]
            for key in action_keys:
                _, direction, action = key
                found = row.action(action, direction)
                if found is None:
                    cells += [0, 0, None, None, None]
                    cells += [0] * len(actions[key])
                else:
                    cells += [found.count, found.errors, found.p50_ms, found.p95_ms, found.p99_ms]
                    cells += [found.failures.get(o, 0) for o in sorted(actions[key])]
            writer.writerow([_cell(c) for c in cells])


def _direction_order(direction: str) -> int:
    values = [d.value for d in _DIRECTIONS]
    return values.index(direction) if direction in values else len(values)


def read_csv(path: Path | str) -> list[Row]:
    """The rows of a :func:`write_csv` file (actions with 0 calls left out)."""
    with Path(path).open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader)
        return [_csv_row(header, cells) for cells in reader]


def _csv_row(header: Sequence[str], cells: Sequence[str]) -> Row:
    base: dict[str, str] = {}
    reasons: dict[str, int] = {}
    figures: dict[str, float] = {}
    actions: dict[tuple[str, str], dict[str, Any]] = {}
    for column, cell in zip(header, cells, strict=True):
        if column in _BASE:
            base[column] = cell
        elif column.startswith(_CONNECT_FAILURES):
            if cell and int(cell):
                reasons[_unquote(column.removeprefix(_CONNECT_FAILURES))] = int(cell)
        elif column.startswith(_GENERATOR):
            if cell:
                figures[_unquote(column.removeprefix(_GENERATOR))] = float(cell)
        else:
            direction, rest = column.split(".", 1)
            action, name = rest.split(".", 1)
            entry = actions.setdefault((direction, _unquote(action)), {"failures": {}})
            if name.startswith(_FAILURES):
                if cell and int(cell):
                    entry["failures"][_unquote(name.removeprefix(_FAILURES))] = int(cell)
            elif name in ("p50_ms", "p95_ms", "p99_ms"):
                entry[name] = float(cell) if cell else None
            elif name == "count":
                entry["count"] = int(cell or 0)
    return Row(
        start_s=float(base["start_s"]),
        end_s=float(base["end_s"]),
        time=base["time"],
        partial=base["partial"] == "true",
        actions=tuple(
            ActionRow(
                direction=direction,
                action=action,
                count=entry["count"],
                p50_ms=entry.get("p50_ms"),
                p95_ms=entry.get("p95_ms"),
                p99_ms=entry.get("p99_ms"),
                failures=entry["failures"],
            )
            for (direction, action), entry in actions.items()
            if entry.get("count")
        ),
        connects=int(base["connects"]),
        disconnects=int(base["disconnects"]),
        connect_failures=reasons,
        messages_sent=int(base["messages_sent"]),
        messages_received=int(base["messages_received"]),
        chargers=_optional_int(base["chargers"] or None),
        connected=_optional_int(base["connected"] or None),
        charging=_optional_int(base["charging"] or None),
        queue_depth=_optional_int(base["queue_depth"] or None),
        generator=figures,
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
