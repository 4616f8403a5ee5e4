"""Search methods and the value model on a synthetic design space with a known optimum (no model, no store),
and the prompt agent's space.

The synthetic space: four options of five levels each (625 candidates); the true score is
100 - 2.5 x (squared distance in levels to the optimum (3, 1, 4, 2)); a fake scorer adds Gaussian noise
per seed, as a validation run would.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from palaestra.agents.prompt import PromptConfig
from palaestra.core.errors import SpecError, UnknownSpecError
from palaestra.search.harness import Evaluation
from palaestra.search.methods import MCTS, Evolve, Proposal, SearchMethod, make_method
from palaestra.search.space import Candidate, PromptCandidate, PromptSpace, SearchSpace, stable_hash
from palaestra.search.value import ValueModel, rank_correlation

LEVELS = 5
OPTIMUM = (3, 1, 4, 2)


def truth(levels: Sequence[int]) -> float:
    return 100.0 - 2.5 * sum((a - b) ** 2 for a, b in zip(levels, OPTIMUM, strict=True))


class GridCandidate:
    def __init__(self, levels: Sequence[int]) -> None:
        self.levels = tuple(levels)

    @property
    def hash(self) -> str:
        return stable_hash({"levels": list(self.levels)}, prefix="g-")

    def to_dict(self) -> dict[str, Any]:
        return {"levels": list(self.levels)}

    def agent_spec(self) -> str:
        return "grid:" + ",".join(map(str, self.levels))


class GridSpace:
    """A fake SearchSpace: the default is (0, 0, 0, 0), far from the optimum."""

    name = "grid"

    def default(self) -> Candidate:
        return GridCandidate((0, 0, 0, 0))

    def sample(self, rng: random.Random) -> Candidate:
        return GridCandidate([rng.randrange(LEVELS) for _ in OPTIMUM])

    def mutate(self, candidate: Candidate, rng: random.Random) -> Candidate:
        levels = list(self.from_dict(candidate.to_dict()).levels)
        i = rng.randrange(len(levels))
        levels[i] = rng.choice([v for v in range(LEVELS) if v != levels[i]])
        return GridCandidate(levels)

    def children(self, candidate: Candidate) -> list[Candidate]:
        levels = self.from_dict(candidate.to_dict()).levels
        return [
            GridCandidate((*levels[:i], v, *levels[i + 1 :]))
            for i in range(len(levels))
            for v in range(LEVELS)
            if v != levels[i]
        ]

    def features(self, candidate: Candidate) -> list[float]:
        return [v / (LEVELS - 1) for v in self.from_dict(candidate.to_dict()).levels]

    def from_dict(self, data: Mapping[str, Any]) -> GridCandidate:
        return GridCandidate(data["levels"])

    def save(self, candidate: Candidate) -> None:
        return None


def fake_evaluation(candidate: Candidate, parents: Sequence[str], index: int, noise_seed: int = 0) -> Evaluation:
    """What the harness would archive after a full validation: 8 noisy per-seed scores around the truth."""
    rng = random.Random(f"{candidate.hash}:{noise_seed}")
    score = truth(GridCandidate(candidate.to_dict()["levels"]).levels)
    values = {"fake-v0": {i: score + rng.gauss(0.0, 5.0) for i in range(8)}}
    return Evaluation(candidate, tuple(parents), index, values=values, stages=["batch", "full"])


def drive(method: SearchMethod, space: SearchSpace, evaluations: int, seed: int = 0) -> list[Evaluation]:
    """The harness's loop without a model: the default, then the method's proposals, scored by the fake scorer."""
    rng = random.Random(seed)
    archive = [fake_evaluation(space.default(), (), 0)]
    seen = {archive[0].hash}
    while len(archive) < evaluations:
        proposals = method.propose(archive, rng)
        assert proposals, "the method ran dry on a 625-point space"
        for proposal in proposals:
            if proposal.candidate.hash in seen or len(archive) >= evaluations:
                continue
            seen.add(proposal.candidate.hash)
            archive.append(fake_evaluation(proposal.candidate, proposal.parents, len(archive)))
    return archive


GRID = [GridCandidate(p) for p in itertools.product(range(LEVELS), repeat=len(OPTIMUM))]


# --------------------------------------------------------------------------- the value model


def test_value_model_ranks_the_space_better_as_it_sees_more_points() -> None:
    space = GridSpace()
    features = [space.features(c) for c in GRID]
    true_scores = [truth(c.levels) for c in GRID]
    correlations: dict[int, list[float]] = {5: [], 20: [], 80: []}
    for seed in range(5):
        rng = random.Random(seed)
        order = rng.sample(GRID, 80)  # one stream of evaluations, seen a growing prefix at a time
        observed = [truth(c.levels) + rng.gauss(0.0, 5.0) for c in order]
        for n in correlations:
            model = ValueModel()
            model.fit([space.features(c) for c in order[:n]], observed[:n], [25.0] * n)
            mean, _ = model.predict(features)
            correlations[n].append(rank_correlation(mean.tolist(), true_scores))
    means = {n: float(np.mean(v)) for n, v in correlations.items()}
    assert means[5] < means[20] < means[80], means
    assert means[80] > 0.95, means  # measured 0.98; 5 points give about 0.6
    assert means[5] < 0.8, means


def test_value_model_is_less_certain_far_from_what_it_saw() -> None:
    model = ValueModel()
    model.fit([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1]], [10.0, 12.0, 11.0], [0.5, 0.5, 0.5])
    mean, std = model.predict([[0.05, 0.05], [1.0, 1.0]])
    assert std[0] < std[1]
    assert 9.0 < mean[0] < 13.0  # near the observations, close to them
    assert abs(mean[1] - 11.0) < 1.0  # far away, back to the prior mean (the mean observed score)


def test_value_model_without_data_predicts_the_prior() -> None:
    mean, std = ValueModel().predict([[0.0], [1.0]])
    assert mean.tolist() == [0.0, 0.0]
    assert std[0] == std[1] > 0


def test_rank_correlation_by_hand() -> None:
    assert rank_correlation([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1, 2.5, 2.5) against (1, 2, 3): Pearson of the ranks
    assert rank_correlation([1, 5, 5], [1, 2, 3]) == pytest.approx(np.corrcoef([0, 1.5, 1.5], [0, 1, 2])[0, 1])
    assert rank_correlation([1, 1, 1], [1, 2, 3]) == 0.0


# --------------------------------------------------------------------------- mcts and evolve on the fake space


def best_true(archive: Sequence[Evaluation]) -> float:
    return max(truth(GridCandidate(e.candidate.to_dict()["levels"]).levels) for e in archive)


def random_search_best(evaluations: int, seed: int) -> float:
    return max(truth(c.levels) for c in random.Random(seed).sample(GRID, evaluations))


def test_mcts_finds_the_known_optimum() -> None:
    space = GridSpace()
    archive = drive(MCTS(space), space, 30)
    assert truth((0, 0, 0, 0)) == 25.0  # where it starts
    assert best_true(archive) == 100.0  # found at the 13th evaluation; 30 random points reach it 5% of the time
    assert max(e.score for e in archive) > 90.0


def test_evolve_beats_random_sampling_with_as_many_evaluations() -> None:
    space = GridSpace()
    evolved = [best_true(drive(Evolve(space), space, 60, seed=seed)) for seed in range(8)]
    sampled = [random_search_best(60, seed) for seed in range(8)]
    # measured: 98.4 against 96.3 on average; evolve reaches the optimum itself in 4 of the 8 runs
    assert float(np.mean(evolved)) > float(np.mean(sampled))
    assert evolved.count(100.0) >= 2


def test_mcts_lineage_follows_the_tree_and_skips_what_the_value_model_finds_hopeless() -> None:
    space = GridSpace()
    archive = drive(MCTS(space), space, 40)
    hashes = [e.hash for e in archive]
    assert archive[0].parents == ()
    for e in archive[1:]:
        assert len(e.parents) == 1 and e.parents[0] in hashes[: e.index], "a parent is evaluated before its child"
        parent = archive[hashes.index(e.parents[0])]
        assert e.hash in {c.hash for c in space.children(parent.candidate)}, "children are one-edit neighbours"
    # The root has 16 children; with the value model, the search goes deeper instead of trying all of them.
    root_children = {c.hash for c in space.children(archive[0].candidate)}
    assert len(root_children & set(hashes)) < 16
    assert max(_depth(e, archive) for e in archive) >= 3


def _depth(e: Evaluation, archive: Sequence[Evaluation]) -> int:
    by_hash = {a.hash: a for a in archive}
    depth = 0
    while e.parents:
        e = by_hash[e.parents[0]]
        depth += 1
    return depth


@pytest.mark.parametrize("name", ["mcts", "evolve"])
def test_methods_are_reproducible_from_a_seed(name: str) -> None:
    space = GridSpace()
    first = drive(make_method(name, space), space, 25, seed=7)
    second = drive(make_method(name, space), space, 25, seed=7)
    assert [(e.hash, e.parents) for e in first] == [(e.hash, e.parents) for e in second]


def test_evolve_seeds_differ_and_parents_come_from_the_archive() -> None:
    space = GridSpace()
    one = drive(Evolve(space), space, 20, seed=1)
    two = drive(Evolve(space), space, 20, seed=2)
    assert [e.hash for e in one] != [e.hash for e in two]
    for archive in (one, two):
        hashes = [e.hash for e in archive]
        for e in archive[1:]:
            assert e.parents[0] in hashes[: e.index]


def test_evolve_novelty_and_fitness_by_hand() -> None:
    space = GridSpace()
    # the optimum, a near-duplicate of it (truth 97.5), and a far, poor candidate (truth 5)
    levels = [(3, 1, 4, 2), (3, 1, 4, 1), (0, 4, 0, 4)]
    archive = [fake_evaluation(GridCandidate(p), (), i) for i, p in enumerate(levels)]
    # features are levels / 4: the first two are 0.25 apart; the far one's nearest is the optimum,
    # sqrt(0.75^2 + 0.75^2 + 1 + 0.5^2) away
    novelty = Evolve(space, k=1).novelty(archive)
    assert novelty == pytest.approx([0.25, 0.25, (2 * 0.75**2 + 1 + 0.5**2) ** 0.5])
    scores = [e.score for e in archive]
    better, worse = (0, 1) if scores[0] > scores[1] else (1, 0)
    assert scores[2] < scores[worse]
    # fitness = score rank (0, 0.5, 1 scaled) + w x novelty rank (0, 0, 1): novelty lifts the far candidate
    # above the near-duplicate of the best
    fitness = Evolve(space, k=1, novelty_weight=0.75).fitness(archive)
    assert fitness[better] == pytest.approx(1.0)
    assert fitness[worse] == pytest.approx(0.5)
    assert fitness[2] == pytest.approx(0.75)
    assert Evolve(space, k=1, novelty_weight=0.0).fitness(archive)[2] == 0.0


def test_a_failed_candidate_counts_as_the_worst() -> None:
    space = GridSpace()
    archive = [fake_evaluation(space.default(), (), 0), fake_evaluation(GridCandidate(OPTIMUM), (), 1)]
    failed = Evaluation(GridCandidate((1, 1, 1, 1)), (archive[0].hash,), 2, failure="SpecError: bad")
    archive.append(failed)
    assert failed.failed and np.isnan(failed.score)
    # scores (about 25, 100, and the failed one as the worst seen): score ranks 0, 1, 0
    assert Evolve(space, novelty_weight=0.0).fitness(archive) == [0.0, 1.0, 0.0]
    proposals = MCTS(space).propose(archive, random.Random(0))
    assert len(proposals) == 1 and isinstance(proposals[0], Proposal)
    assert proposals[0].candidate.hash not in {e.hash for e in archive}


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(UnknownSpecError, match="mcts"):
        make_method("nope", GridSpace())


# --------------------------------------------------------------------------- the prompt space


def test_prompt_space_default_is_the_plain_prompt_agent() -> None:
    space = PromptSpace()
    default = space.default()
    assert isinstance(space, SearchSpace) and isinstance(default, Candidate)
    assert default.agent_spec() == "prompt"
    assert PromptConfig.parse("") == PromptConfig()
    assert default.to_dict() == {
        "template": "default",
        "shots": 2,
        "history": 2,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": None,
    }
    # The hash is the SHA-256 of the canonical JSON: the same in every process and version.
    assert default.hash == "p-d21f5814fe9b"


def test_prompt_space_children_parse_as_prompt_agent_specs() -> None:
    space = PromptSpace()
    children = space.children(space.default())
    assert len(children) == 1 + 3 + 4 + 3 + 1 + 4  # every other value of each option
    assert len({c.hash for c in children}) == len(children)
    for child in children:
        spec = child.agent_spec()
        config = PromptConfig.parse(spec.partition(":")[2])
        data = child.to_dict()
        assert (config.template, config.shots, config.history) == (data["template"], data["shots"], data["history"])
        assert (config.temperature, config.top_p, config.max_tokens) == (
            data["temperature"],
            data["top_p"],
            data["max_tokens"],
        )
    assert "prompt:history=4" in [c.agent_spec() for c in children]


def test_prompt_space_round_trips_and_rejects_what_is_not_in_it() -> None:
    space = PromptSpace()
    rng = random.Random(3)
    for _ in range(20):
        candidate = space.sample(rng)
        again = space.from_dict(candidate.to_dict())
        assert again == candidate and again.hash == candidate.hash
        assert len(space.features(candidate)) == len(space.features(space.default()))
    # 1 and 1.0 are the same temperature, and the same hash
    assert space.from_dict({**space.default().to_dict(), "top_p": 1}).hash == space.default().hash
    with pytest.raises(SpecError, match="not in the space"):
        space.from_dict({**space.default().to_dict(), "shots": 3})
    with pytest.raises(SpecError, match="exactly the keys"):
        space.from_dict({"shots": 2})
    with pytest.raises(SpecError, match="default"):
        PromptSpace({"shots": (0, 1)})


def test_prompt_space_mutation_changes_one_or_two_options() -> None:
    space = PromptSpace()
    rng = random.Random(0)
    default = space.default().to_dict()
    for _ in range(50):
        child = space.mutate(space.default(), rng)
        changed = [k for k, v in child.to_dict().items() if v != default[k]]
        assert 1 <= len(changed) <= 2
        assert isinstance(child, PromptCandidate)
