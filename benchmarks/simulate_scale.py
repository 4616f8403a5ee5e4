"""Benchmark: one population-simulation step at 10,000, 100,000 and 1,000,000 agents.

Usage: python benchmarks/simulate_scale.py [--sizes 10000 100000 1000000] [--samples 4] [--measure 32]

Per size, in one process one after the other:

1. the scripted policy (rules, no model): wall seconds of one step of ``commons`` and of ``network``
   (building the population, e.g. the follow graph, is not counted);
2. archetype mode with the embedded SmolLM2-135M (``--policy model --fidelity 0``) on ``commons`` with
   randomly drawn initial stocks (so several stock levels, hence archetypes, are present): wall seconds of
   one step, model calls made in it (archetypes x samples plus the measured agents' own calls), and the
   measured fidelity on ``--measure`` sampled agents (total variation distance and agreement rate).

The goal (issue 8): under 60 s per step at a million agents on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from palaestra.models import make_model
from palaestra.sim import SimConfig, Simulation


def scripted_step(scenario: str, agents: int) -> float:
    simulation = Simulation(SimConfig(scenario, agents, steps=2, seed=0))
    asyncio.run(simulation.step())  # the first step of network has empty feeds: time the second
    started = time.perf_counter()
    asyncio.run(simulation.step())
    return time.perf_counter() - started


async def model_step(model: object, agents: int, samples: int, measure: int) -> tuple[float, int, dict]:
    config = SimConfig(
        "commons",
        agents,
        steps=1,
        seed=0,
        policy="model",
        samples=samples,
        measure_fidelity=measure,
        options={"initial_stock": "random"},
    )
    simulation = Simulation(config, model)  # type: ignore[arg-type]
    started = time.perf_counter()
    record = await simulation.step()
    return time.perf_counter() - started, record.model_calls, record.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--measure", type=int, default=32)
    args = parser.parse_args()

    print("scripted policy, one step (seconds)")
    print(f"{'agents':>10}  {'commons':>8}  {'network':>8}")
    for n in args.sizes:
        print(f"{n:>10,}  {scripted_step('commons', n):>8.2f}  {scripted_step('network', n):>8.2f}", flush=True)

    model = make_model("smollm2-135m", max_batch_size=64)
    asyncio.run(model_step(model, 1_000, args.samples, 0))  # load and warm the model once, not timed
    print()
    print(f"archetype mode, embedded smollm2-135m, commons, {args.samples} samples per archetype, one step")
    header = (
        f"{'agents':>10}  {'wall s':>7}  {'calls':>5}  {'archetypes':>10}  {'invalid':>7}  {'TVD':>5}  {'agree':>5}"
    )
    print(header)
    for n in args.sizes:
        wall, calls, m = asyncio.run(model_step(model, n, args.samples, args.measure))
        print(
            f"{n:>10,}  {wall:>7.1f}  {calls:>5}  {m['archetypes']:>10}  {m['invalid_replies']:>7}  "
            f"{m['fidelity_tvd']:>5.2f}  {m['fidelity_agreement']:>5.2f}",
            flush=True,
        )
    print(f"(TVD and agreement: {args.measure} sampled agents' own calls against their archetypes' distributions)")


if __name__ == "__main__":
    main()
