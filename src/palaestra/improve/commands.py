"""The ``palaestra improve`` and ``palaestra models`` commands (registered in ``palaestra.cli``).

Training libraries are imported inside the commands, so ``palaestra --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

import click

from palaestra.improve.loop import METHODS


@click.command(short_help="Train a model on its environment's trajectories; promote it only if it is better.")
@click.argument("env_ids", nargs=-1, required=True, metavar="ENV...")
@click.option("--model", default="smollm2-135m", show_default=True, metavar="SPEC", help="The parent model.")
@click.option("--method", type=click.Choice(METHODS), default="filtered-bc", show_default=True)
@click.option(
    "--agent",
    default="prompt:shots=0,history=0",
    show_default=True,
    metavar="SPEC",
    help="The prompt agent the model plays as, in evaluation and in the prompts of text-only training data. "
    "Short prompts keep training affordable on a CPU.",
)
@click.option("--data", "data_runs", multiple=True, metavar="RUN", help="Runs to train on (sft, filtered-bc, dpo).")
@click.option(
    "--data-policy", default="noisy", show_default=True, help="Scripted policy that makes data when no --data."
)
@click.option("--data-episodes", default=200, show_default=True, help="Training seeds the scripted policy plays.")
@click.option("--top-fraction", default=0.3, show_default=True, help="filtered-bc: share of episodes kept, by return.")
@click.option("--rounds", default=1, show_default=True, help="evolve, dpo: explore-train-gate rounds.")
@click.option(
    "--samples", default=4, show_default=True, help="evolve, dpo: episodes per training seed; grpo: the group size."
)
@click.option(
    "--explore-seeds", default=32, show_default=True, help="evolve, dpo: training seeds per round; grpo: seed pool."
)
@click.option(
    "--temperature", default=0.7, show_default=True, help="evolve, dpo, grpo: sampling temperature while exploring."
)
@click.option("--beta", default=0.1, show_default=True, help="dpo: strength of the pull towards the parent.")
@click.option("--margin", default=0.0, show_default=True, help="dpo: least return gap between paired episodes.")
@click.option("--seeds-per-step", default=2, show_default=True, help="grpo: seeds (groups) per optimiser step.")
@click.option("--max-turns", type=int, default=None, help="Cap the environment's turns (shorter episodes).")
@click.option("--validation-episodes", default=20, show_default=True, help="Validation seeds for the gate.")
@click.option("--test-episodes", default=20, show_default=True, help="Test seeds, scored once at the end.")
@click.option("--lr", "learning_rate", default=5e-4, show_default=True, help="Learning rate.")
@click.option("--epochs", default=2.0, show_default=True, help="Passes over the training turns.")
@click.option("--max-steps", default=-1, show_default=True, help="Optimiser steps (overrides --epochs when > 0).")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--full", is_flag=True, help="Full fine-tuning instead of LoRA.")
@click.option("--lora-r", default=16, show_default=True, help="LoRA rank.")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option("--seed", default=0, show_default=True, help="Training seed.")
@click.option("--concurrency", "-c", default=32, show_default=True, help="Episodes played at once.")
@click.option("--db", envvar="PALAESTRA_DB", default=None, metavar="URL", help="Database (default ./palaestra.db).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def improve(
    env_ids: tuple[str, ...],
    model: str,
    method: str,
    agent: str,
    data_runs: tuple[str, ...],
    data_policy: str,
    data_episodes: int,
    top_fraction: float,
    rounds: int,
    samples: int,
    explore_seeds: int,
    temperature: float,
    beta: float,
    margin: float,
    seeds_per_step: int,
    max_turns: int | None,
    validation_episodes: int,
    test_episodes: int,
    learning_rate: float,
    epochs: float,
    max_steps: int,
    batch_size: int,
    full: bool,
    lora_r: int,
    threads: int | None,
    seed: int,
    concurrency: int,
    db: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Improve MODEL on ENV by training its weights, with gated promotion.

    It trains on training seeds (scripted data for sft and filtered-bc unless --data names runs; the
    model's own successful episodes for evolve; pairs of a better and a worse episode of one seed, at the
    turn where they part, for dpo (the model's own samples unless --data names runs); for grpo, episodes
    the model plays during training, groups of --samples per seed, with the episode return as the reward;
    grpo trains on whole episodes, so give the agent its history, e.g. --agent prompt:history=20,shots=0),
    evaluates the checkpoint against its parent on validation
    seeds with a paired bootstrap, promotes it only if it is better with 95% confidence (otherwise the
    parent is kept and the reason printed), and finally scores the test seeds once. Every checkpoint is
    kept in the model registry (`palaestra models list`) with its lineage, usable as MODEL+CHECKPOINT.
    """
    from palaestra.improve.loop import ImproveConfig
    from palaestra.improve.loop import improve as run_improve
    from palaestra.improve.trainers import TrainConfig
    from palaestra.store import Store

    config = ImproveConfig(
        envs=env_ids,
        model=model,
        method=method,
        agent=agent,
        data=data_runs,
        data_policy=data_policy,
        data_episodes=data_episodes,
        top_fraction=top_fraction,
        rounds=rounds,
        samples=samples,
        explore_seeds=explore_seeds,
        temperature=temperature,
        beta=beta,
        margin=margin,
        seeds_per_step=seeds_per_step,
        max_turns=max_turns,
        validation_episodes=validation_episodes,
        test_episodes=test_episodes,
        concurrency=concurrency,
        train=TrainConfig(
            lora=not full,
            lora_r=lora_r,
            learning_rate=learning_rate,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            threads=threads,
            seed=seed,
        ),
    )
    started = time.time()

    def say(message: str) -> None:
        if not quiet and not as_json:
            click.echo(f"[{time.time() - started:6.0f} s] {message}", err=True)

    with Store(db) as store:
        result = asyncio.run(run_improve(config, store, progress=not quiet and not as_json, say=say))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    from palaestra.cli import fmt_ci  # the CLI's formatting (cli.py imports this module, so not at the top)

    click.echo("")
    for round_ in result.rounds:
        gate = round_.gate
        verdict = "promoted" if gate["promoted"] else "refused"
        what = {
            "dpo": f"{round_.examples} preference pairs",
            "grpo": f"{round_.train['examples']} rollout episodes",
        }.get(result.method, f"{round_.examples} turns of {round_.episodes_kept} episodes")
        click.echo(
            f"round checkpoint {round_.checkpoint}: {what}, "
            f"{round_.train['steps']} steps in {round_.train['wall_s']:.0f} s "
            f"({round_.train['tokens_per_s']:.0f} tokens/s), loss {round_.train['losses'][0]:.3f} -> "
            f"{round_.train['losses'][-1]:.3f}; {verdict}: {gate['reason']}"
        )
    click.echo("\ntest seeds (scored once):")
    for spec, scores in result.test.items():
        click.echo(
            f"  {spec:<40} return {fmt_ci(scores['mean_return'], scores['return_ci'])}  "
            f"success {fmt_ci(scores['success_rate'], scores['success_ci'])}  ({scores['episodes']} episodes)"
        )
    final = "the parent, " + result.parent if not result.promoted else result.final
    click.echo(f"\nfinal model: {final}  (wall time {result.wall_s / 60:.1f} min)")


@click.group(short_help="Trained checkpoints in the local model registry.")
def models() -> None:
    """Trained checkpoints in the local model registry ($PALAESTRA_CHECKPOINTS, else
    $PALAESTRA_HOME/checkpoints). Use one anywhere a model spec goes: BASE+CHECKPOINT."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def models_list(as_json: bool) -> None:
    """List the checkpoints, newest first, with their lineage."""
    from palaestra.cli import fmt
    from palaestra.models.registry import Registry

    registry = Registry()
    checkpoints = registry.checkpoints()
    if as_json:
        click.echo(json.dumps([{**c.record.to_dict(), "spec": c.spec} for c in checkpoints], indent=2))
        return
    if not checkpoints:
        click.echo(f"no checkpoints in {registry.root} yet; make one with `palaestra improve ENV`", err=True)
        return
    for c in checkpoints:
        r = c.record
        created = datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M")
        gate = r.metrics.get("gate", {})
        click.echo(
            f"{c.spec:<36} {r.status:<9} {r.method:<12} {created}  parent={r.parent or r.base_model}  "
            f"envs={','.join(r.env_ids)}  data={','.join(r.data_runs)}  "
            f"validation diff={fmt(gate.get('diff_mean'))}  wall={fmt(r.wall_s, 0)} s"
        )
