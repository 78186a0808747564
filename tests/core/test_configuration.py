"""Configuration keys of the reference charger (reference document §3.2) and their effects."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import TYPE_CHECKING

import pytest

from emulator.core.model import ALL_PROFILES
from emulator.protocol.errors import ErrorCode, RemoteProtocolError

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]

ACCEPTED, REJECTED, NOT_SUPPORTED = "Accepted", "Rejected", "NotSupported"
INT, BOOL, CSL = "integer", "boolean", "CSL"

# key: (type, read-only, default as GetConfiguration reports it), from reference §3.2.
# Booleans are reported the OCPP way ("true"), CSLs without the document's stray spaces.
REFERENCE_KEYS: dict[str, tuple[str, bool, str]] = {
    # Core profile, §3.2.1 "Supported keys"
    "ClockAlignedDataInterval": (INT, False, "15"),
    "ConnectionTimeOut": (INT, False, "60"),
    "GetConfigurationMaxKeys": (INT, True, "10"),
    "HeartbeatInterval": (INT, False, "60"),
    "MeterValuesAlignedData": (
        CSL,
        False,
        "Current.Import,Current.Offered,Energy.Active.Import.Register,Power.Active.Import,Voltage",
    ),
    "MeterValuesAlignedDataMaxLength": (INT, True, "5"),
    "MeterValueSampleInterval": (INT, False, "60"),
    "LocalAuthorizeOffline": (BOOL, False, "true"),
    "LocalPreAuthorize": (BOOL, False, "true"),
    "NumberOfConnectors": (INT, True, "1"),
    "SupportedFeatureProfiles": (CSL, True, ",".join(ALL_PROFILES)),
    "WebSocketPingInterval": (INT, False, "60"),
    "AllowOfflineTxForUnknownId": (BOOL, False, "false"),
    "AuthorizeRemoteTxRequests": (BOOL, False, "true"),
    "ResetRetries": (INT, False, "0"),
    "TransactionMessageAttempts": (INT, False, "6"),
    "TransactionMessageRetryInterval": (INT, False, "10"),
    "MaxEnergyOnInvalidId": (INT, False, "0"),
    "StopTransactionOnInvalidId": (BOOL, False, "true"),
    "MeterValuesSampledData": (
        CSL,
        False,
        "Energy.Active.Import.Register,Current.Import,Power.Active.Import,Current.Offered,Voltage",
    ),
    "AuthorizationCacheEnabled": (BOOL, False, "true"),
    "MeterValuesSampledDataMaxLength": (INT, True, "5"),
    "SupportedFeatureProfilesMaxLength": (INT, True, "6"),
    "ConnectorPhaseRotation": (CSL, False, "False"),
    "StopTransactionOnEVSideDisconnect": (BOOL, False, "true"),
    "UnlockConnectorOnEVSideDisconnect": (BOOL, False, "true"),
    # Core profile, §3.2.2 "To be supported" (the document says "Unknown")
    "StopTxnAlignedData": (CSL, False, ""),
    "StopTxnSampledData": (CSL, False, ""),
    "StopTxnSampledDataMaxLength": (INT, True, "5"),
    # Local Auth List Management
    "LocalAuthListEnabled": (BOOL, False, "true"),
    "LocalAuthListMaxLength": (INT, True, "20"),
    "SendLocalListMaxLength": (INT, True, "5"),
    # Smart Charging
    "ChargeProfileMaxStackLevel": (INT, True, "1"),
    "ChargingScheduleAllowedChargingRateUnit": (CSL, True, "Current,Power"),
    "ChargingScheduleMaxPeriods": (INT, True, "14"),
    "MaxChargingProfilesInstalled": (INT, True, "1"),
    # Reservation
    "ReserveConnectorZeroSupported": (BOOL, True, "true"),
}

PROFILE_KEYS: dict[str, tuple[str, ...]] = {
    "LocalAuthListManagement": (
        "LocalAuthListEnabled",
        "LocalAuthListMaxLength",
        "SendLocalListMaxLength",
    ),
    "SmartCharging": (
        "ChargeProfileMaxStackLevel",
        "ChargingScheduleAllowedChargingRateUnit",
        "ChargingScheduleMaxPeriods",
        "MaxChargingProfilesInstalled",
    ),
    "Reservation": ("ReserveConnectorZeroSupported",),
}

UNKNOWN_KEYS = (
    # reference §3.2.3 "Not supported keys"
    "MinimumStatusDuration",
    "BlinkRepeat",
    "ConnectorPhaseRotationMaxLength",
    "LightIntensity",
    "ConnectorSwitch3to1PhaseSupported",
    # the document's misspellings of standard keys are unknown, as on any 1.6 charger
    "MeterValuesSampleInterval",
    "MeterValuesAligned-DataMaxLength",
    "MeterVaues-SampledDataMaxLength",
    # not OCPP at all
    "NoSuchKey",
)

SIX_ALIGNED = (
    "Current.Import,Current.Offered,Energy.Active.Import.Register,"
    "Energy.Active.Import.Interval,Power.Active.Import,Voltage"
)

# (key, value, answer, value reported afterwards; None: the old value stays)
CHANGES: list[tuple[str, str, str, str | None]] = [
    # ClockAlignedDataInterval: 0, 30-86399; the default 15 itself is refused
    ("ClockAlignedDataInterval", "0", ACCEPTED, "0"),
    ("ClockAlignedDataInterval", "30", ACCEPTED, "30"),
    ("ClockAlignedDataInterval", "86399", ACCEPTED, "86399"),
    ("ClockAlignedDataInterval", "15", REJECTED, None),
    ("ClockAlignedDataInterval", "29", REJECTED, None),
    ("ClockAlignedDataInterval", "86400", REJECTED, None),
    # ConnectionTimeOut: 10-240
    ("ConnectionTimeOut", "10", ACCEPTED, "10"),
    ("ConnectionTimeOut", "240", ACCEPTED, "240"),
    ("ConnectionTimeOut", "9", REJECTED, None),
    ("ConnectionTimeOut", "241", REJECTED, None),
    # HeartbeatInterval: below 10 accepted and reported as set (run as 10, see below)
    ("HeartbeatInterval", "3", ACCEPTED, "3"),
    ("HeartbeatInterval", "0", ACCEPTED, "0"),
    ("HeartbeatInterval", "300", ACCEPTED, "300"),
    ("HeartbeatInterval", "-1", REJECTED, None),
    # MeterValueSampleInterval: 0, 4-65534; 1-3 rejected
    ("MeterValueSampleInterval", "0", ACCEPTED, "0"),
    ("MeterValueSampleInterval", "1", REJECTED, None),
    ("MeterValueSampleInterval", "3", REJECTED, None),
    ("MeterValueSampleInterval", "4", ACCEPTED, "4"),
    ("MeterValueSampleInterval", "65534", ACCEPTED, "65534"),
    ("MeterValueSampleInterval", "65535", REJECTED, None),
    # WebSocketPingInterval: 0, 10-65535; negative rejected
    ("WebSocketPingInterval", "0", ACCEPTED, "0"),
    ("WebSocketPingInterval", "10", ACCEPTED, "10"),
    ("WebSocketPingInterval", "65535", ACCEPTED, "65535"),
    ("WebSocketPingInterval", "9", REJECTED, None),
    ("WebSocketPingInterval", "65536", REJECTED, None),
    ("WebSocketPingInterval", "-1", REJECTED, None),
    ("WebSocketPingInterval", "-60", REJECTED, None),
    # ResetRetries: "Charger now only supports value 0"
    ("ResetRetries", "0", ACCEPTED, "0"),
    ("ResetRetries", "1", REJECTED, None),
    ("TransactionMessageAttempts", "3", ACCEPTED, "3"),
    ("TransactionMessageRetryInterval", "30", ACCEPTED, "30"),
    ("MaxEnergyOnInvalidId", "500", ACCEPTED, "500"),
    ("MaxEnergyOnInvalidId", "-1", REJECTED, None),
    # integers are canonical decimal
    ("ConnectionTimeOut", " +120 ", ACCEPTED, "120"),
    ("ConnectionTimeOut", "12.5", REJECTED, None),
    # booleans are reported "true"/"false" whatever the case sent
    ("StopTransactionOnInvalidId", "FALSE", ACCEPTED, "false"),
    ("AllowOfflineTxForUnknownId", "True", ACCEPTED, "true"),
    # measurand lists: only the supported measurands, no duplicates, at most 5 items
    ("MeterValuesSampledData", "Voltage,Current.Import", ACCEPTED, "Voltage,Current.Import"),
    ("MeterValuesSampledData", " Voltage , Current.Offered ", ACCEPTED, "Voltage,Current.Offered"),
    ("MeterValuesSampledData", "", ACCEPTED, ""),
    ("MeterValuesSampledData", "Power.Offered", REJECTED, None),
    ("MeterValuesSampledData", "Energy.Active.Import.Interval", REJECTED, None),
    ("MeterValuesSampledData", "Frequency", REJECTED, None),
    ("MeterValuesSampledData", "voltage", REJECTED, None),
    ("MeterValuesSampledData", "Voltage,Voltage", REJECTED, None),
    ("MeterValuesSampledData", "Voltage,,Current.Import", REJECTED, None),
    (
        "MeterValuesAlignedData",
        "Energy.Active.Import.Interval,Power.Offered",
        ACCEPTED,
        "Energy.Active.Import.Interval,Power.Offered",
    ),
    ("MeterValuesAlignedData", SIX_ALIGNED, REJECTED, None),
    ("MeterValuesAlignedData", "Frequency", REJECTED, None),
    (
        "StopTxnSampledData",
        "Energy.Active.Import.Register",
        ACCEPTED,
        "Energy.Active.Import.Register",
    ),
    (
        "StopTxnAlignedData",
        "Energy.Active.Import.Interval",
        ACCEPTED,
        "Energy.Active.Import.Interval",
    ),
    # ConnectorPhaseRotation: <connector>.<rotation> items for existing connectors
    ("ConnectorPhaseRotation", "0.RST,1.RST", ACCEPTED, "0.RST,1.RST"),
    ("ConnectorPhaseRotation", "1.NotApplicable", ACCEPTED, "1.NotApplicable"),
    ("ConnectorPhaseRotation", "2.RST", REJECTED, None),
    ("ConnectorPhaseRotation", "1.XYZ", REJECTED, None),
    ("ConnectorPhaseRotation", "False", REJECTED, None),
]

# A value of the wrong type for each key type.
WRONG_TYPE = {INT: "ten", BOOL: "yes", CSL: "Nonsense"}


def rw_keys_of_type(key_type: str) -> list[str]:
    return [
        key
        for key, (kind, readonly, _) in REFERENCE_KEYS.items()
        if kind == key_type and not readonly
    ]


@pytest.fixture
def pending(make_csms: MakeCsms) -> FakeCsms:
    """A charger with the reference configuration, registration Pending: the CSMS may
    read and change its configuration, and nothing (not even the boot's heartbeat
    interval) has touched a key yet (OCPP 1.6 §4.2.1)."""
    return make_csms(config={}, boot_status="Pending")


def test_get_configuration_without_keys_reports_exactly_the_reference_keys(
    pending: FakeCsms,
) -> None:
    assert set(pending.get_configuration()) == set(REFERENCE_KEYS)


@pytest.mark.parametrize("key", REFERENCE_KEYS)
def test_get_configuration_reports_the_reference_access_and_default(
    pending: FakeCsms, key: str
) -> None:
    _, readonly, default = REFERENCE_KEYS[key]
    reported = pending.get_configuration(key)[key]
    assert (reported["readonly"], reported["value"]) == (readonly, default)


@pytest.mark.parametrize("key", [k for k, (_, ro, _) in REFERENCE_KEYS.items() if ro])
def test_changing_a_read_only_key_is_rejected(pending: FakeCsms, key: str) -> None:
    before = pending.get_configuration(key)[key]["value"]
    assert pending.change_configuration(key, before) == REJECTED
    assert pending.change_configuration(key, "2") == REJECTED
    assert pending.get_configuration(key)[key]["value"] == before


@pytest.mark.parametrize(
    ("key", "value", "answer", "reported"),
    CHANGES,
    ids=[f"{key}={value!r}->{answer}" for key, value, answer, _ in CHANGES],
)
def test_change_configuration_follows_the_reference_range(
    pending: FakeCsms, key: str, value: str, answer: str, reported: str | None
) -> None:
    before = pending.get_configuration(key)[key]["value"]
    assert pending.change_configuration(key, value) == answer
    assert pending.get_configuration(key)[key]["value"] == (
        before if reported is None else reported
    )


@pytest.mark.parametrize("key", [k for kind in (INT, BOOL, CSL) for k in rw_keys_of_type(kind)])
def test_a_value_of_the_wrong_type_is_rejected(pending: FakeCsms, key: str) -> None:
    kind, _, default = REFERENCE_KEYS[key]
    assert pending.change_configuration(key, WRONG_TYPE[kind]) == REJECTED
    assert pending.get_configuration(key)[key]["value"] == default


@pytest.mark.parametrize("key", UNKNOWN_KEYS)
def test_unknown_and_not_supported_keys_are_not_supported(pending: FakeCsms, key: str) -> None:
    assert pending.change_configuration(key, "1") == NOT_SUPPORTED
    result = pending.call("GetConfiguration", {"key": [key, "HeartbeatInterval"]})
    assert [kv["key"] for kv in result["configurationKey"]] == ["HeartbeatInterval"]
    assert result["unknownKey"] == [key]


def test_get_configuration_answers_up_to_get_configuration_max_keys(pending: FakeCsms) -> None:
    ten = list(REFERENCE_KEYS)[:10]
    assert len(pending.call("GetConfiguration", {"key": ten})["configurationKey"]) == 10
    with pytest.raises(RemoteProtocolError) as refused:
        pending.call("GetConfiguration", {"key": [*ten, "NoSuchKey"]})
    assert refused.value.code is ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION


def test_get_configuration_with_an_empty_key_list_reports_every_key(pending: FakeCsms) -> None:
    result = pending.call("GetConfiguration", {"key": []})
    assert {kv["key"] for kv in result["configurationKey"]} == set(REFERENCE_KEYS)
    assert "unknownKey" not in result


@pytest.mark.parametrize("profile", PROFILE_KEYS)
def test_keys_of_a_switched_off_profile_are_absent(make_csms: MakeCsms, profile: str) -> None:
    profiles = tuple(p for p in ALL_PROFILES if p != profile)
    csms = make_csms(config={}, profiles=profiles)
    reported = csms.get_configuration()
    assert set(reported) == set(REFERENCE_KEYS) - set(PROFILE_KEYS[profile])
    assert reported["SupportedFeatureProfiles"]["value"] == ",".join(profiles)
    for key in PROFILE_KEYS[profile]:
        assert csms.change_configuration(key, "true") == NOT_SUPPORTED


@pytest.mark.parametrize("reset", ["Soft", "Hard"])
def test_changed_values_survive_a_reset(csms: FakeCsms, reset: str) -> None:
    changed = {
        "ConnectionTimeOut": "120",
        "MeterValueSampleInterval": "30",
        "LocalPreAuthorize": "false",
        "MeterValuesSampledData": "Energy.Active.Import.Register,Voltage",
        "WebSocketPingInterval": "0",
    }
    for key, value in changed.items():
        assert csms.change_configuration(key, value) == ACCEPTED
    csms.call("Reset", {"type": reset})
    csms.advance(60)
    assert csms.reboots, "the charger did not restart"
    assert csms.wb.accepted, "the charger did not boot again"
    reported = csms.get_configuration(*changed)
    assert {key: kv["value"] for key, kv in reported.items()} == changed


def test_a_scenario_cannot_install_a_value_the_charger_would_refuse(make_csms: MakeCsms) -> None:
    with pytest.raises(ValueError, match="ClockAlignedDataInterval"):
        make_csms(config={"ClockAlignedDataInterval": "15"})


# ---------------------------------------------------------------- effects of the keys


def heartbeat_gaps(csms: FakeCsms) -> set[float]:
    times = [s.at for s in csms.sent_of("Heartbeat")]
    return {round(b - a, 6) for a, b in pairwise(times)}


@pytest.mark.parametrize(("interval", "period"), [("0", 10), ("3", 10), ("10", 10), ("25", 25)])
def test_heartbeat_interval_below_ten_runs_every_ten_seconds(
    csms: FakeCsms, interval: str, period: int
) -> None:
    assert csms.change_configuration("HeartbeatInterval", interval) == ACCEPTED
    csms.advance(300)
    assert heartbeat_gaps(csms) == {period}
    assert csms.get_configuration("HeartbeatInterval")["HeartbeatInterval"]["value"] == interval


def test_boot_notification_interval_becomes_the_heartbeat_interval(make_csms: MakeCsms) -> None:
    csms = make_csms(boot_interval=45)
    csms.advance(200)
    assert heartbeat_gaps(csms) == {45}
    assert csms.sent_of("Heartbeat")[0].at - csms.T0 == 45
    assert csms.get_configuration("HeartbeatInterval")["HeartbeatInterval"]["value"] == "45"


def test_any_exchange_postpones_the_heartbeat(csms: FakeCsms) -> None:
    csms.advance(50)
    csms.get_configuration("HeartbeatInterval")  # a CSMS call at 50 s is an exchange
    csms.advance(100)
    assert [s.at - csms.T0 for s in csms.sent_of("Heartbeat")] == [110]


def sample_times(csms: FakeCsms, context: str) -> list[float]:
    return [
        s.at - csms.T0
        for s in csms.sent_of("MeterValues")
        if s.payload["meterValue"][0]["sampledValue"][0]["context"] == context
    ]


def test_meter_value_sample_interval_four_samples_every_four_seconds(csms: FakeCsms) -> None:
    assert csms.change_configuration("MeterValueSampleInterval", "4") == ACCEPTED
    csms.start_charging()
    csms.advance(20)
    assert sample_times(csms, "Sample.Periodic") == [4, 8, 12, 16, 20]


def test_meter_value_sample_interval_zero_switches_sampling_off(csms: FakeCsms) -> None:
    assert csms.change_configuration("MeterValueSampleInterval", "0") == ACCEPTED
    csms.start_charging()
    csms.advance(600)
    assert sample_times(csms, "Sample.Periodic") == []


def test_meter_value_sample_interval_changes_apply_to_the_running_transaction(
    csms: FakeCsms,
) -> None:
    csms.start_charging()
    csms.advance(130)
    assert csms.change_configuration("MeterValueSampleInterval", "0") == ACCEPTED
    csms.advance(200)
    assert csms.change_configuration("MeterValueSampleInterval", "20") == ACCEPTED
    csms.advance(50)
    assert sample_times(csms, "Sample.Periodic") == [60, 120, 350, 370]


def test_sampled_meter_values_carry_the_configured_measurands(csms: FakeCsms) -> None:
    csms.change_configuration("MeterValuesSampledData", "Voltage,Energy.Active.Import.Register")
    tx = csms.start_charging()
    csms.advance(60)
    (sample,) = csms.payloads("MeterValues")
    assert sample["transactionId"] == tx.transaction_id
    values = sample["meterValue"][0]["sampledValue"]
    assert [v["measurand"] for v in values] == ["Voltage"] * 3 + ["Energy.Active.Import.Register"]


def test_clock_aligned_data_is_sent_on_the_interval_boundaries_from_midnight(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(config={"ClockAlignedDataInterval": "900"})
    csms.advance(2000)  # T0 is a UTC midnight
    assert sample_times(csms, "Sample.Clock") == [900, 1800]


def test_the_reference_default_clock_aligned_interval_of_fifteen_runs_every_fifteen_seconds(
    make_csms: MakeCsms,
) -> None:
    csms = make_csms(config={})
    csms.advance(60)
    assert sample_times(csms, "Sample.Clock") == [15, 30, 45, 60]


def test_clock_aligned_interval_zero_switches_aligned_data_off(make_csms: MakeCsms) -> None:
    csms = make_csms(config={})
    assert csms.change_configuration("ClockAlignedDataInterval", "0") == ACCEPTED
    csms.advance(3600)
    assert sample_times(csms, "Sample.Clock") == []


def test_websocket_ping_runs_every_ping_interval(csms: FakeCsms) -> None:
    csms.advance(200)
    assert [t - csms.T0 for t in csms.pings] == [60, 120, 180]


def test_a_websocket_ping_interval_change_applies_live(csms: FakeCsms) -> None:
    csms.advance(130)
    assert csms.change_configuration("WebSocketPingInterval", "10") == ACCEPTED
    csms.advance(25)
    assert csms.change_configuration("WebSocketPingInterval", "0") == ACCEPTED
    csms.advance(600)
    assert [t - csms.T0 for t in csms.pings] == [60, 120, 140, 150]


def test_websocket_ping_interval_zero_sends_no_ping(make_csms: MakeCsms) -> None:
    csms = make_csms(config={"ClockAlignedDataInterval": "0", "WebSocketPingInterval": "0"})
    csms.advance(3600)
    assert csms.pings == []
