"""Benchmark (a): environment steps per second with scripted agents, through the whole runner and store,
against a bare loop that calls ``env.step`` with the same policy.

Usage: python benchmarks/env_steps.py [--episodes 200] [--env maze-fo-v0 --env wordle-v0] [--agent random]

Prints, per environment: bare-loop steps/s, runner+store steps/s (SQLite file), their ratio, and the
runner's overhead per step in microseconds. Both are measured in the same process, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from palaestra.envs import make
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import Store


async def bare_loop(env_id: str, policy: str, seeds: list[int]) -> tuple[int, float]:
    env = make(env_id)
    act = env.scripted_policies()[policy]
    steps = 0
    start = time.perf_counter()
    for seed in seeds:
        rng = random.Random(seed)
        step = await env.reset(seed=seed)
        while not step.done:
            step = await env.step(act(env, rng))
            steps += 1
    return steps, time.perf_counter() - start


async def through_runner(env_id: str, policy: str, episodes: int, db: Path) -> tuple[int, float]:
    store = Store(f"sqlite:///{db}")
    try:
        start = time.perf_counter()
        result = await evaluate(
            EvalConfig(envs=(env_id,), agents=(policy,), episodes=episodes, split="train", concurrency=32),
            store,
            progress=False,
        )
        elapsed = time.perf_counter() - start
        steps = sum(len(e.turns) for e in store.episodes(result.run_ids[0], with_turns=True))
        return steps, elapsed
    finally:
        store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--env", action="append", default=None)
    parser.add_argument("--agent", default="random", help="scripted policy (random plays the longest episodes)")
    args = parser.parse_args()
    envs = args.env or ["maze-fo-v0", "maze-po-v0", "wordle-v0"]
    print(f"{'env':<12} {'bare steps/s':>13} {'runner steps/s':>15} {'ratio':>6} {'overhead us/step':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in envs:
            seeds = make(env_id).spec.seeds("train", args.episodes)
            bare_steps, bare_s = await bare_loop(env_id, args.agent, seeds)
            run_steps, run_s = await through_runner(env_id, args.agent, args.episodes, Path(tmp) / f"{env_id}.db")
            assert bare_steps == run_steps, (
                f"same seeds and policy must give the same steps ({bare_steps} vs {run_steps})"
            )
            bare_rate, run_rate = bare_steps / bare_s, run_steps / run_s
            overhead_us = 1e6 * (run_s - bare_s) / run_steps
            print(
                f"{env_id:<12} {bare_rate:>13.0f} {run_rate:>15.0f} {run_rate / bare_rate:>6.2f} {overhead_us:>17.0f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
