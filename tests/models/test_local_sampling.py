"""The local backend's per-row sampler: inverse-CDF draws, the top-p nucleus, recorded logprobs."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from palaestra.models.local import _sample  # noqa: E402  (after the importorskip guard)

PROBS = [0.5, 0.3, 0.1, 0.05, 0.03, 0.02]


def draws(probs: list[float], top_p: float, n: int = 1000) -> tuple[list[int], list[float]]:
    """Sample ``n`` times with evenly spaced uniforms, so frequencies equal the sampled distribution."""
    logp = torch.tensor([probs] * n).log()
    uniform = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    tokens, logprobs = _sample(logp, torch.full((n,), top_p), uniform)
    return tokens.tolist(), logprobs.tolist()


def test_full_distribution_frequencies_and_logprobs() -> None:
    tokens, logprobs = draws(PROBS, 1.0)
    for token, p in enumerate(PROBS):
        assert tokens.count(token) / len(tokens) == pytest.approx(p, abs=0.002)
    for token, logprob in zip(tokens, logprobs, strict=True):
        assert logprob == pytest.approx(math.log(PROBS[token]), abs=1e-5)


def test_top_p_samples_the_renormalised_nucleus() -> None:
    tokens, logprobs = draws(PROBS, 0.85)  # mass before token 2 is 0.8 < 0.85: tokens 0, 1, 2 are the nucleus
    assert set(tokens) == {0, 1, 2}
    for token in (0, 1, 2):
        assert tokens.count(token) / len(tokens) == pytest.approx(PROBS[token] / 0.9, abs=0.002)
    for token, logprob in zip(tokens, logprobs, strict=True):
        assert logprob == pytest.approx(math.log(PROBS[token] / 0.9), abs=1e-5)


def test_a_nucleus_wider_than_the_first_look_is_found() -> None:
    vocab = 1000  # flat: top_p=0.5 needs 500 tokens, more than the first top-64 look covers
    tokens, logprobs = draws([1 / vocab] * vocab, 0.5, n=400)
    assert len(set(tokens)) > 300
    assert all(lp == pytest.approx(math.log(1 / 500), abs=1e-3) for lp in logprobs)


def test_rows_are_independent() -> None:
    logp = torch.tensor([PROBS, PROBS[::-1]]).log()
    tokens, _ = _sample(logp, torch.tensor([1.0, 0.4]), torch.tensor([0.0, 0.999]))
    assert tokens.tolist() == [0, 5]  # row 0: the first token; row 1: its nucleus is its top token alone
