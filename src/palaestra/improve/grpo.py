"""Online multi-turn reinforcement learning: TRL's ``GRPOTrainer`` with the environment in the loop.

GRPO (Shao et al., 2024, DeepSeekMath) samples a group of answers per prompt and uses each answer's reward
minus its group's mean (divided by the group's standard deviation) as the advantage, without a value model.
Here a "prompt" is a training seed of an environment and an "answer" is a whole episode played from it by the
model being trained: every step, ``seeds_per_step`` seeds each get ``group_size`` episodes (sampled at
``temperature``), and an episode's reward is its return. The episodes are played by Palaestra's own runner
(``run_episode`` with the ``prompt`` agent) through TRL's ``rollout_func`` hook, all concurrently so the model's
calls share batches.

TRL trains on one token sequence per episode: the first turn's prompt, then the agent's replies (in the
loss) with everything the environment added in between (out of the loss, TRL's ``env_mask``). That sequence is
built from the exact tokens of each turn's model call, and it is exact only while each turn's prompt extends
the previous prompt and reply, i.e. while the agent keeps its whole history (``prompt:history=N`` with N at
least the episode's turns). Where a prompt does not extend the sequence (a window that slid, a reply
re-tokenized differently), the sequence ends there: later turns still count in the episode's return but are
not trained on, and ``turns_trained`` / ``turns_played`` in the result says how many were.

Every rollout episode can be handed to ``on_episode`` (``improve`` stores them as runs of purpose
``rollout``: a run holds one episode per seed, so each member of a group has its own run, and a new one starts
when a seed comes round again). An episode that fails (a model error) is played again once; a second failure
stops training with the reason, since an error is not a reward of 0 and a group cannot be scored without it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from palaestra.core.errors import ModelError, SpecError
from palaestra.core.types import EnvSpec, Episode
from palaestra.improve.trainers import (
    TrainConfig,
    TrainResult,
    _common_args,
    _lora_config,
    _loss_log,
    _require_trl,
    _save,
)

OnEpisode = Callable[[Episode, int, int], None]  # (episode, training step, its index in the seed's group)


@dataclass(frozen=True)
class GRPOConfig(TrainConfig):
    """GRPO settings; ``max_steps`` counts optimizer steps, each on ``seeds_per_step * group_size`` episodes."""

    learning_rate: float = 1e-4
    max_steps: int = 20
    group_size: int = 4  # episodes per seed (TRL's num_generations); the advantage is relative to the group
    seeds_per_step: int = 2
    temperature: float = 1.0
    beta: float = 0.0  # KL penalty towards the reference; 0 as in DAPO / Dr. GRPO, and no reference pass
    epsilon: float = 0.2  # clipping of the probability ratio
    scale_rewards: bool = True  # divide by the group's standard deviation (Dr. GRPO argues for False)


@dataclass
class Rollouts:
    """What the rollouts of a training did."""

    episodes: int = 0
    retried: int = 0
    turns_played: int = 0
    turns_trained: int = 0
    wall_s: float = 0.0
    returns: list[list[float]] = field(default_factory=list)  # per step, the returns of its episodes

    @property
    def episodes_per_s(self) -> float:
        return self.episodes / self.wall_s if self.wall_s else 0.0


def episode_sequence(episode: Episode) -> tuple[list[int], list[int], list[int], int]:
    """The episode as TRL's one sequence: ``(prompt_ids, completion_ids, env_mask, turns)``.

    ``completion_ids`` holds the replies and the environment's tokens between them; ``env_mask`` is 1 on the
    replies (trained) and 0 on the environment's tokens. ``turns`` is how many turns the sequence covers: it
    stops before the first turn whose prompt does not extend the sequence so far or which has no exact tokens.
    """
    prompt: list[int] = []
    completion: list[int] = []
    mask: list[int] = []
    turns = 0
    for turn in episode.turns:
        call = turn.action.calls[-1] if turn.action.calls else None
        if call is None or call.prompt_token_ids is None or call.completion_token_ids is None:
            break
        ids, reply = list(call.prompt_token_ids), list(call.completion_token_ids)
        if not reply:
            break
        if turns == 0:
            prompt = ids
        else:
            context = prompt + completion
            if ids[: len(context)] != context or len(ids) == len(context):
                break
            added = ids[len(context) :]
            completion += added
            mask += [0] * len(added)
        completion += reply
        mask += [1] * len(reply)
        turns += 1
    return prompt, completion, mask, turns


class GRPO:
    """GRPO with whole episodes as the group's samples (see the module docstring)."""

    method = "grpo"

    def __init__(self, config: GRPOConfig | None = None) -> None:
        self.config = config or GRPOConfig()

    def train(
        self,
        model: Any,
        tokenizer: Any,
        env: EnvSpec,
        seeds: Sequence[int],
        output: Path,
        *,
        agent: str = "prompt:history=32,shots=0",
        on_episode: OnEpisode | None = None,
        progress: bool = True,
    ) -> TrainResult:
        """Train ``model`` (changed in place) on episodes of ``env`` from ``seeds`` and save it like
        :meth:`palaestra.improve.trainers.SFT.train`.

        Args:
            env: the environment's spec (``palaestra.envs.spec(id)`` or a run's ``env_spec``); single-agent.
            seeds: the training seeds to draw from, ``seeds_per_step`` per step.
            agent: the ``prompt`` agent spec the model plays as; its temperature and sample are set here.
        """
        _require_trl()
        import os

        import torch
        from datasets import Dataset
        from trl import GRPOConfig as TRLGRPOConfig
        from trl import GRPOTrainer

        from palaestra.agents.prompt import PromptConfig

        cfg = self.config
        if env.multi_agent:
            raise SpecError(f"grpo trains one agent; {env.id} is a multi-agent environment")
        if not seeds:
            raise SpecError("grpo needs training seeds to play")
        name, _, options = agent.partition(":")
        if name != "prompt":
            raise SpecError(f"grpo trains the model behind a 'prompt' agent, not {agent!r}")
        PromptConfig.parse(options)  # a bad option fails here, before anything runs
        if cfg.group_size < 2:
            raise SpecError("group_size must be at least 2: the advantage compares episodes of one seed")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental
        stats = Rollouts()
        rollout = _Rollout(env, agent, tokenizer, cfg, stats, on_episode)

        def episode_return(prompts: list[str], completions: list[Any], episode_return: list[float], **_: Any) -> Any:
            return episode_return

        batch = cfg.seeds_per_step * cfg.group_size
        args = TRLGRPOConfig(
            **{**_common_args(cfg, output, progress), "per_device_train_batch_size": batch},
            num_generations=cfg.group_size,
            temperature=cfg.temperature,
            beta=cfg.beta,
            epsilon=cfg.epsilon,
            scale_rewards="group" if cfg.scale_rewards else "none",
            loss_type="dapo",
            max_completion_length=cfg.max_length,
            shuffle_dataset=True,
        )
        dataset = Dataset.from_dict({"prompt": [f"seed {s}" for s in seeds]})
        model.train()
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[episode_return],
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=_lora_config(cfg),
            rollout_func=rollout,
        )
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
        log = _loss_log(trainer)
        for entry, returns in zip(log, stats.returns, strict=False):
            entry["mean_return"] = sum(returns) / len(returns)
        _save(trainer.model, tokenizer, cfg, output)
        return TrainResult(
            losses=[entry["loss"] for entry in log],
            steps=trainer.state.global_step,
            examples=stats.episodes,
            tokens=math.ceil(float(trainer.state.num_input_tokens_seen)),
            trained_tokens=rollout.trained_tokens,
            wall_s=wall,
            log=[
                *log,
                {
                    "rollout_episodes": float(stats.episodes),
                    "rollout_retried": float(stats.retried),
                    "rollout_wall_s": stats.wall_s,
                    "rollout_episodes_per_s": stats.episodes_per_s,
                    "turns_played": float(stats.turns_played),
                    "turns_trained": float(stats.turns_trained),
                },
            ],
        )


class _Rollout:
    """TRL's ``rollout_func``: plays one episode per prompt entry (TRL repeats each seed ``group_size`` times)."""

    def __init__(
        self,
        env: EnvSpec,
        agent: str,
        tokenizer: Any,
        cfg: GRPOConfig,
        stats: Rollouts,
        on_episode: OnEpisode | None,
    ) -> None:
        self.env, self.agent, self.tokenizer, self.cfg = env, agent, tokenizer, cfg
        self.stats, self.on_episode = stats, on_episode
        self.calls = 0
        self.trained_tokens = 0

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, Any]:
        from palaestra.improve.examples import _run_sync

        seeds = [_seed_of(p) for p in prompts]
        self.calls += 1
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        was_training = unwrapped.training
        unwrapped.eval()
        started = time.perf_counter()
        try:
            episodes = _run_sync(self._play(unwrapped, seeds))
        finally:
            if was_training:
                unwrapped.train()
        self.stats.wall_s += time.perf_counter() - started
        out: dict[str, Any] = {"prompt_ids": [], "completion_ids": [], "logprobs": None, "env_mask": []}
        returns = []
        for index, episode in enumerate(episodes):
            prompt, completion, mask, turns = episode_sequence(episode)
            if turns == 0:
                raise ModelError(
                    f"seed {episode.seed} of {self.env.id}: the first turn has no exact tokens to train on; grpo "
                    "needs a local model whose calls record their token ids"
                )
            out["prompt_ids"].append(prompt)
            out["completion_ids"].append(completion)
            out["env_mask"].append(mask)
            returns.append(float(episode.total_return))
            self.stats.turns_played += len(episode.turns)
            self.stats.turns_trained += turns
            self.trained_tokens += sum(mask)
            if self.on_episode is not None:
                self.on_episode(episode, self.calls, index % self.cfg.group_size)
        out["episode_return"] = returns
        self.stats.returns.append(returns)
        self.stats.episodes += len(episodes)
        return out

    async def _play(self, model: Any, seeds: list[int]) -> list[Episode]:
        from palaestra.agents import make_agent
        from palaestra.envs.base import Env
        from palaestra.envs.registry import build_from_spec
        from palaestra.models.local import LocalModel
        from palaestra.runner.episode import run_episode

        local = LocalModel.wrap(model, self.tokenizer, spec="grpo-policy", max_batch_size=len(seeds))
        # Each entry of a group samples differently: its index in the group, and the step, pick the stream.
        spec = f"{self.agent},temperature={self.cfg.temperature}"

        async def play(index: int, seed: int) -> Episode:
            sample = self.calls * self.cfg.group_size + index % self.cfg.group_size
            for attempt in range(2):
                env = build_from_spec(self.env)
                assert isinstance(env, Env)  # train() refused multi-agent specs
                agent = make_agent(f"{spec},sample={sample + 7919 * attempt}", env, local, seed=seed)
                episode = await run_episode(env, agent, seed)
                if episode.status == "ok":
                    return episode
                if attempt == 0:
                    self.stats.retried += 1
            raise ModelError(f"grpo rollout of seed {seed} of {self.env.id} failed twice: {episode.error}")

        try:
            return list(await asyncio.gather(*(play(i, s) for i, s in enumerate(seeds))))
        finally:
            await local.close()


def _seed_of(prompt: Any) -> int:
    text = prompt if isinstance(prompt, str) else str(prompt)
    try:
        return int(text.rsplit(" ", 1)[-1])
    except ValueError as exc:
        raise SpecError(f"grpo prompt {text!r} does not name a seed ('seed N')") from exc
