"""The executor boundary: something that plays a batch of episode jobs and reports each as it finishes.

The in-process asyncio executor is the default. Another executor (for example one over a Ray cluster)
implements the same ``run`` method over the same serialisable ``EpisodeJob``s; environments and agents
do not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from palaestra.agents import make_agent
from palaestra.agents.players import make_players
from palaestra.core.types import EnvSpec, Episode
from palaestra.envs.multi import MultiAgentEnv
from palaestra.envs.registry import build_from_spec
from palaestra.models.base import Model
from palaestra.models.pool import ModelPool
from palaestra.runner.episode import run_episode
from palaestra.runner.multi import run_multi_episode


@dataclass(frozen=True)
class EpisodeJob:
    """Everything needed to play one episode anywhere: plain data, picklable.

    For a multi-agent environment ``agent_spec`` is a player mix (``greedy + sustainable*4``; see
    ``palaestra.agents.players``).
    """

    run_id: str
    env_spec: EnvSpec
    agent_spec: str
    model_spec: str | None
    seed: int
    max_tokens: int | None = None
    timeout_s: float | None = None


OnEpisode = Callable[[EpisodeJob, Episode], None]


class Executor(Protocol):
    async def run(self, jobs: Sequence[EpisodeJob], on_episode: OnEpisode) -> None:
        """Play every job; call ``on_episode`` once per job as soon as its episode finishes."""
        ...


class AsyncioExecutor:
    """Plays up to ``concurrency`` episodes at once in this process, all sharing one model instance.

    Sharing the model is the point: concurrent episodes put their requests into the same batches. Models
    that environments use as partners (an oracle, a simulated buyer) come from ``models``, a pool shared by
    all episodes (by default a new pool holding ``model``).
    """

    def __init__(self, model: Model | None, concurrency: int = 32, *, models: ModelPool | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.model = model
        self.concurrency = concurrency
        self.models = models if models is not None else ModelPool(model)

    async def play(self, job: EpisodeJob) -> Episode:
        env = build_from_spec(job.env_spec)
        env.models = self.models
        agents: list[Any] = []
        try:
            coro: Coroutine[Any, Any, Episode]
            if isinstance(env, MultiAgentEnv):
                players = make_players(job.agent_spec, env, self.model, seed=job.seed)
                agents = list(players.values())
                coro = run_multi_episode(env, players, job.seed, max_tokens=job.max_tokens)
            else:
                agent = make_agent(job.agent_spec, env, self.model, seed=job.seed)
                agents = [agent]
                coro = run_episode(env, agent, job.seed, max_tokens=job.max_tokens)
            if job.timeout_s is None:
                return await coro
            try:
                return await asyncio.wait_for(coro, job.timeout_s)
            except TimeoutError:
                return Episode(
                    env_id=job.env_spec.id,
                    seed=job.seed,
                    status="error",
                    error=f"TimeoutError: episode exceeded {job.timeout_s} s",
                    wall_s=job.timeout_s,
                )
        finally:
            await env.close()
            for held in agents:  # agents holding a resource (a sandboxed code agent's process) let it go
                close = getattr(held, "close", None)
                if close is not None:
                    await close()

    async def run(self, jobs: Sequence[EpisodeJob], on_episode: OnEpisode) -> None:
        queue: asyncio.Queue[EpisodeJob] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)

        async def worker() -> None:
            while True:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                on_episode(job, await self.play(job))

        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(jobs)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
