"""Expose a palaestra multi-agent environment through PettingZoo's parallel API, with text spaces.

``to_pettingzoo(env)`` wraps a ``MultiAgentEnv`` (a turn-based one is first converted with
``turn_to_parallel``). Like the Gymnasium adapter it drives the async environment on a private event loop
in a background thread. PettingZoo expects an action from every live agent each step; when the palaestra
environment has only some players acting in a phase (GovSim's conversation: one speaker at a time), the
actions of the others are ignored. Reset options the environment does not declare in ``reset_options`` are
dropped (PettingZoo's API test passes arbitrary ones). Needs ``pip install pettingzoo`` (the ``pettingzoo`` extra).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
from gymnasium import spaces

from palaestra.core.errors import EnvError, MissingDependencyError
from palaestra.core.types import Step
from palaestra.envs.gymnasium import CHARSET, _LoopThread, text_observation
from palaestra.envs.multi import MultiAgentEnv, turn_to_parallel
from palaestra.envs.registry import make_multi

try:
    from pettingzoo import ParallelEnv
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("palaestra.envs.pettingzoo", "pip install 'palaestra[pettingzoo]'") from exc

T = TypeVar("T")


class PettingZooAdapter(ParallelEnv[str, str, str]):
    """A palaestra multi-agent environment behind PettingZoo's ``ParallelEnv`` API.

    ``reset(seed=s)`` resets with seed ``s``; ``reset()`` draws a seed from a generator seeded by the last
    seeded reset. ``step`` returns ``(observations, rewards, terminations, truncations, infos)`` for the
    agents live before the step. The palaestra environment is ``self.palaestra_env``.
    """

    metadata: dict[str, Any] = {"render_modes": [], "name": "palaestra"}  # noqa: RUF012  (PettingZoo's convention)

    def __init__(
        self, env: MultiAgentEnv, *, max_observation_length: int = 16384, max_action_length: int = 256
    ) -> None:
        self.palaestra_env = env if env.mode == "parallel" else turn_to_parallel(env)
        self.metadata = {"render_modes": [], "name": env.spec.id}
        self.possible_agents = list(env.possible_agents)
        self.agents: list[str] = []
        self.render_mode = None
        self.max_observation_length = max_observation_length
        self.max_action_length = max_action_length
        self._rng = np.random.default_rng()
        self._loop: _LoopThread | None = None
        self._observation_spaces: dict[str, spaces.Text] = {}
        self._action_spaces: dict[str, spaces.Text] = {}

    # PettingZoo requires the same space object for an agent every time (so seeding a space sticks).
    def observation_space(self, agent: str) -> spaces.Text:
        if agent not in self._observation_spaces:
            self._observation_spaces[agent] = spaces.Text(self.max_observation_length, min_length=0, charset=CHARSET)
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Text:
        if agent not in self._action_spaces:
            self._action_spaces[agent] = spaces.Text(self.max_action_length, min_length=0, charset=CHARSET)
        return self._action_spaces[agent]

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = _LoopThread()
        return self._loop.run(coro)

    def _observation(self, step: Step) -> str:
        return text_observation(step, self.max_observation_length, "to_pettingzoo()")

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        else:
            seed = int(self._rng.integers(2**31))
        known = {k: v for k, v in (options or {}).items() if k in self.palaestra_env.reset_options}
        steps = self._run(self.palaestra_env.reset(seed=seed, options=known or None))
        self.agents = list(self.palaestra_env.agents)
        return {a: self._observation(s) for a, s in steps.items()}, {a: dict(s.info) for a, s in steps.items()}

    def step(
        self, actions: dict[str, str]
    ) -> tuple[dict[str, str], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict[str, Any]]]:
        env = self.palaestra_env
        if not env.agents:
            raise EnvError("step() before reset() or after every agent is done; call reset()")
        # An acting agent without an action sends empty text, which the environment treats as invalid.
        chosen = {a: str(actions.get(a, "")) for a in env.acting()}
        steps = self._run(env.step(chosen))
        self.agents = list(env.agents)
        return (
            {a: self._observation(s) for a, s in steps.items()},
            {a: float(s.reward) for a, s in steps.items()},
            {a: bool(s.terminated) for a, s in steps.items()},
            {a: bool(s.truncated) for a, s in steps.items()},
            {a: dict(s.info) for a, s in steps.items()},
        )

    def render(self) -> None:
        return None

    def close(self) -> None:
        """Close the palaestra environment and stop the private event loop; safe to call twice."""
        if self._loop is not None:
            self._loop.run(self.palaestra_env.close())
            self._loop.stop()
            self._loop = None


def to_pettingzoo(env: MultiAgentEnv | str, **kwargs: Any) -> PettingZooAdapter:
    """Wrap a palaestra multi-agent environment (or a registered id, made with defaults) for PettingZoo.

    Keyword arguments go to :class:`PettingZooAdapter` (``max_observation_length``, ``max_action_length``).
    """
    return PettingZooAdapter(make_multi(env) if isinstance(env, str) else env, **kwargs)
