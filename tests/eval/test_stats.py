import math

import numpy as np

from palaestra.core.types import Episode, Normalization
from palaestra.eval import bootstrap_ci, summarize


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = [0.0, 1.0] * 20
    low, high = bootstrap_ci(values)
    assert low < 0.5 < high
    assert (low, high) == bootstrap_ci(values)
    # the interval of a mean of 40 fair coin flips is about +-0.155 wide at 95%
    assert 0.25 < high - low < 0.4


def test_bootstrap_ci_coverage_is_close_to_nominal():
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(200):
        sample = rng.normal(3.0, 1.0, size=30)
        low, high = bootstrap_ci(sample, resamples=500, seed=trial)
        hits += low <= 3.0 <= high
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci([2.5]) == (2.5, 2.5)
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    low, high = bootstrap_ci([])
    assert math.isnan(low) and math.isnan(high)


def test_normalization_maps_constants_to_0_50_100():
    norm = Normalization(min=-50.0, avg=-20.0, max=-5.0)
    assert norm.score(-50.0) == 0.0
    assert norm.score(-20.0) == 50.0
    assert norm.score(-5.0) == 100.0
    assert norm.score(-35.0) == 25.0
    assert norm.score(-12.5) == 75.0


def test_summary_leaves_errors_out_of_scores():
    episodes = [
        Episode("x-v0", 0, total_return=-2.0, success=True),
        Episode("x-v0", 1, total_return=-4.0, success=False),
        Episode("x-v0", 2, status="error", error="ModelError: timeout"),
    ]
    s = summarize(
        run_id="r",
        env_id="x-v0",
        agent="a",
        model=None,
        status="incomplete",
        planned=3,
        episodes=episodes,
        normalization=Normalization(-10.0, -5.0, 0.0),
    )
    assert s.episodes == 2 and s.errors == 1
    assert s.mean_return == -3.0
    assert s.success_rate == 0.5
    assert s.score == 50.0 + 50.0 * 2.0 / 5.0


def test_summary_with_only_errors_has_no_scores():
    s = summarize(
        run_id="r",
        env_id="x-v0",
        agent="a",
        model=None,
        status="incomplete",
        planned=1,
        episodes=[Episode("x-v0", 0, status="error", error="boom")],
        normalization=None,
    )
    assert s.episodes == 0 and s.errors == 1 and s.mean_return is None and s.success_rate is None
