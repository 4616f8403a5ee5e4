"""The promotion gate: a trained checkpoint replaces its parent only if it is better on validation seeds with
95% confidence, by a paired bootstrap over the seeds both played."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from palaestra.core.types import Episode
from palaestra.eval.stats import bootstrap_ci


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and the numbers behind it (means over the paired seeds; ``diff`` = child - parent)."""

    promoted: bool
    reason: str
    pairs: int
    parent_mean: float | None
    child_mean: float | None
    diff_mean: float | None
    diff_ci: tuple[float, float] | None
    parent_success: float | None
    child_success: float | None
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_gate(
    parent: Sequence[Episode], child: Sequence[Episode], *, confidence: float = 0.95, seed: int = 0
) -> GateResult:
    """Compare episodes of the parent and the child on the same (environment, seed) pairs by return.

    Promoted only when the lower end of the bootstrap interval of the mean paired difference is above 0.
    Episodes with status ``error`` are left out, and so is their pair.
    """
    by_key = {(e.env_id, e.seed): e for e in parent if e.status == "ok"}
    pairs = [(by_key[(e.env_id, e.seed)], e) for e in child if e.status == "ok" and (e.env_id, e.seed) in by_key]
    if not pairs:
        return GateResult(
            promoted=False,
            reason="no seed was played ok by both models; nothing to compare",
            pairs=0,
            parent_mean=None,
            child_mean=None,
            diff_mean=None,
            diff_ci=None,
            parent_success=None,
            child_success=None,
            confidence=confidence,
        )
    before = np.array([p.total_return for p, _ in pairs])
    after = np.array([c.total_return for _, c in pairs])
    diffs = after - before
    low, high = bootstrap_ci(diffs.tolist(), confidence=confidence, seed=seed)
    promoted = low > 0
    pct = round(100 * confidence)
    if promoted:
        reason = (
            f"better on validation: mean return {after.mean():.3f} vs {before.mean():.3f} over {len(pairs)} "
            f"paired seeds, difference {diffs.mean():+.3f} [{low:+.3f}, {high:+.3f}] ({pct}% CI above 0)"
        )
    else:
        reason = (
            f"not better with {pct}% confidence: mean return {after.mean():.3f} vs {before.mean():.3f} over "
            f"{len(pairs)} paired seeds, difference {diffs.mean():+.3f} [{low:+.3f}, {high:+.3f}] "
            "(the interval reaches 0 or below); the parent is kept"
        )
    return GateResult(
        promoted=promoted,
        reason=reason,
        pairs=len(pairs),
        parent_mean=float(before.mean()),
        child_mean=float(after.mean()),
        diff_mean=float(diffs.mean()),
        diff_ci=(low, high),
        parent_success=float(np.mean([p.success for p, _ in pairs])),
        child_success=float(np.mean([c.success for _, c in pairs])),
        confidence=confidence,
    )
