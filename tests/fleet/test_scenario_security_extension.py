"""``security_extension`` of a scenario's [[models]] (emulator.fleet.scenario)."""

from __future__ import annotations

import pytest

from emulator.fleet.scenario import ScenarioError, parse_scenario

HEADER = '[scenario]\nname = "x"\n'


def test_security_extension_reaches_the_charger_model() -> None:
    scenario = parse_scenario(HEADER + "[[models]]\nsecurity_extension = true\n", source="x")
    assert scenario.models[0].to_charger_model().security_extension is True


def test_security_extension_is_off_by_default() -> None:
    scenario = parse_scenario(HEADER + "[[models]]\n", source="x")
    assert scenario.models[0].to_charger_model().security_extension is False


def test_a_security_extension_that_is_not_a_boolean_is_one_clear_error() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(HEADER + '[[models]]\nsecurity_extension = "yes"\n', source="s.toml")
    assert str(caught.value) == (
        's.toml: models[0].security_extension: expected a boolean (true or false), got "yes"'
    )
