"""Benchmark (b): rollout throughput with the embedded SmolLM2-135M.

Usage: python benchmarks/rollout_throughput.py [--env maze-fo-v0] [--episodes 32] [--max-turns 6]
                                               [--naive-episodes 4]

Three figures, measured in one process one after the other, in generated tokens per second:

1. ``palaestra eval``: ``evaluate`` with the prompt agent, all episodes concurrent (the local model batches
   their requests), through the runner and the SQLite store.
2. raw batched ``generate``: the very prompts the eval produced (read back as token ids from the store),
   grouped by turn into left-padded batches of up to 32, given straight to transformers' ``generate``
   with the same greedy settings: the limit on this machine.
3. naive loop: the same evaluation played one episode at a time (``concurrency=1``).
4. ``palaestra eval`` again with the local model's prefix cache turned off, to show what it is worth.
5. ``palaestra eval`` again with the ``static`` engine (one ``generate`` per batch, which runs until its
   longest row ends) instead of continuous batching, to show what that is worth.

The local model computes a prompt prefix shared by several requests (the environment's instructions and
demonstrations) once; plain ``generate`` (figure 2) cannot, so figure 1 may exceed figure 2. It prints the
figures and the ratios the README quotes (eval / raw, eval / naive).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from transformers import GenerationConfig

from palaestra.agents import PromptConfig
from palaestra.envs import make
from palaestra.models.local import LocalModel, pad_prompts
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import Store


async def eval_tokens_per_s(
    model: LocalModel, config: EvalConfig, db: Path
) -> tuple[float, int, list[list[tuple[int, ...]]]]:
    """Run the evaluation; return tokens/s, tokens generated, and the prompts grouped by turn index."""
    with Store(f"sqlite:///{db}") as store:
        start = time.perf_counter()
        result = await evaluate(config, store, model=model, progress=False)
        elapsed = time.perf_counter() - start
        assert result.errors == 0, f"{result.errors} episodes failed"
        by_turn: dict[int, list[tuple[int, ...]]] = defaultdict(list)
        tokens = 0
        for run_id in result.run_ids:
            for episode in store.episodes(run_id, with_turns=True):
                for index, turn in enumerate(episode.turns):
                    (call,) = turn.action.calls
                    by_turn[index].append(call.prompt_token_ids or ())
                    tokens += len(call.completion_token_ids or ())
    return tokens / elapsed, tokens, [by_turn[i] for i in sorted(by_turn)]


def raw_tokens_per_s(
    model: LocalModel, prompts_by_turn: list[list[tuple[int, ...]]], max_tokens: int
) -> tuple[float, int]:
    """Plain transformers ``generate`` over the same prompts in batches of up to 32."""
    config = GenerationConfig(
        max_new_tokens=max_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=sorted(model.eos_ids),
        pad_token_id=model.pad_id,
    )
    eos = torch.tensor(sorted(model.eos_ids))
    tokens = 0
    start = time.perf_counter()
    for prompts in prompts_by_turn:
        for i in range(0, len(prompts), 32):
            batch = prompts[i : i + 32]
            ids, mask = pad_prompts(batch, model.pad_id)
            width = ids.shape[1]
            with torch.inference_mode():
                out = model.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            for row in out[:, width:]:
                ended = torch.isin(row, eos).nonzero()
                tokens += int(ended[0]) + 1 if len(ended) else len(row)  # count up to and including EOS
    return tokens / (time.perf_counter() - start), tokens


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="maze-fo-v0")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--naive-episodes", type=int, default=4)
    parser.add_argument("--agent", default="prompt", help="prompt-agent spec, e.g. prompt:shots=0")
    args = parser.parse_args()

    model = LocalModel.embedded()
    print(f"model smollm2-135m on {model.device}, torch threads {torch.get_num_threads()}")
    config = EvalConfig(
        envs=(args.env,),
        agents=(args.agent,),
        episodes=args.episodes,
        max_turns=args.max_turns,
        concurrency=args.episodes,
    )
    max_tokens = PromptConfig.parse(args.agent.partition(":")[2]).max_tokens or make(args.env).action_tokens
    with tempfile.TemporaryDirectory() as tmp:
        # a short warm-up so that the first measured batch does not pay for lazy initialisation
        with Store(f"sqlite:///{tmp}/warm.db") as warm:
            await evaluate(
                EvalConfig(envs=(args.env,), agents=(args.agent,), episodes=2, max_turns=1),
                warm,
                model=model,
                progress=False,
            )
        eval_rate, eval_tokens, prompts = await eval_tokens_per_s(model, config, Path(tmp) / "eval.db")
        raw_rate, raw_tokens = raw_tokens_per_s(model, prompts, max_tokens)
        naive = EvalConfig(
            envs=(args.env,),
            agents=(args.agent,),
            episodes=args.naive_episodes,
            max_turns=args.max_turns,
            concurrency=1,
        )
        naive_rate, naive_tokens, _ = await eval_tokens_per_s(model, naive, Path(tmp) / "naive.db")
        await model.close()
        plain = LocalModel.embedded(prefix_cache=False)
        plain_rate, plain_tokens, _ = await eval_tokens_per_s(plain, config, Path(tmp) / "plain.db")
        await plain.close()
        static = LocalModel.embedded(engine="static")
        static_rate, static_tokens, _ = await eval_tokens_per_s(static, config, Path(tmp) / "static.db")
        await static.close()
    calls = sum(len(p) for p in prompts)
    print(
        f"{args.env}, agent {args.agent}: {args.episodes} episodes x up to {args.max_turns} turns = {calls} model calls"
    )
    print(f"palaestra eval, concurrent   {eval_rate:8.1f} tokens/s  ({eval_tokens} tokens)")
    print(f"raw batched generate          {raw_rate:8.1f} tokens/s  ({raw_tokens} tokens, same prompts)")
    print(
        f"naive loop, one episode       {naive_rate:8.1f} tokens/s  "
        f"({naive_tokens} tokens, {args.naive_episodes} episodes)"
    )
    print(f"palaestra eval, no prefix cache {plain_rate:6.1f} tokens/s  ({plain_tokens} tokens)")
    print(f"palaestra eval, static batches  {static_rate:6.1f} tokens/s  ({static_tokens} tokens)")
    print(f"eval / raw batched = {eval_rate / raw_rate:.2f}   eval / naive = {eval_rate / naive_rate:.1f}x")
    print(f"without the prefix cache: eval / raw batched = {plain_rate / raw_rate:.2f}")
    print(f"continuous batching / static batches = {eval_rate / static_rate:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
