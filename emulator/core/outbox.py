"""Charger-initiated CALLs: one outstanding at a time, a persistent transaction queue.

OCPP-J 1.6 §4.1.1 allows one outstanding CALL per direction.  OCPP 1.6 §4.10 makes
StartTransaction, StopTransaction and MeterValues with a transactionId
*transaction-related*: they are queued (surviving disconnects and resets, as in the
charger's flash), sent in order, and when the Central System fails to process one
(CALLERROR or no answer) it is resent after ``TransactionMessageRetryInterval ×
attempts so far`` until ``TransactionMessageAttempts`` is reached.  After a
reconnect the backlog drains at a bounded rate instead of flooding the CSMS.

Other messages are best-effort: a StatusNotification made while offline is kept
(only the newest per connector), a Heartbeat or Authorize is never queued offline.

Until the registration is Accepted only a BootNotification, and the messages the Central
System asked for with TriggerMessage (``triggered``), may be sent (OCPP 1.6 §4.2.1:
"unless it has been instructed by the Central System to do so with a TriggerMessage.req").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.protocol.codec import random_unique_id

if TYPE_CHECKING:
    from emulator.core.configuration import Configuration
    from emulator.core.transaction import Transaction

MAX_NORMAL_QUEUE = 100
"""Best-effort messages waiting at most (transaction messages are never dropped this way)."""

ResultHandler = Callable[[dict[str, Any], float], None]
FailureHandler = Callable[[str, float], None]


@dataclass(slots=True, eq=False, kw_only=True)
class Message:
    action: str
    payload: dict[str, Any]
    transactional: bool = False
    tx: Transaction | None = None  # transactionId is filled in at send time
    on_result: ResultHandler | None = None
    on_failure: FailureHandler | None = None
    coalesce_key: tuple[str, int] | None = None
    seq: int = 0
    attempts: int = 0
    not_before: float = 0.0
    triggered: bool = False  # asked for by TriggerMessage: may go while Pending (§4.2.1)


@dataclass(frozen=True, slots=True)
class OutgoingCall:
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(slots=True)
class InFlight:
    unique_id: str
    message: Message
    sent_at: float
    deadline: float


_QUEUED, _SENT, _ACKNOWLEDGED, _RETRIED, _RESENT = range(5)


class OutboxLedger:
    """What happened to charger-initiated messages (the ledger comparison checks it against the CSMS's).

    Counts per action in one small list each (one dict for the wallbox instead of six
    Counters: ~1 KiB less per wallbox); the Counter properties are read-only views.
    """

    __slots__ = ("_counts", "_dropped")

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}  # action -> [queued, sent, acked, retried, resent]
        self._dropped: Counter[str] | None = None

    def count(self, action: str, kind: int) -> None:
        counts = self._counts.get(action)
        if counts is None:
            counts = self._counts[action] = [0, 0, 0, 0, 0]
        counts[kind] += 1

    def drop(self, key: str) -> None:
        """One message gone for good; ``key`` is ``"<action>: <rule>"``."""
        self.dropped[key] += 1

    def _view(self, kind: int) -> Counter[str]:
        return Counter({a: c[kind] for a, c in self._counts.items() if c[kind]})

    @property
    def queued(self) -> Counter[str]:
        return self._view(_QUEUED)

    @property
    def sent(self) -> Counter[str]:
        return self._view(_SENT)

    @property
    def acknowledged(self) -> Counter[str]:
        return self._view(_ACKNOWLEDGED)

    @property
    def retried(self) -> Counter[str]:
        return self._view(_RETRIED)

    @property
    def resent_after_disconnect(self) -> Counter[str]:
        return self._view(_RESENT)

    @property
    def dropped(self) -> Counter[str]:
        """Key: ``"<action>: <rule>"`` (the Counter itself, created on first use)."""
        if self._dropped is None:
            self._dropped = Counter()
        return self._dropped


class Outbox:
    __slots__ = (
        "_config",
        "_counter",
        "_id_prefix",
        "_last_tx_send",
        "_normal",
        "_seq",
        "_tx_queue",
        "drain_interval",
        "in_flight",
        "ledger",
        "response_timeout",
        "uuid_ids",
    )

    def __init__(
        self,
        *,
        config: Configuration,
        response_timeout: float = 30.0,
        drain_interval: float = 0.1,
        id_prefix: str = "",
        uuid_ids: bool = False,
    ) -> None:
        self._config = config
        # Lists, not deques: usually empty or holding one message, where a deque keeps a
        # ~0.6 KiB block for every wallbox; pop(0) on an offline backlog of thousands
        # moves a few KiB, once per message sent.
        self._tx_queue: list[Message] = []
        self._normal: list[Message] = []
        self._seq = 0
        self._counter = 0
        self._id_prefix = id_prefix
        # Unique ids of the CALLs (OCPP-J 1.6 §4.1.4): random UUID4 strings, what many
        # chargers send, or "1", "2", ... (with the prefix) per charger.
        self.uuid_ids = uuid_ids
        self._last_tx_send = float("-inf")
        self.response_timeout = response_timeout
        self.drain_interval = drain_interval
        self.in_flight: InFlight | None = None
        self.ledger = OutboxLedger()

    # --- queueing ---

    def enqueue(self, message: Message) -> None:
        self._seq += 1
        message.seq = self._seq
        self.ledger.count(message.action, _QUEUED)
        if message.transactional:
            self._tx_queue.append(message)
            return
        if message.coalesce_key is not None:
            for old in self._normal:
                if old.coalesce_key == message.coalesce_key:
                    self._normal.remove(old)
                    self.ledger.drop(f"{old.action}: superseded by a newer one")
                    break
        if len(self._normal) >= MAX_NORMAL_QUEUE:
            # A CSMS that floods us with TriggerMessage while answering slowly must not
            # grow a charger's memory: the oldest best-effort message goes.
            old = self._normal.pop(0)
            self.ledger.drop(f"{old.action}: queue full ({MAX_NORMAL_QUEUE})")
        self._normal.append(message)

    def add(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        transactional: bool = False,
        tx: Transaction | None = None,
        on_result: ResultHandler | None = None,
        on_failure: FailureHandler | None = None,
        coalesce_key: tuple[str, int] | None = None,
        not_before: float = 0.0,
        triggered: bool = False,
    ) -> None:
        """Queue a CALL (see :class:`Message` for what each option means)."""
        self.enqueue(
            Message(
                action=action,
                payload=payload,
                transactional=transactional,
                tx=tx,
                on_result=on_result,
                on_failure=on_failure,
                coalesce_key=coalesce_key,
                not_before=not_before,
                triggered=triggered,
            )
        )

    def has_queued(self, action: str) -> bool:
        return any(m.action == action for m in self._normal) or (
            self.in_flight is not None and self.in_flight.message.action == action
        )

    @property
    def transaction_backlog(self) -> int:
        return len(self._tx_queue) + (
            1 if self.in_flight is not None and self.in_flight.message.transactional else 0
        )

    @property
    def depth(self) -> int:
        return len(self._tx_queue) + len(self._normal)

    def drop_where(
        self, predicate: Callable[[Message], bool], rule: str, *, in_flight: bool = False
    ) -> list[Message]:
        """Remove queued messages (e.g. a hard reset loses its transaction's data).

        With ``in_flight``, the message awaiting an answer goes too (a late answer to it
        is then an unexpected id), so a lost connection cannot put it back in the queue.
        """
        dropped: list[Message] = []
        flight = self.in_flight
        if in_flight and flight is not None and predicate(flight.message):
            self.in_flight = None
            self.ledger.drop(f"{flight.message.action}: {rule}")
            dropped.append(flight.message)
        for queue in (self._tx_queue, self._normal):
            keep: list[Message] = []
            for m in queue:
                if predicate(m):
                    self.ledger.drop(f"{m.action}: {rule}")
                    dropped.append(m)
                else:
                    keep.append(m)
            queue[:] = keep
        return dropped

    def clear_normal(self, rule: str) -> None:
        for m in self._normal:
            self.ledger.drop(f"{m.action}: {rule}")
        self._normal.clear()

    # --- sending ---

    def next_ready_at(self, *, boot_only: bool) -> float | None:
        """When the next queued message may go (None: nothing waits); ignores in_flight."""
        times: list[float] = []
        if self._normal:
            head = self._first_normal(boot_only=boot_only)
            if head is not None:
                times.append(head.not_before)
        if self._tx_queue and not boot_only:
            times.append(
                max(self._tx_queue[0].not_before, self._last_tx_send + self.drain_interval)
            )
        return min(times) if times else None

    def _paced_ahead_of(self, head: Message, boot_only: bool) -> bool:
        """An older transaction message only held back by drain pacing goes first.

        Without this a StatusNotification Available could reach the CSMS before the
        StopTransaction that preceded it.  A transaction message waiting out a retry
        interval does not hold the others up, and nothing holds up an Authorize.
        """
        if boot_only or not self._tx_queue or head.action != "StatusNotification":
            return False
        tx_head = self._tx_queue[0]
        return (
            tx_head.seq < head.seq
            and tx_head.not_before <= self._last_tx_send + self.drain_interval
        )

    def _first_normal(self, *, boot_only: bool) -> Message | None:
        for m in self._normal:
            if (
                not boot_only or m.triggered or m.action == "BootNotification"
            ) and not self._paced_ahead_of(m, boot_only):
                return m
        return None

    def pop_ready(self, now: float, *, boot_only: bool) -> OutgoingCall | None:
        """The next CALL to send now, or None; marks it in flight."""
        if self.in_flight is not None:
            return None
        candidates: list[tuple[int, Message, list[Message]]] = []
        head = self._first_normal(boot_only=boot_only)
        if head is not None and head.not_before <= now:
            candidates.append((head.seq, head, self._normal))
        if self._tx_queue and not boot_only:
            tx_head = self._tx_queue[0]
            if tx_head.not_before <= now and now >= self._last_tx_send + self.drain_interval:
                candidates.append((tx_head.seq, tx_head, self._tx_queue))
        while candidates:
            candidates.sort(key=lambda c: c[0])
            _, message, queue = candidates.pop(0)
            queue.remove(message)
            if message.tx is not None and "transactionId" in message.payload:
                if message.tx.transaction_id is None:
                    # Its StartTransaction was never acknowledged: the CSMS has no id for it.
                    self.ledger.drop(f"{message.action}: StartTransaction never acknowledged")
                    if message.on_failure:
                        message.on_failure("no transactionId", now)
                    return self.pop_ready(now, boot_only=boot_only)
                message.payload["transactionId"] = message.tx.transaction_id
            self._counter += 1
            unique_id = random_unique_id() if self.uuid_ids else f"{self._id_prefix}{self._counter}"
            self.in_flight = InFlight(unique_id, message, now, now + self.response_timeout)
            if message.transactional:
                self._last_tx_send = now
            self.ledger.count(message.action, _SENT)
            if message.attempts:
                self.ledger.count(message.action, _RETRIED)
            message.attempts += 1
            return OutgoingCall(unique_id, message.action, message.payload)
        return None

    # --- answers ---

    def take_in_flight(self, unique_id: str) -> Message | None:
        flight = self.in_flight
        if flight is None or flight.unique_id != unique_id:
            return None
        self.in_flight = None
        return flight.message

    def acknowledged(self, message: Message, payload: dict[str, Any], now: float) -> None:
        self.ledger.count(message.action, _ACKNOWLEDGED)
        if message.on_result:
            message.on_result(payload, now)

    def failed(self, message: Message, reason: str, now: float) -> None:
        """The CSMS answered CALLERROR, or did not answer in time (OCPP 1.6 §4.10)."""
        if message.transactional:
            limit = self._config.get_int("TransactionMessageAttempts")
            if message.attempts < limit:
                interval = self._config.get_int("TransactionMessageRetryInterval")
                message.not_before = now + interval * message.attempts
                self._tx_queue.insert(0, message)
                return
            reason = f"TransactionMessageAttempts ({limit}) exhausted after {reason}"
            self.ledger.drop(f"{message.action}: TransactionMessageAttempts ({limit}) exhausted")
        else:
            self.ledger.drop(f"{message.action}: {reason}")
        if message.on_failure:
            message.on_failure(reason, now)

    def expired(self, now: float) -> Message | None:
        """The in-flight message whose response deadline has passed, if any."""
        flight = self.in_flight
        if flight is not None and now >= flight.deadline:
            self.in_flight = None
            return flight.message
        return None

    def connection_lost(self, now: float) -> Message | None:
        """Put a transactional or status message in flight back; return others as failed."""
        flight = self.in_flight
        self.in_flight = None
        if flight is None:
            return None
        message = flight.message
        if message.transactional:
            message.attempts -= 1  # a lost connection is not the CSMS failing to process it
            self.ledger.count(message.action, _RESENT)
            self._tx_queue.insert(0, message)
            return None
        if message.coalesce_key is not None:
            self._normal.insert(0, message)
            return None
        return message
