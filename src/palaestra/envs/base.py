"""The single-agent environment contract and the scripted-policy contract."""

from __future__ import annotations

import abc
import copy
import random
from typing import Any, Protocol

from palaestra.core.errors import EnvError
from palaestra.core.types import EnvSpec, Step


class Policy(Protocol):
    """A scripted policy: reads the live environment's state and returns an action string.

    Scripted policies may look at state the agent cannot see (the maze layout, Wordle's answer): they are
    baselines and data generators, not agents under evaluation.
    """

    def __call__(self, env: Env, rng: random.Random) -> str: ...


class Env(abc.ABC):
    """An async, text-in text-out, multi-turn environment.

    ``spec`` is set by :func:`palaestra.envs.make`; ``instructions`` tells the agent the rules and the exact
    action format. Episodes are reproducible: the same seed gives the same episode for the same actions.
    """

    spec: EnvSpec
    instructions: str = ""

    @abc.abstractmethod
    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        """Start a new episode and return its first observation (reward 0)."""

    @abc.abstractmethod
    async def step(self, action: str) -> Step:
        """Apply one action. Unparseable or illegal actions follow ``spec.invalid_action``; never raise."""

    def copy(self) -> Env:
        """An independent copy in the same state (for tree search and branching)."""
        return copy.deepcopy(self)

    async def close(self) -> None:  # noqa: B027  (optional hook: most environments hold nothing)
        """Release resources (processes, connections). Safe to call twice."""

    def scripted_policies(self) -> dict[str, Policy]:
        """Scripted policies by name (``optimal``, ``random``, ``noisy``...); empty when none exist."""
        return {}

    def _require_spec(self) -> EnvSpec:
        try:
            return self.spec
        except AttributeError:
            raise EnvError(
                f"{type(self).__name__} has no spec: create environments with palaestra.make(id), "
                "not by calling the class directly"
            ) from None
