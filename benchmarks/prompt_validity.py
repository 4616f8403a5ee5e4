"""How often the embedded SmolLM2-135M's first reply is a valid action, with and without demonstrations,
and how fast the CPU reads prompts (prefill) compared with writing replies (decode).

Usage: python benchmarks/prompt_validity.py [--seeds 8] [--env maze-fo-v0 --env wordle-v0 ...]

For each environment and each ``shots`` setting of the prompt agent, the first turn of ``--seeds`` test
seeds is played once (greedy) and the environment says whether the action was valid. Then one batch of
those prompts is timed with a single new token (prefill) and with the agent's full reply budget, and so is
each prompt alone: batching speeds up decoding (memory-bound), not prefill (compute-bound).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import torch

from palaestra.agents import PromptAgent, PromptConfig
from palaestra.agents.prompt import demonstrations
from palaestra.envs import make
from palaestra.models.local import LocalModel, pad_prompts


async def first_moves(model: LocalModel, env_id: str, shots: int, seeds: list[int]) -> tuple[int, list[list[int]]]:
    agent = PromptAgent(model, PromptConfig(shots=shots))
    envs = [make(env_id) for _ in seeds]
    observations = [(await env.reset(seed=seed)).observation for env, seed in zip(envs, seeds, strict=True)]
    actions = await asyncio.gather(*(agent.act(env, [], obs) for env, obs in zip(envs, observations, strict=True)))
    valid = 0
    for env, action in zip(envs, actions, strict=True):
        step = await env.step(action.text)
        valid += not step.info["invalid_action"]
    prompts = [list(a.calls[0].prompt_token_ids or ()) for a in actions]
    return valid, prompts


def timed_generate(model: LocalModel, prompts: list[list[int]], new_tokens: int) -> float:
    ids, mask = pad_prompts(prompts, model.pad_id)
    start = time.perf_counter()
    with torch.inference_mode():
        model.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=model.pad_id,
        )
    return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--env", action="append", default=None)
    args = parser.parse_args()
    model = LocalModel.embedded()
    print(f"{'env':<12} {'shots':>5} {'valid first moves':>18} {'prompt tokens':>14}")
    last_prompts: list[list[int]] = []
    for env_id in args.env or ["maze-fo-v0", "maze-po-v0", "wordle-v0"]:
        seeds = make(env_id).spec.seeds("test", args.seeds)
        for shots in (0, 2):
            await demonstrations(make(env_id), shots)  # computed once, outside the measurement
            valid, prompts = await first_moves(model, env_id, shots, seeds)
            mean_len = sum(len(p) for p in prompts) / len(prompts)
            print(f"{env_id:<12} {shots:>5} {valid:>12} / {len(seeds):<3} {mean_len:>14.0f}")
            last_prompts = prompts
    reply = PromptConfig().max_tokens or make(env_id).action_tokens
    tokens = sum(len(p) for p in last_prompts)
    one = timed_generate(model, last_prompts, 1)
    full = timed_generate(model, last_prompts, reply)
    rows = len(last_prompts)
    alone_one = sum(timed_generate(model, [p], 1) for p in last_prompts)
    alone_full = sum(timed_generate(model, [p], reply) for p in last_prompts)
    print(
        f"prefill: {tokens} prompt tokens in a batch of {rows}: {tokens / one:.0f} tokens/s; "
        f"alone: {tokens / alone_one:.0f}"
    )
    decoded = rows * (reply - 1)
    print(
        f"decode: {reply - 1} more tokens per row, batch of {rows}: {decoded / (full - one):.0f} tokens/s; "
        f"alone: {decoded / (alone_full - alone_one):.0f}"
    )
    await model.close()


if __name__ == "__main__":
    asyncio.run(main())
