"""Meter physics as a CSMS sees it: readings that add up (issue 4)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest

from emulator.core.metering import Ev
from emulator.core.status import Status
from emulator.protocol.timefmt import parse_timestamp

if TYPE_CHECKING:
    from conftest import FakeCsms

    MakeCsms = Callable[..., FakeCsms]

ALL_SAMPLED = (
    "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Current.Offered,Voltage"
)
ALIGNED = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,Energy.Active.Import.Interval"


def physics_csms(make_csms: MakeCsms, *, aligned: int = 0, **model: Any) -> FakeCsms:
    config = {
        "MeterValueSampleInterval": "10",
        "MeterValuesSampledData": ALL_SAMPLED,
        "StopTxnSampledData": "Energy.Active.Import.Register,Power.Active.Import",
        "ClockAlignedDataInterval": str(aligned),
        "MeterValuesAlignedData": ALIGNED,
    }
    return make_csms(config=config, **model)


def readings(csms: FakeCsms) -> list[tuple[float, dict[str, list[tuple[str | None, float]]]]]:
    """Every reading the CSMS got (MeterValues and transactionData), by time."""
    found = []
    sources = [mv for p in csms.payloads("MeterValues") for mv in p["meterValue"]]
    sources += [mv for p in csms.payloads("StopTransaction") for mv in p.get("transactionData", [])]
    for mv in sources:
        values: dict[str, list[tuple[str | None, float]]] = {}
        for sv in mv["sampledValue"]:
            values.setdefault(sv["measurand"], []).append((sv.get("phase"), float(sv["value"])))
        found.append((parse_timestamp(mv["timestamp"]), values))
    return sorted(found, key=lambda r: r[0])


def one_session(csms: FakeCsms, ev: Ev, hours: float = 3.0) -> None:
    csms.start_charging(ev=ev)
    csms.advance(hours * 3600)
    csms.unplug()
    csms.advance(5)


@pytest.mark.parametrize(
    ("phases", "ev_phases", "max_current", "taper"),
    [(3, 3, 32.0, 0.8), (1, 1, 16.0, 0.7), (3, 1, 16.0, 1.0)],
    ids=["3p-32A-taper", "1p-16A-taper", "1p-ev-on-3p-charger"],
)
def test_the_register_equals_the_integral_of_reported_power_within_one_wh(
    make_csms: MakeCsms, phases: int, ev_phases: int, max_current: float, taper: float
) -> None:
    csms = physics_csms(make_csms, aligned=900, phases=phases, max_current=max_current)
    ev = Ev(energy_wanted_wh=9_000, max_current=max_current, phases=ev_phases, taper_from=taper)
    one_session(csms, ev)
    (start,) = csms.payloads("StartTransaction")
    (stop,) = csms.payloads("StopTransaction")
    series = [
        (t, v["Power.Active.Import"][0][1]) for t, v in readings(csms) if "Power.Active.Import" in v
    ]
    stop_time = parse_timestamp(stop["timestamp"])
    series = [(t, p) for t, p in series if t <= stop_time]
    integral = sum(p * (t1 - t0) for (t0, p), (t1, _) in pairwise(series)) / 3600.0
    assert abs((stop["meterStop"] - start["meterStart"]) - integral) <= 1.0
    assert ev.full


def test_power_is_voltage_times_current_times_a_plausible_power_factor(make_csms: MakeCsms) -> None:
    csms = physics_csms(make_csms)
    one_session(csms, Ev(energy_wanted_wh=20_000, max_current=32.0, phases=3, taper_from=0.6))
    checked = 0
    for _, values in readings(csms):
        if "Voltage" not in values or "Power.Active.Import" not in values:
            continue
        volts = [v for _, v in values["Voltage"]]
        amps = [a for _, a in values["Current.Import"]]
        power = values["Power.Active.Import"][0][1]
        apparent = sum(v * a for v, a in zip(volts, amps, strict=True))
        if apparent < 500:
            continue
        # 0.1 A and 0.1 V rounding on three phases allow ~1 % either way.
        assert 0.94 * apparent <= power <= 1.005 * apparent
        checked += 1
    assert checked > 20


def test_current_import_never_exceeds_current_offered(make_csms: MakeCsms) -> None:
    csms = physics_csms(make_csms, max_current=16.0)
    one_session(csms, Ev(energy_wanted_wh=15_000, max_current=32.0, phases=3))
    for _, values in readings(csms):
        if "Current.Offered" in values:
            offered = values["Current.Offered"][0][1]
            assert offered == 16.0
            assert all(amps <= offered for _, amps in values["Current.Import"])


def test_voltage_wanders_around_nominal_per_phase_and_sags_under_load(make_csms: MakeCsms) -> None:
    csms = physics_csms(make_csms)
    one_session(csms, Ev(energy_wanted_wh=40_000, max_current=32.0, phases=3), hours=2)
    volts = [[v for _, v in r["Voltage"]] for _, r in readings(csms) if "Voltage" in r]
    assert len(volts) > 100
    flat = [v for phases in volts for v in phases]
    assert 0.93 * 230 < min(flat) and max(flat) < 1.07 * 230  # EN 50160 band ±10 %, well inside
    assert len({tuple(phases) for phases in volts}) > len(volts) * 0.9  # not a flat 230 V
    assert any(len(set(phases)) == 3 for phases in volts)  # phases differ


def test_charging_tapers_then_ends_in_suspended_ev(make_csms: MakeCsms) -> None:
    csms = physics_csms(make_csms)
    ev = Ev(energy_wanted_wh=10_000, max_current=32.0, min_current=6.0, phases=3, taper_from=0.5)
    csms.start_charging(ev=ev)
    csms.advance(3 * 3600)
    assert csms.status is Status.SUSPENDED_EV
    currents = [r["Current.Import"][0][1] for _, r in readings(csms) if "Current.Import" in r]
    drawing = [a for a in currents if a > 0]
    assert drawing[0] == 32.0 and drawing[-1] < 16.0  # full current, then the taper
    assert all(b <= a + 1e-9 for a, b in pairwise(drawing[len(drawing) // 2 :]))


def test_the_register_is_monotonic_integer_wh_from_a_random_lifetime_value(
    make_csms: MakeCsms,
) -> None:
    registers = []
    for seed in (1, 2):
        csms = physics_csms(make_csms, seed=seed)
        one_session(csms, Ev(energy_wanted_wh=5_000, max_current=16.0, phases=3), hours=1)
        series = [r["Energy.Active.Import.Register"][0][1] for _, r in readings(csms)]
        assert all(float(x).is_integer() for x in series)
        assert all(b >= a for a, b in pairwise(series))
        registers.append(series[0])
    assert registers[0] != registers[1] and min(registers) > 100_000


def test_aligned_interval_energy_adds_up_to_the_register(make_csms: MakeCsms) -> None:
    csms = physics_csms(make_csms, aligned=900)
    one_session(csms, Ev(energy_wanted_wh=30_000, max_current=32.0, phases=3), hours=2)
    aligned = [
        mv
        for p in csms.payloads("MeterValues")
        for mv in p["meterValue"]
        if mv["sampledValue"][0]["context"] == "Sample.Clock"
    ]
    registers = [
        float(
            next(
                s["value"]
                for s in mv["sampledValue"]
                if s["measurand"] == "Energy.Active.Import.Register"
            )
        )
        for mv in aligned
    ]
    intervals = [
        float(
            next(
                s["value"]
                for s in mv["sampledValue"]
                if s["measurand"] == "Energy.Active.Import.Interval"
            )
        )
        for mv in aligned
    ]
    for (r0, r1), interval in zip(pairwise(registers), intervals[1:], strict=True):
        assert r1 - r0 == interval
    assert all(
        parse_timestamp(mv["timestamp"]) % 900 == 0 for mv in aligned
    )  # on the boundary second


def test_stop_transaction_carries_begin_periodic_and_end_readings(make_csms: MakeCsms) -> None:
    csms = physics_csms(make_csms)
    one_session(csms, Ev(energy_wanted_wh=3_000, max_current=16.0, phases=3), hours=1)
    (stop,) = csms.payloads("StopTransaction")
    contexts = [mv["sampledValue"][0]["context"] for mv in stop["transactionData"]]
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    assert set(contexts[1:-1]) == {"Sample.Periodic"}
