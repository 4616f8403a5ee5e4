"""``improve``: train a model on trajectories of training seeds, gate it on validation seeds against its
parent, and score the test seeds once for the final model.

Methods:

- ``sft``: behaviour cloning on every ok episode of the data runs;
- ``filtered-bc``: on the best ``top_fraction`` of them by return (LMRL-Gym's filtered BC);
- ``evolve``: rounds of explore (the current model samples ``samples`` episodes per training seed at
  ``temperature``), keep the successful ones, fine-tune, gate (AgentGym's AgentEvol, LMRL-Gym's online
  filtered BC); the next round starts from the promoted model.
- ``dpo``: preference pairs of a better and a worse episode of the same seed at the turn where they part
  (``palaestra.improve.preferences``), from the given runs or, by default, from exploration as in ``evolve``;
  rounds as in ``evolve`` (iterative DPO).
- ``grpo``: online RL with the environment in the loop (``palaestra.improve.grpo``): every step the model
  plays ``samples`` episodes on each of ``seeds_per_step`` training seeds (out of the first
  ``explore_seeds``), episode return as the reward; the rollout episodes are stored as runs of purpose
  ``rollout``.

The data of ``sft`` and ``filtered-bc`` is given runs (``data``) or, by default, the environment's scripted
``noisy`` policy on training seeds (LMRL-Gym's dataset policy). Every trained checkpoint goes to the registry
with its lineage (parent, data runs, config, seeds, losses, evaluations, the gate's verdict, wall time), and
to the store's ``checkpoints`` table.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from palaestra.core.errors import SpecError
from palaestra.core.types import Episode
from palaestra.envs.registry import make_any
from palaestra.improve.gate import paired_gate
from palaestra.improve.grpo import GRPO, GRPOConfig
from palaestra.improve.trainers import (
    DPO,
    SFT,
    DPOConfig,
    FilteredBC,
    FilteredBCConfig,
    TrainConfig,
    TrainResult,
)
from palaestra.models.registry import Registry, new_checkpoint_id, split_spec
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import CheckpointRecord, Store

METHODS = ("sft", "filtered-bc", "evolve", "dpo", "grpo")


@dataclass(frozen=True)
class ImproveConfig:
    """What ``palaestra improve`` does; every field is recorded with the checkpoints it makes."""

    envs: tuple[str, ...]
    model: str = "smollm2-135m"
    method: str = "filtered-bc"
    # The prompt agent the model plays as, in evaluation and in the training prompts of text-only data.
    agent: str = "prompt:shots=0,history=0"
    data: tuple[str, ...] = ()  # runs to train on; empty: generate with data_policy on training seeds
    data_policy: str = "noisy"
    data_episodes: int = 200
    top_fraction: float = 0.3
    rounds: int = 1  # evolve, dpo
    samples: int = 4  # evolve, dpo: episodes per training seed; grpo: the group size
    explore_seeds: int = 32  # evolve, dpo: training seeds explored per round; grpo: the seeds drawn from
    temperature: float = 0.7  # evolve, dpo, grpo: sampling temperature while exploring
    beta: float = 0.1  # dpo: strength of the pull towards the parent
    margin: float = 0.0  # dpo: pairs only from episodes whose returns differ by more than this
    seeds_per_step: int = 2  # grpo
    validation_episodes: int = 20
    test_episodes: int = 20
    max_turns: int | None = None
    concurrency: int = 32
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["train"] = self.train.to_dict()
        return data


@dataclass
class RoundResult:
    checkpoint: str
    data_runs: list[str]
    episodes_kept: int
    examples: int
    train: dict[str, Any]
    validation_runs: dict[str, list[str]]
    gate: dict[str, Any]


@dataclass
class ImproveResult:
    """The outcome: the final model, each round, and the test scores of the parent and the final model."""

    parent: str
    final: str
    promoted: bool
    method: str
    rounds: list[RoundResult]
    test: dict[str, Any]
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _base_and_parent(spec: str) -> tuple[str, str | None]:
    split = split_spec(spec)
    return (split[0], split[1]) if split else (spec, None)


async def _play(
    store: Store,
    envs: tuple[str, ...],
    agent: str,
    model: Any,
    split: str,
    n: int,
    config: ImproveConfig,
    progress: bool,
) -> tuple[list[str], Sourced]:
    result = await evaluate(
        EvalConfig(
            envs=envs,
            agents=(agent,),
            episodes=n,
            split=split,
            concurrency=config.concurrency,
            max_turns=config.max_turns,
            purpose="eval" if model is not None else "data",
        ),
        store,
        model=model,
        progress=progress,
    )
    return result.run_ids, _load(store, result.run_ids)


# Episodes with the id of the run they belong to (a run's environment spec rebuilds their prompts).
Sourced = list[tuple[str, Episode]]


def _load(store: Store, run_ids: list[str]) -> Sourced:
    return [(run_id, e) for run_id in run_ids for e in store.episodes(run_id, with_turns=True)]


def _episodes(sourced: Sourced) -> list[Episode]:
    return [e for _, e in sourced]


def _examples(store: Store, kept: Sourced, tokenizer: Any, agent: str) -> list[Any]:
    """Training examples of the kept episodes, in the prompt format of ``agent``."""
    from palaestra.improve.examples import NoTrainingDataError, examples_from_episodes, prompt_config_for

    config = prompt_config_for(agent)
    out: list[Any] = []
    for run_id in dict.fromkeys(r for r, _ in kept):
        run = store.get_run(run_id)
        chosen = [e for r, e in kept if r == run_id]
        out += examples_from_episodes(
            chosen, tokenizer=tokenizer, env=run.env_spec, prompt_config=config, run_id=run_id
        )
    if not out:
        raise NoTrainingDataError("nothing to train on: the chosen episodes have no agent turns")
    return out


async def improve(
    config: ImproveConfig,
    store: Store,
    *,
    registry: Registry | None = None,
    progress: bool = True,
    say: Say = _stderr,
) -> ImproveResult:
    """Run the improvement loop (see the module docstring) and return what happened."""
    from palaestra.models.local import LocalModel

    if config.method not in METHODS:
        raise SpecError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    if config.method in ("evolve", "grpo") and config.data:
        raise SpecError(f"{config.method} plays with the model itself; it takes no --data runs")
    if config.method == "grpo" and len(config.envs) != 1:
        raise SpecError("grpo trains on one environment at a time; name one ENV")
    registry = registry or Registry()
    registry.clean_stale()

    def make_model(spec: str) -> Any:  # checkpoints come from this registry
        from palaestra.models import make_model as build

        return build(spec, registry=registry.root) if split_spec(spec) else build(spec)

    started = time.perf_counter()
    current = config.model
    base_spec, _ = _base_and_parent(current)
    rounds: list[RoundResult] = []
    model: Any = make_model(current)
    if not isinstance(model, LocalModel):
        raise SpecError(f"training needs a local model; {current!r} is {type(model).__name__}")
    trainer = _trainer(config)
    parent_val: list[Episode] | None = None  # played once data and training have worked (nothing is written before)
    try:
        for round_ in range(1, (config.rounds if config.method in ("evolve", "dpo") else 1) + 1):
            # ------------------------------------------------------------ data
            runs: list[str] = []
            kept: Sourced = []
            data: Any = None  # what the trainer takes: examples, preference pairs, or training seeds
            if config.method == "grpo":
                env_spec = _env_spec(config)
                seeds = env_spec.seeds("train", config.explore_seeds)
                data = seeds
                say(
                    f"round {round_}: grpo on {len(seeds)} training seeds, {config.seeds_per_step} seeds x "
                    f"{config.samples} episodes per step"
                )
            elif config.method == "evolve" or (config.method == "dpo" and not config.data):
                say(
                    f"round {round_}: exploring with {current}, {config.samples} samples on each of "
                    f"{config.explore_seeds} training seeds"
                )
                sourced: Sourced = []
                for sample in range(config.samples):
                    agent = f"{config.agent},temperature={config.temperature},sample={sample}"
                    r, e = await _play(
                        store, config.envs, agent, model, "train", config.explore_seeds, config, progress
                    )
                    runs += r
                    sourced += e
                if config.method == "evolve":
                    kept = [(r, e) for r, e in sourced if e.status == "ok" and e.success]
                    if not kept:
                        raise SpecError(
                            f"nothing to train on: none of the {len(sourced)} exploration episodes succeeded; "
                            "raise --samples or --temperature, or start from scripted data with --method filtered-bc"
                        )
                else:
                    kept = [(r, e) for r, e in sourced if e.status == "ok"]
            else:
                if config.data:
                    runs = [store.get_run(r).id for r in config.data]
                    sourced = _load(store, runs)
                else:
                    say(f"data: the scripted {config.data_policy!r} policy on {config.data_episodes} training seeds")
                    runs, sourced = await _play(
                        store, config.envs, config.data_policy, None, "train", config.data_episodes, config, progress
                    )
                if isinstance(trainer, SFT):
                    chosen = {id(e) for e in trainer.select(_episodes(sourced))}
                    kept = [(r, e) for r, e in sourced if id(e) in chosen]
                else:
                    kept = [(r, e) for r, e in sourced if e.status == "ok"]
            pair_stats: dict[str, Any] = {}
            if config.method == "dpo":
                data, stats = _pairs(store, kept, model.tokenizer, config)
                pair_stats = dataclasses.asdict(stats)
                say(
                    f"round {round_}: dpo on {len(data)} preference pairs from {stats.seeds} seeds "
                    f"({stats.compared} episode pairs compared)"
                )
            elif config.method != "grpo":
                data = _examples(store, kept, model.tokenizer, config.agent)
                say(f"round {round_}: training on {len(data)} turns of {len(kept)} episodes ({config.method})")
            # ------------------------------------------------------------ train
            _, parent_id = _base_and_parent(current)
            record = CheckpointRecord(
                id=new_checkpoint_id(),
                created_at=time.time(),
                status="ready",
                method=config.method,
                base_model=base_spec,
                parent=parent_id,
                env_ids=list(config.envs),
                data_runs=runs,
                config={**config.to_dict(), "round": round_},
                package_version=_version(),
            )
            trained: dict[str, TrainResult] = {}
            train_started = time.perf_counter()
            rollouts = _Rollouts(store, config, current, record.id) if config.method == "grpo" else None

            def fill(
                tmp: Path,
                spec: str = current,
                data: Any = data,
                out: dict[str, TrainResult] = trained,
                rollouts: _Rollouts | None = rollouts,
            ) -> None:
                learner = make_model(spec)  # a fresh copy: training changes the model it is given
                assert isinstance(learner, LocalModel)
                if isinstance(trainer, GRPO):
                    assert rollouts is not None
                    out["result"] = trainer.train(
                        learner.model,
                        learner.tokenizer,
                        _env_spec(config),
                        data,
                        tmp,
                        agent=config.agent,
                        on_episode=rollouts.keep,
                        progress=progress,
                    )
                else:
                    out["result"] = trainer.train(learner.model, learner.tokenizer, data, tmp, progress=progress)

            try:
                checkpoint = registry.write(record, fill, base_weights_hash=_base_hash(registry, current, model))
            finally:
                if rollouts is not None:
                    rollouts.finish("complete" if trained else "interrupted")
            result = trained["result"]
            if rollouts is not None:
                runs = rollouts.runs
                flat = [e.get("frac_reward_zero_std") for e in result.log if "frac_reward_zero_std" in e]
                if flat and all(f == 1.0 for f in flat):
                    say(
                        "grpo: in every group all episodes had the same return, so every advantage was 0 and "
                        "nothing was learned; start from a model that sometimes succeeds (an sft checkpoint)"
                    )
            checkpoint = registry.update(
                checkpoint,
                wall_s=time.perf_counter() - train_started,
                data_runs=runs,
                metrics={"train": result.to_dict(), **({"pairs": pair_stats} if pair_stats else {})},
            )
            store.save_checkpoint(checkpoint.record)
            # ------------------------------------------------------------ gate
            if parent_val is None:
                say(
                    f"validation: the parent {current} on {config.validation_episodes} validation seeds per environment"
                )
                _, played = await _play(
                    store, config.envs, config.agent, model, "validation", config.validation_episodes, config, progress
                )
                parent_val = _episodes(played)
            child = make_model(checkpoint.spec)
            say(f"validation: {checkpoint.spec} on the same validation seeds")
            child_runs, played = await _play(
                store, config.envs, config.agent, child, "validation", config.validation_episodes, config, progress
            )
            child_val = _episodes(played)
            gate = paired_gate(parent_val, child_val)
            say(("promoted: " if gate.promoted else "refused: ") + gate.reason)
            checkpoint = registry.update(
                checkpoint,
                status="promoted" if gate.promoted else "refused",
                finished_at=time.time(),
                metrics={**checkpoint.record.metrics, "gate": gate.to_dict(), "validation_runs": child_runs},
            )
            store.save_checkpoint(checkpoint.record)
            rounds.append(
                RoundResult(
                    checkpoint=checkpoint.id,
                    data_runs=runs,
                    episodes_kept=len(kept),
                    examples=len(data),
                    train=result.to_dict(),
                    validation_runs={"child": child_runs},
                    gate=gate.to_dict(),
                )
            )
            if gate.promoted:
                await model.close()
                model, current, parent_val = child, checkpoint.spec, child_val
            else:
                await child.close()
        # ---------------------------------------------------------------- test, once
        test: dict[str, Any] = {}
        finals = [config.model] if current == config.model else [config.model, current]
        for spec in finals:
            say(f"test: {spec} on {config.test_episodes} test seeds per environment (scored once)")
            scored = model if spec == current else make_model(spec)
            runs_, episodes_ = await _play(
                store, config.envs, config.agent, scored, "test", config.test_episodes, config, progress
            )
            test[spec] = _scores(runs_, _episodes(episodes_))
            if scored is not model:
                await scored.close()
    finally:
        await model.close()
    return ImproveResult(
        parent=config.model,
        method=config.method,
        final=current,
        promoted=current != config.model,
        rounds=rounds,
        test=test,
        wall_s=time.perf_counter() - started,
    )


def _trainer(config: ImproveConfig) -> SFT | DPO | GRPO:
    shared = dataclasses.asdict(config.train)
    if config.method == "filtered-bc":
        return FilteredBC(FilteredBCConfig(**shared, top_fraction=config.top_fraction))
    if config.method == "dpo":
        return DPO(DPOConfig(**shared, beta=config.beta, margin=config.margin))
    if config.method == "grpo":
        return GRPO(
            GRPOConfig(
                **shared,
                group_size=config.samples,
                seeds_per_step=config.seeds_per_step,
                temperature=config.temperature,
            )
        )
    return SFT(config.train)


def _pairs(store: Store, kept: Sourced, tokenizer: Any, config: ImproveConfig) -> tuple[list[Any], Any]:
    """Preference pairs of the kept episodes, each episode's turns in the prompt format of ``config.agent``."""
    from palaestra.improve.examples import examples_from_episodes, prompt_config_for
    from palaestra.improve.preferences import preference_pairs

    prompt = prompt_config_for(config.agent)
    specs = {run_id: store.get_run(run_id).env_spec for run_id in dict.fromkeys(r for r, _ in kept)}
    sourced = [
        (run_id, e, examples_from_episodes([e], tokenizer=tokenizer, env=specs[run_id], prompt_config=prompt))
        for run_id, e in kept
    ]
    return preference_pairs(sourced, margin=config.margin)


def _env_spec(config: ImproveConfig) -> Any:
    """The spec of the (single) environment grpo plays, with ``max_turns`` applied."""
    overrides = {"max_turns": config.max_turns} if config.max_turns is not None else {}
    return make_any(config.envs[0], **overrides).spec


class _Rollouts:
    """Keeps grpo's rollout episodes in runs of purpose ``rollout``. A run holds one episode per seed, so each
    member of a seed's group has its own run, and a new one starts when a seed comes round again."""

    def __init__(self, store: Store, config: ImproveConfig, model: str, checkpoint: str) -> None:
        self.store, self.config, self.model, self.checkpoint = store, config, model, checkpoint
        self.runs: list[str] = []
        self._open: dict[int, tuple[str, set[int]]] = {}  # group member -> (run id, seeds in it)

    def keep(self, episode: Episode, step: int, member: int) -> None:
        current = self._open.get(member)
        if current is None or episode.seed in current[1]:
            if current is not None:
                self.store.finish_run(current[0], "complete")
            run_id = self.store.create_run(
                env_spec=_env_spec(self.config),
                agent_spec=f"{self.config.agent},temperature={self.config.temperature}",
                model_spec=self.model,
                weights_hash=None,  # the weights change every step
                config={
                    "purpose": "rollout",
                    "method": "grpo",
                    "checkpoint": self.checkpoint,
                    "member": member,
                    "first_step": step,
                },
                name=f"grpo rollouts of {self.checkpoint}, group member {member}",
            )
            current = self._open[member] = (run_id, set())
            self.runs.append(run_id)
        self.store.record_episode(current[0], episode)
        current[1].add(episode.seed)

    def finish(self, status: str) -> None:
        for run_id, _ in self._open.values():
            self.store.finish_run(run_id, status)
        self._open.clear()


def _version() -> str:
    from palaestra import __version__

    return __version__


def _base_hash(registry: Registry, spec: str, model: Any) -> str | None:
    """The weights hash of the base the chain starts from (what the first checkpoint's adapter fits)."""
    _, parent = _base_and_parent(spec)
    if parent is None:
        return model.weights_hash
    return registry.chain(parent)[0].base_weights_hash


def _scores(run_ids: list[str], episodes: list[Episode]) -> dict[str, Any]:
    from palaestra.eval.stats import bootstrap_ci

    ok = [e for e in episodes if e.status == "ok"]
    returns = [e.total_return for e in ok]
    success = [1.0 if e.success else 0.0 for e in ok]
    return {
        "runs": run_ids,
        "episodes": len(ok),
        "errors": len(episodes) - len(ok),
        "mean_return": sum(returns) / len(returns) if returns else None,
        "return_ci": bootstrap_ci(returns) if returns else None,
        "success_rate": sum(success) / len(success) if success else None,
        "success_ci": bootstrap_ci(success) if success else None,
    }
