"""Timers declared once: when each is due and what it does then, in one list.

A sans-I/O part with timers answers two questions for the I/O layer: when must I be
called next (``next_deadline``) and what is due now (``tick``).  Written by hand, every
timer is listed twice, once per question, and the two lists drift apart: a timer waited
for but never served leaves its deadline in the past, and the driver, which waits
until the earliest deadline, spins.  So a part declares each timer once, as a
:class:`Timer` in a tuple, and derives both answers from that tuple with
:func:`earliest` and :func:`serve`; ``tests/core/test_timers.py`` checks every declared
timer of the wallbox.

Both functions sit on the hot path (the driver asks for the next deadline after every
frame): they allocate nothing and call each ``due`` once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, NamedTuple, TypeVar

Owner = TypeVar("Owner")
Part = TypeVar("Part")


class Timer(NamedTuple, Generic[Owner]):
    """One timer of ``Owner``: ``due(owner)`` says when (None: not armed), ``fire(owner,
    now)`` what happens then.  A ``fire`` of None is a deadline someone else serves
    (the charger link sends a queued CALL in frames_to_send, not tick)."""

    name: str
    due: Callable[[Owner], float | None]
    fire: Callable[[Owner, float], None] | None


class PartTimer(NamedTuple, Generic[Owner, Part]):
    """A timer every part of ``Owner`` has (each connector of a wallbox): ``due(part)``
    says when, ``fire(owner, part, now)`` what happens then."""

    name: str
    due: Callable[[Part], float | None]
    fire: Callable[[Owner, Part, float], None]


def earliest(
    timers: Iterable[tuple[str, Callable[[Owner], float | None], object]], owner: Owner
) -> float | None:
    """The earliest time any of ``timers`` (:class:`Timer` or :class:`PartTimer`) of
    ``owner`` is due (None: none is armed)."""
    first: float | None = None
    for _name, due, _fire in timers:
        at = due(owner)
        if at is not None and (first is None or at < first):
            first = at
    return first


def earliest_of_parts(
    timers: tuple[PartTimer[Owner, Part], ...], parts: Iterable[Part]
) -> float | None:
    """The earliest time any of ``timers`` of any of ``parts`` is due (None: none is
    armed)."""
    first: float | None = None
    for part in parts:
        at = earliest(timers, part)
        if at is not None and (first is None or at < first):
            first = at
    return first


def serve(timers: tuple[Timer[Owner], ...], owner: Owner, now: float) -> None:
    """Fire every timer of ``owner`` due at ``now``, in the order of ``timers``; each
    ``due`` is read when its turn comes (an earlier one may have moved it)."""
    for _name, due, fire in timers:
        if fire is not None:
            at = due(owner)
            if at is not None and now >= at:
                fire(owner, now)


def serve_parts(
    timers: tuple[PartTimer[Owner, Part], ...], owner: Owner, parts: Iterable[Part], now: float
) -> None:
    """Fire every timer due at ``now`` of each of ``parts``, part by part, each in the
    order of ``timers``."""
    for part in parts:
        for _name, due, fire in timers:
            at = due(part)
            if at is not None and now >= at:
                fire(owner, part, now)
