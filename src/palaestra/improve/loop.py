"""``improve``: train a model on trajectories of training seeds, gate it on validation seeds against its
parent, and score the test seeds once for the final model.

Methods:

- ``sft``: behaviour cloning on every ok episode of the data runs;
- ``filtered-bc``: on the best ``top_fraction`` of them by return (LMRL-Gym's filtered BC);
- ``evolve``: rounds of explore (the current model samples ``samples`` episodes per training seed at
  ``temperature``), keep the successful ones, fine-tune, gate (AgentGym's AgentEvol, LMRL-Gym's online
  filtered BC); the next round starts from the promoted model.

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
from palaestra.improve.gate import paired_gate
from palaestra.improve.trainers import SFT, FilteredBC, FilteredBCConfig, TrainConfig, TrainResult
from palaestra.models.registry import Registry, new_checkpoint_id, split_spec
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import CheckpointRecord, Store

METHODS = ("sft", "filtered-bc", "evolve")


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
    rounds: int = 1  # evolve
    samples: int = 4  # evolve: episodes per training seed
    explore_seeds: int = 32  # evolve: training seeds explored per round
    temperature: float = 0.7  # evolve: sampling temperature while exploring
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
    if config.method == "evolve" and config.data:
        raise SpecError("evolve explores with the model itself; it takes no --data runs")
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
    trainer = (
        FilteredBC(FilteredBCConfig(**dataclasses.asdict(config.train), top_fraction=config.top_fraction))
        if config.method == "filtered-bc"
        else SFT(config.train)
    )
    parent_val: list[Episode] | None = None  # played once data and training have worked (nothing is written before)
    try:
        for round_ in range(1, (config.rounds if config.method == "evolve" else 1) + 1):
            # ------------------------------------------------------------ data
            if config.method == "evolve":
                say(
                    f"round {round_}: exploring with {current}, {config.samples} samples on each of "
                    f"{config.explore_seeds} training seeds"
                )
                runs: list[str] = []
                sourced: Sourced = []
                for sample in range(config.samples):
                    agent = f"{config.agent},temperature={config.temperature},sample={sample}"
                    r, e = await _play(
                        store, config.envs, agent, model, "train", config.explore_seeds, config, progress
                    )
                    runs += r
                    sourced += e
                kept = [(r, e) for r, e in sourced if e.status == "ok" and e.success]
                if not kept:
                    raise SpecError(
                        f"nothing to train on: none of the {len(sourced)} exploration episodes succeeded; "
                        "raise --samples or --temperature, or start from scripted data with --method filtered-bc"
                    )
            else:
                if config.data:
                    runs = [store.get_run(r).id for r in config.data]
                    sourced = _load(store, runs)
                else:
                    say(f"data: the scripted {config.data_policy!r} policy on {config.data_episodes} training seeds")
                    runs, sourced = await _play(
                        store, config.envs, config.data_policy, None, "train", config.data_episodes, config, progress
                    )
                chosen = {id(e) for e in trainer.select(_episodes(sourced))}
                kept = [(r, e) for r, e in sourced if id(e) in chosen]
            examples = _examples(store, kept, model.tokenizer, config.agent)
            say(f"round {round_}: training on {len(examples)} turns of {len(kept)} episodes ({config.method})")
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

            def fill(
                tmp: Path, spec: str = current, data: list[Any] = examples, out: dict[str, TrainResult] = trained
            ) -> None:
                learner = make_model(spec)  # a fresh copy: training changes the model it is given
                assert isinstance(learner, LocalModel)
                out["result"] = trainer.train(learner.model, learner.tokenizer, data, tmp, progress=progress)

            checkpoint = registry.write(record, fill, base_weights_hash=_base_hash(registry, current, model))
            result = trained["result"]
            checkpoint = registry.update(
                checkpoint, wall_s=time.perf_counter() - train_started, metrics={"train": result.to_dict()}
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
                    examples=len(examples),
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
        final=current,
        promoted=current != config.model,
        rounds=rounds,
        test=test,
        wall_s=time.perf_counter() - started,
    )


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
