"""A scripted CSMS and a fake clock for the sans-I/O core.

:class:`FakeCsms` owns one ``Wallbox(strict=True)`` behind its sans-I/O
:class:`~emulator.core.link.ChargerLink` and plays the Central System at text level: it
connects the link, reads every frame the link has to send, answers each CALL with an
OCPP-J text frame (per action: a default answer, a standing override, or a one-shot
script of answers, CALLERRORs and silences), sends its own CALLs as text and reads the
answers back, moves the clock to ``next_deadline()`` and calls ``tick``, and does what
the transport does with effects (a Reboot closes the connection and reconnects after
its delay; a Reconnect closes it once the answers are taken, and reconnects at once).  There is no second pump: decoding, validation, correlation and timeouts
are the link's.  Every frame the charger sends is validated against the OCPP 1.6
schemas (the link's ``strict_outgoing``) and every CALL recorded with its send time;
every answer the fake CSMS gives is validated too, so a wrong harness cannot hide a
wrong charger.

Teardown checks what must hold after any test: every connector status change the
wallbox derived is an OCPP 1.6 §4.9 transition, and the outbox ledger balances (each
queued message was acknowledged, dropped with a reason, or is still waiting).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pytest

from emulator.core.csms_calls import answer_call
from emulator.core.effects import Event, EventKind, Reboot, Reconnect, SendPing, UseSecurityProfile
from emulator.core.firmware import TransferFailure
from emulator.core.link import ChargerLink
from emulator.core.metering import Ev
from emulator.core.model import ChargerModel
from emulator.core.status import TRANSITIONS, Status
from emulator.core.transaction import Transaction
from emulator.core.wallbox import Wallbox
from emulator.protocol.codec import (
    Call,
    CallResult,
    decode,
    encode_call,
    encode_error,
    encode_result,
)
from emulator.protocol.codec import CallError as CallErrorFrame
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.schemas import SchemaRegistry
from emulator.protocol.timefmt import format_timestamp

T0: Final = 1_767_225_600.0
"""2026-01-01T00:00:00Z: a UTC midnight, so clock-aligned intervals start at T0."""

QUIET: Final[dict[str, str]] = {"ClockAlignedDataInterval": "0"}
"""Default configuration of the harness's charger.  The reference default of
ClockAlignedDataInterval (15) sends a MeterValues every 15 s, which resets the
heartbeat timer and buries every other timing; tests about aligned data or about the
reference defaults pass ``config=...`` explicitly."""

ID_TAGS: Final[dict[str, str]] = {
    "ALICE": "Accepted",
    "BOB": "Accepted",
    "MALLORY": "Blocked",
    "OLD-CARD": "Expired",
}
"""The fake CSMS's idTag table; any other tag is Invalid."""


@dataclass(frozen=True, slots=True)
class CallError:
    """Answer a CALL with a CALLERROR carrying this code."""

    code: str = "InternalError"


class Silence:
    """Never answer a CALL (the wallbox's response timeout runs)."""

    def __repr__(self) -> str:
        return "SILENT"


SILENT: Final = Silence()

Answer = dict[str, Any] | CallError | Silence
Responder = Callable[[dict[str, Any]], Answer]


@dataclass(frozen=True, slots=True)
class Sent:
    """One CALL as the CSMS received it."""

    at: float
    unique_id: str
    action: str
    payload: dict[str, Any]
    answer: Answer


class FakeCsms:
    """The Central System and the transport around one wallbox, on a fake clock."""

    T0 = T0
    SILENT = SILENT

    def __init__(
        self,
        *,
        schemas: SchemaRegistry,
        config: dict[str, str] | None = None,
        seed: int = 20260101,
        boot_status: str = "Accepted",
        boot_interval: int = 60,
        id_tags: dict[str, str | dict[str, Any]] | None = None,
        connect: bool = True,
        wallbox_options: dict[str, Any] | None = None,
        **model_fields: Any,
    ) -> None:
        self.schemas = schemas
        self.now = T0
        self.model = ChargerModel(
            configuration=dict(QUIET if config is None else config), **model_fields
        )
        self.wb = Wallbox(
            charge_point_id="CP-TEST-0001",
            model=self.model,
            rng=np.random.default_rng(seed),
            now=T0,
            strict=True,
            **(wallbox_options or {}),
        )
        # Counter ids ("1", "2", ...) keep the recorded conversation readable.
        self.link = ChargerLink(
            wallbox=self.wb, schemas=schemas, strict_outgoing=True, message_ids="counter"
        )
        self.boot_status = boot_status
        self.boot_interval = boot_interval
        # idTag -> status, or a whole idTagInfo (expiryDate, parentIdTag)
        self.id_tags: dict[str, str | dict[str, Any]] = dict(
            ID_TAGS if id_tags is None else id_tags
        )
        self.sent: list[Sent] = []
        self.events: list[tuple[float, Event]] = []
        self.pings: list[float] = []
        self.reboots: list[float] = []
        self.reconnects: list[float] = []  # Reconnect effects (a new AuthorizationKey)
        self.profiles: list[UseSecurityProfile] = []  # security profiles to connect with
        self.transfers: list[Any] = []  # file transfers asked for (emulator.core.firmware)
        self.transitions: list[tuple[int, Status, Status]] = []
        self.transaction_ids = itertools.count(1001)
        self.reconnect_at: float | None = None
        self._last_status: dict[int, Status] = {}
        self._standing: dict[str, Answer | Responder] = {}
        self._scripts: dict[str, deque[Answer | Responder]] = {}
        self._csms_ids = itertools.count(1)
        self._replies: dict[str, CallResult | CallErrorFrame] = {}  # answers to our CALLs
        self._defaults: dict[str, Responder] = {
            "BootNotification": self._boot,
            "Authorize": self._authorize,
            "StartTransaction": self._start_transaction,
            "StopTransaction": self._stop_transaction,
            "Heartbeat": lambda _p: {"currentTime": format_timestamp(self.now)},
            "DataTransfer": lambda _p: {"status": "Accepted"},
        }
        self._drain()
        if connect:
            self.connect()

    # ------------------------------------------------------------------ answers

    def _boot(self, _payload: dict[str, Any]) -> Answer:
        return {
            "status": self.boot_status,
            "currentTime": format_timestamp(self.now),
            "interval": self.boot_interval,
        }

    def _id_tag_info(self, id_tag: str) -> dict[str, Any]:
        info = self.id_tags.get(id_tag, "Invalid")
        return dict(info) if isinstance(info, dict) else {"status": info}

    def _authorize(self, payload: dict[str, Any]) -> Answer:
        return {"idTagInfo": self._id_tag_info(payload["idTag"])}

    def _start_transaction(self, payload: dict[str, Any]) -> Answer:
        return {
            "transactionId": next(self.transaction_ids),
            "idTagInfo": self._id_tag_info(payload["idTag"]),
        }

    def _stop_transaction(self, payload: dict[str, Any]) -> Answer:
        if "idTag" in payload:
            return {"idTagInfo": self._id_tag_info(payload["idTag"])}
        return {}

    def answer(self, action: str, answer: Answer | Responder) -> None:
        """Answer every later ``action`` like this (until changed)."""
        self._standing[action] = answer

    def answer_normally(self, action: str) -> None:
        """Forget a standing override of ``action``."""
        self._standing.pop(action, None)

    def answer_next(self, action: str, *answers: Answer | Responder) -> None:
        """Answer the next ``len(answers)`` ``action`` CALLs like this, in order."""
        self._scripts.setdefault(action, deque()).extend(answers)

    def error(self, code: str = "InternalError") -> CallError:
        return CallError(code)

    def _answer_for(self, action: str, payload: dict[str, Any]) -> Answer:
        script = self._scripts.get(action)
        how: Answer | Responder
        if script:
            how = script.popleft()
        elif action in self._standing:
            how = self._standing[action]
        else:
            return self.usual_answer(action, payload)
        return how(payload) if callable(how) else how

    def usual_answer(self, action: str, payload: dict[str, Any]) -> Answer:
        """What this CSMS answers when nothing is scripted for ``action``."""
        return self._defaults.get(action, lambda _p: {})(payload)

    # ------------------------------------------------------------------ transport

    def connect(self) -> None:
        self.reconnect_at = None
        self.link.connected(self.now)
        self._settle()

    def disconnect(self) -> None:
        self.reconnect_at = None
        self.link.disconnected(self.now)
        self._settle()

    def pump(self) -> None:
        """Read what the link has to send now and answer it, until it sends nothing."""
        while self.wb.online:
            frames = self.link.frames_to_send(self.now)
            if not frames:
                break
            self.exchange(frames)
        self._drain()

    def exchange(self, frames: list[str]) -> None:
        """Take these frames from the charger: answer each CALL (one at a time, as the
        link sends them), keep each answer to a CALL of ours for :meth:`send_call`."""
        for text in frames:
            frame = decode(text)
            if not isinstance(frame, Call):
                self._replies[frame.unique_id] = frame
                continue
            answer = self._answer_for(frame.action, frame.payload)
            self.sent.append(Sent(self.now, frame.unique_id, frame.action, frame.payload, answer))
            if isinstance(answer, CallError):
                self.link.receive_text(encode_error(frame.unique_id, answer.code, ""), self.now)
            elif isinstance(answer, dict):
                self.schemas.validate_response(frame.action, answer)
                self.link.receive_text(encode_result(frame.unique_id, answer), self.now)
            self._drain()

    def _drain(self) -> None:
        while effects := self.link.take_effects():
            for effect in effects:
                if isinstance(effect, Event):
                    self._note(effect)
                elif isinstance(effect, SendPing):
                    self.pings.append(self.now)
                elif isinstance(effect, Reboot):
                    self.reboots.append(self.now)
                    if self.wb.online:
                        self.link.disconnected(self.now)
                    self.reconnect_at = self.now + effect.delay
                elif isinstance(effect, Reconnect):
                    # Closed by run_until once the answer that caused it was taken.
                    self.reconnects.append(self.now)
                    self.reconnect_at = self.now
                elif isinstance(effect, UseSecurityProfile):
                    # Like a Reconnect when online (Security Whitepaper A05.FR.06);
                    # offline (a fallback), the next connection uses it.
                    self.profiles.append(effect)
                    if self.wb.online:
                        self.reconnect_at = self.now
                else:  # FtpUpload / FtpDownload / CancelTransfer: see finish_transfer
                    self.transfers.append(effect)

    def _note(self, event: Event) -> None:
        self.events.append((self.now, event))
        if event.kind is EventKind.REBOOTED:
            self._last_status.clear()  # a restart re-derives every status from scratch
        elif event.kind is EventKind.STATUS_CHANGED:
            new = Status(event.detail)
            old = self._last_status.get(event.connector_id)
            if old is not None and old != new:
                self.transitions.append((event.connector_id, old, new))
            self._last_status[event.connector_id] = new

    def _settle(self) -> None:
        self._drain()
        self.pump()
        self.run_until(self.now)

    # ------------------------------------------------------------------ clock

    def run_until(self, until: float) -> None:
        """Tick at every deadline up to ``until`` (inclusive), then stop the clock there."""
        self.pump()
        same_instant = 0
        while True:
            deadlines = [d for d in (self.wb.next_deadline(), self.reconnect_at) if d is not None]
            if not deadlines or min(deadlines) > until:
                break
            deadline = min(deadlines)
            if deadline <= self.now:
                same_instant += 1
                assert same_instant < 1000, (
                    f"next_deadline() stays at T0{deadline - T0:+.3f} s: tick() never clears it"
                )
            else:
                same_instant = 0
                self.now = deadline
            if self.reconnect_at is not None and self.now >= self.reconnect_at:
                self.reconnect_at = None
                if self.wb.online:  # a Reconnect: the connection closes first
                    self.link.disconnected(self.now)
                self.link.connected(self.now)
            self.link.tick(self.now)
            self._drain()
            self.pump()
        self.now = max(self.now, until)

    def advance(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def finish_transfer(
        self,
        job_id: int,
        *,
        ok: bool = True,
        detail: str = "done",
        sha256: bytes | None = None,
        failure: TransferFailure | None = None,
    ) -> None:
        """The transport reports the outcome of a transfer in :attr:`transfers` (with the
        download's digest, or the kind of failure, where the transport gives them)."""
        self.wb.transfer_done(job_id, ok, detail, self.now, sha256=sha256, failure=failure)
        self._settle()

    @property
    def elapsed(self) -> float:
        return self.now - T0

    # ------------------------------------------------------------------ CSMS calls

    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A schema-valid CSMS CALL, sent as text; the charger's CALLERROR is raised as
        a RemoteProtocolError."""
        self.schemas.validate_request(action, payload)
        answer = self.send_call(action, payload)
        self._settle()
        if isinstance(answer, CallErrorFrame):
            raise RemoteProtocolError(ErrorCode(answer.code), answer.description)
        return answer.payload

    def send_call(self, action: str, payload: dict[str, Any]) -> CallResult | CallErrorFrame:
        """Send a CALL as text, without a schema check of ours, and return the charger's
        answer (the frames it sends with it are taken as usual)."""
        unique_id = f"csms-{next(self._csms_ids)}"
        self.exchange(self.call_frames(action, payload, unique_id=unique_id))
        return self._replies.pop(unique_id)

    def call_frames(
        self, action: str, payload: dict[str, Any], *, unique_id: str = "csms-raw"
    ) -> list[str]:
        """Send a CALL as text and return what the link has to send right after, as it is
        (the answer first), for the caller to look at and :meth:`exchange`."""
        self.link.receive_text(encode_call(unique_id, action, payload), self.now)
        self._drain()
        return self.link.frames_to_send(self.now)

    def dispatch(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The charger's answer to a CSMS call straight from the dispatch table, with no
        schema check (what the core does with a payload the schema would refuse)."""
        return answer_call(self.wb, action, payload, self.now)

    def get_configuration(self, *keys: str) -> dict[str, dict[str, Any]]:
        """GetConfiguration answer as ``{key: {"readonly": ..., "value": ...}}``."""
        payload: dict[str, Any] = {"key": list(keys)} if keys else {}
        result = self.call("GetConfiguration", payload)
        return {kv["key"]: kv for kv in result["configurationKey"]}

    def change_configuration(self, key: str, value: str) -> str:
        status: str = self.call("ChangeConfiguration", {"key": key, "value": value})["status"]
        return status

    # ------------------------------------------------------------------ the driver

    @staticmethod
    def ev(energy_wh: float = 20_000.0, *, max_current: float = 16.0, phases: int = 3) -> Ev:
        return Ev(energy_wanted_wh=energy_wh, max_current=max_current, phases=phases)

    def plug_in(self, ev: Ev | None = None, *, connector_id: int = 1) -> None:
        self.wb.plug_in(self.now, ev=ev or self.ev(), connector_id=connector_id)
        self._settle()

    def unplug(self, *, connector_id: int = 1) -> None:
        self.wb.unplug(self.now, connector_id=connector_id)
        self._settle()

    def present(self, id_tag: str, *, connector_id: int = 1) -> None:
        self.wb.present_id_tag(id_tag, self.now, connector_id=connector_id)
        self._settle()

    def set_fault(self, error_code: str, *, connector_id: int = 1) -> None:
        self.wb.set_fault(self.now, error_code=error_code, connector_id=connector_id)
        self._settle()

    def clear_fault(self, *, connector_id: int = 1) -> None:
        self.wb.clear_fault(self.now, connector_id=connector_id)
        self._settle()

    def start_charging(self, id_tag: str = "ALICE", ev: Ev | None = None) -> Transaction:
        """Plug in, present a card, and return the transaction this started."""
        before = len(self.wb.transactions)
        self.plug_in(ev)
        self.present(id_tag)
        assert len(self.wb.transactions) == before + 1, f"{id_tag} did not start a transaction"
        return self.wb.transactions[-1]

    # ------------------------------------------------------------------ what happened

    def sent_of(self, action: str) -> list[Sent]:
        return [s for s in self.sent if s.action == action]

    def actions(self, since: float | None = None) -> list[str]:
        return [s.action for s in self.sent if since is None or s.at >= since]

    def payloads(self, action: str) -> list[dict[str, Any]]:
        return [s.payload for s in self.sent_of(action)]

    def statuses(self, connector_id: int = 1) -> list[str]:
        """Statuses the CSMS was told about, in order."""
        return [
            s.payload["status"]
            for s in self.sent_of("StatusNotification")
            if s.payload["connectorId"] == connector_id
        ]

    def event_kinds(self) -> list[EventKind]:
        return [e.kind for _, e in self.events]

    @property
    def status(self) -> Status:
        return self.wb.status(1)

    def assert_transitions_legal(self) -> None:
        """Every derived status change is a cell of the OCPP 1.6 §4.9 table."""
        illegal = [(c, a, b) for c, a, b in self.transitions if c and b not in TRANSITIONS[a]]
        assert not illegal, f"transitions outside OCPP 1.6 §4.9: {illegal}"

    def assert_ledger_balanced(self) -> None:
        """Every queued message was acknowledged, dropped with a reason, or still waits."""
        ledger = self.wb.outbox.ledger
        waiting = self.wb.outbox.depth + (self.wb.outbox.in_flight is not None)
        queued = sum(ledger.queued.values())
        settled = sum(ledger.acknowledged.values()) + sum(ledger.dropped.values())
        assert queued == settled + waiting, (
            f"{queued} queued != {settled} settled + {waiting} waiting; ledger: {ledger}"
        )


@pytest.fixture(scope="session")
def schemas() -> SchemaRegistry:
    return SchemaRegistry()


@pytest.fixture
def make_csms(schemas: SchemaRegistry) -> Iterator[Callable[..., FakeCsms]]:
    made: list[FakeCsms] = []

    def make(**options: Any) -> FakeCsms:
        csms = FakeCsms(schemas=schemas, **options)
        made.append(csms)
        return csms

    yield make
    for csms in made:
        csms.assert_transitions_legal()
        csms.assert_ledger_balanced()


@pytest.fixture
def csms(make_csms: Callable[..., FakeCsms]) -> FakeCsms:
    """A reference charger, booted (Accepted, interval 60) and idle."""
    return make_csms()
