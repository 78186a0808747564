"""Ledgers: what the fleet did, what the CSMS recorded, and whether they agree.

Each wallbox knows every transaction it started (meterStart, meterStop, whether the
CSMS acknowledged the start and the stop) and what happened to each of its messages
(queued, sent, retried, resent after a disconnect, dropped by which rule).  The
reference CSMS keeps its own ledger.  :func:`compare` matches them transaction by
transaction and sorts every difference into *explained* — a rule of the reference
charger or of OCPP 1.6 says it must happen (a hard reset loses the running
transaction; a message is dropped after TransactionMessageAttempts; a retransmission
the CSMS recognised as a duplicate) — or a *discrepancy*: something lost or invented.
A run that proves nothing was lost has no discrepancies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.core.transaction import Transaction
from emulator.core.wallbox import Wallbox
from emulator.protocol.timefmt import format_timestamp


def _transaction_json(tx: Transaction, *, lost: bool) -> dict[str, Any]:
    return {
        "localId": tx.local_id,
        "transactionId": tx.transaction_id,
        "connectorId": tx.connector_id,
        "idTag": tx.id_tag,
        "meterStart": tx.meter_start,
        "meterStop": tx.meter_stop,
        "energyWh": tx.energy_wh,
        "startTimestamp": format_timestamp(tx.started_at),
        "stopTimestamp": None if tx.stopped_at is None else format_timestamp(tx.stopped_at),
        "reason": None if tx.stop_reason is None else str(tx.stop_reason),
        "startAcknowledged": tx.transaction_id is not None,
        "stopAcknowledged": tx.stop_acknowledged,
        "lostByHardReset": lost,
        "dropped": list(tx.dropped),
    }


def wallbox_ledger(wallbox: Wallbox) -> dict[str, Any]:
    """One wallbox's books, JSON-able."""
    lost = {id(tx) for tx in wallbox.lost_transactions}
    books = wallbox.outbox.ledger
    return {
        "chargerId": wallbox.charge_point_id,
        "transactions": [_transaction_json(tx, lost=id(tx) in lost) for tx in wallbox.transactions],
        "messages": {
            "queued": dict(books.queued),
            "sent": dict(books.sent),
            "acknowledged": dict(books.acknowledged),
            "retried": dict(books.retried),
            "resentAfterDisconnect": dict(books.resent_after_disconnect),
            "dropped": dict(books.dropped),
            "stillQueued": wallbox.outbox.depth,
        },
    }


def fleet_ledger(wallboxes: Iterable[Wallbox]) -> dict[str, Any]:
    chargers = [wallbox_ledger(wb) for wb in wallboxes]
    retried: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for charger in chargers:
        retried.update(charger["messages"]["retried"])
        retried.update(charger["messages"]["resentAfterDisconnect"])
        dropped.update(charger["messages"]["dropped"])
    transactions = [t for c in chargers for t in c["transactions"]]
    return {
        "chargers": chargers,
        "totals": {
            "transactions": len(transactions),
            "stopped": sum(1 for t in transactions if t["meterStop"] is not None),
            "energyWh": sum(t["energyWh"] or 0 for t in transactions if not t["lostByHardReset"]),
            "retried": dict(retried),
            "dropped": dict(dropped),
        },
    }


@dataclass(slots=True)
class LedgerComparison:
    matched: int = 0
    explained: list[str] = field(default_factory=list)
    discrepancies: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.discrepancies

    def to_json(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "matched": self.matched,
            "explained": self.explained,
            "discrepancies": self.discrepancies,
        }


def compare(fleet: Mapping[str, Any], csms: Mapping[str, Any]) -> LedgerComparison:
    """Match the fleet's ledger against the CSMS's, transaction by transaction."""
    result = LedgerComparison()
    theirs = {(t["chargerId"], t["transactionId"]): t for t in csms["transactions"]}
    by_start = {
        (t["chargerId"], t["connectorId"], t["idTag"], t["meterStart"], t["startTimestamp"]): t
        for t in csms["transactions"]
    }
    seen: set[tuple[str, int]] = set()
    for charger in fleet["chargers"]:
        cp = charger["chargerId"]
        for tx in charger["transactions"]:
            where = (
                f"{cp} transaction {tx['transactionId'] or '(local ' + str(tx['localId']) + ')'}"
            )
            record = None
            if tx["transactionId"] is not None:
                record = theirs.get((cp, tx["transactionId"]))
            else:
                record = by_start.get(
                    (cp, tx["connectorId"], tx["idTag"], tx["meterStart"], tx["startTimestamp"])
                )
            if record is not None:
                seen.add((cp, record["transactionId"]))
            if tx["lostByHardReset"]:
                if record is not None and record["meterStop"] is not None:
                    result.discrepancies.append(
                        f"{where}: lost by hard reset, yet the CSMS has its stop"
                    )
                else:
                    result.explained.append(f"{where}: lost by a hard reset (reference §3.1 Reset)")
                continue
            if record is None:
                if tx["dropped"] and not tx["startAcknowledged"]:
                    result.explained.append(f"{where}: never reached the CSMS: {tx['dropped'][0]}")
                elif not tx["startAcknowledged"]:
                    result.discrepancies.append(
                        f"{where}: StartTransaction still undelivered at the end"
                    )
                else:
                    result.discrepancies.append(f"{where}: acknowledged but unknown to the CSMS")
                continue
            if record["meterStart"] != tx["meterStart"]:
                result.discrepancies.append(
                    f"{where}: meterStart {tx['meterStart']} here, {record['meterStart']} at the CSMS"
                )
                continue
            if tx["meterStop"] is None:
                if record["meterStop"] is not None:
                    result.discrepancies.append(f"{where}: still running here, stopped at the CSMS")
                else:
                    result.explained.append(f"{where}: still running at the end of the run")
                continue
            if record["meterStop"] is None:
                stop_drops = [d for d in tx["dropped"] if d.startswith("StopTransaction")]
                if stop_drops:
                    result.explained.append(f"{where}: StopTransaction dropped: {stop_drops[0]}")
                else:
                    result.discrepancies.append(
                        f"{where}: stopped here, open at the CSMS (stop lost)"
                    )
                continue
            if (record["meterStop"], record["reason"]) != (tx["meterStop"], tx["reason"]):
                result.discrepancies.append(
                    f"{where}: stop ({tx['meterStop']} Wh, {tx['reason']}) here, "
                    f"({record['meterStop']} Wh, {record['reason']}) at the CSMS"
                )
                continue
            result.matched += 1
    for charger_id, transaction_id in theirs:
        if (charger_id, transaction_id) not in seen:
            result.discrepancies.append(
                f"{charger_id} transaction {transaction_id}: at the CSMS, never started by the fleet"
            )
    duplicates = csms.get("duplicateStarts", 0) + csms.get("duplicateStops", 0)
    if duplicates:
        resent = sum(
            fleet["totals"]["retried"].get(a, 0) for a in ("StartTransaction", "StopTransaction")
        )
        if duplicates <= resent:
            result.explained.append(
                f"{duplicates} retransmitted Start/StopTransaction recognised by the CSMS "
                f"(of {resent} retries and resends)"
            )
        else:
            result.discrepancies.append(
                f"{duplicates} duplicate Start/StopTransaction at the CSMS but only {resent} retries"
            )
    if csms.get("unknownStops"):
        result.discrepancies.append(
            f"{csms['unknownStops']} StopTransaction for unknown transactions"
        )
    return result
