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
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


@dataclass(slots=True)
class OutboxLedger:
    """What happened to charger-initiated messages (issue 7 compares it with the CSMS's)."""

    queued: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    acknowledged: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    resent_after_disconnect: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # key: "<action>: <rule>"


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
    )

    def __init__(
        self,
        *,
        config: Configuration,
        response_timeout: float = 30.0,
        drain_interval: float = 0.1,
        id_prefix: str = "",
    ) -> None:
        self._config = config
        self._tx_queue: deque[Message] = deque()
        self._normal: deque[Message] = deque()
        self._seq = 0
        self._counter = 0
        self._id_prefix = id_prefix
        self._last_tx_send = float("-inf")
        self.response_timeout = response_timeout
        self.drain_interval = drain_interval
        self.in_flight: InFlight | None = None
        self.ledger = OutboxLedger()

    # --- queueing ---

    def enqueue(self, message: Message) -> None:
        self._seq += 1
        message.seq = self._seq
        self.ledger.queued[message.action] += 1
        if message.transactional:
            self._tx_queue.append(message)
            return
        if message.coalesce_key is not None:
            for old in self._normal:
                if old.coalesce_key == message.coalesce_key:
                    self._normal.remove(old)
                    self.ledger.dropped[f"{old.action}: superseded by a newer one"] += 1
                    break
        if len(self._normal) >= MAX_NORMAL_QUEUE:
            # A CSMS that floods us with TriggerMessage while answering slowly must not
            # grow a charger's memory: the oldest best-effort message goes.
            old = self._normal.popleft()
            self.ledger.dropped[f"{old.action}: queue full ({MAX_NORMAL_QUEUE})"] += 1
        self._normal.append(message)

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
            self.ledger.dropped[f"{flight.message.action}: {rule}"] += 1
            dropped.append(flight.message)
        for queue in (self._tx_queue, self._normal):
            keep: list[Message] = []
            for m in queue:
                if predicate(m):
                    self.ledger.dropped[f"{m.action}: {rule}"] += 1
                    dropped.append(m)
                else:
                    keep.append(m)
            queue.clear()
            queue.extend(keep)
        return dropped

    def clear_normal(self, rule: str) -> None:
        for m in self._normal:
            self.ledger.dropped[f"{m.action}: {rule}"] += 1
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
            if (not boot_only or m.action == "BootNotification") and not self._paced_ahead_of(
                m, boot_only
            ):
                return m
        return None

    def pop_ready(self, now: float, *, boot_only: bool) -> OutgoingCall | None:
        """The next CALL to send now, or None; marks it in flight."""
        if self.in_flight is not None:
            return None
        candidates: list[tuple[int, Message, deque[Message]]] = []
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
                    self.ledger.dropped[
                        f"{message.action}: StartTransaction never acknowledged"
                    ] += 1
                    if message.on_failure:
                        message.on_failure("no transactionId", now)
                    return self.pop_ready(now, boot_only=boot_only)
                message.payload["transactionId"] = message.tx.transaction_id
            self._counter += 1
            unique_id = f"{self._id_prefix}{self._counter}"
            self.in_flight = InFlight(unique_id, message, now, now + self.response_timeout)
            if message.transactional:
                self._last_tx_send = now
            self.ledger.sent[message.action] += 1
            if message.attempts:
                self.ledger.retried[message.action] += 1
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
        self.ledger.acknowledged[message.action] += 1
        if message.on_result:
            message.on_result(payload, now)

    def failed(self, message: Message, reason: str, now: float) -> None:
        """The CSMS answered CALLERROR, or did not answer in time (OCPP 1.6 §4.10)."""
        if message.transactional:
            limit = self._config.get_int("TransactionMessageAttempts")
            if message.attempts < limit:
                interval = self._config.get_int("TransactionMessageRetryInterval")
                message.not_before = now + interval * message.attempts
                self._tx_queue.appendleft(message)
                return
            reason = f"TransactionMessageAttempts ({limit}) exhausted after {reason}"
            self.ledger.dropped[
                f"{message.action}: TransactionMessageAttempts ({limit}) exhausted"
            ] += 1
        else:
            self.ledger.dropped[f"{message.action}: {reason}"] += 1
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
            self.ledger.resent_after_disconnect[message.action] += 1
            self._tx_queue.appendleft(message)
            return None
        if message.coalesce_key is not None:
            self._normal.appendleft(message)
            return None
        return message
