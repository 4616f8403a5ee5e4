"""DPO and GRPO on the tiny model built inside the tests: DPO's loss goes down on preference pairs and the chosen
replies become the more likely ones; GRPO plays real episodes through the runner, trains on exact tokens with
the environment's tokens masked, and raises the return of a task whose reward the tiny model can move."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import EnvSpec, InvalidActionRule, Step
from palaestra.envs.base import Env
from palaestra.improve.grpo import GRPO, GRPOConfig, episode_sequence
from palaestra.improve.preferences import PreferencePair
from palaestra.improve.trainers import DPO, DPOConfig
from palaestra.models import make_model

MOVES = (("up", "down"), ("left", "right"), ("down", "up"), ("right", "left"))


def pairs(tokenizer: Any) -> list[PreferencePair]:
    out = []
    for good, bad in MOVES:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Where to? Say {good}."}], add_generation_prompt=True, return_dict=True
        )["input_ids"]
        reply = lambda move: tokenizer.encode(f"move {move}<|im_end|>", add_special_tokens=False)  # noqa: E731
        out.append(PreferencePair(list(prompt), reply(good), reply(bad)))
    return out


def margin(model: Any, pair: PreferencePair) -> float:
    """log p(chosen | prompt) - log p(rejected | prompt) under ``model``."""

    def logp(reply: list[int]) -> float:
        ids = torch.tensor([pair.prompt_ids + reply])
        with torch.no_grad():
            logits = model(ids).logits[0, len(pair.prompt_ids) - 1 : -1]
        return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(reply)[:, None]).sum())

    return logp(pair.chosen_ids) - logp(pair.rejected_ids)


def test_dpo_lowers_its_loss_and_prefers_the_chosen_replies(tiny_dir: Path, tmp_path: Path) -> None:
    model = make_model(f"local:{tiny_dir}")
    data = pairs(model.tokenizer)
    before = [margin(model.model, p) for p in data]
    config = DPOConfig(learning_rate=2e-2, max_steps=20, batch_size=4, lora_r=8, warmup_ratio=0.0)
    result = DPO(config).train(model.model, model.tokenizer, data, tmp_path, progress=False)
    assert result.steps == 20 and result.examples == 4
    assert result.losses[0] == pytest.approx(0.6931, abs=1e-3)  # log 2: the policy starts as its reference
    assert result.losses[-1] < 0.5 * result.losses[0], result.losses
    assert result.log[-1]["rewards/accuracies"] == 1.0
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    trained = model.model.merge_and_unload() if hasattr(model.model, "merge_and_unload") else model.model
    after = [margin(trained, p) for p in data]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    # each pair is two sequences (prompt + chosen, prompt + rejected): 20 steps of 4 = 20 passes
    assert result.tokens == 20 * sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in data)


def test_dpo_refuses_empty_pairs_and_long_pairs(tiny_dir: Path, tmp_path: Path) -> None:
    model = make_model(f"local:{tiny_dir}")
    with pytest.raises(SpecError, match="no preference pair"):
        DPO().train(model.model, model.tokenizer, [PreferencePair([1, 2], [], [3])], tmp_path, progress=False)
    with pytest.raises(SpecError, match="more than max_length=8"):
        DPO(DPOConfig(max_length=8)).train(model.model, model.tokenizer, pairs(model.tokenizer), tmp_path)
    assert not (tmp_path / "adapter").exists()


# --------------------------------------------------------------------------- GRPO


class LetterEnv(Env):
    """Two turns; each reply earns the share of its characters that are the letter 'e' (a reward a tiny random
    model can move by shifting its sampling towards some tokens)."""

    instructions = "Write a word."

    def __init__(self) -> None:
        self.turn: int | None = None

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        self.turn = 0
        return Step("Turn 1.", 0.0, info={"invalid_action": False})

    async def step(self, action: str) -> Step:
        if self.turn is None or self.turn >= 2:
            raise EnvError("reset first")
        self.turn += 1
        text = action.lower()
        reward = text.count("e") / max(1, len(text))
        done = self.turn >= 2
        return Step(f"Turn {self.turn + 1}.", reward, done, False, {"invalid_action": False, "success": done})

    def scripted_policies(self) -> dict[str, Any]:
        return {"e": lambda env, rng: "eee"}


LETTER = EnvSpec(
    id="letter-v0",
    entry_point=f"{__name__}:LetterEnv",
    max_turns=2,
    reward_range=(0.0, 2.0),
    invalid_action=InvalidActionRule("penalty", 0.0),
)


def test_grpo_raises_the_return_with_the_environment_in_the_loop(tiny_dir: Path, tmp_path: Path) -> None:
    model = make_model(f"local:{tiny_dir}")
    played: list[tuple[int, int]] = []
    config = GRPOConfig(learning_rate=5e-2, max_steps=20, group_size=4, seeds_per_step=2, lora_r=8, warmup_ratio=0.0)
    result = GRPO(config).train(
        model.model,
        model.tokenizer,
        LETTER,
        list(range(100)),
        tmp_path,
        agent="prompt:history=8,shots=0,max_tokens=6",
        on_episode=lambda episode, step, member: played.append((step, episode.seed)),
        progress=False,
    )
    assert result.steps == 20 and result.examples == 20 * 8 == len(played)
    steps = [entry["mean_return"] for entry in result.log if "mean_return" in entry]
    assert len(steps) == 20
    first, last = sum(steps[:4]) / 4, sum(steps[-4:]) / 4
    assert last > first + 0.03, steps  # measured here: 0.19 -> 0.27
    # every step plays 2 seeds, 4 episodes each
    for step in range(1, 21):
        seeds = [s for k, s in played if k == step]
        assert len(seeds) == 8 and len(set(seeds)) == 2 and all(seeds.count(s) == 4 for s in set(seeds))
    rollouts = result.log[-1]
    assert rollouts["rollout_episodes"] == 160 and rollouts["turns_played"] == 320
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_an_episode_is_one_exact_sequence_with_the_environment_masked(tiny_dir: Path) -> None:
    from palaestra.agents import make_agent
    from palaestra.envs.registry import build_from_spec
    from palaestra.runner.episode import run_episode

    model = make_model(f"local:{tiny_dir}")
    env = build_from_spec(LETTER)
    agent = make_agent("prompt:history=8,shots=0,max_tokens=3", env, model)  # type: ignore[arg-type]
    episode = asyncio.run(run_episode(env, agent, 0))  # type: ignore[arg-type]
    prompt, completion, mask, turns = episode_sequence(episode)
    first, second = (t.action.calls[-1] for t in episode.turns)
    if turns == 2:  # the second prompt extends the first prompt and reply
        assert prompt + completion == list(second.prompt_token_ids) + list(second.completion_token_ids)
        replies = [tok for tok, m in zip(completion, mask, strict=True) if m]
        assert replies == list(first.completion_token_ids) + list(second.completion_token_ids)
        between = [tok for tok, m in zip(completion, mask, strict=True) if not m]
        assert "Turn 2." in model.tokenizer.decode(between)
    else:  # the reply did not survive re-tokenization in the second prompt: the sequence stops after turn 1
        assert turns == 1 and prompt + completion == list(first.prompt_token_ids) + list(first.completion_token_ids)
    assert prompt == list(first.prompt_token_ids)

    # without history the second prompt does not extend the first: only turn 1 can be trained
    agent = make_agent("prompt:history=0,shots=0,max_tokens=3", env, model)  # type: ignore[arg-type]
    assert episode_sequence(asyncio.run(run_episode(env, agent, 0)))[3] == 1  # type: ignore[arg-type]


def test_grpo_refuses_what_it_cannot_train(tiny_dir: Path, tmp_path: Path) -> None:
    from palaestra.envs import spec

    model = make_model(f"local:{tiny_dir}")
    with pytest.raises(SpecError, match="multi-agent"):
        GRPO().train(model.model, model.tokenizer, spec("govsim-fishery-v0"), [0], tmp_path)
    with pytest.raises(SpecError, match="not 'optimal'"):
        GRPO().train(model.model, model.tokenizer, LETTER, [0], tmp_path, agent="optimal")
    with pytest.raises(SpecError, match="group_size must be at least 2"):
        GRPO(GRPOConfig(group_size=1)).train(model.model, model.tokenizer, LETTER, [0], tmp_path)
    with pytest.raises(SpecError, match="training seeds"):
        GRPO().train(model.model, model.tokenizer, LETTER, [], tmp_path)
