"""Expose a palaestra environment as a synchronous ``gymnasium.Env`` with text spaces.

``to_gymnasium(env)`` wraps an (async) palaestra environment; the wrapper drives it on a private event
loop in a background thread, so it also works when called from code that already runs an event loop.
Observations and actions are ``gymnasium.spaces.Text`` over printable ASCII.
"""

from __future__ import annotations

import asyncio
import copy
import string
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import gymnasium
from gymnasium import spaces

from palaestra.core.errors import EnvError
from palaestra.core.types import Step
from palaestra.envs.base import Env
from palaestra.envs.registry import make

T = TypeVar("T")

# Printable ASCII plus whitespace: every built-in observation is written in it, and an environment that
# echoes odd characters has them replaced by REPLACEMENT rather than leaving the observation space.
CHARSET = string.printable
REPLACEMENT = "?"


def text_observation(step: Step, limit: int, adapter: str) -> str:
    """A step's observation inside a ``Text`` space: odd characters replaced, too long an error."""
    text = "".join(ch if ch in CHARSET else REPLACEMENT for ch in step.observation)
    if len(text) > limit:
        raise EnvError(
            f"observation of {len(text)} characters exceeds the observation space's {limit}; "
            f"pass a larger max_observation_length to {adapter}"
        )
    return text


class _LoopThread:
    """An event loop running in a daemon thread; ``run`` blocks until a coroutine on it finishes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="palaestra-gymnasium", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class GymnasiumAdapter(gymnasium.Env[str, str]):
    """A palaestra environment behind the Gymnasium API.

    ``reset(seed=s)`` resets the palaestra environment with seed ``s``; ``reset()`` without a seed draws
    one from ``self.np_random``, so a seeded reset followed by unseeded ones is reproducible (Gymnasium's
    convention). ``step`` returns ``(observation, reward, terminated, truncated, info)``; ``info`` is a
    copy of the palaestra step's info. The palaestra environment is ``self.palaestra_env``.

    Args:
        env: a palaestra environment (made with ``palaestra.make``).
        max_observation_length: the observation space's length bound; a longer observation raises EnvError.
        max_action_length: the action space's length bound (any string may still be passed to ``step``).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012  (Gymnasium's class-level convention)

    def __init__(self, env: Env, *, max_observation_length: int = 8192, max_action_length: int = 256) -> None:
        self.palaestra_env = env
        self.max_observation_length = max_observation_length
        self.observation_space = spaces.Text(max_observation_length, min_length=0, charset=CHARSET)
        self.action_space = spaces.Text(max_action_length, min_length=0, charset=CHARSET)
        self.render_mode = None
        self._loop: _LoopThread | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = _LoopThread()
        return self._loop.run(coro)

    def _observation(self, step: Step) -> str:
        return text_observation(step, self.max_observation_length, "to_gymnasium()")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31))
        step = self._run(self.palaestra_env.reset(seed=seed, options=options))
        return self._observation(step), copy.deepcopy(step.info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        step = self._run(self.palaestra_env.step(action))
        return (
            self._observation(step),
            float(step.reward),
            bool(step.terminated),
            bool(step.truncated),
            copy.deepcopy(step.info),
        )

    def close(self) -> None:
        """Close the palaestra environment and stop the private event loop; safe to call twice."""
        if self._loop is not None:
            self._loop.run(self.palaestra_env.close())
            self._loop.stop()
            self._loop = None


def to_gymnasium(env: Env | str, **kwargs: Any) -> GymnasiumAdapter:
    """Wrap a palaestra environment (or a registered id, made with defaults) as a ``gymnasium.Env``.

    Keyword arguments go to :class:`GymnasiumAdapter` (``max_observation_length``, ``max_action_length``).
    """
    return GymnasiumAdapter(make(env) if isinstance(env, str) else env, **kwargs)
