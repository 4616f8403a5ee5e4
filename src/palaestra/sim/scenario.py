"""The scenario contract of a population simulation, and what every scenario shares: archetype codes and the
parsing of a model's reply into an action.

A scenario holds its whole state as numpy arrays over agents. Each step the simulation calls
``begin_step`` (what every agent observes), asks every agent for an action (scripted rules, one model call
per agent, or one call per archetype), then ``apply`` with one action index per agent, which advances the
state and returns the step's population metrics.

An archetype is the exact tuple of the variables an archetype prompt depends on: the agent's profile
variables plus its bucketed observation (``variables``). ``archetype_codes`` folds that tuple into one
integer per agent (mixed radix), so grouping a million agents is one ``np.unique``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from palaestra.core.types import Message
from palaestra.sim.population import Profiles


@dataclass(frozen=True)
class Variable:
    """One prompt variable of an archetype: its name and the labels of its values (index = value)."""

    name: str
    labels: tuple[str, ...]


class Scenario(ABC):
    """A vectorised population scenario. Subclasses set the class attributes and the abstract methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    actions: ClassVar[tuple[str, ...]]
    # What an agent does when its reply names no action: the environment's invalid-action rule (like
    # ``InvalidActionRule``), counted in the step's ``invalid_replies``; never a silent stand-in.
    invalid_action: ClassVar[int]
    variables: ClassVar[tuple[Variable, ...]]
    metric_names: ClassVar[tuple[str, ...]]

    profiles: Profiles
    options: dict[str, Any]

    @abstractmethod
    def __init__(self, agents: int, rng: np.random.Generator, **options: Any) -> None:
        """Draw the population (profiles from ``rng``) and the initial state; ``options`` override defaults."""

    @property
    def n(self) -> int:
        return self.profiles.n

    @staticmethod
    @abstractmethod
    def bytes_per_agent(steps: int, options: dict[str, Any]) -> int:
        """Estimated bytes of array memory per agent for a run of ``steps`` steps (state and temporaries)."""

    @abstractmethod
    def begin_step(self, rng: np.random.Generator) -> None:
        """Compute what every agent observes this step (before anyone decides)."""

    @abstractmethod
    def variable_values(self) -> list[np.ndarray]:
        """One integer array per entry of ``variables``: each agent's value of it this step."""

    @abstractmethod
    def archetype_prompt(self, values: dict[str, int]) -> tuple[Message, ...]:
        """The prompt of an archetype, from its variables' values (names as in ``variables``)."""

    @abstractmethod
    def agent_prompt(self, agent: int) -> tuple[Message, ...]:
        """The prompt of one agent's own call: its exact observation, not the buckets."""

    @abstractmethod
    def scripted_actions(self, agents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Rule-based actions (int8 action indices) for the given agents."""

    @abstractmethod
    def influence(self) -> np.ndarray:
        """How much each agent's decision moves the population (the fidelity dial's ``influence`` order)."""

    @abstractmethod
    def apply(self, actions: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        """Advance one step with one action index per agent; return the step's population metrics."""

    # ----------------------------------------------------------------------- shared

    def archetype_codes(self) -> np.ndarray:
        """One int64 code per agent for its exact tuple of archetype variables (mixed radix)."""
        code = np.zeros(self.n, dtype=np.int64)
        for variable, values in zip(self.variables, self.variable_values(), strict=True):
            code = code * len(variable.labels) + values.astype(np.int64)
        return code

    def decode(self, code: int) -> dict[str, int]:
        """The variables' values of an archetype code (inverse of ``archetype_codes``)."""
        values: dict[str, int] = {}
        for variable in reversed(self.variables):
            code, values[variable.name] = divmod(int(code), len(variable.labels))
        return {v.name: values[v.name] for v in self.variables}

    def describe(self, code: int) -> str:
        """``temperament=bold, age=old, ...``: an archetype as the error messages and reports name it."""
        values = self.decode(code)
        return ", ".join(f"{v.name}={v.labels[values[v.name]]}" for v in self.variables)

    def answer_instruction(self) -> str:
        words = ", ".join(self.actions[:-1]) + f" or {self.actions[-1]}"
        return f"Answer with exactly one word: {words}."

    def parse(self, reply: str) -> int | None:
        """The action a reply names (the first action word in it, whole words, any case), or None."""
        match = _action_pattern(self.actions).search(reply)
        return None if match is None else self.actions.index(match.group(1).lower())


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _action_pattern(actions: tuple[str, ...]) -> re.Pattern[str]:
    if actions not in _PATTERNS:
        _PATTERNS[actions] = re.compile(r"\b(" + "|".join(re.escape(a) for a in actions) + r")\b", re.IGNORECASE)
    return _PATTERNS[actions]


def sample_rows(probabilities: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per entry of ``rows``, drawn from ``probabilities[row]`` (rows sum to 1), vectorised."""
    cumulative: np.ndarray = np.cumsum(probabilities, axis=1)
    cumulative[:, -1] = 1.0  # rounding must not leave a sliver above the last category
    u = np.asarray(rng.random(int(rows.shape[0])))
    picked = (u[:, None] >= cumulative[rows]).sum(axis=1)
    return np.minimum(picked, probabilities.shape[1] - 1).astype(np.int8)
