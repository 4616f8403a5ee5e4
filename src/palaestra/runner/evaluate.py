"""Evaluation runs: plan episodes for (environment, agent) pairs, play them, store them, resume them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from palaestra.agents import agent_choices, make_agent, needs_model
from palaestra.agents.players import assign_players, mix_specs
from palaestra.core.errors import SpecError, StoreError, UnknownSpecError
from palaestra.core.types import Episode
from palaestra.envs.base import Env
from palaestra.envs.multi import MultiAgentEnv, PlayerView
from palaestra.envs.registry import make_any
from palaestra.models.base import Model
from palaestra.models.pool import ModelPool
from palaestra.runner.executor import AsyncioExecutor, EpisodeJob, Executor
from palaestra.store import Store

if TYPE_CHECKING:
    from palaestra.runner.ray_executor import RayExecutor

EXECUTORS = ("asyncio", "ray")


@dataclass(frozen=True)
class EvalConfig:
    """What ``palaestra eval`` plays: every agent on every environment, ``episodes`` seeds each.

    Seeds are the ``episodes`` consecutive seeds of ``split`` starting ``seed`` places into the split, so a
    run is reproducible and never mixes splits.
    """

    envs: tuple[str, ...]
    agents: tuple[str, ...]
    model: str | None = None
    episodes: int = 10
    split: str = "test"
    seed: int = 0
    concurrency: int = 32
    max_turns: int | None = None
    max_tokens: int | None = None
    timeout_s: float | None = None
    # Constructor arguments per environment id ("*" for every environment), e.g. a model oracle:
    # {"twenty-questions-v0": {"oracle": "smollm2-135m"}}. Recorded in each run's environment spec.
    env_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    purpose: str = "eval"  # "eval", or "data" for scripted trajectories made by `palaestra data generate`
    # Where episodes play: "asyncio" (this process) or "ray" (a Ray cluster at `address`, the agents' model
    # served by `replicas` actors; see docs/ray.md).
    executor: str = "asyncio"
    address: str | None = None
    replicas: int = 1


@dataclass
class EvalResult:
    run_ids: list[str]
    ok: int = 0
    errors: int = 0
    interrupted: bool = False
    statuses: dict[str, str] = field(default_factory=dict)


def _check_agent(spec: str, env: Env | MultiAgentEnv) -> None:
    """Build the agent (or, for a multi-agent environment, every seat's agent) once, so a bad spec fails
    before any run is created."""
    if isinstance(env, MultiAgentEnv):
        seats = assign_players(spec, env.possible_agents)
        for seat_spec, player in {spec: p for p, spec in seats.items()}.items():  # each distinct spec once
            _check_agent_on(seat_spec, PlayerView(env, player))
    else:
        _check_agent_on(spec, env)


def _check_agent_on(spec: str, env: Env) -> None:
    if needs_model(spec):
        from palaestra.models.scripted import ScriptedModel

        make_agent(spec, env, ScriptedModel("echo"))
    elif spec not in agent_choices(env):
        raise UnknownSpecError(f"agent for {env.spec.id}", spec, agent_choices(env))


def _needs_model(spec: str, env: Env | MultiAgentEnv) -> bool:
    if isinstance(env, MultiAgentEnv):
        return any(needs_model(s) for s in mix_specs(spec))
    return needs_model(spec)


async def evaluate(
    config: EvalConfig,
    store: Store,
    *,
    model: Model | None = None,
    executor: Executor | None = None,
    progress: bool = True,
) -> EvalResult:
    """Create one run per (environment, agent), play all their episodes concurrently and store each one.

    Args:
        model: an already built model (else ``config.model`` is built, and closed at the end).
        executor: where episodes are played (default: in-process asyncio with ``config.concurrency``).
    """
    if config.episodes < 1:
        raise SpecError("--episodes must be at least 1")
    overrides = {"max_turns": config.max_turns} if config.max_turns else {}
    unknown = set(config.env_kwargs) - {"*", *config.envs}
    if unknown:
        raise SpecError(
            f"environment arguments for {', '.join(sorted(unknown))}, which this run does not play "
            f"(it plays {', '.join(config.envs)})"
        )
    envs = [
        make_any(env_id, **{**overrides, **config.env_kwargs.get("*", {}), **config.env_kwargs.get(env_id, {})})
        for env_id in config.envs
    ]
    for env in envs:
        for agent in config.agents:
            _check_agent(agent, env)
    wants_model = any(_needs_model(a, env) for env in envs for a in config.agents)
    own_model = False
    if wants_model and model is None and not config.model:
        raise SpecError("the 'prompt' agent needs a model: pass --model (e.g. --model smollm2-135m)")
    agent_model = (model.spec if model is not None else config.model) if wants_model else None
    own_executor, model = await _open_executor(
        executor, config.executor, agent_model, model, config.address, config.replicas, config.concurrency
    )
    executor = executor or own_executor
    if wants_model and model is None:
        from palaestra.models import make_model

        model, own_model = make_model(config.model or ""), True
    try:
        plan = {env.spec.id: env.spec.seeds(config.split, config.episodes, offset=config.seed) for env in envs}
        jobs: list[EpisodeJob] = []
        run_ids: list[str] = []
        for env in envs:
            await env.close()
            for agent in config.agents:
                model_spec = model.spec if (model is not None and _needs_model(agent, env)) else None
                run_config = {
                    **asdict(config),
                    "envs": [env.spec.id],
                    "agents": [agent],
                    "seeds": plan[env.spec.id],
                }
                run_id = store.create_run(
                    env_spec=env.spec,
                    agent_spec=agent,
                    model_spec=model_spec,
                    weights_hash=model.weights_hash if model_spec and model is not None else None,
                    config=run_config,
                )
                run_ids.append(run_id)
                jobs += [
                    EpisodeJob(run_id, env.spec, agent, model_spec, seed, config.max_tokens, config.timeout_s)
                    for seed in plan[env.spec.id]
                ]
        pool = ModelPool(model)  # partner models of environments; the agents' model is shared
        try:
            executor = executor or AsyncioExecutor(model, config.concurrency, models=pool)
            return await _execute(jobs, run_ids, store, executor, progress)
        finally:
            await pool.close()
    finally:
        if own_model and model is not None:
            await model.close()
        if own_executor is not None:
            await own_executor.close()


async def _open_executor(
    given: Executor | None,
    kind: str,
    model_spec: str | None,
    model: Model | None,
    address: str | None,
    replicas: int,
    concurrency: int,
) -> tuple[RayExecutor | None, Model | None]:
    """The Ray executor when ``kind`` asks for it, started, with its model replicas (built on the cluster
    from ``model_spec``) standing in for ``model`` unless one was given; else None, to play in this process.
    Ray is imported only here."""
    if kind not in EXECUTORS:
        raise UnknownSpecError("executor", kind, EXECUTORS)
    if given is not None or kind == "asyncio":
        return None, model
    from palaestra.runner.ray_executor import RayExecutor

    ray_executor = RayExecutor(model_spec, address=address, replicas=replicas, concurrency=concurrency)
    await ray_executor.start()
    return ray_executor, model if model is not None else ray_executor.model


async def resume(
    run_ids: Sequence[str],
    store: Store,
    *,
    model: Model | None = None,
    executor: Executor | None = None,
    concurrency: int | None = None,
    progress: bool = True,
    executor_kind: str = "asyncio",
    address: str | None = None,
    replicas: int = 1,
) -> EvalResult:
    """Play the seeds of earlier runs that have no successful episode yet (missing or ``error``).

    ``executor_kind``, ``address`` and ``replicas`` choose where, as ``EvalConfig``'s fields of those names do.
    """
    runs = [store.get_run(r) for r in run_ids]
    model_specs = {r.model_spec for r in runs if r.model_spec}
    if len(model_specs) > 1:
        raise SpecError(f"runs use different models ({', '.join(sorted(model_specs))}); resume them separately")
    width = concurrency or max([int(r.config.get("concurrency", 32)) for r in runs] or [32])
    agent_model = (model.spec if model is not None else next(iter(model_specs))) if model_specs else None
    own_executor, model = await _open_executor(executor, executor_kind, agent_model, model, address, replicas, width)
    executor = executor or own_executor
    own_model = False
    if model_specs and model is None:
        from palaestra.models import make_model

        model, own_model = make_model(next(iter(model_specs))), True
    try:
        for run in runs:
            if run.model_spec and run.weights_hash and model is not None and model.weights_hash != run.weights_hash:
                raise StoreError(
                    f"run {run.id} was played with weights {run.weights_hash} but {run.model_spec} now has "
                    f"{model.weights_hash}; resuming would mix models. Start a new run instead."
                )
        jobs = [
            EpisodeJob(
                run.id,
                run.env_spec,
                run.agent_spec,
                run.model_spec,
                seed,
                run.config.get("max_tokens"),
                run.config.get("timeout_s"),
            )
            for run in runs
            for seed in store.pending_seeds(run.id)
        ]
        pool = ModelPool(model)  # partner models of environments; the agents' model is shared
        try:
            executor = executor or AsyncioExecutor(model, width, models=pool)
            return await _execute(jobs, [r.id for r in runs], store, executor, progress)
        finally:
            await pool.close()
    finally:
        if own_model and model is not None:
            await model.close()
        if own_executor is not None:
            await own_executor.close()


async def _execute(
    jobs: list[EpisodeJob], run_ids: list[str], store: Store, executor: Executor, progress: bool
) -> EvalResult:
    result = EvalResult(run_ids=run_ids)
    bar = tqdm(total=len(jobs), unit="ep", desc="episodes", disable=not progress, file=sys.stderr)

    def on_episode(job: EpisodeJob, episode: Episode) -> None:
        store.record_episode(job.run_id, episode)
        if episode.status == "ok":
            result.ok += 1
        else:
            result.errors += 1
        bar.set_postfix(ok=result.ok, errors=result.errors, refresh=False)
        bar.update(1)

    try:
        await executor.run(jobs, on_episode)
    except (KeyboardInterrupt, asyncio.CancelledError):
        result.interrupted = True
        raise
    finally:
        bar.close()
        for run_id in run_ids:
            pending = store.pending_seeds(run_id)
            status = "complete" if not pending else ("interrupted" if result.interrupted else "incomplete")
            store.finish_run(run_id, status)
            result.statuses[run_id] = status
    return result
