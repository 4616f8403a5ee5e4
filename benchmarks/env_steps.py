"""Benchmark (a): environment steps per second with scripted agents, through the whole runner and store,
against a bare loop that calls ``env.step`` with the same policy.

Usage: python benchmarks/env_steps.py [--episodes 200] [--budget-s 10] [--env maze-fo-v0 ...] [--agent random]

By default every task of the LMRL suite. Prints, per environment: the episodes played, bare-loop steps/s,
runner+store steps/s (SQLite file), their ratio, and the runner's overhead per step in microseconds. Both
are measured in the same process, one after the other, on the same train seeds. The bare loop plays up to
``--episodes`` episodes but stops after ``--budget-s`` seconds (chess against Stockfish is slow); the
runner then plays the same number of episodes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from palaestra.envs import make
from palaestra.envs.suites import suite
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import Store


async def bare_loop(env_id: str, policy: str, seeds: list[int], budget_s: float) -> tuple[int, int, float]:
    """(episodes, steps, seconds) of a plain loop over ``seeds``, stopping once ``budget_s`` is spent."""
    env = make(env_id)
    act = env.scripted_policies()[policy]
    steps = episodes = 0
    start = time.perf_counter()
    try:
        for seed in seeds:
            rng = random.Random(seed)
            step = await env.reset(seed=seed)
            while not step.done:
                step = await env.step(act(env, rng))
                steps += 1
            episodes += 1
            if time.perf_counter() - start > budget_s:
                break
        return episodes, steps, time.perf_counter() - start
    finally:
        await env.close()


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
    parser.add_argument("--episodes", type=int, default=200, help="most episodes per environment (200)")
    parser.add_argument("--budget-s", type=float, default=10.0, help="seconds of bare loop per environment (10)")
    parser.add_argument("--env", action="append", default=None, help="environment id, repeatable (default: lmrl)")
    parser.add_argument("--agent", default="random", help="scripted policy (random plays the longest episodes)")
    args = parser.parse_args()
    envs = args.env or list(suite("lmrl"))
    print(
        f"{'env':<20} {'episodes':>8} {'bare steps/s':>13} {'runner steps/s':>15} {'ratio':>6} {'overhead us/step':>17}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in envs:
            seeds = make(env_id).spec.seeds("train", args.episodes)
            episodes, bare_steps, bare_s = await bare_loop(env_id, args.agent, seeds, args.budget_s)
            run_steps, run_s = await through_runner(env_id, args.agent, episodes, Path(tmp) / f"{env_id}.db")
            assert bare_steps == run_steps, (
                f"same seeds and policy must give the same steps ({bare_steps} vs {run_steps})"
            )
            bare_rate, run_rate = bare_steps / bare_s, run_steps / run_s
            overhead_us = 1e6 * (run_s - bare_s) / run_steps
            print(
                f"{env_id:<20} {episodes:>8} {bare_rate:>13.0f} {run_rate:>15.0f} {run_rate / bare_rate:>6.2f} "
                f"{overhead_us:>17.0f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
