"""Preference pairs for DPO: a better and a worse episode of the same seed, compared at the state where they part.

Two episodes of one environment seed start in the same state. While they take the same actions they stay in
the same state (environments are deterministic under a seed), so the first turn where their actions differ is
a decision made twice from one state, once the better way. That turn gives one pair:
``prompt`` = what the agent saw there (identical in both), ``chosen`` = the reply of the episode with the higher
return, ``rejected`` = the other's. Turns after the parting are in different states and are not compared.

Tokens come from :mod:`palaestra.improve.examples`: the exact tokens the model saw and produced when the turn
has them, the prompt agent's template otherwise. A pair is kept only when both prompts are the same tokens
(checked, not assumed: two episodes of different prompt formats, or an exact and a re-templated turn, do not
pair).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.errors import SpecError
from palaestra.core.types import Episode
from palaestra.improve.examples import NoTrainingDataError, TrainingExample


@dataclass(frozen=True)
class PreferencePair:
    """One decision made twice from one state: ``chosen`` led to the higher return.

    ``source`` has ``env_id``, ``seed``, ``turn`` (index of the parting turn), ``chosen_return``,
    ``rejected_return``, the ``chosen_run`` / ``rejected_run`` ids and the ``tokens`` kind of each side.
    """

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_ids": list(self.prompt_ids),
            "chosen_ids": list(self.chosen_ids),
            "rejected_ids": list(self.rejected_ids),
            "source": dict(self.source),
        }


@dataclass
class PairStats:
    """Why episodes did or did not give pairs (printed by ``improve``, kept with the checkpoint)."""

    seeds: int = 0  # seeds with at least two ok episodes
    compared: int = 0  # episode pairs with different returns
    pairs: int = 0
    same_actions: int = 0  # different returns from identical actions (a stochastic environment): no pair
    prompt_mismatch: int = 0  # the parting turn's prompts were not the same tokens: no pair
    duplicates: int = 0


def _action(turn: Any) -> str:
    return str(turn.action.raw if turn.action.raw is not None else turn.action.text)


def parting_turn(better: Episode, worse: Episode) -> int | None:
    """Index of the first turn where the two episodes' actions differ (None when one is a prefix of the other)."""
    for index, (a, b) in enumerate(zip(better.turns, worse.turns, strict=False)):
        if a.observation != b.observation:
            return None  # different states before any different action: not the same seed's start
        if _action(a) != _action(b):
            return index
    return None


def preference_pairs(
    sourced: Sequence[tuple[str, Episode, Sequence[TrainingExample]]],
    *,
    margin: float = 0.0,
    max_pairs_per_seed: int = 8,
) -> tuple[list[PreferencePair], PairStats]:
    """Pairs from episodes grouped by (environment, seed).

    Args:
        sourced: ``(run_id, episode, examples)`` per ok single-agent episode, ``examples`` being the episode's
            training examples in turn order (``examples_from_episodes`` of that one episode).
        margin: only episodes whose returns differ by more than this are compared.
        max_pairs_per_seed: at most this many pairs per seed, the widest return gaps first.

    Raises:
        NoTrainingDataError: no seed has two episodes with different returns, or none of them parts at a turn
            with matching prompts; the message says which.
    """
    if max_pairs_per_seed < 1:
        raise SpecError(f"max_pairs_per_seed must be at least 1, not {max_pairs_per_seed}")
    groups: dict[tuple[str, int], list[tuple[str, Episode, Sequence[TrainingExample]]]] = defaultdict(list)
    for run_id, episode, examples in sourced:
        if episode.status != "ok":
            continue
        if any(turn.agent is not None for turn in episode.turns):
            raise SpecError("preference pairs are built from single-agent episodes; this one has players")
        groups[(episode.env_id, episode.seed)].append((run_id, episode, examples))
    stats = PairStats()
    pairs: list[PreferencePair] = []
    seen: set[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = set()
    for (env_id, seed), members in sorted(groups.items()):
        if len(members) < 2:
            continue
        stats.seeds += 1
        candidates = []
        for a, b in itertools.combinations(members, 2):
            better, worse = (a, b) if a[1].total_return >= b[1].total_return else (b, a)
            gap = better[1].total_return - worse[1].total_return
            if gap > margin:
                candidates.append((gap, better, worse))
        candidates.sort(key=lambda c: -c[0])  # widest gaps first; stable for equal gaps
        kept = 0
        for gap, (run_b, ep_b, ex_b), (run_w, ep_w, ex_w) in candidates:
            if kept >= max_pairs_per_seed:
                break
            stats.compared += 1
            turn = parting_turn(ep_b, ep_w)
            if turn is None or turn >= len(ex_b) or turn >= len(ex_w):
                stats.same_actions += 1
                continue
            chosen, rejected = ex_b[turn], ex_w[turn]
            if chosen.prompt_ids != rejected.prompt_ids:
                stats.prompt_mismatch += 1
                continue
            key = (tuple(chosen.prompt_ids), tuple(chosen.completion_ids), tuple(rejected.completion_ids))
            if key in seen:
                stats.duplicates += 1
                continue
            seen.add(key)
            kept += 1
            pairs.append(
                PreferencePair(
                    chosen.prompt_ids,
                    chosen.completion_ids,
                    rejected.completion_ids,
                    {
                        "env_id": env_id,
                        "seed": seed,
                        "turn": turn,
                        "gap": gap,
                        "chosen_return": ep_b.total_return,
                        "rejected_return": ep_w.total_return,
                        "chosen_run": run_b,
                        "rejected_run": run_w,
                        "chosen_tokens": chosen.source.get("tokens"),
                        "rejected_tokens": rejected.source.get("tokens"),
                    },
                )
            )
    stats.pairs = len(pairs)
    if not pairs:
        if stats.seeds == 0:
            why = "no seed has two ok episodes; play several episodes per seed (e.g. sample at a temperature)"
        elif stats.compared == 0:
            why = f"on all {stats.seeds} seeds with several episodes the returns differ by no more than {margin}"
        else:
            why = (
                f"{stats.compared} episode pairs with different returns gave none: {stats.same_actions} took the "
                f"same actions, {stats.prompt_mismatch} parted at turns whose prompts differ"
            )
        raise NoTrainingDataError(f"no preference pairs: {why}")
    return pairs, stats
