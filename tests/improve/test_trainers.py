"""Trainers on a tiny model built from a config inside the test (the embedded tokenizer, 2 small layers):
the loss goes down, LoRA and full weights are saved, checkpoints land in the registry atomically and load
back as model specs, and mismatched bases are refused."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from palaestra.core.errors import SpecError
from palaestra.core.types import ChatRequest, Episode, Message, SamplingParams
from palaestra.improve.trainers import SFT, FilteredBC, FilteredBCConfig, TrainConfig, top_fraction
from palaestra.models import make_model
from palaestra.models.registry import Registry, new_checkpoint_id
from palaestra.store import CheckpointRecord


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


def examples(tokenizer) -> list[Example]:
    out = []
    for move in ("up", "down", "left", "right"):
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Where to? Say {move}."}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )
        prompt = list(encoded["input_ids"])
        reply = tokenizer.encode(f"move {move}<|im_end|>", add_special_tokens=False)
        out.append(Example(prompt + reply, [-100] * len(prompt) + reply))
    return out


def test_lora_sft_lowers_the_loss_and_saves_an_adapter(tiny_dir: Path, tmp_path: Path) -> None:
    model = make_model(f"local:{tiny_dir}")
    data = examples(model.tokenizer)
    config = TrainConfig(learning_rate=2e-2, max_steps=40, batch_size=4, lora_r=8, warmup_ratio=0.0)
    result = SFT(config).train(model.model, model.tokenizer, data, tmp_path, progress=False)
    assert result.steps == 40 and len(result.losses) == 40 and result.examples == 4
    assert result.losses[-1] < 0.5 * result.losses[0], result.losses
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    # 40 steps of 4 examples = 40 passes over the 4 examples
    assert result.trained_tokens == 40 * sum(sum(x != -100 for x in e.labels) for e in data)
    assert result.tokens == 40 * sum(len(e.input_ids) for e in data)


def test_full_fine_tuning_saves_the_whole_model(tiny_dir: Path, tmp_path: Path) -> None:
    model = make_model(f"local:{tiny_dir}")
    config = TrainConfig(lora=False, learning_rate=1e-2, max_steps=15, batch_size=4, warmup_ratio=0.0)
    result = SFT(config).train(model.model, model.tokenizer, examples(model.tokenizer), tmp_path, progress=False)
    assert result.losses[-1] < result.losses[0]
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "model" / "tokenizer_config.json").is_file()


def test_training_on_nothing_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    model = make_model(f"local:{tiny_dir}")
    only_prompt = [Example([1, 2, 3], [-100, -100, -100])]
    with pytest.raises(SpecError, match="nothing to train on"):
        SFT().train(model.model, model.tokenizer, only_prompt, tmp_path, progress=False)
    assert not (tmp_path / "adapter").exists()
    with pytest.raises(SpecError, match="none of the 2 episodes finished ok"):
        top_fraction([Episode("maze-fo-v0", 0, status="error"), Episode("maze-fo-v0", 1, status="error")], 0.3)
    episodes = [Episode("maze-fo-v0", s, total_return=float(s)) for s in range(10)]
    assert [e.seed for e in top_fraction(episodes, 0.3)] == [9, 8, 7]
    assert FilteredBC(FilteredBCConfig(top_fraction=0.3)).select(episodes) == top_fraction(episodes, 0.3)
    assert len(SFT().select([*episodes, Episode("maze-fo-v0", 10, status="error")])) == 10  # every ok one


def _checkpoint(registry: Registry, base: str, source: Path, base_hash: str | None, parent: str | None = None):
    record = CheckpointRecord(
        id=new_checkpoint_id(), created_at=1.0, status="ready", method="sft", base_model=base, parent=parent
    )

    def fill(tmp: Path) -> None:
        import shutil

        shutil.copytree(source / "adapter", tmp / "adapter")

    return registry.write(record, fill, base_weights_hash=base_hash)


def _reply(model, text: str = "Where to?") -> str:
    request = ChatRequest((Message("user", text),), SamplingParams(max_tokens=6))
    return asyncio.run(model.generate(request)).text


def test_a_checkpoint_loads_as_a_model_spec_and_refuses_the_wrong_base(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = make_model(f"local:{tiny_dir}")
    trained = tmp_path / "trained"
    SFT(TrainConfig(learning_rate=2e-2, max_steps=30, batch_size=4, warmup_ratio=0.0)).train(
        base.model, base.tokenizer, examples(base.tokenizer), trained, progress=False
    )
    registry = Registry(tmp_path / "registry")
    monkeypatch.setenv("PALAESTRA_CHECKPOINTS", str(registry.root))
    base_spec = f"local:{tiny_dir}"
    fresh = make_model(base_spec)
    checkpoint = _checkpoint(registry, base_spec, trained, fresh.weights_hash)
    assert [c.id for c in registry.checkpoints()] == [checkpoint.id]

    loaded = make_model(f"{base_spec}+{checkpoint.id}")
    assert loaded.spec == f"{base_spec}+{checkpoint.id}" and loaded.weights_hash == checkpoint.record.weights_hash
    assert loaded.weights_hash != fresh.weights_hash
    assert _reply(loaded, "Where to? Say up.") != _reply(fresh, "Where to? Say up.")  # the adapter changed it

    child = _checkpoint(registry, base_spec, trained, fresh.weights_hash, parent=checkpoint.id)
    assert [c.id for c in registry.chain(child.id)] == [checkpoint.id, child.id]

    with pytest.raises(SpecError, match=f"was trained on '{base_spec}', not 'local:/elsewhere'"):
        make_model(f"local:/elsewhere+{checkpoint.id}")
    stale = _checkpoint(registry, base_spec, trained, "sha256:0000")
    with pytest.raises(SpecError, match="the adapter would not fit"):
        make_model(f"{base_spec}+{stale.id}")
    with pytest.raises(SpecError, match="no checkpoint 'c-nothere'"):
        make_model(f"{base_spec}+c-nothere")


def test_an_interrupted_write_leaves_nothing_in_the_registry(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    record = CheckpointRecord(id=new_checkpoint_id(), created_at=1.0, status="ready", method="sft", base_model="b")

    def crash(tmp: Path) -> None:
        (tmp / "adapter").mkdir()
        (tmp / "adapter" / "half.bin").write_bytes(b"\0" * 10)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        registry.write(record, crash, base_weights_hash=None)
    assert registry.checkpoints() == [] and list(tmp_path.iterdir()) == []
