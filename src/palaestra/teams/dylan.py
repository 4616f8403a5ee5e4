"""``dylan``: DyLAN, the Dynamic LLM-Agent Network (Liu et al., 2023, "A Dynamic LLM-Powered Agent Network
for Task-Oriented Agent Collaboration").

What is implemented, as the paper describes it:

- Members answer over several rounds (the paper's layers); from round 2 each sees the previous round's
  answers and answers again.
- Early stop: the rounds end as soon as more than 2/3 of a round's members give the same answer.
- From round ``rank_round`` (3) a ranker (one model call) reads the previous round's answers and keeps the
  best ``keep`` members (default half, at least 2); the others stop taking part.
- From round 2 every member also rates each answer it received from 1 to 5 (a ``Ratings:`` line).
- Agent Importance Scores: the final answer's importance (1) is split equally among the last round's
  members that gave it, then propagated backwards: a node passes its importance to the previous-round
  answers it rated, in proportion to its ratings. A member's score is the sum over its rounds, normalised so
  a team's scores sum to 1 (so episodes that stop early weigh the same as long ones).
- Team optimisation (``optimize_team``): run the team on train items and keep the top-k members by mean
  importance.

Choices the paper leaves open, made here: the ranker acts once, at round ``rank_round``; a ranker reply that
names too few members is completed by the ratings the members received (an unreadable one is replaced by
them); a member whose ratings line is missing or malformed rates everything it saw equally (its ``ratings``
entry is None in ``meta``); members rate the answers they received, not their own; importance is
normalised per episode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from palaestra.core.types import ChatRequest
from palaestra.teams.base import Reply, Team, Transcript, agreement, render, vote, vote_key

_RATINGS = re.compile(r"ratings?\s*[:=]\s*(.*)", re.IGNORECASE)
_BEST = re.compile(r"best\s*[:=]\s*(.*)", re.IGNORECASE)
EARLY_STOP = 2 / 3  # the paper's consensus threshold: stop when MORE than this share agrees


def split_ratings(text: str, count: int) -> tuple[list[int] | None, str]:
    """The 1-5 ratings on the last ``Ratings:`` line (None unless exactly ``count`` of them), and the reply
    without that line (where the action is)."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = _RATINGS.search(lines[i])
        if match:
            scores = [int(x) for x in re.findall(r"\d+", match.group(1))]
            rest = "\n".join([*lines[:i], lines[i][: match.start()], *lines[i + 1 :]])
            valid = len(scores) == count and all(1 <= s <= 5 for s in scores)
            return (scores if valid else None), rest
    return None, text


def importance_scores(
    rounds: Sequence[Mapping[str, str | None]],
    ratings: Mapping[tuple[int, str], Mapping[str, float]],
    final: str | None,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Agent Importance Scores, by backward propagation through the ratings.

    Args:
        rounds: per round (round 1 first), each member's answer.
        ratings: ``(round, rater) -> {ratee: weight}``: what a member of round ``r`` gave the round ``r - 1``
            answers it saw (already uniform for a malformed ratings line).
        final: the team's final answer.

    Returns:
        The members' scores (summing to 1) and each round's node importances.
    """
    if not rounds:
        return {}, []
    nodes = [dict.fromkeys(r, 0.0) for r in rounds]
    last = rounds[-1]
    givers = [m for m, a in last.items() if a is not None and final is not None and vote_key(a) == vote_key(final)]
    givers = givers or list(last)
    for member in givers:
        nodes[-1][member] = 1.0 / len(givers)
    for r in range(len(rounds), 1, -1):  # r is the 1-based round of the raters
        for rater, weight in nodes[r - 1].items():
            given = ratings.get((r, rater))
            total = sum(given.values()) if given else 0.0
            if not given or weight == 0.0 or total <= 0:
                continue
            for ratee, score in given.items():
                nodes[r - 2][ratee] += weight * score / total
    members = list(dict.fromkeys(m for r in rounds for m in r))
    sums = {m: sum(n.get(m, 0.0) for n in nodes) for m in members}
    grand = sum(sums.values())
    return {m: (s / grand if grand else 0.0) for m, s in sums.items()}, nodes


class DylanTeam(Team):
    """DyLAN: rounds of answers and ratings, early stop on a 2/3 consensus, a ranker at round 3."""

    topology = "dylan"
    default_members = 4  # the paper's teams for reasoning tasks have 4 agents
    default_rounds = 4
    options = ("keep", "rank_round")

    @property
    def keep(self) -> int:
        return self.config.keep or max(2, (len(self.members) + 1) // 2)

    async def decide(self, transcript: Transcript) -> str | None:
        active = list(self.members)
        replies = await transcript.ask(1, self.first_prompts(transcript, active))
        rounds: list[dict[str, Reply]] = [{r.member: r for r in replies}]
        ratings: dict[tuple[int, str], dict[str, float]] = {}
        log: list[dict[str, Any]] = []
        for number in range(2, self.config.rounds + 1):
            previous = rounds[-1]
            if agreement([r.answer for r in previous.values()]) > EARLY_STOP:
                break
            if number == self.config.rank_round and len(active) > self.keep:
                active = await self.rank(transcript, number, previous, ratings)
            seen = {m: [previous[o] for o in active if o != m and o in previous] for m in active}
            prompts = [
                (
                    m,
                    render(
                        "dylan",
                        observation=transcript.observation,
                        round=number,
                        others=seen[m],
                        own=previous[m].answer if m in previous else None,
                        example=" ".join(str(5 - i % 5) for i in range(len(seen[m]))),
                    ),
                )
                for m in active
            ]
            replies = await transcript.ask(
                number, prompts, extra_tokens=12, clean=lambda text: split_ratings(text, 0)[1]
            )
            for reply in replies:
                scores, _ = split_ratings(reply.raw, len(seen[reply.member]))
                ratees = [r.member for r in seen[reply.member]]
                if ratees:
                    weights = scores or [1] * len(ratees)  # malformed: rate everything seen equally
                    ratings[(number, reply.member)] = dict(zip(ratees, map(float, weights), strict=True))
                log.append(
                    {
                        "round": number,
                        "from": reply.member,
                        "to": dict(zip(ratees, scores, strict=True)) if scores else None,
                    }
                )
            rounds.append({r.member: r for r in replies})
        final = vote([r.answer for r in rounds[-1].values()])
        importance, nodes = importance_scores([{m: r.answer for m, r in rd.items()} for rd in rounds], ratings, final)
        transcript.extra.update(
            ratings=log,
            importance={m: round(s, 6) for m, s in importance.items()},
            node_importance=[{m: round(v, 6) for m, v in n.items()} for n in nodes],
        )
        return final

    async def rank(
        self,
        transcript: Transcript,
        round: int,
        previous: Mapping[str, Reply],
        ratings: Mapping[tuple[int, str], Mapping[str, float]],
    ) -> list[str]:
        """The members the ranker keeps (in team order): its picks, completed by the ratings received."""
        candidates = [previous[m] for m in self.members if m in previous]
        user = render(
            "ranker",
            observation=transcript.observation,
            replies=candidates,
            keep=self.keep,
            example=", ".join(str(i) for i in range(min(self.keep, len(candidates)), 0, -1)),
        )
        system = transcript.system("ranker", role="ranker")
        request = ChatRequest(transcript.plain(system, user), transcript.sampling(0, round, tokens=16))
        (completion,) = await transcript.generate([request])
        transcript.say(round, "ranker", "team", completion.text)
        match = _BEST.search(completion.text)
        picks: list[str] = []
        for number in re.findall(r"\d+", match.group(1) if match else completion.text):
            index = int(number) - 1
            if 0 <= index < len(candidates) and candidates[index].member not in picks:
                picks.append(candidates[index].member)
        received = {m.member: 0.0 for m in candidates}
        for (r, _), given in ratings.items():
            if r == round - 1:
                for ratee, score in given.items():
                    received[ratee] = received.get(ratee, 0.0) + score / len(given)
        by_ratings = sorted(received, key=lambda m: -received[m])  # stable: team order among ties
        kept = (picks + [m for m in by_ratings if m not in picks])[: self.keep]
        source = "ranker" if len(picks) >= self.keep else ("ranker+ratings" if picks else "ratings")
        transcript.extra["ranking"] = {"round": round, "kept": [m for m in self.members if m in kept], "by": source}
        return [m for m in self.members if m in kept]


# --------------------------------------------------------------------------- team optimisation


@dataclass(frozen=True)
class TeamSelection:
    """What team optimisation found: each member's mean importance, the members kept and the new team's spec."""

    scores: dict[str, float]
    kept: tuple[str, ...]
    spec: str
    episodes: int


async def optimize_team(
    spec: str, env_id: str, model: Any, *, episodes: int = 20, top_k: int = 2, split: str = "train"
) -> TeamSelection:
    """DyLAN's team optimisation: play ``spec`` (a ``dylan`` team) on the first ``episodes`` seeds of
    ``split`` and keep the ``top_k`` members with the highest mean Agent Importance Score.

    Returns a ``TeamSelection`` whose ``spec`` rebuilds the team with only those members (``roster=``).
    Episodes that fail (model errors) are left out; a member that did not take part in an episode scores 0
    in it.
    """
    from palaestra.core.errors import SpecError
    from palaestra.envs.registry import make
    from palaestra.runner.episode import run_episode
    from palaestra.teams import make_team, parse_team_spec

    parsed = parse_team_spec(spec)
    if parsed.topology != "dylan":
        raise SpecError(
            f"team optimisation ranks members by DyLAN's importance scores: give a dylan spec, not {spec!r}"
        )
    env = make(env_id)
    totals: dict[str, float] = {}
    played = 0
    members: tuple[str, ...] = ()
    try:
        for seed in env.spec.seeds(split, episodes):
            team = make_team(spec, env, model, seed=seed)
            members = team.members
            episode = await run_episode(env, team, seed)
            if episode.status != "ok" or not episode.turns:
                continue
            played += 1
            for turn in episode.turns:
                for member, score in turn.action.meta.get("importance", {}).items():
                    totals[member] = totals.get(member, 0.0) + score / len(episode.turns)
    finally:
        await env.close()
    if top_k < 1 or top_k > len(members):
        raise SpecError(f"top_k must be between 1 and the team's {len(members)} members, got {top_k}")
    scores = {m: totals.get(m, 0.0) / played if played else 0.0 for m in members}
    kept = tuple(sorted(members, key=lambda m: -scores[m])[:top_k])  # stable: team order among ties
    kept = tuple(m for m in members if m in kept)
    options = [f"{k}={v}" for k, v in parsed.options.items() if k not in ("members", "roster", "keep")]
    roster = ".".join(kept)
    new_spec = ",".join([f"dylan:{len(kept)}", *options, f"roster={roster}"]) + f"/{parsed.member_spec}"
    return TeamSelection(scores, kept, new_spec, played)
