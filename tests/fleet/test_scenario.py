from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest

from emulator.core.model import ALL_PROFILES, ChargerModel, Variant
from emulator.fleet.scenario import (
    CsmsOperation,
    CsmsSettings,
    EvSpec,
    FleetSettings,
    IdTagPool,
    ModelSpec,
    Range,
    Scenario,
    ScenarioError,
    SessionMode,
    SessionSettings,
    SloSettings,
    load_scenario,
    parse_scenario,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "scenarios").glob("*.toml"))
HEADER = '[scenario]\nname = "x"\n'
SOURCE = "scenarios/bad.toml"


def error_for(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source=SOURCE)
    return info.value


# ----------------------------------------------------------------- shipped files


def test_both_shipped_scenarios_are_there() -> None:
    assert {p.name for p in SHIPPED} >= {"demo.toml", "remote-only.toml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenario_loads_and_documents_itself_at_the_top(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert path.read_text().startswith("# ")
    for spec in scenario.models:
        assert isinstance(spec.to_charger_model(), ChargerModel)


def test_demo_mixes_a_3_phase_socket_and_a_1_phase_cable_model_with_short_sessions() -> None:
    demo = load_scenario(ROOT / "scenarios" / "demo.toml")
    models = {m.name: m.to_charger_model() for m in demo.models}
    assert models["socket-3p-32A"].variant is Variant.SOCKET
    assert (models["socket-3p-32A"].phases, models["socket-3p-32A"].max_current) == (3, 32.0)
    assert models["cable-1p-16A"].variant is Variant.CABLE
    assert (models["cable-1p-16A"].phases, models["cable-1p-16A"].max_current) == (1, 16.0)
    for model in models.values():
        assert model.configuration["HeartbeatInterval"] == "30"
        assert model.configuration["MeterValueSampleInterval"] == "10"
    assert demo.fleet.chargers == 50
    assert demo.sessions.mode is SessionMode.RANDOM
    # A 1-minute demo needs an arrival every minute or so and sessions well under a minute
    # on the 22 kW model.
    assert demo.sessions.arrivals_per_hour >= 60
    assert demo.sessions.energy_kwh.high / 22.0 * 3600 < 60


def test_remote_only_starts_nothing_itself_and_charges_until_stopped_remotely() -> None:
    remote = load_scenario(ROOT / "scenarios" / "remote-only.toml")
    assert remote.sessions.mode is SessionMode.REMOTE_ONLY
    assert remote.sessions.plug_in_delay.high <= 2.0
    assert math.isinf(remote.sessions.energy_kwh.low)
    assert remote.sessions.stop_by_tag_share == 0.0


# ----------------------------------------------------------------- good files


def test_a_file_with_only_a_name_gets_the_documented_defaults() -> None:
    scenario = parse_scenario(HEADER, source="x.toml")
    assert scenario == Scenario(name="x")
    assert scenario.fleet == FleetSettings()
    assert scenario.sessions == SessionSettings()
    assert scenario.models == (ModelSpec(),)


def test_model_spec_defaults_are_charger_model_defaults() -> None:
    assert ModelSpec().to_charger_model() == ChargerModel()


def test_configuration_values_become_ocpp_strings() -> None:
    scenario = parse_scenario(
        HEADER + "[[models]]\n[models.configuration]\n"
        "HeartbeatInterval = 60\nLocalPreAuthorize = true\n"
        "StopTransactionOnEVSideDisconnect = false\n"
        'MeterValuesSampledData = "Energy.Active.Import.Register,Power.Active.Import"\n',
        source="x.toml",
    )
    assert scenario.models[0].to_charger_model().configuration == {
        "HeartbeatInterval": "60",
        "LocalPreAuthorize": "true",
        "StopTransactionOnEVSideDisconnect": "false",
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import",
    }


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('HeartbeatInterval = "abc"', "HeartbeatInterval = 'abc': the charger answers Rejected"),
        (
            "GetConfigurationMaxKeys = 20",
            "GetConfigurationMaxKeys = '20': the charger answers Rejected",
        ),
        ("StopTxOnEVSideDisconnect = true", "the charger answers NotSupported"),
        ('CpoName = "Example CPO"', "CpoName = 'Example CPO': the charger answers NotSupported"),
    ],
    ids=["not-an-integer", "read-only", "misspelt", "needs-the-security-extension"],
)
def test_a_configuration_value_the_charger_refuses_is_an_error_before_the_run(
    line: str, why: str
) -> None:
    error = error_for(HEADER + f"[[models]]\n[models.configuration]\n{line}\n")
    assert error.field == "models[0].configuration"
    assert str(error).startswith(f"{SOURCE}: models[0].configuration: configuration ")
    assert why in str(error)


def test_model_fields_reach_the_charger_model() -> None:
    scenario = parse_scenario(
        HEADER + "[[models]]\n"
        'name = "c"\nvendor = "V"\nmodel = "M"\nfirmware_version = "2"\nvariant = "cable"\n'
        "phases = 1\nmax_current = 16\nnominal_voltage = 120\n"
        'profiles = ["Core", "SmartCharging"]\noffline_local_list_only = false\n',
        source="x.toml",
    )
    assert scenario.models[0].to_charger_model() == ChargerModel(
        name="c",
        vendor="V",
        model="M",
        firmware_version="2",
        variant=Variant.CABLE,
        phases=1,
        max_current=16.0,
        nominal_voltage=120.0,
        profiles=("Core", "SmartCharging"),
        offline_local_list_only=False,
    )


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    scenario = parse_scenario(
        HEADER + "[sessions]\narrivals_per_hour = 3\nplug_in_delay = [1, 2]\n", source="x"
    )
    assert scenario.sessions.arrivals_per_hour == 3.0
    assert scenario.sessions.plug_in_delay == Range(1.0, 2.0)


def test_unlimited_energy_is_written_inf_inf() -> None:
    scenario = parse_scenario(HEADER + "[sessions]\nenergy_kwh = [inf, inf]\n", source="x")
    assert scenario.sessions.energy_kwh.sample(np.random.default_rng(0)) == math.inf


# ----------------------------------------------------------------- bad files

# fmt: off
BAD = [
    # (snippet after [scenario], field path, expectation, what was got)
    ('[sessions]\narrivals_per_hour = "fast"', "sessions.arrivals_per_hour",
     "expected a number >= 0", 'got "fast"'),
    ("[sessions]\narrivals_per_hour = -1", "sessions.arrivals_per_hour",
     "expected a number >= 0", "got -1"),
    ("[sessions]\narrivals_per_hour = nan", "sessions.arrivals_per_hour",
     "expected a number >= 0", "got nan"),
    ("[sessions]\narrivals_per_hour = inf", "sessions.arrivals_per_hour",
     "expected a finite number", "got inf"),
    ('[sessions]\nmode = "sometimes"', "sessions.mode",
     'expected one of "random", "remote-only"', 'got "sometimes"'),
    ("[sessions]\nplug_in_delay = [3, 1]", "sessions.plug_in_delay",
     "expected [min, max] with min <= max", "got [3.0, 1.0]"),
    ("[sessions]\nplug_in_delay = [1]", "sessions.plug_in_delay",
     "expected a [min, max] pair of numbers >= 0", "got [1]"),
    ("[sessions]\nplug_in_delay = [1, 2, 3]", "sessions.plug_in_delay",
     "expected a [min, max] pair of numbers >= 0", "got [1, 2, 3]"),
    ("[sessions]\nplug_in_delay = 2", "sessions.plug_in_delay",
     "expected a [min, max] pair of numbers >= 0", "got 2"),
    ("[sessions]\nplug_in_delay = [1, -2]", "sessions.plug_in_delay[1]",
     "expected a number >= 0", "got -2"),
    ("[sessions]\nidle_after_full = [1, inf]", "sessions.idle_after_full",
     "expected finite numbers", "got [1.0, inf]"),
    ("[sessions]\nenergy_kwh = [0, 10]", "sessions.energy_kwh",
     "expected energies > 0 kWh", "got [0.0, 10.0]"),
    ("[sessions]\nenergy_kwh = [10, inf]", "sessions.energy_kwh",
     "expected finite numbers, or [inf, inf] for no limit", "got [10.0, inf]"),
    ("[sessions]\nauthorize_first_share = 1.5", "sessions.authorize_first_share",
     "expected a number from 0 to 1", "got 1.5"),
    ("[sessions]\nstop_by_tag_share = true", "sessions.stop_by_tag_share",
     "expected a number from 0 to 1", "got true"),
    ("[sessions]\nid_tags = []", "sessions.id_tags",
     "expected a non-empty array of tables", "got []"),
    ('[sessions.id_tags]\nprefix = "A"', "sessions.id_tags",
     "expected a non-empty array of tables", "write [[sessions.id_tags]] with double brackets"),
    ("[[sessions.id_tags]]\ncount = 0", "sessions.id_tags[0].count",
     "expected an integer >= 1", "got 0"),
    ("[[sessions.id_tags]]\ncount = 2.5", "sessions.id_tags[0].count",
     "expected an integer >= 1", "got 2.5"),
    ("[[sessions.id_tags]]\nshare = 0", "sessions.id_tags[0].share",
     "expected a number > 0", "got 0"),
    ('[[sessions.id_tags]]\nprefix = "ABCDEFGHIJKLMNOP"', "sessions.id_tags[0].prefix",
     "expected tags of at most 20 characters (OCPP IdToken)", 'making "ABCDEFGHIJKLMNOP00099"'),
    ('[[sessions.id_tags]]\nprefix = "A"\n[[sessions.id_tags]]\nprefix = "A"',
     "sessions.id_tags[1].prefix", "expected a prefix no other pool has", 'got "A"'),
    ("[[models]]\nshare = 0", "models[0].share", "expected a number > 0", "got 0"),
    ("[[models]]\nshare = -0.5", "models[0].share", "expected a number > 0", "got -0.5"),
    ("[[models]]\nphases = 2", "models[0].phases", "expected one of 1, 3", "got 2"),
    ('[[models]]\nphases = "3"', "models[0].phases", "expected one of 1, 3", 'got "3"'),
    ('[[models]]\nvariant = "plug"', "models[0].variant",
     'expected one of "socket", "cable"', 'got "plug"'),
    ('[[models]]\nprofiles = ["Core", "Teleport"]', "models[0].profiles[1]",
     'expected one of "Core", "FirmwareManagement"', 'got "Teleport"'),
    ('[[models]]\nprofiles = ["SmartCharging"]', "models[0].profiles",
     'expected a list that includes "Core"', 'got ["SmartCharging"]'),
    ('[[models]]\nprofiles = ["Core", "Core"]', "models[0].profiles[1]",
     "expected each profile once", 'got "Core" again'),
    ('[[models]]\nprofiles = "Core"', "models[0].profiles",
     "expected a non-empty array of strings", 'got "Core"'),
    ('[[models]]\nvendor = "A vendor name over twenty"', "models[0].vendor",
     "expected a string of 1 to 20 characters", 'got "A vendor name over twenty"'),
    ('[[models]]\nmax_current = "32A"', "models[0].max_current",
     "expected a number > 0", 'got "32A"'),
    ('[[models]]\nname = "a"\n[[models]]\nname = "a"', "models[1].name",
     "expected a name no other model has", 'got "a" (also models[0])'),
    ('[[models]]\noffline_local_list_only = "yes"', "models[0].offline_local_list_only",
     "expected a boolean (true or false)", 'got "yes"'),
    ("[[models]]\n[models.configuration]\nA = 1\nHeartbeatInterval = 1.5",
     "models[0].configuration.HeartbeatInterval",
     "expected a string, an integer or a boolean (true or false)", "got 1.5"),
    ("[[models]]\n[models.configuration]\nHeartbeatInterval = [60]",
     "models[0].configuration.HeartbeatInterval",
     "expected a string, an integer or a boolean (true or false)", "got [60]"),
    (f'[[models]]\n[models.configuration]\n"{"K" * 51}" = 1', "models[0].configuration",
     "expected keys of 1 to 50 characters", f'got "{"K" * 51}"'),
    (f'[[models]]\n[models.configuration]\nK = "{"v" * 501}"', "models[0].configuration.K",
     "expected at most 500 characters", "got 501"),
    ("models = []", "scenario.models", "unknown key (keys after a [table] header belong",
     "[scenario] takes: name, description, seed"),
    ('[models]\nname = "a"', "models", "expected a non-empty array of tables",
     "write [[models]] with double brackets"),
    ('[[models]]\nnmae = "a"', "models[0].nmae", 'unknown key (did you mean "name"?)',
     "[[models]] takes: name, share,"),
    ("[fleet]\nramp = 5", "fleet.ramp", "unknown key", "[fleet] takes: id_prefix,"),
    ("[fleet.limits]\nx = 5", "fleet.limits", "unknown table", "[fleet] takes:"),
    ('[fleet]\nid_prefix = "CP/1"', "fleet.id_prefix",
     "expected a string of at most 40 characters from A-Za-z0-9._~-", 'got "CP/1"'),
    ("[fleet]\nchargers = 0", "fleet.chargers", "expected an integer >= 1", "got 0"),
    ('[fleet]\nboot_on_reconnect = "no"', "fleet.boot_on_reconnect",
     "expected a boolean (true or false)", 'got "no"'),
    ("[fleet]\nconnect_timeout = 0", "fleet.connect_timeout", "expected a number > 0", "got 0"),
    ("[fleet]\nresponse_timeout = inf", "fleet.response_timeout",
     "expected a finite number", "got inf"),
    ("[fleet]\nramp_per_second = 1979-05-27", "fleet.ramp_per_second",
     "expected a number > 0", "got 1979-05-27"),
    ("[metering]\ncurve = 1", "metering", "unknown table",
     "the top level takes: scenario, fleet, models, sessions"),
    ("[sessions]\nfaults = {}", "sessions.faults", "unknown table", "[sessions] takes:"),
]


@pytest.mark.parametrize(("snippet", "field", "expected", "got"), BAD, ids=[b[1] for b in BAD])
def test_a_bad_value_names_the_file_the_field_and_what_was_expected(
    snippet: str, field: str, expected: str, got: str
) -> None:
    error = error_for(HEADER + snippet + "\n")
    message = str(error)
    assert message.startswith(f"{SOURCE}: {field}: {expected}"), message
    assert got in message, message
    assert "\n" not in message
    assert (error.source, error.field) == (SOURCE, field)
    # The CLI prints the message alone: no chained msgspec or tomllib traceback.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"{SOURCE}: scenario: required table [scenario] is missing (it needs at least: name)"),
        ("[scenario]\n", f"{SOURCE}: scenario.name: required key is missing; "
         "expected a non-empty string"),
        ('[scenario]\nname = ""\n', f'{SOURCE}: scenario.name: expected a non-empty string, '
         'got ""'),
        ("[scenario]\nname = 5\n", f"{SOURCE}: scenario.name: expected a non-empty string, "
         "got 5"),
        ('[scenario]\nname = "x"\nseed = -1\n', f"{SOURCE}: scenario.seed: expected an "
         "integer >= 0, got -1"),
        ('[scenario]\nname = "x"\n[fleet]\nid_prefix = "A"\n[fleet]\n',
         f"{SOURCE}:5:7: invalid TOML: Cannot declare ('fleet',) twice"),
        ('[scenario]\nname = "x\n', f"{SOURCE}:2:10: invalid TOML: Illegal character '\\n'"),
        ('[scenario]\nname =', f"{SOURCE}:2:7: invalid TOML: Invalid value"),
    ],
)
def test_file_level_errors_name_the_file_and_where(text: str, message: str) -> None:
    assert str(error_for(text)) == message


def test_an_unreadable_file_is_a_scenario_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError, match=re.escape(f"{missing}: cannot read: No such file")):
        load_scenario(missing)


def test_a_file_that_is_not_utf8_is_a_scenario_error(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[scenario]\nname = "Müller"\n'.encode("latin-1"))
    with pytest.raises(ScenarioError, match=re.escape(f"{latin1}: not UTF-8 text")):
        load_scenario(latin1)


def test_load_scenario_names_errors_after_the_path_it_was_given(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(HEADER + "[fleet]\nchargers = -1\n")
    with pytest.raises(ScenarioError, match=rf"^{re.escape(str(bad))}: fleet\.chargers: "):
        load_scenario(str(bad))


# ----------------------------------------------------------------- picking models


def three_models(*shares: float) -> Scenario:
    return Scenario(
        name="mix", models=tuple(ModelSpec(name=f"m{i}", share=s) for i, s in enumerate(shares))
    )


@pytest.mark.parametrize(
    ("shares", "count", "expected"),
    [
        ((1.0,), 7, [7]),
        ((1.0, 1.0), 51, [26, 25]),  # a tie goes to the model listed first
        ((1.0, 1.0, 1.0), 10, [4, 3, 3]),
        ((0.5, 0.3, 0.2), 7, [4, 2, 1]),  # quotas 3.5, 2.1, 1.4
        ((0.1, 0.2, 0.7), 10, [1, 2, 7]),  # exact despite 0.1 + 0.2 != 0.3 in floats
        ((3.0, 1.0), 0, [0, 0]),
        ((99.0, 1.0), 1, [1, 0]),
        ((1.0, 99.0), 1, [0, 1]),
    ],
)
def test_model_counts_split_by_largest_remainder(
    shares: tuple[float, ...], count: int, expected: list[int]
) -> None:
    assert three_models(*shares).model_counts(count) == expected


def test_model_counts_always_add_up_and_stay_within_one_of_the_quota() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        shares = rng.uniform(0.01, 10.0, size=int(rng.integers(1, 6)))
        count = int(rng.integers(0, 10_000))
        counts = three_models(*map(float, shares)).model_counts(count)
        assert sum(counts) == count
        quotas = shares / shares.sum() * count
        assert all(abs(c - q) < 1 for c, q in zip(counts, quotas, strict=True))


def test_pick_models_gives_each_model_its_count_in_a_seeded_order() -> None:
    scenario = three_models(0.5, 0.3, 0.2)
    picked = scenario.pick_models(1000, np.random.default_rng(42))
    assert Counter(m.name for m in picked) == {"m0": 500, "m1": 300, "m2": 200}
    again = scenario.pick_models(1000, np.random.default_rng(42))
    other = scenario.pick_models(1000, np.random.default_rng(43))
    assert [m.name for m in picked] == [m.name for m in again]
    assert [m.name for m in picked] != [m.name for m in other]
    # Shuffled, not blocks: the first 100 already mix the models.
    assert len({m.name for m in picked[:100]}) == 3


def test_pick_models_of_nothing_is_empty() -> None:
    assert three_models(1.0).pick_models(0, np.random.default_rng(0)) == []


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="count must be >= 0"):
        three_models(1.0).model_counts(-1)


# ----------------------------------------------------------------- helpers


def test_charger_ids_are_the_prefix_and_a_six_digit_index_from_one() -> None:
    scenario = parse_scenario(HEADER + '[fleet]\nid_prefix = "WB-"\n', source="x")
    assert scenario.charger_id(1) == "WB-000001"
    assert scenario.charger_id(123456) == "WB-123456"
    with pytest.raises(ValueError, match="starts at 1"):
        scenario.charger_id(0)


def test_ranges_sample_uniformly_within_their_bounds() -> None:
    rng = np.random.default_rng(3)
    draws = [Range(2.0, 4.0).sample(rng) for _ in range(1000)]
    assert 2.0 <= min(draws) < 2.1 and 3.9 < max(draws) <= 4.0
    assert Range(5.0, 5.0).sample(rng) == 5.0


def test_id_tags_come_from_the_pools_by_share() -> None:
    sessions = SessionSettings(
        id_tags=(IdTagPool(prefix="A", count=3, share=3.0), IdTagPool(prefix="B", count=2))
    )
    rng = np.random.default_rng(5)
    tags = Counter(sessions.draw_id_tag(rng) for _ in range(4000))
    assert set(tags) == {"A00000", "A00001", "A00002", "B00000", "B00001"}
    from_a = sum(n for tag, n in tags.items() if tag.startswith("A"))
    assert 2850 < from_a < 3150


def test_every_profile_is_accepted() -> None:
    profiles = ", ".join(f'"{p}"' for p in ALL_PROFILES)
    scenario = parse_scenario(HEADER + f"[[models]]\nprofiles = [{profiles}]\n", source="x")
    assert scenario.models[0].profiles == ALL_PROFILES


# ----------------------------------------------------------------- docs


def documented_fields() -> list[str]:
    tables: list[tuple[str, type[msgspec.Struct]]] = [
        ("fleet", FleetSettings),
        ("models", ModelSpec),
        ("sessions", SessionSettings),
        ("sessions.id_tags", IdTagPool),
        ("sessions.evs", EvSpec),
        ("csms", CsmsSettings),
        ("csms.operations", CsmsOperation),
        ("slo", SloSettings),
    ]
    names = ["scenario.name", "scenario.description", "scenario.seed"]
    for table, struct in tables:
        names += [f"{table}.{f.encode_name}" for f in msgspec.structs.fields(struct)]
    return names


@pytest.mark.parametrize("field", documented_fields())
def test_every_field_is_documented(field: str) -> None:
    docs = (ROOT / "docs" / "scenarios.md").read_text()
    assert f"`{field}`" in docs
