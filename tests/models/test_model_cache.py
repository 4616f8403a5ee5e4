"""CachedModel: hits, misses, token accounting, key contents, SQLite persistence, single flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from palaestra.core.errors import ModelError
from palaestra.core.types import ChatRequest, Message, SamplingParams
from palaestra.models import CachedModel, ScriptedModel, make_model


def ask(text: str, sample_index: int = 0, **sampling: object) -> ChatRequest:
    return ChatRequest((Message("user", text),), SamplingParams(**sampling), sample_index)  # type: ignore[arg-type]


async def test_second_identical_request_is_a_hit_with_accounting() -> None:
    inner = ScriptedModel("echo")
    model = CachedModel(inner)
    first = await model.generate(ask("hello"))
    second = await model.generate(ask("hello"))
    assert not first.cached and second.cached
    assert second.text == first.text and second.completion_token_ids == first.completion_token_ids
    assert inner.calls == 1
    stats = model.stats
    assert (stats.calls, stats.hits, stats.misses) == (2, 1, 1)
    assert stats.prompt_tokens == first.usage.prompt_tokens
    assert stats.completion_tokens == first.usage.completion_tokens == 5
    assert stats.saved_tokens == first.usage.total_tokens
    assert stats.hit_rate == 0.5
    assert model.spec == inner.spec and model.weights_hash is None


async def test_sampling_params_and_sample_index_are_part_of_the_key() -> None:
    inner = ScriptedModel("echo")
    model = CachedModel(inner)
    await model.generate(ask("hi", temperature=0.7))
    await model.generate(ask("hi", temperature=0.7, sample_index=1))
    await model.generate(ask("hi", temperature=0.7, max_tokens=10))
    await model.generate(ask("hi", temperature=0.7, sample_index=1))
    assert inner.calls == 3 and model.stats.hits == 1 and len(model) == 3


async def test_the_inner_models_spec_is_part_of_the_key(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    a = CachedModel(ScriptedModel(["from a"]), path)
    b = CachedModel(ScriptedModel(["from b"]), path)
    assert (await a.generate(ask("q"))).text == "from a"
    reply = await b.generate(ask("q"))
    assert reply.text == "from b" and not reply.cached
    await a.close()
    await b.close()


async def test_sqlite_cache_survives_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.sqlite"
    first = make_model("scripted:cycle:one|two", cache=path)
    original = await first.generate(ask("q", stop=("x",)))
    await first.close()

    inner = ScriptedModel(["one", "two"])
    second = CachedModel(inner, path)
    again = await second.generate(ask("q", stop=("x",)))
    assert again.cached and inner.calls == 0
    assert (again.text, again.usage, again.prompt_token_ids, again.logprobs) == (
        original.text,
        original.usage,
        original.prompt_token_ids,
        original.logprobs,
    )
    assert isinstance(again.completion_token_ids, tuple)
    await second.close()


async def test_concurrent_identical_requests_call_the_model_once() -> None:
    inner = ScriptedModel("echo", delay_s=0.05)
    model = CachedModel(inner)
    replies = await asyncio.gather(*[model.generate(ask("same")) for _ in range(5)])
    assert inner.calls == 1
    assert sum(r.cached for r in replies) == 4 and model.stats.hits == 4


async def test_errors_are_not_cached() -> None:
    inner = ScriptedModel("echo", fail_on_calls=[1])
    model = CachedModel(inner)
    with pytest.raises(ModelError):
        await model.generate(ask("x"))
    reply = await model.generate(ask("x"))
    assert reply.text == "x" and not reply.cached and inner.calls == 2


async def test_a_closed_cache_refuses_requests() -> None:
    model = CachedModel(ScriptedModel("echo"))
    await model.close()
    with pytest.raises(ModelError, match="closed"):
        await model.generate(ask("x"))
