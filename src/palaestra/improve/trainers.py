"""Trainers over stored trajectories, wrapping TRL and PEFT: each a class paired with a config dataclass.

- :class:`SFT` (behaviour cloning): TRL's ``SFTTrainer`` on pre-tokenized examples whose labels are the
  agent's own tokens only (``palaestra.improve.examples``), LoRA by default (PEFT), full fine-tuning with
  ``lora=False``.
- :class:`FilteredBC`: the best fraction of episodes by return, then SFT (LMRL-Gym's filtered BC).

A training produces a checkpoint in the model registry (``palaestra.models.registry``) with its lineage.
``torch`` and ``trl`` are imported only when a trainer runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from palaestra.core.errors import MissingDependencyError, SpecError
from palaestra.core.types import Episode

# Every linear layer of a Llama-style block (SmolLM2's): attention and MLP.
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by the trainers (and recorded with every checkpoint)."""

    lora: bool = True  # False: full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = LLAMA_TARGETS
    learning_rate: float = 5e-4
    epochs: float = 2.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.05
    seed: int = 0
    threads: int | None = None  # torch threads; None leaves torch's default

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lora_targets"] = list(self.lora_targets)
        return data


@dataclass(frozen=True)
class FilteredBCConfig(TrainConfig):
    """Filtered behaviour cloning: keep the best ``top_fraction`` of episodes by return (LMRL-Gym: 30%)."""

    top_fraction: float = 0.3


@dataclass
class TrainResult:
    """What a training did: the loss at each logged step, sizes, and time."""

    losses: list[float]
    steps: int
    examples: int
    tokens: int  # tokens through the model (every position of every example, times epochs)
    trained_tokens: int  # labelled positions (the agent's own tokens), times epochs
    wall_s: float
    log: list[dict[str, float]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tokens_per_s": self.tokens_per_s}


def _require_trl() -> None:
    try:
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("training", "pip install 'palaestra[train]' (trl, peft, datasets)") from exc


class SFT:
    """Behaviour cloning: supervised fine-tuning on the agent's tokens of the given examples."""

    method = "sft"

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    def select(self, episodes: Sequence[Episode]) -> list[Episode]:
        """The episodes to learn from: every ok one (an error if there is none)."""
        return top_fraction(episodes, 1.0)

    def train(
        self, model: Any, tokenizer: Any, examples: Sequence[Any], output: Path, *, progress: bool = True
    ) -> TrainResult:
        """Fine-tune ``model`` (a transformers causal LM, changed in place) on ``examples`` and save the
        result to ``output/adapter`` (LoRA) or ``output/model`` (full weights and tokenizer).

        Args:
            examples: ``TrainingExample``s (``input_ids`` and ``labels``, -100 where the loss is off).
        """
        _require_trl()
        import torch
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        cfg = self.config
        rows = [e for e in examples if any(label != -100 for label in e.labels)]
        if not rows:
            raise SpecError("nothing to train on: no example has a token of the agent's to learn")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        too_long = [e for e in rows if len(e.input_ids) > cfg.max_length]
        if too_long:
            raise SpecError(
                f"{len(too_long)} of {len(rows)} examples are longer than max_length={cfg.max_length} tokens "
                f"(longest {max(len(e.input_ids) for e in too_long)}); raise max_length or shorten the prompts "
                "(e.g. prompt:history=0,shots=0)"
            )
        dataset = Dataset.from_dict(
            {"input_ids": [list(e.input_ids) for e in rows], "labels": [list(e.labels) for e in rows]}
        )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        args = SFTConfig(**_common_args(cfg, output, progress), max_length=cfg.max_length)
        peft_config = _lora_config(cfg)
        model.train()
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
        )
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
        log = _loss_log(trainer)
        _save(trainer.model, tokenizer, cfg, output)
        epochs = _epochs(cfg, len(rows))
        return TrainResult(
            losses=[entry["loss"] for entry in log],
            steps=trainer.state.global_step,
            examples=len(rows),
            tokens=math.ceil(sum(len(e.input_ids) for e in rows) * epochs),
            trained_tokens=math.ceil(sum(sum(1 for x in e.labels if x != -100) for e in rows) * epochs),
            wall_s=wall,
            log=log,
        )


def _epochs(cfg: TrainConfig, rows: int) -> float:
    """Passes over the data: ``epochs``, or what ``max_steps`` batches amount to."""
    return cfg.epochs if cfg.max_steps <= 0 else cfg.max_steps * cfg.batch_size * cfg.grad_accum / max(1, rows)


def _common_args(cfg: TrainConfig, output: Path, progress: bool) -> dict[str, Any]:
    """The ``TrainingArguments`` fields every trainer sets the same way."""
    import torch

    return dict(
        output_dir=str(output / "trainer"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a share of the steps
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        bf16=False,
        fp16=False,
    )


def _lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    if not cfg.lora:
        return None
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        task_type="CAUSAL_LM",
    )


def _loss_log(trainer: Any) -> list[dict[str, float]]:
    return [
        {k: float(v) for k, v in entry.items() if isinstance(v, int | float)}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]


def _save(trained: Any, tokenizer: Any, cfg: TrainConfig, output: Path) -> None:
    """``output/adapter`` (LoRA) or ``output/model`` (full weights and tokenizer): what the registry loads."""
    if cfg.lora:
        trained.save_pretrained(str(output / "adapter"))
    else:
        trained.save_pretrained(str(output / "model"))
        tokenizer.save_pretrained(str(output / "model"))


def top_fraction(episodes: Sequence[Episode], fraction: float) -> list[Episode]:
    """The best ``fraction`` of the ok episodes by return (at least one), ties broken by seed."""
    if not 0 < fraction <= 1:
        raise SpecError(f"top_fraction must be in (0, 1], not {fraction}")
    ok = [e for e in episodes if e.status == "ok"]
    if not ok:
        raise SpecError(
            f"nothing to train on: none of the {len(episodes)} episodes finished ok "
            f"({sum(e.status == 'error' for e in episodes)} errors); re-run them with `palaestra eval --resume`"
        )
    keep = max(1, round(fraction * len(ok)))
    return sorted(ok, key=lambda e: (-e.total_return, e.seed))[:keep]


class FilteredBC(SFT):
    """Filtered behaviour cloning: :class:`SFT` on the best ``top_fraction`` of the episodes by return."""

    method = "filtered-bc"

    def __init__(self, config: FilteredBCConfig | None = None) -> None:
        super().__init__(config or FilteredBCConfig())

    def select(self, episodes: Sequence[Episode]) -> list[Episode]:
        """The best ``top_fraction`` of the ok episodes by return."""
        fraction = self.config.top_fraction if isinstance(self.config, FilteredBCConfig) else 1.0
        return top_fraction(episodes, fraction)


@dataclass(frozen=True)
class DPOConfig(TrainConfig):
    """Direct preference optimisation (Rafailov et al., 2023) on :class:`PreferencePair`s.

    ``beta`` is the strength of the pull towards the reference (the model before training: with LoRA, the same
    weights with the adapter off); ``sft_weight`` > 0 adds the chosen replies' negative log-likelihood (RPO,
    Pang et al., 2024), which keeps the chosen replies likely while the margin grows.
    """

    learning_rate: float = 5e-5
    epochs: float = 1.0
    beta: float = 0.1
    sft_weight: float = 0.0
    margin: float = 0.0  # pairs only from episodes whose returns differ by more than this
    max_pairs_per_seed: int = 8


class DPO:
    """DPO on pairs of a better and a worse episode of the same seed, at the state where they part
    (:func:`palaestra.improve.preferences.preference_pairs`), wrapping TRL's ``DPOTrainer`` on the pairs' own
    tokens (no re-tokenization)."""

    method = "dpo"

    def __init__(self, config: DPOConfig | None = None) -> None:
        self.config = config or DPOConfig()

    def train(
        self, model: Any, tokenizer: Any, pairs: Sequence[Any], output: Path, *, progress: bool = True
    ) -> TrainResult:
        """Train ``model`` (changed in place) on ``pairs`` and save it like :meth:`SFT.train`.

        ``losses`` are TRL's DPO loss per logged step; ``log`` also holds its ``rewards/margins`` and
        ``rewards/accuracies`` (how often the chosen reply is the more likely one, relative to the reference).
        """
        _require_trl()
        import copy

        import torch
        from datasets import Dataset
        from trl import DPOConfig as TRLDPOConfig
        from trl import DPOTrainer

        cfg = self.config
        rows = [p for p in pairs if p.chosen_ids and p.rejected_ids]
        if not rows:
            raise SpecError("nothing to train on: no preference pair has a chosen and a rejected reply")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        longest = max(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in rows)
        if longest > cfg.max_length:
            raise SpecError(
                f"a preference pair is {longest} tokens long, more than max_length={cfg.max_length}; raise "
                "max_length or shorten the prompts (e.g. prompt:history=0,shots=0)"
            )

        class PreTokenized(DPOTrainer):  # type: ignore[misc]
            """TRL's DPOTrainer, taking the pairs' token ids as they are (it would re-tokenize text)."""

            def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
                return dataset

        dataset = Dataset.from_dict(
            {
                "prompt_ids": [list(p.prompt_ids) for p in rows],
                "chosen_ids": [list(p.chosen_ids) for p in rows],
                "rejected_ids": [list(p.rejected_ids) for p in rows],
            }
        )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        losses = ["sigmoid", "sft"] if cfg.sft_weight > 0 else ["sigmoid"]
        args = TRLDPOConfig(
            **_common_args(cfg, output, progress),
            max_length=cfg.max_length,
            beta=cfg.beta,
            loss_type=losses,
            loss_weights=[1.0, cfg.sft_weight] if cfg.sft_weight > 0 else None,
        )
        # Full fine-tuning needs a frozen copy as the reference; with LoRA the reference is the adapter switched off.
        ref_model = None if cfg.lora else copy.deepcopy(model).eval()
        model.train()
        trainer = PreTokenized(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=_lora_config(cfg),
        )
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
        log = _loss_log(trainer)
        _save(trainer.model, tokenizer, cfg, output)
        epochs = _epochs(cfg, len(rows))
        # each pair goes through the model as two sequences: prompt + chosen, prompt + rejected
        seen = sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in rows)
        return TrainResult(
            losses=[entry["loss"] for entry in log],
            steps=trainer.state.global_step,
            examples=len(rows),
            tokens=math.ceil(seen * epochs),
            trained_tokens=math.ceil(sum(len(p.chosen_ids) + len(p.rejected_ids) for p in rows) * epochs),
            wall_s=wall,
            log=log,
        )
