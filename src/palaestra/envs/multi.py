"""The multi-agent environment contract: N players in parallel or turn-based mode, the converters between the
two modes, and ``Channel``, the communication that an environment enforces (public, private, neighbours).

One contract serves both modes (PettingZoo has two APIs; here the difference is one method):

- ``acting()`` names the players who must act now: every live player in ``"parallel"`` mode (simultaneous
  moves), exactly one in ``"turn"`` mode.
- ``step(actions)`` takes one action text per acting player and returns a ``Step`` for every player that was
  live before the step: its reward for this step, its new observation, and whether it is done. A player
  whose step is done leaves ``agents``; the episode is over when ``agents`` is empty.
- A player always acts on the latest observation it received, so an environment puts into that
  observation everything the player needs (what happened since its last action, its inbox, the state).

Per-player rewards, observations, instructions and invalid actions (``info["invalid_action"]`` on that
player's step, under the environment's declared ``spec.invalid_action`` rule) mirror the single-agent
contract; ``spec.max_turns`` counts environment steps (rounds). ``metrics()`` gives the environment's own
measures of a finished episode (survival time, equality, success...), stored with it.
"""

from __future__ import annotations

import abc
import dataclasses
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, Self

from palaestra.core.errors import EnvError
from palaestra.core.types import Step
from palaestra.envs.base import Env, EnvBase, Policy

Mode = Literal["parallel", "turn"]


class MultiPolicy(Protocol):
    """A scripted policy for one player: reads the live environment and returns that player's action."""

    def __call__(self, env: MultiAgentEnv, agent: str, rng: random.Random) -> str: ...


class MultiAgentEnv(EnvBase, abc.ABC):
    """An async, text-in text-out environment with several players.

    Subclasses set ``possible_agents`` in ``__init__`` (fixed for the instance) and ``agents`` in ``reset``
    (the live players, in a stable order), and implement ``instructions``, ``reset`` and ``step``. A
    turn-based environment sets ``mode = "turn"`` and overrides ``acting``.
    """

    mode: ClassVar[Mode] = "parallel"
    # The scripted policy whose play becomes a prompt agent's few-shot demonstrations.
    demo_policy: ClassVar[str] = "optimal"
    # The keys ``reset(options=...)`` understands (adapters drop others, as PettingZoo expects).
    reset_options: tuple[str, ...] = ()
    possible_agents: list[str]
    agents: list[str]

    @abc.abstractmethod
    def instructions(self, agent: str) -> str:
        """What player ``agent`` is told: its role, the rules and the exact action format."""

    @abc.abstractmethod
    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, Step]:
        """Start an episode; return a first ``Step`` (reward 0) for every player in ``possible_agents``."""

    @abc.abstractmethod
    async def step(self, actions: Mapping[str, str]) -> dict[str, Step]:
        """Apply one action per acting player (exactly the players of ``acting()``).

        Returns a ``Step`` for every player live before the call. Bad action text follows
        ``spec.invalid_action`` for that player and never raises; actions from players who are not acting
        raise ``EnvError`` (that is a bug in the caller, not a move).
        """

    def acting(self) -> list[str]:
        """The players who must act now: every live player (parallel mode); override for turn mode."""
        return list(self.agents)

    def metrics(self) -> dict[str, Any]:
        """The environment's own measures of the episode so far (JSON values); ``success`` when it has one."""
        return {}

    def scripted_policies(self) -> dict[str, MultiPolicy]:
        """Scripted policies by name; each plays one player."""
        return {}

    def _check_actions(self, actions: Mapping[str, str]) -> None:
        """Raise ``EnvError`` unless ``actions`` has exactly one action for each acting player."""
        if not getattr(self, "agents", None):
            raise EnvError(f"{type(self).__name__}: step() before reset() or after the episode ended")
        expected = set(self.acting())
        if set(actions) != expected:
            missing, extra = sorted(expected - set(actions)), sorted(set(actions) - expected)
            raise EnvError(
                f"{type(self).__name__}: step() needs one action for each acting player "
                f"({', '.join(sorted(expected))}); missing {missing or 'none'}, not acting now {extra or 'none'}"
            )


# --------------------------------------------------------------------------- converters between the modes


class _ModeConverter(MultiAgentEnv):
    """What both converters share: the wrapped environment's players, instructions, metrics and policies."""

    source_mode: ClassVar[Mode]

    def __init__(self, env: MultiAgentEnv) -> None:
        self.reset_options = env.reset_options
        if env.mode != self.source_mode:
            raise EnvError(f"{type(self).__name__} wraps a {self.source_mode} environment; {env.spec.id} is {env.mode}")
        self.env = env
        self.spec = env.spec
        self.action_tokens = env.action_tokens
        self.possible_agents = list(env.possible_agents)
        self.agents = []

    def instructions(self, agent: str) -> str:
        return self.env.instructions(agent)

    def metrics(self) -> dict[str, Any]:
        return self.env.metrics()

    def scripted_policies(self) -> dict[str, MultiPolicy]:
        def unwrapped(policy: MultiPolicy) -> MultiPolicy:
            return lambda env, agent, rng: policy(env.env if isinstance(env, _ModeConverter) else env, agent, rng)

        return {name: unwrapped(policy) for name, policy in self.env.scripted_policies().items()}

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, Step]:
        steps = await self.env.reset(seed=seed, options=options)
        self.agents = list(self.env.agents)
        return steps

    async def close(self) -> None:
        await self.env.close()
        await super().close()


class ParallelToTurn(_ModeConverter):
    """A parallel environment played one player at a time: actions are collected in ``possible_agents``
    order and applied together once every acting player has chosen. A player who has chosen sees nothing
    of the others' choices until the step is applied, so the game is the same."""

    mode: ClassVar[Mode] = "turn"
    source_mode: ClassVar[Mode] = "parallel"

    def __init__(self, env: MultiAgentEnv) -> None:
        super().__init__(env)
        # One inner step becomes up to one step per player.
        self.spec = dataclasses.replace(env.spec, max_turns=env.spec.max_turns * len(env.possible_agents))
        self._pending: dict[str, str] = {}
        self._last: dict[str, Step] = {}

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, Step]:
        steps = await super().reset(seed=seed, options=options)
        self._pending = {}
        self._last = dict(steps)
        return steps

    def acting(self) -> list[str]:
        waiting = [a for a in self.env.acting() if a not in self._pending]
        return waiting[:1]

    async def step(self, actions: Mapping[str, str]) -> dict[str, Step]:
        self._check_actions(actions)
        self._pending.update(actions)
        if any(a not in self._pending for a in self.env.acting()):
            # Not applied yet: nobody's state changed, so every player keeps its observation.
            return {
                a: Step(self._last[a].observation, 0.0, False, False, {"invalid_action": False}) for a in self.agents
            }
        steps = await self.env.step(self._pending)
        self._pending = {}
        self._last.update(steps)
        self.agents = list(self.env.agents)
        return steps


class TurnToParallel(_ModeConverter):
    """A turn-based environment played in parallel steps: each step takes an action from every live player
    and applies them in the inner environment's turn order, each player acting at most once per step.
    Rewards within a step are summed per player; each player's observation is its latest one."""

    mode: ClassVar[Mode] = "parallel"
    source_mode: ClassVar[Mode] = "turn"

    async def step(self, actions: Mapping[str, str]) -> dict[str, Step]:
        self._check_actions(actions)
        before = list(self.agents)
        rewards = dict.fromkeys(before, 0.0)
        latest: dict[str, Step] = {}
        invalid: dict[str, bool] = {}
        while self.env.agents:
            (player,) = self.env.acting()
            if player in invalid:  # it has acted in this step already
                break
            results = await self.env.step({player: actions[player]})
            invalid[player] = bool(results[player].info.get("invalid_action")) if player in results else False
            for agent, step in results.items():
                rewards[agent] = rewards.get(agent, 0.0) + step.reward
                latest[agent] = step
        self.agents = list(self.env.agents)
        out = {}
        for agent in before:
            last = latest.get(agent)
            if last is None:  # a player the inner steps did not report on keeps its state
                out[agent] = Step("", 0.0, False, False, {"invalid_action": False})
            else:
                info = {**last.info, "invalid_action": invalid.get(agent, False)}
                out[agent] = Step(last.observation, rewards[agent], last.terminated, last.truncated, info)
        return out


def parallel_to_turn(env: MultiAgentEnv) -> MultiAgentEnv:
    """Play a parallel environment one player at a time (actions applied once all have chosen)."""
    return ParallelToTurn(env)


def turn_to_parallel(env: MultiAgentEnv) -> MultiAgentEnv:
    """Play a turn-based environment in parallel steps (one action per live player per step)."""
    return TurnToParallel(env)


# --------------------------------------------------------------------------- communication


@dataclass(frozen=True)
class ChannelMessage:
    """One message: ``to`` is None for a broadcast (everyone, or every neighbour on a network)."""

    sender: str
    text: str
    round: int
    to: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.sender,
            "to": None if self.to is None else list(self.to),
            "round": self.round,
            "text": self.text,
        }


class Channel:
    """Who may say what to whom, enforced here rather than by the agents' good manners.

    Args:
        agents: every player.
        neighbours: on a network, each player's neighbours; a player may only message its neighbours and a
            broadcast reaches only them. None means everyone may talk to everyone.
        public: broadcasts allowed (a public channel, or "all my neighbours" on a network).
        private: messages to named recipients allowed.
        max_chars: longer messages are refused (models ramble; a refusal is the sender's invalid action).
    """

    def __init__(
        self,
        agents: Sequence[str],
        *,
        neighbours: Mapping[str, Collection[str]] | None = None,
        public: bool = True,
        private: bool = True,
        max_chars: int = 2000,
    ) -> None:
        self.agents = list(agents)
        self._members = frozenset(self.agents)  # membership checks per message stay O(1) on 10,000 players
        self.neighbours = None if neighbours is None else {a: frozenset(n) for a, n in neighbours.items()}
        self.public, self.private, self.max_chars = public, private, max_chars
        self.messages: list[ChannelMessage] = []

    def audience(self, sender: str) -> frozenset[str]:
        """The players ``sender`` may reach."""
        if self.neighbours is not None:
            return self.neighbours.get(sender, frozenset())
        return self._members - {sender}

    def send(self, sender: str, text: str, *, round: int, to: Sequence[str] | None = None) -> str | None:
        """Deliver a message, or return why it was refused (the caller turns that into an invalid action)."""
        if sender not in self._members:
            return f"{sender!r} is not a player"
        if len(text) > self.max_chars:
            return f"message of {len(text)} characters is over the limit of {self.max_chars}"
        if to is None:
            if not self.public:
                return "broadcasts are not allowed here; address the message to a player"
            self.messages.append(ChannelMessage(sender, text, round))
            return None
        if not self.private:
            return "private messages are not allowed here; send to everyone"
        allowed = self.audience(sender)
        bad = [r for r in to if r not in allowed]
        if bad:
            kind = "neighbours" if self.neighbours is not None else "other players"
            return f"cannot message {', '.join(bad)}: you may only message your {kind} ({', '.join(sorted(allowed))})"
        if not to:
            return "a private message needs at least one recipient"
        self.messages.append(ChannelMessage(sender, text, round, tuple(dict.fromkeys(to))))
        return None

    def visible_to(self, agent: str, message: ChannelMessage) -> bool:
        if message.sender == agent:
            return True
        if message.to is not None:
            return agent in message.to
        return agent in self.audience(message.sender)

    def inbox(self, agent: str, *, round: int | None = None) -> list[ChannelMessage]:
        """Messages ``agent`` may see (all rounds, or only ``round``), oldest first, its own included."""
        return [m for m in self.messages if (round is None or m.round == round) and self.visible_to(agent, m)]

    def transcript(self) -> list[dict[str, Any]]:
        """Every message as JSON (for metrics and the stored trajectory)."""
        return [m.to_dict() for m in self.messages]


# --------------------------------------------------------------------------- one player's view


class PlayerView(Env):
    """One player's side of a multi-agent environment, shaped like a single-agent ``Env`` so that every agent
    (prompted, scripted, a team) plays it unchanged: ``instructions`` are that player's, and its scripted
    policies are the environment's, bound to the player.

    The runner steps the multi-agent environment itself, so a view refuses ``reset`` and ``step``.
    """

    def __init__(self, env: MultiAgentEnv, agent: str) -> None:
        if agent not in env.possible_agents:
            raise EnvError(f"{agent!r} is not a player of {env.spec.id} (players: {', '.join(env.possible_agents)})")
        self.env = env
        self.agent = agent
        self.spec = env.spec
        self.instructions = env.instructions(agent)
        self.action_tokens = env.action_tokens
        self.models = env.models

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        raise EnvError("a PlayerView is not reset itself: reset the multi-agent environment (view.env)")

    async def step(self, action: str) -> Step:
        raise EnvError("a PlayerView is not stepped itself: the runner steps the multi-agent environment (view.env)")

    def copy(self) -> Self:
        return type(self)(self.env.copy(), self.agent)

    def scripted_policies(self) -> dict[str, Policy]:
        def bind(policy: MultiPolicy) -> Policy:
            return lambda view, rng: policy(view.env if isinstance(view, PlayerView) else view, self.agent, rng)  # type: ignore[arg-type]

        return {name: bind(policy) for name, policy in self.env.scripted_policies().items()}
