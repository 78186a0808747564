"""The charger link at text level: what settles, and how, for the reporter; the ids on
the wire; answers before CALLs; a CSMS's unreadable or unexpected frames."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pytest

from emulator.core.link import ChargerLink, CsmsCallAnswered, RoundTrip
from emulator.core.model import ChargerModel
from emulator.core.outcome import DISCONNECTED, OK, TIMEOUT, Outcome
from emulator.core.wallbox import Wallbox
from emulator.metrics.conformance import CsmsConformance
from emulator.protocol.codec import encode_error, encode_result
from emulator.protocol.schemas import SchemaRegistry

SCHEMAS = SchemaRegistry()
T0 = 1_767_225_600.0
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
BOOTED = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 60}


def new_link(**options: Any) -> ChargerLink:
    wallbox = Wallbox(
        charge_point_id="CP-LINK-1",
        model=ChargerModel(configuration={"ClockAlignedDataInterval": "0"}),
        rng=np.random.default_rng(3),
        now=T0,
        response_timeout=30.0,
    )
    return ChargerLink(wallbox=wallbox, schemas=SCHEMAS, strict_outgoing=True, **options)


def frames(link: ChargerLink, now: float) -> list[list[Any]]:
    return [orjson.loads(text) for text in link.frames_to_send(now)]


def booted(link: ChargerLink) -> None:
    """Connected, its BootNotification Accepted and the StatusNotifications after it
    answered: idle, nothing in flight."""
    link.connected(T0)
    (boot,) = frames(link, T0)
    link.receive_text(encode_result(boot[1], BOOTED), T0)
    while sent := frames(link, T0):
        (status,) = sent
        assert status[2] == "StatusNotification"
        link.receive_text(encode_result(status[1], {}), T0)
    link.take_settled()
    link.take_effects()


def test_a_round_trip_settles_with_its_time_from_send_to_answer() -> None:
    link = new_link()
    link.connected(T0)
    (boot,) = frames(link, T0)
    assert boot[0] == 2 and boot[2] == "BootNotification"
    link.receive_text(encode_result(boot[1], BOOTED), T0 + 0.25)
    assert link.take_settled() == [RoundTrip("BootNotification", 0.25, OK)]
    assert link.ever_accepted and link.wallbox.accepted
    assert link.take_settled() == []


def test_ids_on_the_wire_are_uuid4_strings_or_a_counter() -> None:
    uuid_link = new_link()
    uuid_link.connected(T0)
    assert UUID4.match(frames(uuid_link, T0)[0][1])
    counting = new_link(message_ids="counter")
    counting.connected(T0)
    assert frames(counting, T0)[0][1] == "1"
    with pytest.raises(ValueError, match="message_ids"):
        new_link(message_ids="sequential")


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (
            lambda uid: encode_error(uid, "InternalError", "boom"),
            Outcome.callerror("InternalError"),
        ),
        (
            lambda uid: encode_result(uid, {"currentTime": 42}),
            Outcome.schema("TypeConstraintViolation"),
        ),
        (lambda uid: f'[3,"{uid}"]', Outcome.schema("FormationViolation")),
    ],
)
def test_an_answer_the_charger_cannot_use_settles_with_its_reason(
    answer: Any, outcome: Outcome
) -> None:
    link = new_link()
    booted(link)
    link.tick(T0 + 60)  # the heartbeat is due
    (beat,) = frames(link, T0 + 60)
    assert beat[2] == "Heartbeat"
    link.receive_text(answer(beat[1]), T0 + 61)
    (settled,) = link.take_settled()
    assert settled == RoundTrip("Heartbeat", 1.0, outcome)
    assert link.wallbox.outbox.in_flight is None


def test_an_unanswered_call_times_out_and_a_late_answer_is_unexpected() -> None:
    link = new_link()
    booted(link)
    link.tick(T0 + 60)
    (beat,) = frames(link, T0 + 60)
    assert link.next_deadline() == T0 + 90  # the response timeout
    link.tick(T0 + 90)
    assert link.take_settled() == [RoundTrip("Heartbeat", 30.0, TIMEOUT)]
    link.receive_text(encode_result(beat[1], {"currentTime": "2026-01-01T00:01:00Z"}), T0 + 95)
    assert link.take_settled() == [CsmsCallAnswered("(unexpected result)", "UnexpectedUniqueId")]


def test_a_call_in_flight_when_the_connection_drops_settles_as_disconnected() -> None:
    link = new_link()
    booted(link)
    link.tick(T0 + 60)
    frames(link, T0 + 60)
    link.disconnected(T0 + 62)
    assert link.take_settled() == [RoundTrip("Heartbeat", 2.0, DISCONNECTED)]
    assert not link.online and frames(link, T0 + 63) == []


def test_the_answer_to_a_csms_call_goes_out_before_the_call_it_causes() -> None:
    link = new_link()
    booted(link)
    trigger = '[2,"t1","TriggerMessage",{"requestedMessage":"Heartbeat"}]'
    link.receive_text(trigger, T0 + 1)
    answer, call = frames(link, T0 + 1)
    assert answer == [3, "t1", {"status": "Accepted"}]
    assert call[0] == 2 and call[2] == "Heartbeat"
    assert link.take_settled() == [CsmsCallAnswered("TriggerMessage", None)]


def test_unreadable_frames_are_answered_when_they_can_be_and_counted_when_not() -> None:
    link = new_link()
    booted(link)
    link.receive_text('[2,"x1","NoSuchAction",{}]', T0)
    link.receive_text('[2,"x2","Reset",{"type":"Sideways"}]', T0)
    link.receive_text("not json at all", T0)
    answers = [f for f in frames(link, T0) if f[0] != 2]
    assert [(f[0], f[1], f[2]) for f in answers] == [
        (4, "x1", "NotImplemented"),
        (4, "x2", "PropertyConstraintViolation"),
    ]
    assert link.take_settled() == [
        CsmsCallAnswered("NoSuchAction", "NotImplemented"),
        CsmsCallAnswered("Reset", "PropertyConstraintViolation"),
        CsmsCallAnswered("(garbage)", "FormationViolation"),
    ]


def test_a_naive_current_time_is_read_as_utc_and_counted_unless_strict() -> None:
    for lenient in (True, False):
        conformance = CsmsConformance()
        link = new_link(conformance=conformance, lenient=lenient)
        link.connected(T0)
        (boot,) = frames(link, T0)
        naive = {**BOOTED, "currentTime": "2026-01-01T00:00:00"}
        link.receive_text(encode_result(boot[1], naive), T0 + 0.1)
        (settled,) = link.take_settled()
        assert settled.outcome == (OK if lenient else Outcome.schema("PropertyConstraintViolation"))
        assert link.wallbox.accepted is lenient
        (kind,) = conformance.violations.values()
        assert (kind.accepted, kind.refused) == ((1, 0) if lenient else (0, 1))
