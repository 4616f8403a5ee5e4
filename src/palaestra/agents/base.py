"""The agent protocol: given the environment and the history so far, produce the next action."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from palaestra.core.types import Action, Turn
from palaestra.envs.base import Env


@runtime_checkable
class Agent(Protocol):
    """A policy over text. ``spec`` is the string that rebuilds it (recorded with every run).

    ``act`` receives the live environment (for its ``instructions`` and ``spec``; scripted policies may
    also read its state), the turns played so far in this episode, and the current observation.
    """

    spec: str

    async def act(self, env: Env, history: Sequence[Turn], observation: str) -> Action: ...
