"""Agents that wrap an environment's scripted policies (``optimal``, ``random``, ``noisy``...)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from palaestra.core.errors import UnknownSpecError
from palaestra.core.types import Action, Turn
from palaestra.envs.base import Env


class ScriptedAgent:
    """Plays the environment's scripted policy ``name``; its randomness is seeded per episode."""

    def __init__(self, name: str, seed: int = 0) -> None:
        self.spec = name
        self.name = name
        self._rng = random.Random(seed)

    async def act(self, env: Env, history: Sequence[Turn], observation: str) -> Action:
        policies = env.scripted_policies()
        if self.name not in policies:
            raise UnknownSpecError(f"scripted policy of {env.spec.id}", self.name, policies)
        return Action(text=policies[self.name](env, self._rng))
