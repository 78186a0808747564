"""Ledger comparison: every difference is explained by a rule or reported."""

from __future__ import annotations

from typing import Any

from emulator.fleet.ledger import compare

T = "2026-01-01T00:00:00.000Z"


def tx(tid: int | None, **over: Any) -> dict[str, Any]:
    base = {
        "localId": 1, "transactionId": tid, "connectorId": 1, "idTag": "A", "meterStart": 100,
        "meterStop": 200, "energyWh": 100, "startTimestamp": T, "stopTimestamp": T,
        "reason": "Local", "startAcknowledged": tid is not None, "stopAcknowledged": True,
        "lostByHardReset": False, "dropped": [],
    }  # fmt: skip
    base.update(over)
    return base


def record(tid: int, **over: Any) -> dict[str, Any]:
    base = {
        "transactionId": tid, "chargerId": "CP1", "connectorId": 1, "idTag": "A",
        "meterStart": 100, "startTimestamp": T, "meterStop": 200, "reason": "Local",
    }  # fmt: skip
    base.update(over)
    return base


def fleet(*txs: dict[str, Any], retried: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "chargers": [{"chargerId": "CP1", "transactions": list(txs)}],
        "totals": {"retried": retried or {}},
    }


def csms(*records: dict[str, Any], **counts: int) -> dict[str, Any]:
    return {"transactions": list(records), **counts}


def test_identical_books_match() -> None:
    result = compare(fleet(tx(1)), csms(record(1)))
    assert result.consistent and result.matched == 1 and not result.explained


def test_a_stop_the_csms_never_got_is_a_discrepancy() -> None:
    result = compare(fleet(tx(1)), csms(record(1, meterStop=None, reason=None)))
    assert not result.consistent and "stop lost" in result.discrepancies[0]


def test_a_stop_dropped_after_transaction_message_attempts_is_explained() -> None:
    dropped = tx(
        1,
        stopAcknowledged=False,
        dropped=["StopTransaction: TransactionMessageAttempts (2) exhausted"],
    )
    result = compare(fleet(dropped), csms(record(1, meterStop=None, reason=None)))
    assert result.consistent and "TransactionMessageAttempts" in result.explained[0]


def test_a_hard_reset_loss_is_explained_but_a_stop_after_it_is_not() -> None:
    lost = tx(1, meterStop=None, lostByHardReset=True)
    assert compare(fleet(lost), csms(record(1, meterStop=None, reason=None))).consistent
    assert not compare(fleet(lost), csms(record(1))).consistent


def test_different_energy_or_reason_is_reported() -> None:
    assert not compare(fleet(tx(1)), csms(record(1, meterStop=201))).consistent
    assert not compare(fleet(tx(1)), csms(record(1, reason="Remote"))).consistent


def test_a_transaction_only_the_csms_knows_is_reported() -> None:
    result = compare(fleet(tx(1)), csms(record(1), record(2)))
    assert result.discrepancies == ["CP1 transaction 2: at the CSMS, never started by the fleet"]


def test_duplicates_are_explained_only_by_as_many_retries() -> None:
    assert compare(
        fleet(tx(1), retried={"StartTransaction": 1}), csms(record(1), duplicateStarts=1)
    ).consistent
    assert not compare(fleet(tx(1)), csms(record(1), duplicateStarts=1)).consistent


def test_a_start_whose_answer_was_lost_is_matched_by_its_content() -> None:
    unacked = tx(
        None, meterStop=None, dropped=["StartTransaction: TransactionMessageAttempts (6) exhausted"]
    )
    result = compare(fleet(unacked), csms(record(7, meterStop=None, reason=None)))
    assert result.consistent, result.discrepancies
