"""What every team topology shares: the ``Team`` agent, its options, one decision's transcript, voting, audit.

A team is an ``Agent``: ``act(env, history, observation)`` returns one ``Action`` whose ``text`` is the
team's final answer, whose ``calls`` are every model call its members made (in order) and whose ``meta``
records how the team decided (see ``Transcript.meta``). A topology subclasses ``Team`` and writes
``decide``: who is asked what, in which round, and how the answers become one.
"""

from __future__ import annotations

import abc
import asyncio
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

import jinja2

from palaestra.agents.prompt import PromptConfig, demonstrations, extract_action
from palaestra.core.errors import PalaestraError
from palaestra.core.types import Action, ChatRequest, Completion, Message, SamplingParams, Turn
from palaestra.envs.base import Env
from palaestra.models.base import Model

# A message longer than this is cut in the transcript kept in ``meta`` (the calls keep the full text).
MAX_MESSAGE_CHARS = 2000
_LABEL = re.compile(r"^(?:final\s+)?(?:answer|action)\s*(?:is)?\s*[:=]\s*", re.IGNORECASE)
_STRIP = " \t\"'`*_.!,;"


@dataclass(frozen=True)
class TeamConfig:
    """A team's options, set in its spec (``dylan:4,rounds=3,keep=2``); see ``palaestra.teams.spec``.

    ``roster`` gives each member's persona number (1-based, ``prompts/personas.txt``); members are named
    ``m<persona>`` (``roster=m1.m3`` in a spec), so a member keeps its name when team optimisation drops
    the others.
    """

    members: int
    rounds: int
    audit: bool = True
    roster: tuple[int, ...] = ()
    stalls: int = 3  # centralized: re-plan after this many rounds without progress
    keep: int = 0  # dylan: members the ranker keeps at round 3 (0: half, at least 2)
    rank_round: int = 3  # dylan: the round at which the ranker acts
    planner_tokens: int = 96  # centralized: reply budget of the orchestrator's ledgers

    @property
    def personas(self) -> tuple[int, ...]:
        return self.roster or tuple(range(1, self.members + 1))


@dataclass(frozen=True)
class Reply:
    """One member's reply in one round: the raw text and the action extracted from it (None if none)."""

    member: str
    round: int
    raw: str
    answer: str | None


def vote_key(answer: str) -> str:
    """What makes two answers the same vote: case, spacing, quotes and an ``Answer:`` label do not count."""
    text = " ".join(answer.split()).strip(_STRIP)
    return _LABEL.sub("", text).strip(_STRIP).casefold()


def vote(answers: Sequence[str | None]) -> str | None:
    """The majority answer (by ``vote_key``); a tie goes to the answer given first (lowest member, earliest
    round, in the order given). None when nobody gave an answer."""
    given = [a for a in answers if a is not None]
    if not given:
        return None
    counts = Counter(vote_key(a) for a in given)
    best = max(counts.values())
    return next(a for a in given if counts[vote_key(a)] == best)


def agreement(answers: Sequence[str | None]) -> float:
    """The share of ``answers`` (None counted as disagreeing) that give the most common answer."""
    given = [vote_key(a) for a in answers if a is not None]
    if not answers or not given:
        return 0.0
    return Counter(given).most_common(1)[0][1] / len(answers)


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("palaestra.teams", "prompts"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    autoescape=False,
)


def render(template: str, **values: Any) -> str:
    """Render ``prompts/<template>.jinja``."""
    return _TEMPLATES.get_template(f"{template}.jinja").render(**values).strip()


def _personas() -> tuple[str, ...]:
    text = (resources.files("palaestra.teams") / "prompts" / "personas.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


PERSONAS = _personas()


def persona(number: int) -> str:
    """The persona line of member ``m<number>`` (the list repeats past its end)."""
    return PERSONAS[(number - 1) % len(PERSONAS)]


class Transcript:
    """One decision of a team: the calls made, the messages exchanged and what each member answered first."""

    def __init__(self, team: Team, env: Env, history: Sequence[Turn], observation: str, shots: Sequence[Message]):
        self.team = team
        self.env = env
        self.history = history
        self.observation = observation
        self.shots = tuple(shots)
        self.calls: list[Completion] = []
        self.messages: list[dict[str, Any]] = []
        self.first_answers: dict[str, str | None] = {}
        self.rounds = 0
        self.extra: dict[str, Any] = {}

    def say(self, round: int, sender: str, to: str, text: str) -> None:
        self.messages.append({"round": round, "from": sender, "to": to, "text": text[:MAX_MESSAGE_CHARS]})

    def system(self, member: str, role: str = "member") -> str:
        number = int(member[1:]) if member[1:].isdigit() else 0
        return render(
            "system",
            instructions=self.env.instructions,
            name=member,
            role=role,
            size=len(self.team.members),
            persona=persona(number) if number else "",
        )

    def conversation(self, system: str, user: str) -> tuple[Message, ...]:
        """System message, demonstrations, the episode's recent turns, then this round's user message."""
        out = [Message("system", system), *self.shots]
        keep = self.team.member_config.history
        for turn in self.history[-keep:] if keep > 0 else []:
            out += [Message("user", turn.observation), Message("assistant", turn.action.text)]
        out.append(Message("user", user))
        return tuple(out)

    def sampling(self, index: int, round: int, extra_tokens: int = 0, tokens: int | None = None) -> SamplingParams:
        config = self.team.member_config
        budget = tokens or (config.max_tokens or self.env.action_tokens) + extra_tokens
        seed = None
        if config.temperature > 0:  # distinct, reproducible samples per member, round and turn
            seed = ((self.team.seed * 1_000 + len(self.history)) * 100 + round) * 100 + index
        return SamplingParams(temperature=config.temperature, top_p=config.top_p, max_tokens=budget, seed=seed)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Run requests concurrently (a local model batches them); record the calls in request order."""
        completions = await asyncio.gather(*(self.team.model.generate(r) for r in requests))
        self.calls.extend(completions)
        return list(completions)

    def plain(self, system: str, user: str) -> tuple[Message, ...]:
        """A system and a user message only: what an orchestrator or a ranker is shown."""
        return (Message("system", system), Message("user", user))

    def mark(self, round: int) -> None:
        self.rounds = max(self.rounds, round)

    async def ask(
        self,
        round: int,
        prompts: Sequence[tuple[str, str]],
        *,
        to: str = "all",
        extra_tokens: int = 0,
        clean: Callable[[str], str] | None = None,
    ) -> list[Reply]:
        """Ask members (``(member, user message)`` pairs) in parallel; record their replies as messages.

        ``clean`` removes what is not the action (DyLAN's ratings line) before ``extract_action`` reads it.
        """
        requests = [
            ChatRequest(
                self.conversation(self.system(member), user),
                self.sampling(self.team.members.index(member), round, extra_tokens),
                sample_index=self.team.members.index(member),
            )
            for member, user in prompts
        ]
        replies = []
        for (member, _), completion in zip(prompts, await self.generate(requests), strict=True):
            reply = Reply(
                member, round, completion.text, extract_action(clean(completion.text) if clean else completion.text)
            )
            self.say(round, member, to, completion.text)
            self.first_answers.setdefault(member, reply.answer)
            replies.append(reply)
        self.mark(round)
        return replies

    async def audit(self) -> list[dict[str, Any]]:
        """Score each distinct first-round answer on a copy of the environment (one ``step`` per answer)."""
        groups: dict[str, list[str]] = {}
        answers: dict[str, str] = {}
        for member, answer in self.first_answers.items():
            if answer is not None:
                answers.setdefault(vote_key(answer), answer)
                groups.setdefault(vote_key(answer), []).append(member)
        results = []
        for key, members in groups.items():
            entry: dict[str, Any] = {"answer": answers[key], "members": members}
            try:
                clone = self.env.copy()
                step = await clone.step(answers[key])
                await clone.close()
            except PalaestraError as exc:
                # A player's view of a multi-agent game, or a finished episode, cannot be stepped (EnvError):
                # the answer stays unscored. Anything else is a bug and is not hidden here.
                entry.update(reward=None, success=None, error=f"{type(exc).__name__}: {exc}"[:300])
            else:
                success = step.info.get("success") if step.done else None
                entry.update(
                    reward=step.reward,
                    success=bool(success) if success is not None else None,
                    invalid_action=bool(step.info.get("invalid_action", False)),
                )
            results.append(entry)
        return results

    def meta(self, final: str | None) -> dict[str, Any]:
        return {
            "topology": self.team.topology,
            "spec": self.team.spec,
            "members": list(self.team.members),
            "rounds": self.rounds,
            "messages": self.messages,
            "first_answers": dict(self.first_answers),
            "final": final,
            **self.extra,
        }


class Team(abc.ABC):
    """An agent made of model-called members; a topology says how they talk and how their answers combine.

    Args:
        model: the model every member (and orchestrator or ranker) calls.
        config: the team's options (members, rounds, audit...).
        member_config: the members' prompt settings (temperature, max_tokens, history, shots, ...).
        seed: the episode seed (reproducible sampling at temperature > 0).
        spec: the spec string that rebuilds this team.
    """

    topology: ClassVar[str]
    default_members: ClassVar[int] = 3
    default_rounds: ClassVar[int] = 1
    min_members: ClassVar[int] = 2
    max_members: ClassVar[int] = 16
    max_rounds: ClassVar[int] = 20
    # Options this topology accepts in its spec besides members, rounds, audit and roster.
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, model: Model, config: TeamConfig, member_config: PromptConfig | None = None, *, seed: int = 0, spec: str
    ) -> None:
        self.model = model
        self.config = config
        self.member_config = member_config or PromptConfig()
        self.seed = seed
        self.spec = spec
        self.members: tuple[str, ...] = tuple(f"m{p}" for p in config.personas)
        self.rng = random.Random(seed)

    async def act(self, env: Env, history: Sequence[Turn], observation: str) -> Action:
        shots = await demonstrations(env, self.member_config.shots)
        transcript = Transcript(self, env, history, observation, shots)
        final = await self.decide(transcript)
        meta = transcript.meta(final)
        if self.config.audit:
            meta["audit"] = await transcript.audit()
        if final is None:  # nobody gave a usable answer: the environment judges the first raw reply
            raw = next((m["text"] for m in transcript.messages if m["from"] in self.members), "")
            return Action(text=raw, raw=raw, parsed=False, calls=tuple(transcript.calls), meta=meta)
        return Action(text=final, parsed=True, calls=tuple(transcript.calls), meta=meta)

    @abc.abstractmethod
    async def decide(self, transcript: Transcript) -> str | None:
        """Run the rounds; return the final answer (None when no member gave one)."""

    @staticmethod
    def first_prompts(transcript: Transcript, members: Sequence[str]) -> list[tuple[str, str]]:
        return [(m, render("first", observation=transcript.observation)) for m in members]


@dataclass
class RoundAnswers:
    """The answers of one round, by member (kept in member order)."""

    round: int
    replies: dict[str, Reply] = field(default_factory=dict)

    def answers(self) -> list[str | None]:
        return [r.answer for r in self.replies.values()]
