"""Benchmark: time per round of AgentsNet with scripted agents at 10 to 10,000 agents, and the runner's
overhead per agent-turn.

Usage: python benchmarks/agentsnet_rounds.py [--sizes 10 100 1000 10000] [--task leader-election]
                                             [--graph small-world] [--seed 0]

For each size, one episode of ``agentsnet-<task>-v0`` on the same seed is played twice in the same process:

- bare: a plain loop that asks the scripted ``optimal`` policy for every acting agent's action and calls
  ``env.step`` (what the environment and the policies cost);
- runner: ``palaestra.runner.run_multi_episode`` with one ``ScriptedAgent`` per seat (what the runner adds:
  a ``PlayerView`` per seat, an ``act`` coroutine per agent-turn gathered concurrently, a ``Turn`` record
  per action, per-player returns).

Prints rounds, seconds per round for both, and the runner's overhead per agent-turn in microseconds
((runner - bare) / agent-turns). Graph generation and reset are timed separately (``setup s``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from palaestra.agents.players import make_players
from palaestra.envs import make_multi
from palaestra.runner import run_multi_episode


async def bare(env_id: str, n: int, graph: str, seed: int) -> tuple[float, int, int, float, bool]:
    """(setup seconds, rounds, agent-turns, play seconds, success) of a plain loop."""
    env = make_multi(env_id, n_agents=n, graph=graph)
    policy = env.scripted_policies()["optimal"]
    started = time.perf_counter()
    await env.reset(seed=seed)
    setup = time.perf_counter() - started
    rngs = {a: random.Random(seed * 100_003 + i) for i, a in enumerate(env.possible_agents)}
    rounds = turns = 0
    started = time.perf_counter()
    while env.agents:
        acting = env.acting()
        await env.step({a: policy(env, a, rngs[a]) for a in acting})
        rounds += 1
        turns += len(acting)
    play = time.perf_counter() - started
    return setup, rounds, turns, play, bool(env.metrics().get("success"))


async def through_runner(env_id: str, n: int, graph: str, seed: int) -> tuple[float, int, bool]:
    """(seconds including reset, agent-turns, success) of the same episode through ``run_multi_episode``."""
    env = make_multi(env_id, n_agents=n, graph=graph)
    players = make_players("optimal", env, None, seed=seed)
    started = time.perf_counter()
    episode = await run_multi_episode(env, players, seed)
    seconds = time.perf_counter() - started
    if episode.status != "ok":
        raise SystemExit(f"runner episode failed: {episode.error}")
    return seconds, len(episode.turns), episode.success


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--task", default="leader-election")
    parser.add_argument("--graph", default="small-world")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env_id = f"agentsnet-{args.task}-v0"
    print(f"{env_id} on {args.graph} graphs, scripted optimal agents, seed {args.seed}")
    header = f"{'agents':>7} {'setup s':>8} {'rounds':>6} {'agent-turns':>11} {'bare s/round':>12} "
    header += f"{'runner s/round':>14} {'overhead us/agent-turn':>22} {'solved':>6}"
    print(header)
    for n in args.sizes:
        setup, rounds, turns, play, solved = await bare(env_id, n, args.graph, args.seed)
        runner_s, runner_turns, runner_solved = await through_runner(env_id, n, args.graph, args.seed)
        if runner_turns != turns or runner_solved != solved:
            raise SystemExit(f"the runner played a different episode ({runner_turns} turns vs {turns})")
        overhead_us = 1e6 * (runner_s - setup - play) / turns
        print(
            f"{n:>7} {setup:>8.2f} {rounds:>6} {turns:>11} {play / rounds:>12.4f} "
            f"{(runner_s - setup) / rounds:>14.4f} {overhead_us:>22.1f} {solved!s:>6}"
        )


if __name__ == "__main__":
    asyncio.run(main())
