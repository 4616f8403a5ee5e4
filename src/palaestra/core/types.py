"""Plain data types shared by every layer: steps, specs, chat requests, completions, actions."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from palaestra.core.errors import SpecError

# --------------------------------------------------------------------------- environments


@dataclass(frozen=True)
class Step:
    """What an environment returns from ``reset`` and ``step``; never a bare tuple."""

    observation: str
    reward: float = 0.0
    terminated: bool = False  # the task ended (success or failure)
    truncated: bool = False  # cut off by a limit (max turns)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass(frozen=True)
class InvalidActionRule:
    """What an environment does with an action it cannot parse or that breaks its rules.

    ``mode="penalty"``: the agent gets ``penalty`` as reward, the state is unchanged and the observation
    says what was wrong; the episode goes on (until ``max_turns``).
    ``mode="terminate"``: the agent gets ``penalty`` and the episode ends (``terminated=True``).
    Either way the step's ``info["invalid_action"]`` is ``True``.
    """

    mode: Literal["penalty", "terminate"]
    penalty: float
    description: str = ""

    def __post_init__(self) -> None:
        if self.mode not in ("penalty", "terminate"):
            raise SpecError(f"invalid-action mode must be 'penalty' or 'terminate', not {self.mode!r}")


@dataclass(frozen=True)
class Normalization:
    """Constants of the 0 / 50 / 100 normalised score (LMRL-Gym): worst, scripted-dataset average, best.

    ``source`` says how they were computed (which policies, how many episodes, which script).
    """

    min: float
    avg: float
    max: float
    source: str = ""

    def score(self, mean_return: float) -> float:
        """Map a mean return to the normalised scale: min -> 0, avg -> 50, max -> 100."""
        if mean_return < self.avg:
            span = self.avg - self.min
            return 50.0 * (mean_return - self.min) / span if span else 0.0
        span = self.max - self.avg
        return 50.0 + 50.0 * (mean_return - self.avg) / span if span else 100.0


SPLITS = ("train", "validation", "test")
_ID_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_\-]*?)-v(?P<version>\d+)$")


def parse_env_id(env_id: str) -> tuple[str, int]:
    """Split ``"maze-fo-v0"`` into ``("maze-fo", 0)``; raise ``SpecError`` if it is not versioned."""
    match = _ID_RE.match(env_id)
    if not match:
        raise SpecError(f"environment id {env_id!r} is not of the form '<name>-v<version>', e.g. 'maze-fo-v0'")
    return match["name"], int(match["version"])


@dataclass(frozen=True)
class EnvSpec:
    """Everything that identifies an environment; serialises to JSON and is stored with every run.

    ``splits`` maps ``train`` / ``validation`` / ``test`` to half-open seed ranges ``[start, stop)``.
    ``kwargs`` are the constructor arguments (registered defaults plus overrides given to ``make``).
    """

    id: str
    entry_point: str
    description: str = ""
    max_turns: int = 50
    reward_range: tuple[float, float] = (float("-inf"), float("inf"))
    invalid_action: InvalidActionRule = InvalidActionRule("penalty", 0.0)
    normalization: Normalization | None = None
    splits: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {
            "train": (0, 10_000),
            "validation": (10_000, 11_000),
            "test": (11_000, 12_000),
        }
    )
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Several players (a ``MultiAgentEnv``): ``max_turns`` then counts environment steps (rounds).
    multi_agent: bool = False

    @property
    def name(self) -> str:
        return parse_env_id(self.id)[0]

    @property
    def version(self) -> int:
        return parse_env_id(self.id)[1]

    def seeds(self, split: str, n: int | None = None, offset: int = 0) -> list[int]:
        """The first ``n`` seeds of a split (all of them when ``n`` is None), starting at ``offset``."""
        if split not in self.splits:
            raise SpecError(f"unknown split {split!r} for {self.id}; choose one of {', '.join(self.splits)}")
        start, stop = self.splits[split]
        first = start + offset
        last = stop if n is None else min(stop, first + n)
        if n is not None and first + n > stop:
            raise SpecError(
                f"{self.id} split {split!r} has {stop - start} seeds ({start}..{stop - 1}); "
                f"asked for {n} from offset {offset}. Ask for fewer episodes or use another split."
            )
        return list(range(first, last))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = self.version
        # JSON has no infinity: an unbounded side is written as null
        data["reward_range"] = [None if math.isinf(r) else r for r in self.reward_range]
        data["splits"] = {k: list(v) for k, v in self.splits.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSpec:
        data = dict(data)
        data.pop("version", None)
        rule = InvalidActionRule(**data.pop("invalid_action"))
        low, high = data.pop("reward_range")
        norm = data.pop("normalization", None)
        return cls(
            invalid_action=rule,
            normalization=Normalization(**norm) if norm else None,
            reward_range=(
                float("-inf") if low is None else float(low),
                float("inf") if high is None else float(high),
            ),
            splits={k: (int(v[0]), int(v[1])) for k, v in data.pop("splits").items()},
            **data,
        )

    @classmethod
    def from_json(cls, text: str) -> EnvSpec:
        return cls.from_dict(json.loads(text))


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings. ``temperature == 0`` means greedy decoding."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 48
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class ChatRequest:
    """One model call. ``sample_index`` distinguishes repeated samples of the same request (for the cache)."""

    messages: tuple[Message, ...]
    sampling: SamplingParams = SamplingParams()
    sample_index: int = 0

    def cache_key(self) -> str:
        """A stable string over the whole request: messages, sampling parameters and sample index."""
        payload = {
            "messages": [[m.role, m.content] for m in self.messages],
            "sampling": asdict(self.sampling),
            "sample_index": self.sample_index,
        }
        return json.dumps(payload, sort_keys=True)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class Completion:
    """A model's reply with everything training needs.

    ``prompt_token_ids`` / ``completion_token_ids`` are the exact tokens the model saw and produced, when the
    backend can give them (local models always do); ``logprobs`` has one entry per completion token.
    ``finish_reason`` is ``"stop"`` (end of sequence or a stop string) or ``"length"`` (hit ``max_tokens``).
    """

    text: str
    model: str
    finish_reason: str = "stop"
    usage: Usage = Usage()
    latency_s: float = 0.0
    prompt_token_ids: tuple[int, ...] | None = None
    completion_token_ids: tuple[int, ...] | None = None
    logprobs: tuple[float, ...] | None = None
    cached: bool = False


# --------------------------------------------------------------------------- agents


@dataclass(frozen=True)
class Action:
    """What an agent does on its turn.

    ``text`` is what goes to the environment. ``raw`` is the model's full reply when the action was parsed
    out of it (it is what the model sees of its own turn in later prompts). ``parsed`` is False when the
    agent could not find an action in the reply; the raw text is then passed to the environment, which
    applies its invalid-action rule. ``calls`` are the model calls made for this action, in order.
    ``meta`` is what the agent wants kept about how it decided, as JSON values: a team puts its members'
    answers, the messages between them, its rounds and importance scores here.
    """

    text: str
    raw: str | None = None
    parsed: bool = True
    calls: tuple[Completion, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for call in self.calls:
            total = total + call.usage
        return total


@dataclass(frozen=True)
class Turn:
    """One exchange: the observation the agent saw, the action it took and what the environment replied.

    In a multi-agent episode ``agent`` names the player who acted and ``round`` the environment step the
    action belonged to (in parallel mode every player acting in a step shares its round); both are None
    for single-agent episodes.
    """

    observation: str
    action: Action
    step: Step
    agent: str | None = None
    round: int | None = None


# --------------------------------------------------------------------------- episodes

EpisodeStatus = Literal["ok", "error"]


@dataclass
class Episode:
    """One played episode, as the runner produced it and the store keeps it.

    ``status == "error"`` means the episode failed for an infrastructure reason (model timeout, crash);
    ``error`` says why. Such an episode is not a reward of 0: it is left out of scores and can be re-run.
    ``success`` is the final step's ``info["success"]`` (for a multi-agent episode, the environment's
    ``success`` metric).

    Multi-agent episodes also have ``players`` (player id -> the spec of the agent that played it) and
    ``metrics``: the environment's own measures (survival, equality, ...) and ``returns``, each player's
    summed reward. ``total_return`` is then the sum of the players' returns.
    """

    env_id: str
    seed: int
    status: EpisodeStatus = "ok"
    turns: list[Turn] = field(default_factory=list)
    first_observation: str = ""
    total_return: float = 0.0
    success: bool = False
    terminated: bool = False
    truncated: bool = False
    error: str | None = None
    wall_s: float = 0.0
    started_at: float = 0.0  # unix time
    players: dict[str, str] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def invalid_actions(self) -> int:
        return sum(1 for t in self.turns if t.step.info.get("invalid_action"))

    @property
    def usage(self) -> Usage:
        total = Usage()
        for turn in self.turns:
            total = total + turn.action.usage
        return total
