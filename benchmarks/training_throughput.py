"""Benchmark: LoRA training tokens per second of the embedded SmolLM2-135M on this machine, as a fraction of
the limit set by the machine's measured matmul speed, and episodes per second of self-training rollouts.

Usage: python benchmarks/training_throughput.py [--steps 8] [--batch-size 8] [--env maze-fo-v0]
                                                [--rollout-episodes 16] [--grpo-steps 2] [--threads N]

Prints, from one run (``--steps 0``, ``--rollout-episodes 0`` or ``--grpo-steps 0`` leaves a part out):
- the fp32 matmul speed (2048 x 2048 x 2048, best of 5), in GFLOP/s;
- training: scripted ``noisy`` maze turns in the ``prompt:shots=0,history=0`` format, ``--steps`` LoRA steps
  of ``--batch-size`` examples: tokens per second, and that as a fraction of the limit
  (matmul FLOP/s / (6 x parameters) tokens/s: a forward and backward pass cost about 6 FLOPs per parameter
  per token);
- rollouts: ``--rollout-episodes`` exploration episodes of the model at temperature 0.7 (what ``evolve``
  plays), in episodes and agent turns per second;
- grpo: ``--grpo-steps`` GRPO steps of 2 seeds x a group of 4 episodes (``max_turns`` 10, the agent keeping
  its whole history): rollout episodes per second while training, and the share of the step time the
  rollouts take.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import torch


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up
    best = min(_time(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _time(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--env", default="maze-fo-v0")
    parser.add_argument("--rollout-episodes", type=int, default=16)
    parser.add_argument("--grpo-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from palaestra.improve.examples import examples_from_episodes, prompt_config_for
    from palaestra.improve.trainers import SFT, TrainConfig
    from palaestra.models import make_model
    from palaestra.runner import EvalConfig, evaluate
    from palaestra.store import Store

    print(f"torch threads {torch.get_num_threads()}")
    gflops = matmul_gflops()
    print(f"matmul fp32 2048^3: {gflops:.1f} GFLOP/s")

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        agent = "prompt:shots=0,history=0"
        if args.steps > 0:  # 0 skips the training figure
            data = await evaluate(
                EvalConfig(envs=(args.env,), agents=("noisy",), episodes=64, split="train", purpose="data"),
                store,
                progress=False,
            )
            run = store.get_run(data.run_ids[0])
            episodes = store.episodes(run.id, with_turns=True)
            model = make_model("smollm2-135m")
            examples = examples_from_episodes(
                episodes, tokenizer=model.tokenizer, env=run.env_spec, prompt_config=prompt_config_for(agent)
            )
            params = sum(p.numel() for p in model.model.parameters())
            config = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, warmup_ratio=0.0)
            result = SFT(config).train(model.model, model.tokenizer, examples, Path(tmp) / "out", progress=False)
            limit = gflops * 1e9 / (6 * params)
            print(
                f"training: {result.steps} LoRA steps x {args.batch_size} examples, {result.tokens} tokens "
                f"({result.tokens / max(1, result.steps * args.batch_size):.0f} per example) in {result.wall_s:.1f} s"
            )
            print(
                f"training: {result.tokens_per_s:.0f} tokens/s; limit at {gflops:.0f} GFLOP/s and "
                f"6 x {params / 1e6:.0f}M FLOPs per token: {limit:.0f} tokens/s; "
                f"fraction {result.tokens_per_s / limit:.2f}"
            )
            await model.close()

        if args.rollout_episodes > 0:  # 0 skips the rollout figure
            explorer = make_model("smollm2-135m")
            started = time.perf_counter()
            rollout = await evaluate(
                EvalConfig(
                    envs=(args.env,),
                    agents=(f"{agent},temperature=0.7,sample=0",),
                    episodes=args.rollout_episodes,
                    split="train",
                ),
                store,
                model=explorer,
                progress=False,
            )
            seconds = time.perf_counter() - started
            played = store.episodes(rollout.run_ids[0], with_turns=True)
            turns = sum(len(e.turns) for e in played)
            print(
                f"rollouts ({agent}, temperature 0.7): {len(played)} episodes, {turns} turns in {seconds:.1f} s: "
                f"{len(played) / seconds:.3f} episodes/s, {turns / seconds:.2f} turns/s"
            )
            await explorer.close()

        if args.grpo_steps > 0:
            from palaestra.envs import make
            from palaestra.improve.grpo import GRPO, GRPOConfig

            learner = make_model("smollm2-135m")
            spec = make(args.env, max_turns=10).spec
            grpo = GRPOConfig(max_steps=args.grpo_steps, group_size=4, seeds_per_step=2, warmup_ratio=0.0)
            trained = GRPO(grpo).train(
                learner.model,
                learner.tokenizer,
                spec,
                spec.seeds("train", 16),
                Path(tmp) / "grpo",
                agent="prompt:shots=0,history=10,max_tokens=16",
                progress=False,
            )
            roll = trained.log[-1]
            print(
                f"grpo: {trained.steps} steps x 8 episodes in {trained.wall_s:.1f} s; rollouts "
                f"{roll['rollout_episodes']:.0f} episodes, {roll['turns_played']:.0f} turns "
                f"({roll['turns_trained']:.0f} in the trained sequences) in {roll['rollout_wall_s']:.1f} s: "
                f"{roll['rollout_episodes_per_s']:.3f} episodes/s, "
                f"{roll['rollout_wall_s'] / trained.wall_s:.0%} of the training time"
            )
            await learner.close()


if __name__ == "__main__":
    asyncio.run(main())
