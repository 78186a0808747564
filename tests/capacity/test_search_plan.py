"""The capacity search's sizes: growth, the cap, and bisection to 10 %."""

from __future__ import annotations

import pytest

from emulator.capacity import SearchSettings, bisect, next_size


def test_growth_multiplies_rounds_up_and_stops_at_the_cap() -> None:
    settings = SearchSettings(start=100, growth=1.5, max=300)
    sizes = [100]
    while sizes[-1] < 300:
        sizes.append(next_size(sizes[-1], settings))
    assert sizes == [100, 150, 225, 300]
    assert next_size(1, SearchSettings(start=1, growth=1.1)) == 2  # always one more


def test_bisection_halves_until_within_ten_percent() -> None:
    passing, failing = 150, 225
    tried = []
    while (middle := bisect(passing, failing, 0.10)) is not None:
        tried.append(middle)
        # A CSMS that holds 170: the search must end between 170 and 10 % above it.
        if middle <= 170:
            passing = middle
        else:
            failing = middle
    assert tried == [187, 168, 177]
    assert passing == 168 and failing == 177
    assert failing - passing <= 0.10 * passing
    assert bisect(10, 11, 0.10) is None  # adjacent sizes cannot be split


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start": 0}, "--start"),
        ({"start": 10, "max": 5}, "--max"),
        ({"growth": 1.0}, "--growth"),
        ({"hold": 0.0}, "--hold"),
    ],
)
def test_unusable_settings_name_their_option(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSettings(**options).check()  # type: ignore[arg-type]
