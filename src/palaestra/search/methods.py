"""Search methods: each proposes the next candidates to evaluate from the archive of those evaluated so far.

One small interface, ``SearchMethod.propose(archive, rng) -> [Proposal]``: the harness evaluates every
proposal (staged, under the budget), appends it to the archive and asks again. Methods see candidates only
through the ``SearchSpace`` protocol, so they search any space.

- ``mcts``: Monte Carlo tree search from the default candidate, children being ``space.children`` (one-edit
  neighbours), guided by a value model (``palaestra.search.value``, a Gaussian process on
  ``space.features``), as in AgentSwift (../shared/reference/OPTIMIZATION.md): at a node, the unevaluated
  child with the highest upper confidence bound (predicted mean + ``exploration`` x predicted standard
  deviation) is the one evaluated; when no child's bound reaches the best score found so far and the node
  has evaluated children, the search descends instead (UCT on backed-up scores) so that children predicted
  hopeless are never evaluated. Progressive widening (at most ``widening`` x sqrt(visits) evaluated children
  per node) lets the tree grow deep as well as wide. AFlow also searches by tree search over edits.
- ``evolve``: each generation mutates ``generation`` parents, each the winner of a tournament on score
  rank plus ``novelty_weight`` x novelty rank, novelty being the mean feature distance to the ``k`` nearest
  archive members (quality-diversity, as ADAS's seed archive and the follow-up study's finding that
  evolution-style parent choice works best).

Three more methods live in their own modules, behind the same interface: ``reflect``
(``palaestra.search.reflect``, GEPA's instruction optimisation), ``meta-agent``
(``palaestra.search.meta_agent``, ADAS's Meta Agent Search) and ``team`` (``palaestra.search.team_select``,
DyLAN's selection of members by Agent Importance Score). They need the harness (its store, its model and its
budget), which hands itself to a method's optional ``bind(harness)`` before the search starts, and those that
ask a model propose asynchronously (``propose`` may return an awaitable).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from palaestra.core.errors import SpecError, UnknownSpecError
from palaestra.search.space import Candidate, SearchSpace
from palaestra.search.value import ValueModel

if TYPE_CHECKING:
    from palaestra.models.base import Model
    from palaestra.search.harness import Evaluation


@dataclass(frozen=True)
class Proposal:
    """A candidate to evaluate and the hashes of the candidates it was made from (its lineage).

    ``failure``: the method already knows the candidate is broken (generated code that failed the sandbox's
    check, a reply with no code): the harness archives it as failed with this reason and plays nothing.
    """

    candidate: Candidate
    parents: tuple[str, ...] = ()
    failure: str | None = None


class SearchMethod(Protocol):
    """Proposes candidates from the archive (every candidate evaluated so far, in order; the first is the
    space's default). Must be deterministic given ``rng``: searches are reproducible from a seed."""

    name: str

    def propose(
        self, archive: Sequence[Evaluation], rng: random.Random
    ) -> list[Proposal] | Awaitable[list[Proposal]]: ...


def _usable(archive: Sequence[Evaluation]) -> list[Evaluation]:
    return [e for e in archive if not e.failed]


def _worst(archive: Sequence[Evaluation]) -> float:
    scores = [e.score for e in _usable(archive)]
    return min(scores) if scores else 0.0


def _value(e: Evaluation, archive: Sequence[Evaluation]) -> float:
    """The score a method works with: a failed candidate counts as the worst seen."""
    return _worst(archive) if e.failed else e.score


# --------------------------------------------------------------------------- mcts


@dataclass
class _Node:
    candidate: Candidate
    parent: str | None
    visits: int = 0
    total: float = 0.0
    children: list[Candidate] | None = None  # space.children, computed on first visit
    tree_children: list[str] = field(default_factory=list)  # evaluated children first reached from here
    dead: bool = False  # nothing left to evaluate below


class MCTS:
    """Value-guided Monte Carlo tree search (see the module docstring)."""

    name = "mcts"

    def __init__(
        self,
        space: SearchSpace,
        *,
        exploration: float = 1.0,
        widening: float = 2.0,
        value_model: ValueModel | None = None,
    ) -> None:
        self.space = space
        self.exploration = exploration
        self.widening = widening
        self.value_model = value_model or ValueModel()
        self.nodes: dict[str, _Node] = {}
        self._backed: set[str] = set()

    def propose(self, archive: Sequence[Evaluation], rng: random.Random) -> list[Proposal]:
        if not archive:
            return [Proposal(self.space.default())]
        seen = {e.hash: e for e in archive}
        root = archive[0]
        if root.hash not in self.nodes:
            self.nodes[root.hash] = _Node(root.candidate, None)
        self._backup(archive)
        usable = _usable(archive)
        self.value_model.fit(
            [self.space.features(e.candidate) for e in usable], [e.score for e in usable], [e.noise for e in usable]
        )
        best = max((e.score for e in usable), default=-math.inf)
        spread = max(float(np.std([e.score for e in usable])) if len(usable) > 1 else 1.0, 1.0)
        for _ in range(len(self.nodes) + 1):  # each failed descent marks a node dead, so this ends
            proposal = self._descend(self.nodes[root.hash], seen, best, spread)
            if proposal is not None:
                return [proposal]
            if self.nodes[root.hash].dead:
                break
        return self._fallback(seen, rng)

    def _descend(self, node: _Node, seen: dict[str, Evaluation], best: float, spread: float) -> Proposal | None:
        while True:
            if node.children is None:
                node.children = self.space.children(node.candidate)
            fresh = [c for c in node.children if c.hash not in seen]
            kids = [self.nodes[h] for h in node.tree_children if not self.nodes[h].dead]
            room = len(node.tree_children) < math.ceil(self.widening * math.sqrt(max(node.visits, 1)))
            if fresh and (room or not kids):
                mean, std = self.value_model.predict([self.space.features(c) for c in fresh])
                bound = mean + self.exploration * std
                pick = int(np.argmax(bound))  # the first of equals: deterministic
                if bound[pick] >= best or not kids:
                    child = fresh[pick]
                    self.nodes[child.hash] = _Node(child, node.candidate.hash)
                    node.tree_children.append(child.hash)
                    return Proposal(child, (node.candidate.hash,))
            if not kids:
                node.dead = True
                return None
            log_n = math.log(max(node.visits, 1))
            node = max(
                kids,
                key=lambda k: (
                    k.total / max(k.visits, 1) + self.exploration * spread * math.sqrt(log_n / max(k.visits, 1))
                ),
            )

    def _backup(self, archive: Sequence[Evaluation]) -> None:
        """Add each newly evaluated candidate's score to the visits and totals of it and its ancestors."""
        for e in archive:
            if e.hash in self._backed or e.hash not in self.nodes:
                continue
            self._backed.add(e.hash)
            value = _value(e, archive)
            key: str | None = e.hash
            while key is not None:
                node = self.nodes[key]
                node.visits += 1
                node.total += value
                key = node.parent

    def _fallback(self, seen: dict[str, Evaluation], rng: random.Random) -> list[Proposal]:
        """The tree is exhausted: a random unseen candidate as a new root of exploration (none after 100 tries)."""
        for _ in range(100):
            candidate = self.space.sample(rng)
            if candidate.hash not in seen:
                self.nodes[candidate.hash] = _Node(candidate, None)
                return [Proposal(candidate)]
        return []


# --------------------------------------------------------------------------- evolve


class Evolve:
    """Evolutionary search with parents chosen by score and novelty (see the module docstring)."""

    name = "evolve"

    def __init__(
        self,
        space: SearchSpace,
        *,
        generation: int = 4,
        tournament: int = 5,
        novelty_weight: float = 0.5,
        k: int = 3,
    ) -> None:
        self.space = space
        self.generation = generation
        self.tournament = tournament
        self.novelty_weight = novelty_weight
        self.k = k

    def novelty(self, archive: Sequence[Evaluation]) -> list[float]:
        """Each archive member's mean feature distance to its ``k`` nearest other members."""
        if len(archive) < 2:
            return [0.0] * len(archive)
        x = np.asarray([self.space.features(e.candidate) for e in archive], dtype=float)
        d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2), 0.0))
        np.fill_diagonal(d, np.inf)
        k = min(self.k, len(archive) - 1)
        return [float(np.sort(row)[:k].mean()) for row in d]

    def fitness(self, archive: Sequence[Evaluation]) -> list[float]:
        """Score rank plus ``novelty_weight`` x novelty rank, both scaled to 0..1 (failed candidates: the worst)."""
        scores = [_value(e, archive) for e in archive]
        novelty = self.novelty(archive)
        return [s + self.novelty_weight * n for s, n in zip(_scaled_ranks(scores), _scaled_ranks(novelty), strict=True)]

    def propose(self, archive: Sequence[Evaluation], rng: random.Random) -> list[Proposal]:
        if not archive:
            return [Proposal(self.space.default())]
        fitness = self.fitness(archive)
        seen = {e.hash for e in archive}
        out: list[Proposal] = []
        for _ in range(self.generation):
            entrants = rng.sample(range(len(archive)), min(self.tournament, len(archive)))
            parent = archive[max(entrants, key=lambda i: (fitness[i], -i))]
            for _ in range(20):
                child = self.space.mutate(parent.candidate, rng)
                if child.hash not in seen:
                    seen.add(child.hash)
                    out.append(Proposal(child, (parent.hash,)))
                    break
        return out


def _scaled_ranks(values: Sequence[float]) -> list[float]:
    """Ranks scaled to 0 (lowest) .. 1 (highest); ties share the lower rank."""
    if len(values) < 2:
        return [1.0] * len(values)
    ordered = sorted(values)
    return [ordered.index(v) / (len(values) - 1) for v in values]


METHODS = ("mcts", "evolve", "reflect", "meta-agent", "team")
PROPOSER_METHODS = ("reflect", "meta-agent")  # the methods that ask a model to write candidates


def make_method(name: str, space: SearchSpace, *, proposer: Model | None = None) -> SearchMethod:
    """The search method called ``name`` over ``space``.

    Args:
        proposer: for ``reflect`` and ``meta-agent``, the model that writes new candidates (None: the search's
            own model, through its cache). Its calls and tokens count in the search's budget.
    """
    if proposer is not None and name not in PROPOSER_METHODS:
        raise SpecError(f"a proposer model is used by {' and '.join(PROPOSER_METHODS)} only, not by {name}")
    if name == "mcts":
        return MCTS(space)
    if name == "evolve":
        return Evolve(space)
    if name == "reflect":
        from palaestra.search.reflect import Reflect

        return Reflect(space, proposer=proposer)
    if name == "meta-agent":
        from palaestra.search.meta_agent import MetaAgent

        return MetaAgent(space, proposer=proposer)
    if name == "team":
        from palaestra.search.team_select import TeamSelect

        return TeamSelect(space)
    raise UnknownSpecError("search method", name, METHODS)
