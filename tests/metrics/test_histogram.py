from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from emulator.metrics.stats import Histogram

QUANTILES = [0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]
RELATIVE_ERROR = 1 / 128  # half a bucket: 64 buckets per power of two


def filled(values: np.ndarray) -> Histogram:
    histogram = Histogram()
    for value in values:
        histogram.record(float(value))
    return histogram


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng: rng.lognormal(mean=-4.0, sigma=1.5, size=50_000),  # seconds-ish latencies
        lambda rng: rng.uniform(0.001, 0.002, size=20_000),  # all within one octave
        lambda rng: rng.exponential(0.05, size=20_000),
        lambda rng: 10 ** rng.uniform(-6, 2.7, size=20_000),  # 1 µs .. 500 s
    ],
    ids=["lognormal", "narrow", "exponential", "log-uniform-1us-500s"],
)
def test_percentiles_are_within_one_percent_of_numpy(
    draw: Callable[[np.random.Generator], np.ndarray],
) -> None:
    values = draw(np.random.default_rng(12345))
    histogram = filled(values)
    for q in QUANTILES:
        expected = float(np.percentile(values, q))
        assert histogram.percentile(q) == pytest.approx(expected, rel=0.01), q


def test_count_min_max_and_mean_are_exact() -> None:
    values = np.random.default_rng(1).gamma(2.0, 0.01, size=10_000)
    histogram = filled(values)
    assert histogram.count == len(values)
    assert histogram.min == values.min()
    assert histogram.max == values.max()
    assert histogram.mean == pytest.approx(values.mean(), rel=1e-12)
    assert histogram.percentile(0) == values.min()
    assert histogram.percentile(100) == values.max()


def test_a_single_value_is_every_percentile() -> None:
    histogram = filled(np.array([0.0123]))
    assert histogram.percentiles([0, 50, 99, 100]) == [0.0123] * 4


@pytest.mark.parametrize("value", [2**-20 * 1.0001, 1e-6, 1e-3, 0.5, 1.0, 1.2345, 599.9])
def test_any_value_in_range_comes_back_within_half_a_bucket(value: float) -> None:
    histogram = filled(np.array([value, value, value * 1.5]))
    assert histogram.percentile(50) == pytest.approx(value, rel=RELATIVE_ERROR)


def test_values_outside_the_range_keep_exact_min_max_and_count() -> None:
    histogram = filled(np.array([0.0, -1.0, 1e-9, 5000.0, math.inf]))
    assert histogram.count == 5
    assert histogram.min == 0.0  # negative clock noise is recorded as 0
    assert histogram.max == math.inf
    assert histogram.percentile(0) == 0.0


def test_nan_is_not_recorded() -> None:
    histogram = filled(np.array([math.nan, 0.5]))
    assert histogram.count == 1
    assert histogram.mean == 0.5


def test_an_empty_histogram_answers_nan() -> None:
    histogram = Histogram()
    assert histogram.count == 0
    assert math.isnan(histogram.mean)
    assert math.isnan(histogram.percentile(50))


def test_percentiles_outside_0_to_100_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        Histogram().percentile(101)


def test_merging_equals_recording_everything_in_one() -> None:
    rng = np.random.default_rng(99)
    a, b = rng.lognormal(-5, 1, 5000), rng.lognormal(-3, 0.5, 3000)
    merged = filled(a)
    merged.merge(filled(b))
    whole = filled(np.concatenate([a, b]))
    assert merged.count == whole.count
    assert (merged.min, merged.max) == (whole.min, whole.max)
    assert merged.mean == pytest.approx(whole.mean)
    assert merged.percentiles(QUANTILES) == whole.percentiles(QUANTILES)


def test_merging_an_empty_histogram_changes_nothing() -> None:
    histogram = filled(np.array([0.1, 0.2]))
    histogram.merge(Histogram())
    assert (histogram.count, histogram.min, histogram.max) == (2, 0.1, 0.2)


def test_copy_is_independent() -> None:
    original = filled(np.array([0.1]))
    clone = original.copy()
    clone.record(0.2)
    assert (original.count, clone.count) == (1, 2)


def test_memory_is_fixed_whatever_is_recorded() -> None:
    histogram = Histogram()
    for value in np.random.default_rng(0).lognormal(0, 5, 10_000):
        histogram.record(float(value))
    assert len(histogram._buckets) == Histogram.BUCKETS
