"""``team``: DyLAN's team optimisation as a search method: keep the members with the highest Agent Importance
Score.

DyLAN (Liu et al., "A Dynamic LLM-Powered Agent Network for Task-Oriented Agent Collaboration";
../shared/reference/MULTIAGENT.md): members answer over rounds and rate the answers they received (1 to 5);
an Agent Importance Score is propagated backwards from the final answer through those ratings
(``palaestra.teams.dylan.importance_scores``, recorded per turn in ``Action.meta["importance"]``, summing to
1); team optimisation keeps the top-k members by that score.

What a team design can say: ``Design.team`` is a topology spec whose members are all the design's own
prompt agent (its template, sampling, history and demonstrations), told apart by persona (member ``m<k>``
takes persona line k of ``palaestra/teams/prompts/personas.txt``; ``roster=m1.m3`` names members). So a
member is a persona of a base design, not an arbitrary design, and the selection is over personas:

1. **Pool.** For each base design (the archive's best ``bases`` single-agent designs, or those given), the
   method proposes a ``dylan:<pool>,rounds=<rounds>`` team of that design's prompt agent (pattern ``direct``,
   as team designs require). The harness evaluates it on validation like any candidate, so its episodes,
   with every turn's importance scores, are in the store.
2. **Selection.** Once the pool is evaluated, each member's importance is read back from the stored
   episodes: the mean over turns within an episode, then over the episode (a member that did not take part in
   a turn scores 0 there), as ``palaestra.teams.optimize_team`` does, but on validation seeds and through the
   harness (budget, cache, archive). The method then proposes, for each size k in ``sizes``, the team of the
   top-k members: ``dylan:k,rounds=<rounds>,roster=...`` for k >= 2 and ``single,roster=m<best>`` (the best
   member alone) for k = 1. Each is evaluated on validation and the search chooses among them, the pool and
   the single-agent designs by validation score, as always.

The method proposes nothing more once every pool has been selected from; the harness then ends the search.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from palaestra.core.errors import SpecError
from palaestra.search.design import DEFAULT_SHOT_SOURCE, Design, DesignSpace
from palaestra.search.methods import Proposal
from palaestra.search.space import SearchSpace
from palaestra.teams import TeamSelection

if TYPE_CHECKING:
    from palaestra.search.harness import Evaluation, SearchHarness
    from palaestra.store import Store


def member_importance(store: Store, evaluation: Evaluation) -> tuple[dict[str, float], int]:
    """Each member's mean Agent Importance Score over the candidate's stored ok validation episodes (per
    episode the mean over its turns), and the number of episodes it is the mean of."""
    totals: dict[str, float] = {}
    played = 0
    for run_id in evaluation.run_ids:
        for episode in store.episodes(run_id, with_turns=True, status="ok"):
            scored = [t for t in episode.turns if isinstance(t.action.meta.get("importance"), dict)]
            if not scored:
                continue
            played += 1
            for turn in scored:
                for member, score in turn.action.meta["importance"].items():
                    totals[member] = totals.get(member, 0.0) + float(score) / len(episode.turns)
    return ({m: s / played for m, s in totals.items()} if played else {}), played


def top_members(scores: dict[str, float], members: Sequence[str], k: int) -> tuple[str, ...]:
    """The ``k`` members with the highest score, in team order (ties: the earlier member)."""
    ranked = sorted(members, key=lambda m: (-scores.get(m, 0.0), members.index(m)))[:k]
    return tuple(m for m in members if m in ranked)


class TeamSelect:
    """DyLAN-style selection of team members by Agent Importance Score (see the module docstring).

    Args:
        space: a ``DesignSpace`` that allows teams.
        bases: the designs whose prompt agent makes the members (None: the archive's best single-agent
            designs, ``n_bases`` of them; at first only the default).
        n_bases: how many archive designs to build pools from when ``bases`` is None.
        pool: members of the pool team (2..16).
        rounds: DyLAN rounds of the pool and of the selected teams (at least 2: ratings start in round 2).
        sizes: the numbers of members kept (each from 1 to ``pool - 1``).
    """

    name = "team"

    def __init__(
        self,
        space: SearchSpace,
        *,
        bases: Sequence[Design] | None = None,
        n_bases: int = 1,
        pool: int = 4,
        rounds: int = 2,
        sizes: Sequence[int] = (1, 2),
    ) -> None:
        if not isinstance(space, DesignSpace) or not space.allow_team:
            raise SpecError("team selects team members: it needs the design space with teams allowed (--space design)")
        if not 2 <= pool <= 16:
            raise SpecError(f"the pool team has 2 to 16 members, not {pool}")
        if rounds < 2:
            raise SpecError(f"importance needs ratings, from round 2 on: rounds must be at least 2, not {rounds}")
        if not sizes or any(not 1 <= k < pool for k in sizes):
            raise SpecError(f"team sizes to keep must be from 1 to {pool - 1} (fewer than the pool), got {list(sizes)}")
        self.space = space
        self.bases = list(bases) if bases is not None else None
        self.n_bases = n_bases
        self.pool = pool
        self.rounds = rounds
        self.sizes = tuple(dict.fromkeys(sizes))
        self.harness: SearchHarness | None = None
        self.pools: dict[str, Design] = {}  # pool team hash -> its base design
        self.selections: dict[str, TeamSelection | None] = {}  # pool hash -> what was selected (None: nothing)

    def bind(self, harness: SearchHarness) -> None:
        self.harness = harness

    def pool_team(self, base: Design) -> Design:
        """A DyLAN team of ``pool`` personas of the base design's prompt agent."""
        return self._team(base, f"dylan:{self.pool},rounds={self.rounds}")

    def selected_team(self, base: Design, kept: Sequence[str]) -> Design:
        """The team of the kept members (the best member alone for one)."""
        roster = ".".join(kept)
        if len(kept) == 1:
            return self._team(base, f"single,roster={roster}")
        return self._team(base, f"dylan:{len(kept)},rounds={self.rounds},roster={roster}")

    @staticmethod
    def _team(base: Design, spec: str) -> Design:
        # Team designs play prompt agents: the single-agent pattern and its sample counts do not apply.
        return replace(
            base, team=spec, pattern="direct", k=1, depth=1, shots=replace(base.shots, source=DEFAULT_SHOT_SOURCE)
        )

    def base_designs(self, archive: Sequence[Evaluation]) -> list[Design]:
        if self.bases is not None:
            return self.bases
        singles = [
            e
            for e in archive
            if not e.failed
            and isinstance(e.candidate, Design)
            and e.candidate.team is None
            and e.candidate.code is None
        ]
        singles.sort(key=lambda e: (-e.score, e.index))
        return [e.candidate for e in singles[: self.n_bases] if isinstance(e.candidate, Design)]

    def propose(self, archive: Sequence[Evaluation], rng: random.Random) -> list[Proposal]:
        if not archive:
            return [Proposal(self.space.default())]
        seen = {e.hash for e in archive}
        out: list[Proposal] = []
        for base in self.base_designs(archive):
            team = self.pool_team(base)
            if team.hash not in seen and team.hash not in self.pools:
                self.pools[team.hash] = base
                out.append(Proposal(team, (base.hash,)))
        if out:
            return out
        harness = self._harness()
        for evaluation in archive:
            if evaluation.hash not in self.pools or evaluation.hash in self.selections:
                continue
            base = self.pools[evaluation.hash]
            scores, episodes = member_importance(harness.store, evaluation)
            if not episodes:
                self.selections[evaluation.hash] = None
                harness.log(f"  team: pool {evaluation.hash} has no episode with importance scores; nothing to select")
                continue
            assert isinstance(evaluation.candidate, Design)
            members = tuple(f"m{k}" for k in range(1, self.pool + 1))
            ranking = ", ".join(f"{m} {scores.get(m, 0.0):.3f}" for m in members)
            best = top_members(scores, members, max(self.sizes))
            for k in self.sizes:
                kept = top_members(scores, members, k)
                team = self.selected_team(base, kept)
                if team.hash not in seen:
                    seen.add(team.hash)
                    out.append(Proposal(team, (evaluation.hash,)))
            spec = self.selected_team(base, best).team or ""
            self.selections[evaluation.hash] = TeamSelection(
                {m: round(scores.get(m, 0.0), 6) for m in members}, best, spec, episodes
            )
            harness.log(f"  team: mean importance in pool {evaluation.hash} over {episodes} episodes: {ranking}")
        return out

    def _harness(self) -> SearchHarness:
        if self.harness is None:
            raise SpecError("team reads the store of a search: run it through SearchHarness.run (it binds it)")
        return self.harness
