"""The episode loop: reset, then act and step until the environment ends the episode."""

from __future__ import annotations

import time
import traceback

from palaestra.agents.base import Agent
from palaestra.core.errors import ModelError
from palaestra.core.types import Episode, Turn
from palaestra.envs.base import Env


async def run_episode(env: Env, agent: Agent, seed: int, *, max_tokens: int | None = None) -> Episode:
    """Play one episode and return it; never raises for a failure inside the episode.

    A model failure (``ModelError``) or any other exception makes an episode with ``status="error"`` and
    the reason in ``error``: it is not a reward of 0, and the runner can play it again later.
    ``max_tokens`` caps the model tokens (prompt + completion) of the whole episode; reaching it ends the
    episode as truncated, like the environment's turn limit.
    """
    episode = Episode(env_id=env.spec.id, seed=seed, started_at=time.time())
    started = time.perf_counter()
    # A correct environment ends by its own max_turns; this guard turns a runaway one into an error.
    hard_cap = env.spec.max_turns + 1
    try:
        step = await env.reset(seed=seed)
        episode.first_observation = observation = step.observation
        while not step.done:
            if len(episode.turns) >= hard_cap:
                raise RuntimeError(f"{env.spec.id} did not end within max_turns={env.spec.max_turns}")
            action = await agent.act(env, episode.turns, observation)
            step = await env.step(action.text)
            episode.turns.append(Turn(observation, action, step))
            episode.total_return += step.reward
            observation = step.observation
            if max_tokens is not None and not step.done and episode.usage.total_tokens >= max_tokens:
                episode.truncated = True
                break
        episode.terminated = step.terminated
        episode.truncated = episode.truncated or step.truncated
        episode.success = bool(step.info.get("success", False)) and step.terminated
    except ModelError as exc:
        episode.status, episode.error = "error", f"ModelError: {exc}"
    except Exception as exc:  # a bug in an env or agent must not take the other episodes down with it
        episode.status = "error"
        episode.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    finally:
        episode.wall_s = time.perf_counter() - started
    return episode
