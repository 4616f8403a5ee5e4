"""Benchmark: the overhead of distribution, episodes per second with the Ray executor against the asyncio one.

Usage: python benchmarks/ray_overhead.py [--episodes 200] [--concurrency 32] [--address HOST:PORT]

The same jobs are played twice, in this process by ``AsyncioExecutor`` and on Ray by ``RayExecutor``
(without ``--address`` a Ray instance started on this machine with all its cores), for two workloads:

1. ``optimal`` on maze-fo-v0: a scripted agent, no model: what each episode costs to ship to a worker and
   back (the job out, the whole episode with its turns back to this process).
2. ``prompt`` with the ``scripted:echo`` model on maze-fo-v0 (4 turns): one model call per turn, which on
   Ray goes from the episode worker to the model replica actor and back.

Ray's start-up (joining or starting the cluster, starting the actors) is timed apart from the episodes.
Each figure is the best of ``--repeats`` runs. The ratio Ray / asyncio is below 1 when distribution costs
more than it brings: these episodes take milliseconds, so they show the overhead, not the gain that comes
when episodes or model calls are slow and there are more machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence

from palaestra.envs import make
from palaestra.models.scripted import ScriptedModel
from palaestra.runner import AsyncioExecutor, EpisodeJob, Executor


async def episodes_per_s(executor: Executor, jobs: Sequence[EpisodeJob], repeats: int) -> float:
    best = 0.0
    done: list[str] = []
    for _ in range(repeats):
        done.clear()
        start = time.perf_counter()
        await executor.run(jobs, lambda job, episode: done.append(episode.status))
        elapsed = time.perf_counter() - start
        assert done.count("ok") == len(jobs), f"{len(jobs) - done.count('ok')} episodes failed"
        best = max(best, len(jobs) / elapsed)
    return best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--address", default=None, help="a Ray cluster (default: start one on this machine)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # A local instance only: no token file written into ~/.ray, no usage report sent.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from palaestra.runner.ray_executor import RayExecutor

    maze = make("maze-fo-v0").spec
    short = make("maze-fo-v0", max_turns=4).spec
    workloads = [
        ("optimal, no model", None, [EpisodeJob("b", maze, "optimal", None, s) for s in range(args.episodes)]),
        (
            "prompt + scripted:echo",
            "scripted:echo",
            [EpisodeJob("b", short, "prompt:shots=0", "scripted:echo", s) for s in range(args.episodes)],
        ),
    ]
    print(f"{args.episodes} maze-fo-v0 episodes per workload, concurrency {args.concurrency}, best of {args.repeats}")
    print(f"{'workload':<24} {'asyncio ep/s':>13} {'ray ep/s':>10} {'ray/asyncio':>12} {'ray start-up s':>15}")
    for name, model_spec, jobs in workloads:
        local = AsyncioExecutor(ScriptedModel("echo") if model_spec else None, args.concurrency)
        in_process = await episodes_per_s(local, jobs, args.repeats)
        started = time.perf_counter()
        ray_executor = RayExecutor(model_spec, address=args.address, concurrency=args.concurrency)
        try:
            await ray_executor.start()
            startup = time.perf_counter() - started
            workers = len(await ray_executor.worker_infos())
            on_ray = await episodes_per_s(ray_executor, jobs, args.repeats)
        finally:
            await ray_executor.close()
        print(f"{name:<24} {in_process:>13.1f} {on_ray:>10.1f} {on_ray / in_process:>12.2f} {startup:>15.1f}")
        print(f"{'':<24} ({workers} episode workers{', 1 model replica' if model_spec else ''})")


if __name__ == "__main__":
    asyncio.run(main())
