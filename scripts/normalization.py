"""Compute the normalisation constants of built-in environments from their scripted policies.

LMRL-Gym's convention: min = the ``random`` policy's mean return, avg = the ``noisy`` policy's (the
scripted "dataset" mixture), max = the ``optimal`` policy's; each over the first ``--episodes`` seeds of
a split. Episode ``seed`` is played with policy randomness ``random.Random(seed)``, so the numbers are
exactly reproducible. Prints per-policy statistics and the ``Normalization(...)`` line for
``src/palaestra/envs/builtin.py``.

Usage::

    python scripts/normalization.py maze-fo-v0 maze-po-v0 wordle-v0 --episodes 500
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass

from palaestra.envs import make
from palaestra.envs.base import Env

POLICIES = {"min": "random", "avg": "noisy", "max": "optimal"}


@dataclass(frozen=True)
class PolicyStats:
    policy: str
    episodes: int
    mean_return: float
    success_rate: float
    mean_turns: float
    invalid_actions: int


async def play(env: Env, policy_name: str, seed: int) -> tuple[float, bool, int, int]:
    """One episode: (return, success, turns, invalid actions)."""
    policy = env.scripted_policies()[policy_name]
    rng = random.Random(seed)
    step = await env.reset(seed=seed)
    total, turns, invalid = 0.0, 0, 0
    while not step.done:
        step = await env.step(policy(env, rng))
        total += step.reward
        turns += 1
        invalid += bool(step.info["invalid_action"])
    return total, bool(step.info["success"]), turns, invalid


async def policy_stats(env_id: str, policy_name: str, episodes: int, split: str = "train") -> PolicyStats:
    env = make(env_id)
    seeds = env.spec.seeds(split, episodes)
    results = [await play(env, policy_name, seed) for seed in seeds]
    await env.close()
    return PolicyStats(
        policy=policy_name,
        episodes=len(results),
        mean_return=sum(r[0] for r in results) / len(results),
        success_rate=sum(r[1] for r in results) / len(results),
        mean_turns=sum(r[2] for r in results) / len(results),
        invalid_actions=sum(r[3] for r in results),
    )


def normalization(env_id: str, episodes: int, split: str = "train") -> dict[str, float]:
    """The constants ``{"min": ..., "avg": ..., "max": ...}``, rounded to 3 decimals as registered."""

    async def run() -> dict[str, float]:
        return {
            key: round((await policy_stats(env_id, name, episodes, split)).mean_return, 3)
            for key, name in POLICIES.items()
        }

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env_ids", nargs="+", help="environment ids, e.g. maze-fo-v0")
    parser.add_argument("--episodes", type=int, default=500, help="number of seeds (default 500)")
    parser.add_argument("--split", default="train", help="split whose first seeds are used (default train)")
    args = parser.parse_args()

    for env_id in args.env_ids:
        stats = {}
        for key, name in POLICIES.items():
            start = time.perf_counter()
            stats[key] = asyncio.run(policy_stats(env_id, name, args.episodes, args.split))
            s = stats[key]
            print(
                f"{env_id:12s} {name:8s} mean return {s.mean_return:8.3f}  success {s.success_rate:6.1%}  "
                f"mean turns {s.mean_turns:5.2f}  invalid actions {s.invalid_actions}  "
                f"({time.perf_counter() - start:.1f}s)"
            )
        lo, mid, hi = (round(stats[k].mean_return, 3) for k in ("min", "avg", "max"))
        source = f"scripts/normalization.py {env_id} --episodes {args.episodes}"
        if args.split != "train":
            source += f" --split {args.split}"
        print(f'    normalization=Normalization({lo}, {mid}, {hi}, source="{source}"),\n')


if __name__ == "__main__":
    main()
