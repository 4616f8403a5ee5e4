"""Normalised scores averaged over tasks: one number per agent for a suite, with a bootstrap interval."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from palaestra.core.types import Normalization


@dataclass(frozen=True)
class TaskAverage:
    """An agent's normalised 0-100 score averaged over tasks (each task weighs the same).

    ``suite`` names the suite when the tasks are exactly one (``lmrl``); ``ci`` is a 95% percentile
    bootstrap interval that resamples each task's episodes independently.
    """

    agent: str
    model: str | None
    tasks: tuple[str, ...]
    suite: str | None
    score: float
    ci: tuple[float, float]
    task_scores: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def average_score(
    returns_by_task: Mapping[str, Sequence[float]],
    normalization: Mapping[str, Normalization],
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, tuple[float, float], dict[str, float]]:
    """(mean of per-task normalised scores, its 95% interval, the per-task scores)."""
    tasks = sorted(returns_by_task)
    scores = {t: normalization[t].score(float(np.mean(returns_by_task[t]))) for t in tasks}
    rng = np.random.default_rng(seed)
    totals = np.zeros(resamples)
    for task in tasks:
        data = np.asarray(returns_by_task[task], dtype=float)
        means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
        norm = normalization[task]
        totals += np.array([norm.score(float(m)) for m in means])
    totals /= len(tasks)
    low, high = np.quantile(totals, [0.025, 0.975])
    return float(np.mean(list(scores.values()))), (float(low), float(high)), scores


def task_averages(store: Any, run_ids: Sequence[str]) -> list[TaskAverage]:
    """Per (agent, model): the average normalised score over the tasks of ``run_ids``.

    Only agents that played two or more tasks with normalisation constants get an average; the ``ok``
    episodes of every run of the same task are pooled (errors are left out, as everywhere).
    """
    from palaestra.envs.suites import suite_of

    returns: dict[tuple[str, str | None], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    norms: dict[str, Normalization] = {}
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run.env_spec.normalization is None:
            continue
        norms[run.env_id] = run.env_spec.normalization
        ok = [e.total_return for e in store.episodes(run.id, status="ok")]
        returns[(run.agent_spec, run.model_spec)][run.env_id] += ok
    out = []
    for (agent, model), by_task in returns.items():
        by_task = {t: r for t, r in by_task.items() if r}
        if len(by_task) < 2:
            continue
        score, ci, per_task = average_score(by_task, norms)
        tasks = tuple(sorted(by_task))
        out.append(TaskAverage(agent, model, tasks, suite_of(frozenset(tasks)), score, ci, per_task))
    return sorted(out, key=lambda a: -a.score)
