"""The contracts of design search: a candidate is plain data with a stable hash that names an agent, and a
search space makes, changes and describes candidates.

Search methods (``palaestra.search.methods``) see only these protocols, so one method searches any space:
the agent designs of ``palaestra.search.design`` (reasoning pattern, memory, instructions, demonstrations,
sampling, team topology), or :class:`PromptSpace`, the options of the ``prompt`` agent.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from palaestra.core.errors import SpecError


@runtime_checkable
class Candidate(Protocol):
    """One point of a search space."""

    @property
    def hash(self) -> str:
        """Stable id: the same data gives the same hash in every process and version (see :func:`stable_hash`)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable data that ``SearchSpace.from_dict`` turns back into an equal candidate."""
        ...

    def agent_spec(self) -> str:
        """The agent spec that plays this candidate (``palaestra.agents.make_agent``, ``palaestra eval --agent``).
        A spec that refers to stored data (``design:<hash>``) is resolvable once ``SearchSpace.save`` ran."""
        ...


@runtime_checkable
class SearchSpace(Protocol):
    """What a search method needs of a space. Every method takes an explicit ``random.Random``: searches are
    reproducible from a seed."""

    name: str

    def default(self) -> Candidate:
        """The baseline every search is compared with (the default ``prompt`` agent)."""
        ...

    def sample(self, rng: random.Random) -> Candidate:
        """A random candidate."""
        ...

    def mutate(self, candidate: Candidate, rng: random.Random) -> Candidate:
        """A random neighbour: one or a few fields changed."""
        ...

    def children(self, candidate: Candidate) -> list[Candidate]:
        """Every one-edit neighbour, in a fixed order (what a tree search expands)."""
        ...

    def features(self, candidate: Candidate) -> list[float]:
        """A fixed-length numeric description (what a value model predicts a score from)."""
        ...

    def from_dict(self, data: Mapping[str, Any]) -> Candidate:
        """The candidate ``to_dict`` described; ``SpecError`` for data that is not one."""
        ...

    def save(self, candidate: Candidate) -> None:
        """Make ``candidate.agent_spec()`` resolvable (e.g. write the design file); may do nothing."""
        ...


def stable_hash(data: Mapping[str, Any], prefix: str = "d-") -> str:
    """``prefix`` + 12 hex digits of the SHA-256 of the canonical JSON of ``data`` (sorted keys, no spaces)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return prefix + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------- the prompt agent's options

# The choices of each option, in the order ``children`` walks them; the first-listed default is the
# ``prompt`` agent's own (``PromptConfig()``). ``max_tokens`` None is the environment's reply budget.
PROMPT_CHOICES: dict[str, tuple[Any, ...]] = {
    "template": ("default", "compact"),
    "shots": (0, 1, 2, 4),
    "history": (0, 1, 2, 4, 8),
    "temperature": (0.0, 0.3, 0.7, 1.0),
    "top_p": (1.0, 0.9),
    "max_tokens": (None, 8, 16, 32, 64),
}
_PROMPT_DEFAULTS: dict[str, Any] = {
    "template": "default",
    "shots": 2,
    "history": 2,
    "temperature": 0.0,
    "top_p": 1.0,
    "max_tokens": None,
}
# Options whose choices are ordered quantities: a feature each (the choice's position, 0..1). The others
# are one-hot: a template is not "more" than another, and None (the environment's budget) is no number.
_ORDINAL = ("shots", "history", "temperature", "top_p")


class PromptCandidate:
    """A setting of the ``prompt`` agent's options; plays as ``prompt:<the options that differ>``."""

    __slots__ = ("_hash", "values")

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values: dict[str, Any] = {name: values[name] for name in PROMPT_CHOICES}
        self._hash = stable_hash(self.values, prefix="p-")

    @property
    def hash(self) -> str:
        return self._hash

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def agent_spec(self) -> str:
        options = [f"{k}={v}" for k, v in self.values.items() if v != _PROMPT_DEFAULTS[k]]
        return "prompt:" + ",".join(options) if options else "prompt"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptCandidate) and other.values == self.values

    def __hash__(self) -> int:
        return hash(self._hash)

    def __repr__(self) -> str:
        return f"PromptCandidate({self.agent_spec()!r})"


class PromptSpace:
    """The options of the ``prompt`` agent (``palaestra.agents.prompt.PromptConfig``): template, few-shot
    demonstrations, history kept, temperature, top-p and reply budget. 2*4*5*4*2*5 = 1600 candidates.

    Args:
        choices: replace the choices of some options (each tuple must hold the option's default).
    """

    name = "prompt"

    def __init__(self, choices: Mapping[str, Sequence[Any]] | None = None) -> None:
        unknown = set(choices or {}) - set(PROMPT_CHOICES)
        if unknown:
            raise SpecError(f"the prompt space has no option {sorted(unknown)}; options: {', '.join(PROMPT_CHOICES)}")
        self.choices = {**PROMPT_CHOICES, **{k: tuple(v) for k, v in (choices or {}).items()}}
        for name, values in self.choices.items():
            if _PROMPT_DEFAULTS[name] not in values:
                raise SpecError(
                    f"the choices of {name} must include the prompt agent's default {_PROMPT_DEFAULTS[name]!r}"
                )

    def default(self) -> PromptCandidate:
        return PromptCandidate(_PROMPT_DEFAULTS)

    def sample(self, rng: random.Random) -> PromptCandidate:
        return PromptCandidate({name: rng.choice(values) for name, values in self.choices.items()})

    def mutate(self, candidate: Candidate, rng: random.Random) -> PromptCandidate:
        values = self._values(candidate)
        names = [n for n, v in self.choices.items() if len(v) > 1]
        changes = 2 if rng.random() < 0.3 and len(names) > 1 else 1
        for name in rng.sample(names, changes):
            values[name] = rng.choice([v for v in self.choices[name] if v != values[name]])
        return PromptCandidate(values)

    def children(self, candidate: Candidate) -> list[Candidate]:
        values = self._values(candidate)
        out: list[Candidate] = []
        for name, choices in self.choices.items():
            for value in choices:
                if value != values[name]:
                    out.append(PromptCandidate({**values, name: value}))
        return out

    def features(self, candidate: Candidate) -> list[float]:
        values = self._values(candidate)
        out: list[float] = []
        for name, choices in self.choices.items():
            position = choices.index(values[name])
            if name in _ORDINAL:
                out.append(position / (len(choices) - 1) if len(choices) > 1 else 0.0)
            else:
                out += [1.0 if i == position else 0.0 for i in range(len(choices))]
        return out

    def from_dict(self, data: Mapping[str, Any]) -> PromptCandidate:
        if not isinstance(data, Mapping) or set(data) != set(self.choices):
            raise SpecError(
                f"a prompt candidate is a dict with exactly the keys {', '.join(self.choices)}; got {data!r:.200}"
            )
        values = {}
        for name, value in data.items():
            if value not in self.choices[name] or isinstance(value, bool):
                raise SpecError(f"prompt candidate {name}={value!r} is not in the space; choices: {self.choices[name]}")
            values[name] = self.choices[name][self.choices[name].index(value)]  # 1 and 1.0: one hash
        return PromptCandidate(values)

    def save(self, candidate: Candidate) -> None:
        return None  # a prompt spec carries all its options

    def _values(self, candidate: Candidate) -> dict[str, Any]:
        return self.from_dict(candidate.to_dict()).to_dict()
