"""The ``palaestra simulate`` command (registered in ``palaestra.cli``).

numpy, the scenarios and the model are imported inside the command, so ``palaestra --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

SCENARIO_NAMES = ("commons", "network")


def _parse_options(items: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. migrate_prob=0.2)", param_hint="--option")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a bare word such as initial_stock=random
    return options


@click.command(short_help="Simulate a population of agents: a commons society or an information network.")
@click.argument("scenario", type=click.Choice(SCENARIO_NAMES))
@click.option("--agents", "-n", default=1000, show_default=True, type=click.IntRange(min=1), help="Population size.")
@click.option("--steps", "-t", default=10, show_default=True, type=click.IntRange(min=1), help="Steps to simulate.")
@click.option(
    "--model",
    "-m",
    "model_spec",
    default=None,
    metavar="SPEC",
    help="Model the agents decide with (smollm2-135m, openai:..., scripted:cycle:fair|high). "
    "Not needed with --policy scripted.",
)
@click.option(
    "--policy",
    default="scripted",
    show_default=True,
    metavar="scripted|model|mix:SHARE",
    help="Who decides: rules (scripted), the model for every agent (model), or the model for a random "
    "SHARE of the agents and rules for the rest (e.g. mix:0.2).",
)
@click.option(
    "--fidelity",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Share of model agents with a model call of their own; the rest share one call per archetype "
    "(1: one call per agent, 0: archetypes only).",
)
@click.option(
    "--fidelity-by",
    type=click.Choice(["influence", "random"]),
    default="influence",
    show_default=True,
    help="Which agents get their own calls: the most influential (largest stock share / most followers) or a "
    "random draw.",
)
@click.option("--samples", default=4, show_default=True, type=click.IntRange(min=1), help="Completions per archetype.")
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0.0))
@click.option(
    "--measure-fidelity",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    metavar="K",
    help="Each step, compare K sampled agents' own model calls with their archetypes' distributions "
    "(total variation distance and agreement rate).",
)
@click.option("--retries", default=2, show_default=True, type=click.IntRange(min=0), help="Retries of a failed call.")
@click.option("--seed", default=0, show_default=True, help="Seed of profiles, dynamics, sampling and model requests.")
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Scenario option, repeatable (commons: communities, capacity, migrate_prob, initial_stock=random, ...; "
    "network: topics, follows, in_network, popular, pool, window, ...). See docs/simulate.md.",
)
@click.option(
    "--db",
    envvar="PALAESTRA_DB",
    default=None,
    metavar="URL",
    help="Database the run and its per-step metrics go to: a SQLAlchemy URL or a file path. "
    "Default: $PALAESTRA_DB, else ./palaestra.db.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def simulate(
    scenario: str,
    agents: int,
    steps: int,
    model_spec: str | None,
    policy: str,
    fidelity: float,
    fidelity_by: str,
    samples: int,
    temperature: float,
    measure_fidelity: int,
    retries: int,
    seed: int,
    options: tuple[str, ...],
    db: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Simulate SCENARIO with a population of agents and store per-step population metrics as a run.

    \b
    Scenarios:
      commons   many GovSim-style shared fisheries, migration from depleted ones
      network   post, repost, follow; a recommender mixes followed and popular posts

    The memory the arrays need is estimated first; a population that does not fit is refused. The run is
    recorded with env id sim:SCENARIO; `palaestra runs --env sim:commons` lists such runs.

    \b
    Examples:
      palaestra simulate commons --agents 100000 --steps 20
      palaestra simulate network --agents 10000 --steps 3 --model smollm2-135m --policy model \\
          --fidelity 0.01 --measure-fidelity 32
    """
    from palaestra.cli import open_store, table
    from palaestra.models import make_model
    from palaestra.sim import SCENARIOS, SimConfig, Simulation, StepRecord

    config = SimConfig(
        scenario=scenario,
        agents=agents,
        steps=steps,
        seed=seed,
        policy=policy,
        fidelity=fidelity,
        fidelity_by=fidelity_by,
        samples=samples,
        temperature=temperature,
        retries=retries,
        measure_fidelity=measure_fidelity,
        options=_parse_options(options),
    )
    model = make_model(model_spec) if model_spec else None
    simulation = Simulation(config, model)
    click.echo(
        f"simulating {scenario}: {agents:,} agents, {steps} steps, policy {policy}, "
        f"about {simulation.memory_estimate / 2**20:.1f} MiB of arrays",
        err=True,
    )
    store = open_store(db)
    progress = None if quiet else click.progressbar(length=steps, label="steps", file=sys.stderr)

    def on_step(record: StepRecord) -> None:
        if progress is not None:
            progress.update(1)

    try:
        if progress is not None:
            progress.render_progress()
        run_id, records = asyncio.run(simulation.run(store, on_step=on_step))
    finally:
        if progress is not None:
            progress.render_finish()
        store.close()
        if model is not None:
            asyncio.run(model.close())
    if as_json:
        payload = {
            "run_id": run_id,
            "config": {**config.__dict__},
            "memory_estimate_bytes": simulation.memory_estimate,
            "steps": [
                {"step": r.step, "metrics": r.metrics, "model_calls": r.model_calls, "wall_s": r.wall_s}
                for r in records
            ],
        }
        click.echo(json.dumps(payload))
        return
    names = list(SCENARIOS[scenario].metric_names)
    extra = ["fidelity_tvd", "fidelity_agreement"] if measure_fidelity else []
    rows = [
        [r.step, *(_cell(r.metrics[m]) for m in [*names, *extra, "archetypes"]), r.model_calls, f"{r.wall_s:.2f}"]
        for r in records
    ]
    click.echo(table(rows, ["step", *names, *extra, "archetypes", "model calls", "wall s"]))
    click.echo(f"run {run_id}", err=True)


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
