"""Paired comparison of two runs on the seeds both played: the mean difference of return and of success,
with a bootstrap 95% interval over the common seeds.

Pairing by seed removes the variance that comes from the episodes themselves (a hard maze is hard for
every agent), so a difference shows up with fewer episodes than two independent means would need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from palaestra.core.types import Episode
from palaestra.eval.stats import bootstrap_ci


@dataclass(frozen=True)
class PairedComparison:
    """``other`` minus ``baseline`` on the seeds where both have an ``ok`` episode.

    ``return_diff`` and ``success_diff`` are means over those seeds (success as 0/1, so its difference is
    in success-rate points); the intervals are percentile bootstraps of the mean of the per-seed
    differences. All None when the runs share no seed.
    """

    baseline: str
    other: str
    seeds: tuple[int, ...]
    return_diff: float | None
    return_ci: tuple[float, float] | None
    success_diff: float | None
    success_ci: tuple[float, float] | None
    per_seed: tuple[tuple[int, float, float], ...]  # (seed, baseline return, other return)

    @property
    def n(self) -> int:
        return len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n": self.n}


def paired_comparison(
    baseline: str, baseline_episodes: Sequence[Episode], other: str, other_episodes: Sequence[Episode]
) -> PairedComparison:
    """Compare two runs' ``ok`` episodes seed by seed (``baseline`` and ``other`` are the runs' ids)."""
    base = {e.seed: e for e in baseline_episodes if e.status == "ok"}
    then = {e.seed: e for e in other_episodes if e.status == "ok"}
    seeds = tuple(sorted(base.keys() & then.keys()))
    if not seeds:
        return PairedComparison(baseline, other, (), None, None, None, None, ())
    returns = [then[s].total_return - base[s].total_return for s in seeds]
    success = [float(then[s].success) - float(base[s].success) for s in seeds]
    return PairedComparison(
        baseline=baseline,
        other=other,
        seeds=seeds,
        return_diff=float(np.mean(returns)),
        return_ci=bootstrap_ci(returns),
        success_diff=float(np.mean(success)),
        success_ci=bootstrap_ci(success),
        per_seed=tuple((s, base[s].total_return, then[s].total_return) for s in seeds),
    )
