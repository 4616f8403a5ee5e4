"""Per-run summaries: success rate, return and normalised score with 95% intervals, costs per episode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from palaestra.core.types import Episode, Normalization
from palaestra.eval.stats import bootstrap_ci


@dataclass(frozen=True)
class RunSummary:
    """What ``palaestra show`` prints. Means are over episodes with status ``ok`` only; ``errors`` counts
    the others, which are excluded from every score (an error is not a reward of 0)."""

    run_id: str
    env_id: str
    agent: str
    model: str | None
    status: str
    planned: int
    episodes: int
    errors: int
    success_rate: float | None
    success_ci: tuple[float, float] | None
    mean_return: float | None
    return_ci: tuple[float, float] | None
    score: float | None
    score_ci: tuple[float, float] | None
    invalid_action_rate: float | None
    turns: float | None
    tokens: float | None
    completion_tokens: float | None
    seconds: float | None
    # Multi-agent runs: the environment's own metrics (mean and 95% interval of each numeric or boolean one),
    # the mean return of a seat by the agent spec that played it, and the success rate by number of players
    # when episodes differ in it (AgentsNet's graph sizes).
    metrics: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    return_by_agent: dict[str, float] = field(default_factory=dict)
    success_by_size: dict[int, tuple[float, int]] = field(default_factory=dict)
    # Runs of a team (``dylan:3/prompt``...): its cost and error accounting (palaestra.teams.accounting).
    team: dict[str, Any] | None = None
    # Multi-agent runs whose episodes all had the same number of seats: that number.
    n_players: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_number(value: Any) -> bool:
    return isinstance(value, bool | int | float) and value == value  # not NaN


def environment_metrics(episodes: Sequence[Episode]) -> dict[str, tuple[float, float, float]]:
    """Mean and bootstrap 95% interval of every numeric or boolean metric the episodes' environment reported."""
    keys = list(dict.fromkeys(k for e in episodes for k in e.metrics if k != "returns"))
    out = {}
    for key in keys:
        values = [e.metrics[key] for e in episodes if key in e.metrics]
        if values and all(_is_number(v) for v in values):
            numbers = [float(v) for v in values]
            low, high = bootstrap_ci(numbers)
            out[key] = (float(np.mean(numbers)), low, high)
    return out


def return_by_agent(episodes: Sequence[Episode]) -> dict[str, float]:
    """Mean return per seat, grouped by the agent spec that played the seat."""
    seats: dict[str, list[float]] = {}
    for e in episodes:
        for seat, value in (e.metrics.get("returns") or {}).items():
            spec = (e.players or {}).get(seat, seat)
            seats.setdefault(spec, []).append(float(value))
    return {spec: float(np.mean(values)) for spec, values in seats.items()}


def success_by_size(episodes: Sequence[Episode]) -> dict[int, tuple[float, int]]:
    """Success rate and episode count per number of players, when the episodes differ in it."""
    sizes: dict[int, list[float]] = {}
    for e in episodes:
        if e.players is not None:
            sizes.setdefault(len(e.players), []).append(1.0 if e.success else 0.0)
    if len(sizes) < 2:
        return {}
    return {n: (float(np.mean(v)), len(v)) for n, v in sorted(sizes.items())}


def summarize(
    *,
    run_id: str,
    env_id: str,
    agent: str,
    model: str | None,
    status: str,
    planned: int,
    episodes: Sequence[Episode],
    normalization: Normalization | None,
) -> RunSummary:
    ok = [e for e in episodes if e.status == "ok"]
    errors = len(episodes) - len(ok)
    if not ok:
        nothing: list[Any] = [None] * 11
        return RunSummary(run_id, env_id, agent, model, status, planned, 0, errors, *nothing)
    success = [1.0 if e.success else 0.0 for e in ok]
    returns = [e.total_return for e in ok]
    mean_return = float(np.mean(returns))
    return_ci = bootstrap_ci(returns)
    score = score_ci = None
    if normalization is not None:
        score = normalization.score(mean_return)
        score_ci = (normalization.score(return_ci[0]), normalization.score(return_ci[1]))
    n_turns = sum(len(e.turns) for e in ok)
    return RunSummary(
        run_id=run_id,
        env_id=env_id,
        agent=agent,
        model=model,
        status=status,
        planned=planned,
        episodes=len(ok),
        errors=errors,
        success_rate=float(np.mean(success)),
        success_ci=bootstrap_ci(success),
        mean_return=mean_return,
        return_ci=return_ci,
        score=score,
        score_ci=score_ci,
        invalid_action_rate=(sum(e.invalid_actions for e in ok) / n_turns) if n_turns else 0.0,
        turns=n_turns / len(ok),
        tokens=float(np.mean([e.usage.total_tokens for e in ok])),
        completion_tokens=float(np.mean([e.usage.completion_tokens for e in ok])),
        seconds=float(np.mean([e.wall_s for e in ok])),
        metrics=environment_metrics(ok),
        return_by_agent=return_by_agent(ok) if any(e.players for e in ok) else {},
        success_by_size=success_by_size(ok),
        team=_team_account(ok),
        n_players=_n_players(ok),
    )


def _n_players(episodes: Sequence[Episode]) -> int | None:
    sizes = {len(e.players) for e in episodes if e.players is not None}
    return sizes.pop() if len(sizes) == 1 else None


def _team_account(episodes: Sequence[Episode]) -> dict[str, Any] | None:
    if not any("topology" in t.action.meta for e in episodes for t in e.turns):
        return None
    from palaestra.teams.accounting import account

    return account(episodes).to_dict()


def summarize_run(store: Any, run_id: str) -> RunSummary:
    """Summarise a stored run (``store`` is a :class:`palaestra.store.Store`)."""
    run = store.get_run(run_id)
    return summarize(
        run_id=run.id,
        env_id=run.env_id,
        agent=run.agent_spec,
        model=run.model_spec,
        status=run.status,
        planned=len(run.config.get("seeds", [])),
        episodes=store.episodes(run.id, with_turns=True),
        normalization=run.env_spec.normalization,
    )
