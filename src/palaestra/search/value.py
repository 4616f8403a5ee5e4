"""The value model of ``mcts``: predict a candidate's validation score, with an uncertainty, from its features.

AgentSwift (../shared/reference/OPTIMIZATION.md) trains a value model that predicts an agent's score from its
design, so that most candidates are never evaluated, and lets the model's uncertainty steer its Monte Carlo
tree search. Here the model is a Gaussian process on ``SearchSpace.features``, in numpy:

- it gives a mean and a standard deviation by construction, which is what UCB selection needs;
- each observation carries its own noise, the squared standard error of its score (from the bootstrap
  interval), so a 5-episode small batch counts for less than a full validation;
- it needs no training loop and is exact for the few dozen to few hundred points a search evaluates
  (an n x n solve; n = 300 takes milliseconds);
- unlike a linear model it captures an optimum inside a range (a middle temperature) and interactions
  between options.

Kernel: squared exponential on the features, with the length scale set to the median distance between the
observed points (the usual heuristic; no hyperparameter fitting, so the model is deterministic), a
constant prior mean (the mean observed score) and the observed scores' variance as the signal variance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Floor of the signal variance, in score units squared (normalised scores run 0..100): with a few
# identical scores the prior must still allow candidates to differ.
MIN_SIGNAL_VAR = 1.0
# Floor of each observation's noise variance, relative to the signal variance (keeps the solve stable).
MIN_NOISE_FRACTION = 1e-3


class ValueModel:
    """A Gaussian process regression of score on features, refitted from all observations on each ``fit``."""

    def __init__(self, length_scale: float | None = None) -> None:
        self.length_scale = length_scale
        self._x = np.zeros((0, 0))
        self._alpha = np.zeros(0)
        self._chol = np.zeros((0, 0))
        self._mean = 0.0
        self._signal = MIN_SIGNAL_VAR
        self._scale = 1.0

    @property
    def size(self) -> int:
        """How many observations the model was fitted on."""
        return int(self._x.shape[0])

    def fit(self, features: Sequence[Sequence[float]], scores: Sequence[float], noise: Sequence[float]) -> None:
        """Condition on observed ``scores`` of candidates with ``features``; ``noise`` is each score's variance."""
        x = np.asarray(features, dtype=float)
        y = np.asarray(scores, dtype=float)
        if x.ndim != 2 or len(x) != len(y) or len(y) != len(noise):
            raise ValueError("features, scores and noise must describe the same observations")
        self._x = x
        if len(y) == 0:
            return
        self._mean = float(y.mean())
        self._signal = max(float(y.var()), MIN_SIGNAL_VAR)
        self._scale = self.length_scale or _median_distance(x)
        k = self._kernel(x, x)
        floor = MIN_NOISE_FRACTION * self._signal
        k[np.diag_indices_from(k)] += np.maximum(np.asarray(noise, dtype=float), floor)
        self._chol = np.linalg.cholesky(k)
        self._alpha = np.linalg.solve(self._chol.T, np.linalg.solve(self._chol, y - self._mean))

    def predict(self, features: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the score of each candidate described by ``features``."""
        x = np.asarray(features, dtype=float)
        if len(x) == 0:
            return np.zeros(0), np.zeros(0)
        if self.size == 0:
            return np.full(len(x), self._mean), np.full(len(x), np.sqrt(self._signal))
        cross = self._kernel(x, self._x)
        mean = self._mean + cross @ self._alpha
        v = np.linalg.solve(self._chol, cross.T)
        var = np.maximum(self._signal - np.sum(v * v, axis=0), 0.0)
        return mean, np.sqrt(var)

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2 * a @ b.T
        return np.asarray(self._signal * np.exp(-0.5 * np.maximum(d2, 0.0) / self._scale**2))


def _median_distance(x: np.ndarray) -> float:
    if len(x) < 2:
        return 1.0
    d2 = np.sum(x * x, axis=1)[:, None] + np.sum(x * x, axis=1)[None, :] - 2 * x @ x.T
    upper = np.sqrt(np.maximum(d2[np.triu_indices(len(x), k=1)], 0.0))
    positive = upper[upper > 0]
    return float(np.median(positive)) if positive.size else 1.0


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank); 0 when either side is constant."""
    ra, rb = _ranks(np.asarray(a, dtype=float)), _ranks(np.asarray(b, dtype=float))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks
