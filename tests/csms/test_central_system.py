"""The reference CSMS's answers and records, without sockets (CentralSystem, CsmsLedger)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from emulator.csms.central_system import CentralSystem, energy_register_wh, format_datetime
from emulator.csms.records import CsmsLedger
from emulator.protocol.codec import Call
from emulator.protocol.errors import ErrorCode, RemoteProtocolError

T0 = datetime(2024, 5, 1, 10, 0, 0, 250_000, tzinfo=UTC)


def start(connector: int = 1, tag: str = "TAG", ts: str = "2024-05-01T10:00:00Z") -> dict[str, Any]:
    return {"connectorId": connector, "idTag": tag, "meterStart": 1000, "timestamp": ts}


def stop(transaction_id: int, meter_stop: int = 2500) -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "meterStop": meter_stop,
        "timestamp": "2024-05-01T11:00:00Z",
    }


def sampled(value: str, **fields: str) -> dict[str, Any]:
    return {"timestamp": "2024-05-01T10:00:00Z", "sampledValue": [{"value": value, **fields}]}


def test_current_time_is_rfc_3339_utc_with_milliseconds() -> None:
    assert format_datetime(T0) == "2024-05-01T10:00:00.250Z"


def test_heartbeat_answers_the_injected_clock_and_records_it() -> None:
    central = CentralSystem(clock=lambda: T0)
    assert central.handle_call("CP1", Call("1", "Heartbeat", {})) == {
        "currentTime": "2024-05-01T10:00:00.250Z"
    }
    assert central.chargers["CP1"].last_heartbeat == T0


def test_calls_before_an_accepted_boot_are_counted() -> None:
    central = CentralSystem(boot_status="Pending")
    central.handle_call(
        "CP1", Call("1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    )
    central.handle_call("CP1", Call("2", "Heartbeat", {}))
    assert central.chargers["CP1"].calls_before_boot == 1
    assert central.chargers["CP1"].registration_status == "Pending"


def test_a_csms_action_sent_by_a_charger_is_not_supported() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        CentralSystem().handle_call("CP1", Call("1", "Reset", {"type": "Soft"}))
    assert caught.value.code is ErrorCode.NOT_SUPPORTED


def test_a_failing_data_transfer_vendor_handler_propagates_to_the_server() -> None:
    def broken(charger_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise ZeroDivisionError

    central = CentralSystem(data_transfer_vendors={"acme": broken})
    with pytest.raises(ZeroDivisionError):
        central.handle_call("CP1", Call("1", "DataTransfer", {"vendorId": "acme"}))


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"boot_status": "Maybe"},
        {"unknown_tag_status": "Fine"},
        {"id_tags": {"T": "Welcome"}},
        {"id_tags": {"T": {"expiryDate": "2030-01-01T00:00:00Z"}}},
    ],
)
def test_statuses_ocpp_does_not_define_are_refused_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CentralSystem(**kwargs)


def test_energy_register_defaults_to_the_active_import_register_in_wh() -> None:
    assert energy_register_wh([sampled("1234.5")]) == 1234.5


def test_energy_register_in_kwh_is_converted_to_wh() -> None:
    assert energy_register_wh([sampled("1.5", unit="kWh")]) == 1500.0


@pytest.mark.parametrize(
    "meter_value",
    [
        sampled("16", measurand="Current.Import", unit="A"),
        sampled("500", phase="L1"),
        sampled("abcd", format="SignedData"),
        sampled("not a number"),
    ],
)
def test_readings_other_than_the_total_import_register_are_ignored(
    meter_value: dict[str, Any],
) -> None:
    assert energy_register_wh([meter_value]) is None


def test_the_last_register_reading_wins() -> None:
    assert energy_register_wh([sampled("1"), sampled("2"), sampled("3")]) == 3.0


def test_transaction_ids_start_where_configured_and_increase() -> None:
    ledger = CsmsLedger(first_transaction_id=100)
    ids = [ledger.start("CP1", start(connector=c))[0].transaction_id for c in (1, 2)]
    assert ids == [100, 101]


def test_a_new_start_on_a_connector_with_an_open_transaction_is_counted_as_overlapping() -> None:
    ledger = CsmsLedger()
    ledger.start("CP1", start(ts="2024-05-01T10:00:00Z"))
    ledger.start("CP1", start(ts="2024-05-01T10:05:00Z"))
    assert ledger.overlapping_starts == 1


def test_a_stop_from_another_charger_is_counted_as_unknown() -> None:
    ledger = CsmsLedger()
    tx, _ = ledger.start("CP1", start())
    assert ledger.stop("CP2", stop(tx.transaction_id)) == "unknown"
    assert not tx.stopped


def test_energy_comes_from_meter_stop_once_stopped_else_from_the_last_reading() -> None:
    ledger = CsmsLedger()
    tx, _ = ledger.start("CP1", start())
    ledger.meter_values("CP1", tx.transaction_id, 1800.0)
    assert tx.energy_wh == 800.0
    ledger.stop("CP1", stop(tx.transaction_id, meter_stop=2500))
    assert tx.energy_wh == 1500.0


def test_the_ledger_summary_is_plain_json() -> None:
    ledger = CsmsLedger()
    tx, _ = ledger.start("CP1", start())
    ledger.stop("CP1", stop(tx.transaction_id))
    summary = json.loads(json.dumps(ledger.to_json()))
    assert summary["count"] == 1
    assert summary["energyWh"] == 1500.0
    assert summary["transactions"][0]["meterStop"] == 2500
