"""Two tiny multi-agent environments for tests and as worked examples of the contract (not registered by
default: call ``register_toys()``).

- ``toy-sum-v0`` (parallel): each round every player says a number 0..9 and may message others; a player
  scores its number when the round's total stays within a budget, else 0. Messages go through a
  ``Channel`` (public or private, or neighbours on a ring with ``ring=True``).
- ``toy-countdown-v0`` (turn): players take turns removing 1 or 2 from a counter; whoever takes the last
  one scores 1, everyone else -1 (on a step where they did not act).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from palaestra.core.types import InvalidActionRule, Step
from palaestra.envs.multi import Channel, Mode, MultiAgentEnv, MultiPolicy
from palaestra.envs.registry import register, registered

_SAY = re.compile(r"^\s*(?:say\s+)?(\d)\s*$", re.IGNORECASE)
_TELL = re.compile(r"^\s*tell\s+(\w+)\s*:\s*(.+)$", re.IGNORECASE | re.DOTALL)


class ToySumEnv(MultiAgentEnv):
    """Players ``p0..p{n-1}``; action ``<digit>`` or ``tell <player>: <text>`` then a new line and the digit."""

    def __init__(self, n_players: int = 3, rounds: int = 3, budget: int = 12, ring: bool = False) -> None:
        self.possible_agents = [f"p{i}" for i in range(n_players)]
        self.agents = []
        self.rounds, self.budget, self.ring = rounds, budget, ring
        self._round = 0
        self._channel = self._new_channel()
        self.scores: dict[str, float] = {}

    def _new_channel(self) -> Channel:
        n = len(self.possible_agents)
        ring = {
            a: {self.possible_agents[(i - 1) % n], self.possible_agents[(i + 1) % n]} - {a}
            for i, a in enumerate(self.possible_agents)
        }
        return Channel(self.possible_agents, neighbours=ring if self.ring else None, max_chars=200)

    def instructions(self, agent: str) -> str:
        return (
            f"You are {agent}. Each round say a number from 0 to 9 (reply with just the digit). You score it if "
            f"the total of everyone's numbers is at most {self.budget}. You may first send one message: "
            "'tell <player>: <text>' on its own line, then the digit on the next line."
        )

    def _observation(self, agent: str, note: str = "") -> str:
        inbox = [
            f"{m.sender}: {m.text}" for m in self._channel.inbox(agent, round=self._round - 1) if m.sender != agent
        ]
        lines = [f"Round {self._round + 1} of {self.rounds}. Your score: {self.scores.get(agent, 0.0):g}."]
        lines += [f"Message from {m}" for m in inbox]
        return "\n".join([*lines, note] if note else lines)

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, Step]:
        self._rng = random.Random(seed)
        self.budget_now = self.budget + self._rng.randint(0, 3)
        self.agents = list(self.possible_agents)
        self._round = 0
        self._channel = self._new_channel()
        self.scores = dict.fromkeys(self.possible_agents, 0.0)
        return {a: Step(self._observation(a)) for a in self.possible_agents}

    async def step(self, actions: Mapping[str, str]) -> dict[str, Step]:
        self._check_actions(actions)
        numbers: dict[str, int] = {}
        notes: dict[str, str] = {}
        for agent, text in actions.items():
            lines = text.strip().splitlines()
            tell = _TELL.match(lines[0]) if lines else None
            if tell and len(lines) == 2:
                refused = self._channel.send(agent, tell[2].strip(), round=self._round, to=[tell[1]])
                if refused:
                    notes[agent] = f"Your message was refused: {refused}."
                lines = lines[1:]
            match = _SAY.match(lines[0]) if len(lines) == 1 else None
            if match is None:
                notes[agent] = "Invalid: reply with one digit 0-9 (optionally after a 'tell' line); you said nothing."
            else:
                numbers[agent] = int(match[1])
        total = sum(numbers.values())
        self._round += 1
        done = self._round >= min(self.rounds, self.spec.max_turns)
        out = {}
        for agent in self.agents:
            invalid = agent in notes
            reward = float(numbers.get(agent, 0)) if total <= self.budget_now and not invalid else 0.0
            self.scores[agent] += reward
            info: dict[str, Any] = {"invalid_action": invalid, "total": total}
            if done:
                info["success"] = total <= self.budget_now
            out[agent] = Step(self._observation(agent, notes.get(agent, "")), reward, done, False, info)
        if done:
            self.agents = []
        return out

    def metrics(self) -> dict[str, Any]:
        return {
            "scores": dict(self.scores),
            "messages": len(self._channel.messages),
            "success": all(v > 0 for v in self.scores.values()),
        }

    def scripted_policies(self) -> dict[str, MultiPolicy]:
        def fair(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
            assert isinstance(env, ToySumEnv)
            return str(min(9, env.budget // len(env.possible_agents)))

        def random_(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
            return str(rng.randint(0, 9))

        def chatty(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
            assert isinstance(env, ToySumEnv)
            other = rng.choice([a for a in env.possible_agents if a != agent])
            return f"tell {other}: I will say 3\n3"

        return {"optimal": fair, "random": random_, "chatty": chatty}


class ToyCountdownEnv(MultiAgentEnv):
    """Players take turns removing 1 or 2 from a counter that starts at 5..9 (by seed)."""

    mode: ClassVar[Mode] = "turn"

    def __init__(self, n_players: int = 2) -> None:
        self.possible_agents = [f"p{i}" for i in range(n_players)]
        self.agents = []
        self.counter = 0
        self._turn = 0

    def instructions(self, agent: str) -> str:
        return f"You are {agent}. On your turn remove 1 or 2 from the counter (reply '1' or '2'). Take the last to win."

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, Step]:
        self.counter = random.Random(seed).randint(5, 9)
        self.agents = list(self.possible_agents)
        self._turn = 0
        self._steps = 0
        self.winner: str | None = None
        return {a: Step(f"The counter is {self.counter}.") for a in self.possible_agents}

    def acting(self) -> list[str]:
        return [self.possible_agents[self._turn % len(self.possible_agents)]] if self.agents else []

    async def step(self, actions: Mapping[str, str]) -> dict[str, Step]:
        self._check_actions(actions)
        ((player, text),) = actions.items()
        take = text.strip()
        invalid = take not in ("1", "2") or int(take) > self.counter
        penalty = self.spec.invalid_action.penalty
        if not invalid:
            self.counter -= int(take)
            self._turn += 1
        self._steps += 1
        done = self.counter == 0
        if done:
            self.winner = player
        cut = not done and self._steps >= self.spec.max_turns
        out = {}
        for agent in self.agents:
            reward = (1.0 if agent == player else -1.0) if done else 0.0
            if invalid and agent == player:
                reward = penalty
            note = (
                f"Invalid move {take[:20]!r}: remove 1 or 2, at most the counter. "
                if invalid and agent == player
                else ""
            )
            info: dict[str, Any] = {"invalid_action": invalid and agent == player}
            if done or cut:
                info["success"] = done and agent == player
            out[agent] = Step(f"{note}The counter is {self.counter}.", reward, done, cut, info)
        if done or cut:
            self.agents = []
        return out

    def metrics(self) -> dict[str, Any]:
        return {"winner": self.winner, "success": self.winner is not None}

    def scripted_policies(self) -> dict[str, MultiPolicy]:
        def optimal(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
            assert isinstance(env, ToyCountdownEnv)
            return "2" if env.counter % 3 == 2 else "1"

        def random_(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
            assert isinstance(env, ToyCountdownEnv)
            return "1" if env.counter == 1 else rng.choice(["1", "2"])

        return {"optimal": optimal, "random": random_}


def register_toys() -> None:
    """Register ``toy-sum-v0`` and ``toy-countdown-v0`` (idempotent)."""
    if "toy-sum-v0" in registered():
        return
    register(
        "toy-sum-v0",
        "palaestra.testing.toys:ToySumEnv",
        description="Toy: say a number, score it if the total stays within budget (parallel).",
        max_turns=3,
        reward_range=(0.0, 9.0),
        invalid_action=InvalidActionRule("penalty", 0.0, "no digit: scores 0 this round"),
        multi_agent=True,
    )
    register(
        "toy-countdown-v0",
        "palaestra.testing.toys:ToyCountdownEnv",
        description="Toy: take 1 or 2 from a counter; taking the last wins 1, the others lose 1 (turn-based).",
        max_turns=40,
        reward_range=(-1.0, 1.0),
        invalid_action=InvalidActionRule("penalty", -0.5, "not 1 or 2: -0.5, the same player moves again"),
        multi_agent=True,
    )
