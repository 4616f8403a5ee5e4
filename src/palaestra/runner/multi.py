"""The multi-agent episode loop: reset, then ask every acting player for an action (concurrently, so model
calls of different players share batches) and step, until no player is left."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Coroutine, Mapping
from typing import Any

from palaestra.agents.base import Agent
from palaestra.core.errors import EnvError, ModelError
from palaestra.core.types import Action, Episode, Turn
from palaestra.envs.multi import MultiAgentEnv, PlayerView


async def run_multi_episode(
    env: MultiAgentEnv,
    agents: Mapping[str, Agent],
    seed: int,
    *,
    max_tokens: int | None = None,
) -> Episode:
    """Play one multi-agent episode and return it; never raises for a failure inside the episode.

    Every action becomes a ``Turn`` tagged with the acting player and the round (environment step). The
    episode's ``metrics`` are the environment's own plus ``returns`` (each player's summed reward, including
    rewards given on steps where the player did not act); ``total_return`` is their sum. As in the
    single-agent loop, a failure is an episode with ``status="error"``, never a reward of 0, and
    ``max_tokens`` caps the model tokens of the whole episode (all players together).
    """
    episode = Episode(
        env_id=env.spec.id,
        seed=seed,
        started_at=time.time(),
        players={player: agent.spec for player, agent in agents.items()},
    )
    started = time.perf_counter()
    returns = dict.fromkeys(env.possible_agents, 0.0)
    tokens = 0
    try:
        missing = set(env.possible_agents) - set(agents)
        if missing:
            raise EnvError(f"no agent for players {sorted(missing)} of {env.spec.id}")
        views = {player: PlayerView(env, player) for player in env.possible_agents}
        histories: dict[str, list[Turn]] = {player: [] for player in env.possible_agents}
        first = await env.reset(seed=seed)
        observations = {player: step.observation for player, step in first.items()}
        episode.first_observation = observations.get(env.possible_agents[0], "")
        steps = None
        for round_ in range(env.spec.max_turns + 1):
            if not env.agents:
                break
            if round_ == env.spec.max_turns:  # a correct environment ends by its own limit
                raise RuntimeError(f"{env.spec.id} did not end within max_turns={env.spec.max_turns}")
            acting = env.acting()
            actions = await _act_together([agents[p].act(views[p], histories[p], observations[p]) for p in acting])
            steps = await env.step({p: a.text for p, a in zip(acting, actions, strict=True)})
            for player, action in zip(acting, actions, strict=True):
                if player not in steps:
                    raise EnvError(f"{env.spec.id}.step() returned no step for acting player {player}")
                turn = Turn(observations[player], action, steps[player], agent=player, round=round_)
                histories[player].append(turn)
                episode.turns.append(turn)
                tokens += action.usage.total_tokens
            for player, step in steps.items():
                returns[player] += step.reward
                observations[player] = step.observation
            if max_tokens is not None and env.agents and tokens >= max_tokens:
                episode.truncated = True
                break
        final = list(steps.values()) if steps else []
        episode.terminated = bool(final) and not env.agents and all(s.terminated for s in final if s.done)
        episode.truncated = episode.truncated or any(s.truncated for s in final)
        episode.metrics = {**env.metrics(), "returns": returns}
        episode.total_return = sum(returns.values())
        episode.success = bool(episode.metrics.get("success", False))
    except ModelError as exc:
        episode.status, episode.error = "error", f"ModelError: {exc}"
    except Exception as exc:  # a bug in an env or agent must not take the other episodes down with it
        episode.status = "error"
        episode.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    finally:
        episode.wall_s = time.perf_counter() - started
    return episode


async def _act_together(calls: list[Coroutine[Any, Any, Action]]) -> list[Action]:
    """Every acting player's action, asked at once; when one fails, the others are cancelled rather than left
    running (and calling their models) in the background."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
