"""``reflect``: instruction optimisation from failed trajectories, with a Pareto front of parents (GEPA).

GEPA ("GEPA: Reflective Prompt Evolution Can Outperform Reinforcement Learning", in DSPy;
../shared/reference/OPTIMIZATION.md) reflects in natural language on traces of failures to propose new
instructions, and keeps a Pareto front of candidates that win on different examples, so that a candidate that
is best on some task survives even when its average is lower; it is reported to beat GRPO by about 10% with up
to 35x fewer rollouts. Here:

- **Tasks.** A candidate's score on each task: each environment when the search has several (per-environment
  scores), else each validation seed of the small batch (per-instance scores, as GEPA). Only the seeds every
  candidate played count (the small batch; all validation seeds without staging), so scores compare.
- **The front and the parent.** For every task the candidates with its best score win it; the front is the
  winners that no other winner dominates (at least as good on every task, better on one). The parent is drawn
  from the front with probability proportional to the number of tasks it wins (GEPA's selection).
- **Reflection.** The parent's worst validation episodes are read back from the store (the runs the harness
  stored for it; failed, low-return and invalid-action episodes first) and a few of their turns (invalid
  actions first, then the last turns: what the agent saw, answered and was told, and the reward) are shown to
  the proposer with the environments' rules and the parent's current instructions; it answers with new
  instructions between ``<instructions>`` tags.
- **Model output is never trusted.** The reply is cleaned (tags and fences removed, control characters
  dropped, cut at ``max_chars`` on a sentence end); an empty reply, or one equal to the current instructions,
  is rejected and the proposer is asked again (up to ``tries`` times per proposal, each a new sample).
- **The child** is the parent with its ``instructions`` replaced: the rest of the design is kept.

Not implemented: GEPA's merge of two front members (system-aware crossover); each child has one parent.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from palaestra.core.errors import SpecError
from palaestra.core.types import Episode, Message
from palaestra.models.base import Model
from palaestra.search.design import Design, DesignSpace
from palaestra.search.methods import Proposal
from palaestra.search.proposer import Proposer, clip, render
from palaestra.search.space import SearchSpace

if TYPE_CHECKING:
    from palaestra.search.harness import Evaluation, SearchHarness
    from palaestra.store import Store

DEFAULT_MAX_CHARS = 800
_TAGGED = re.compile(r"<instructions>(.*?)(?:</instructions>|\Z)", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*$", re.MULTILINE)
_LABEL = re.compile(r"^\s*(?:new |improved |updated |extra )*instructions\s*:\s*", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# --------------------------------------------------------------------------- scores per task and the front


def task_scores(evaluation: Evaluation, positions: Sequence[int], by: Literal["env", "seed"]) -> dict[str, float]:
    """A candidate's score on each task: per environment (the mean over ``positions``), or per seed
    (``env#position``). Tasks where it has no ok episode are missing."""
    out: dict[str, float] = {}
    for env_id, values in sorted(evaluation.values.items()):
        if by == "env":
            played = [values[p] for p in positions if p in values]
            if played:
                out[env_id] = sum(played) / len(played)
        else:
            for p in positions:
                if p in values:
                    out[f"{env_id}#{p}"] = values[p]
    return out


def pareto_by_task(scores: Mapping[str, Mapping[str, float]]) -> dict[str, int]:
    """GEPA's front: each candidate (key) that is best on at least one task and dominated by no other such
    candidate, with the number of tasks it is best on. A missing task counts as the worst score."""
    tasks = sorted({t for s in scores.values() for t in s})
    wins: dict[str, int] = {}
    for task in tasks:
        best = max(s.get(task, -math.inf) for s in scores.values())
        if best == -math.inf:
            continue
        for key, s in scores.items():
            if s.get(task, -math.inf) >= best - 1e-9:
                wins[key] = wins.get(key, 0) + 1

    def dominates(a: str, b: str) -> bool:
        pairs = [(scores[a].get(t, -math.inf), scores[b].get(t, -math.inf)) for t in tasks]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    return {k: n for k, n in wins.items() if not any(dominates(o, k) for o in wins if o != k)}


def choose_parent(front: Mapping[str, int], rng: random.Random) -> str:
    """A front member drawn with probability proportional to the tasks it wins (keys in sorted order, so the
    draw depends only on ``rng``)."""
    keys = sorted(front)
    return rng.choices(keys, weights=[front[k] for k in keys])[0]


# --------------------------------------------------------------------------- failed trajectories


@dataclass(frozen=True)
class ShownTurn:
    index: int
    observation: str
    action: str
    invalid: bool
    feedback: str
    reward: float


@dataclass(frozen=True)
class ShownEpisode:
    env_id: str
    seed: int
    total_return: float
    success: bool
    invalid: int
    turns: tuple[ShownTurn, ...]


def worst_episodes(episodes: Sequence[Episode], count: int) -> list[Episode]:
    """Up to ``count`` ok episodes, unsolved ones first, then by invalid actions (more first), then by return
    (lower first), then by environment and seed."""
    ok = [e for e in episodes if e.status == "ok" and e.turns]
    return sorted(ok, key=lambda e: (e.success, -e.invalid_actions, e.total_return, e.env_id, e.seed))[:count]


def shown_turns(episode: Episode, count: int, chars: int = 400) -> list[ShownTurn]:
    """Up to ``count`` turns of an episode: invalid actions first, then the last turns, in episode order."""
    invalid = [i for i, t in enumerate(episode.turns) if t.step.info.get("invalid_action")]
    last = list(range(len(episode.turns)))[::-1]
    picked = sorted(list(dict.fromkeys([*invalid, *last]))[:count])
    return [
        ShownTurn(
            index=i + 1,
            observation=clip(episode.turns[i].observation, chars),
            action=clip(episode.turns[i].action.text, 120) or "(nothing)",
            invalid=bool(episode.turns[i].step.info.get("invalid_action")),
            feedback=clip(episode.turns[i].step.observation, chars),
            reward=episode.turns[i].step.reward,
        )
        for i in picked
    ]


def failed_trajectories(
    store: Store, evaluation: Evaluation, *, episodes: int = 3, turns: int = 4
) -> list[ShownEpisode]:
    """The candidate's worst validation episodes, read back from the runs the harness stored for it."""
    played: list[Episode] = []
    for run_id in evaluation.run_ids:
        played += store.episodes(run_id, with_turns=True)
    return [
        ShownEpisode(e.env_id, e.seed, e.total_return, e.success, e.invalid_actions, tuple(shown_turns(e, turns)))
        for e in worst_episodes(played, episodes)
    ]


# --------------------------------------------------------------------------- the proposal text


def clean_instructions(text: str | None, max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """The instructions in a proposer's reply, cleaned and cut to ``max_chars`` (on a sentence end when one is
    in the second half); None when nothing is left."""
    if not text:
        return None
    tagged = _TAGGED.findall(text)
    body = tagged[-1] if tagged else text
    body = _CONTROL.sub("", _FENCE.sub("", body))
    lines = [_LABEL.sub("", line).strip() for line in body.strip().splitlines()]
    body = "\n".join(line for line in lines if line).strip()
    if len(body) > max_chars:
        cut = body[:max_chars]
        end = max(cut.rfind(". "), cut.rfind(".\n"), cut.rfind("! "), cut.rfind("? "), cut.rfind("\n"))
        body = cut[: end + 1] if end >= max_chars // 2 else cut
        body = body.strip()
    return body or None


# --------------------------------------------------------------------------- the method


class Reflect:
    """GEPA-style instruction optimisation over a ``DesignSpace`` (see the module docstring).

    Args:
        space: a ``DesignSpace`` (the prompt space has no instructions to change).
        proposer: the model that writes instructions (None: the search's model).
        tasks: ``"env"``, ``"seed"``, or ``"auto"`` (per environment with several, per seed with one).
        episodes, turns: failed episodes shown, and turns shown of each.
        max_chars: the longest instructions kept.
        max_words: the length asked for in the prompt.
        max_tokens, temperature: the proposer's sampling.
        tries: proposer calls per proposal before giving up for this round.
    """

    name = "reflect"

    def __init__(
        self,
        space: SearchSpace,
        *,
        proposer: Model | None = None,
        tasks: Literal["auto", "env", "seed"] = "auto",
        episodes: int = 3,
        turns: int = 4,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_words: int = 80,
        max_tokens: int = 320,
        temperature: float = 0.7,
        tries: int = 3,
    ) -> None:
        if not isinstance(space, DesignSpace):
            raise SpecError(
                "reflect rewrites a design's instructions, and the prompt space has no instructions field: "
                "search with --space design"
            )
        self.space = space
        self.proposer = Proposer(proposer)
        self.tasks = tasks
        self.episodes = episodes
        self.turns = turns
        self.max_chars = max_chars
        self.max_words = max_words
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.tries = tries
        self.harness: SearchHarness | None = None
        self.front: dict[str, int] = {}  # the last front: hash -> tasks won
        self.rejected: list[str] = []  # why proposals were rejected, in order
        self._asked: dict[str, int] = {}  # parent hash -> proposer samples asked (distinct sample_index)

    def bind(self, harness: SearchHarness) -> None:
        self.harness = harness
        self.proposer.bind(harness)

    def positions(self) -> list[int]:
        """The validation seed positions every candidate played (the small batch when staged)."""
        config = self._harness().config
        return list(range(config.batch_episodes if config.staged else config.validation_episodes))

    def scores(self, archive: Sequence[Evaluation]) -> dict[str, dict[str, float]]:
        """Each usable candidate's score per task."""
        several = len(self._harness().envs) > 1
        by: Literal["env", "seed"] = ("env" if several else "seed") if self.tasks == "auto" else self.tasks
        positions = self.positions()
        return {e.hash: task_scores(e, positions, by) for e in archive if not e.failed}

    async def propose(self, archive: Sequence[Evaluation], rng: random.Random) -> list[Proposal]:
        if not archive:
            return [Proposal(self.space.default())]
        harness = self._harness()
        by_hash = {e.hash: e for e in archive}
        scores = {h: s for h, s in self.scores(archive).items() if s}
        self.front = pareto_by_task(scores)
        if not self.front:
            return []
        for _ in range(self.tries):
            parent = by_hash[choose_parent(self.front, rng)]
            design = parent.candidate
            assert isinstance(design, Design)
            shown = failed_trajectories(harness.store, parent, episodes=self.episodes, turns=self.turns)
            user = render(
                "reflect",
                envs=[{"id": env.spec.id, "instructions": clip(env.instructions, 1500)} for env in harness.envs],
                current=design.instructions,
                score=f"{parent.score:.1f}",
                episodes=shown,
                max_words=self.max_words,
            )
            index = self._asked.get(parent.hash, 0)
            self._asked[parent.hash] = index + 1
            reply = await self.proposer.ask(
                [Message("system", render("reflect_system")), Message("user", user)],
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                seed=rng.randrange(2**31),
                sample_index=index,
            )
            text = clean_instructions(reply, self.max_chars)
            if text is None or text == design.instructions:
                why = "an empty reply" if text is None else "the parent's own instructions"
                self.rejected.append(f"{parent.hash}: {why}")
                harness.log(f"  reflect: the proposer gave {why} for {parent.hash}; asking again")
                continue
            child = replace(design, instructions=text)
            if child.hash in by_hash:
                self.rejected.append(f"{parent.hash}: instructions already tried ({child.hash})")
                continue
            harness.log(f"  reflect: parent {parent.hash} (wins {self.front[parent.hash]} tasks): {clip(text, 160)!r}")
            return [Proposal(child, (parent.hash,))]
        return []

    def _harness(self) -> SearchHarness:
        if self.harness is None:
            raise SpecError("reflect reads the store of a search: run it through SearchHarness.run (it binds it)")
        return self.harness
