"""What a team costs and how its errors compare with a single agent's, from the episodes it played.

Definitions (all over the ``ok`` episodes; a team's decision data is each turn's ``Action.meta``):

- **tokens** per episode: every model call of every member (prompt + completion), ``Episode.usage``.
- **messages** and **rounds** per episode: the lengths of ``meta["messages"]`` and ``meta["rounds"]``,
  summed over the episode's turns.
- **team error rate**: the share of episodes that did not succeed.
- **member error rate**: the share of (episode, member) pairs whose *first* answer was wrong, read from the
  audit of the episode's last turn (``meta["audit"]``: each distinct first-round answer stepped on a copy
  of the environment). A member that gave no usable answer counts as wrong; pairs whose answer could not be
  scored (no audit, or a view that cannot be stepped) are left out.
- **error amplification**: the team error rate divided by the baseline error rate, which is the error rate
  of ``single`` episodes when given (a single agent on the same items), else the member error rate.
  "Towards a Science of Scaling Agent Systems" reports 17.2x for independent agents and 4.4x for
  centralized coordination. None when the baseline makes no errors.
- **coordination errors**: failed episodes where some member's first answer was right: the team had the
  answer and lost it. Their share of the team's failed episodes is the part of its errors introduced by
  coordination.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from palaestra.core.types import Episode


@dataclass(frozen=True)
class EpisodeAccount:
    """One episode's cost and outcome. ``first_right`` maps each member to whether its first answer was right
    (None: not scored)."""

    seed: int
    tokens: int
    messages: int
    rounds: int
    success: bool
    first_right: dict[str, bool | None] = field(default_factory=dict)

    @property
    def coordination_error(self) -> bool:
        return not self.success and any(self.first_right.values())


@dataclass(frozen=True)
class TeamAccount:
    """Means over a team's episodes and its error amplification (see the module docstring)."""

    episodes: int
    tokens_per_episode: float
    messages_per_episode: float
    rounds_per_episode: float
    error_rate: float
    member_error_rate: float | None
    baseline_error_rate: float | None
    error_amplification: float | None
    coordination_errors: int
    coordination_error_share: float | None
    per_episode: tuple[EpisodeAccount, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The summary numbers (without ``per_episode``), as JSON values."""
        return {k: v for k, v in asdict(self).items() if k != "per_episode"}


def first_answers_right(meta: dict[str, Any]) -> dict[str, bool | None]:
    """Whether each member's first answer was right, from a team action's ``meta`` (its audit)."""
    first = meta.get("first_answers") or {}
    audit = meta.get("audit")
    if audit is None:
        return dict.fromkeys(first)
    verdict: dict[str, bool | None] = {}
    for entry in audit:
        for member in entry.get("members", []):
            verdict[member] = entry.get("success")
    return {m: (verdict.get(m) if answer is not None else False) for m, answer in first.items()}


def account_episode(episode: Episode) -> EpisodeAccount:
    metas = [turn.action.meta for turn in episode.turns]
    return EpisodeAccount(
        seed=episode.seed,
        tokens=episode.usage.total_tokens,
        messages=sum(len(m.get("messages", [])) for m in metas),
        rounds=sum(int(m.get("rounds", 0)) for m in metas),
        success=episode.success,
        first_right=first_answers_right(metas[-1]) if metas else {},
    )


def _error_rate(episodes: Sequence[Episode]) -> float | None:
    ok = [e for e in episodes if e.status == "ok"]
    return sum(not e.success for e in ok) / len(ok) if ok else None


def account(episodes: Sequence[Episode], single: Sequence[Episode] | None = None) -> TeamAccount:
    """Cost and error accounting of a team's episodes; ``single``: a single agent's episodes on the same
    items, the baseline of the error amplification (else the members' first answers are)."""
    rows = tuple(account_episode(e) for e in episodes if e.status == "ok")
    n = len(rows)
    scored = [right for row in rows for right in row.first_right.values() if right is not None]
    member_error = sum(not r for r in scored) / len(scored) if scored else None
    team_error = sum(not r.success for r in rows) / n if n else 0.0
    baseline = _error_rate(single) if single is not None else member_error
    failures = sum(not r.success for r in rows)
    coordination = sum(r.coordination_error for r in rows)
    return TeamAccount(
        episodes=n,
        tokens_per_episode=sum(r.tokens for r in rows) / n if n else 0.0,
        messages_per_episode=sum(r.messages for r in rows) / n if n else 0.0,
        rounds_per_episode=sum(r.rounds for r in rows) / n if n else 0.0,
        error_rate=team_error,
        member_error_rate=member_error,
        baseline_error_rate=baseline,
        error_amplification=team_error / baseline if baseline else None,
        coordination_errors=coordination,
        coordination_error_share=coordination / failures if failures else None,
        per_episode=rows,
    )
