"""LocalModel on the real embedded SmolLM2-135M-Instruct: what it records, batching, stops, seeds, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from palaestra.core.errors import ModelError, SpecError
from palaestra.core.types import ChatRequest, Message, SamplingParams
from palaestra.models import Model

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Name a colour of the sky.",
    "Write one word: hello.",
    "What is two plus two? Answer in one sentence, please, and be careful to get it right.",
]


def ask(text: str, sample_index: int = 0, **sampling: Any) -> ChatRequest:
    return ChatRequest((Message("user", text),), SamplingParams(**sampling), sample_index)


async def test_reply_records_exact_tokens_and_logprobs(local_model: Any) -> None:
    assert isinstance(local_model, Model) and local_model.spec == "smollm2-135m"
    request = ask(QUESTIONS[0], max_tokens=24)
    reply = await local_model.generate(request)
    tokenizer = local_model.tokenizer
    assert reply.text.strip()
    assert reply.prompt_token_ids == tuple(local_model.prompt_token_ids(request))
    assert tokenizer.decode(reply.prompt_token_ids).endswith("<|im_start|>assistant\n")
    ids = reply.completion_token_ids
    assert ids and 0 < len(ids) <= 24
    assert tokenizer.decode(ids, skip_special_tokens=True) == reply.text
    assert reply.logprobs is not None and len(reply.logprobs) == len(ids)
    assert all(lp <= 0 for lp in reply.logprobs)
    assert reply.usage.prompt_tokens == len(reply.prompt_token_ids)
    assert reply.usage.completion_tokens == len(ids)
    if reply.finish_reason == "stop":  # ended by the model: the end-of-turn token is recorded, not shown
        assert ids[-1] in local_model.eos_ids and "<|im_end|>" not in reply.text
    assert reply.latency_s > 0 and not reply.cached


async def test_max_tokens_gives_finish_reason_length(local_model: Any) -> None:
    reply = await local_model.generate(ask("Tell me a long story about a dragon.", max_tokens=5))
    assert reply.finish_reason == "length"
    assert len(reply.completion_token_ids) == 5 == len(reply.logprobs)


async def test_greedy_reply_is_the_same_alone_and_in_a_batch(local_model: Any) -> None:
    alone = [await local_model.generate(ask(q, max_tokens=12)) for q in QUESTIONS]
    batches_before = local_model.stats.batches
    together = await asyncio.gather(*[local_model.generate(ask(q, max_tokens=12)) for q in QUESTIONS])
    assert local_model.stats.batches == batches_before + 1  # really ran as one padded batch
    for a, b in zip(alone, together, strict=True):
        assert a.completion_token_ids == b.completion_token_ids
        assert a.text == b.text
        assert b.logprobs == pytest.approx(a.logprobs, abs=1e-3)


async def test_concurrent_requests_are_batched(local_model: Any) -> None:
    stats = local_model.stats
    batches, requests = stats.batches, stats.requests
    replies = await asyncio.gather(*[local_model.generate(ask(f"Say the number {i}.", max_tokens=4)) for i in range(8)])
    assert len(replies) == 8 and all(r.completion_token_ids for r in replies)
    assert stats.requests == requests + 8
    assert stats.batches - batches <= 2
    assert stats.max_batch_size >= 4


async def test_stop_string_truncates_text_and_ends_generation(local_model: Any) -> None:
    free = await local_model.generate(ask(QUESTIONS[3], max_tokens=30))
    assert " " in free.text
    stopped = await local_model.generate(ask(QUESTIONS[3], max_tokens=30, stop=(" ",)))
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text.split(" ")[0]
    # The ids run up to the token that completed the stop string: they decode to the text plus the stop.
    decoded = local_model.tokenizer.decode(stopped.completion_token_ids, skip_special_tokens=True)
    assert decoded.startswith(stopped.text + " ")
    assert len(stopped.completion_token_ids) < len(free.completion_token_ids)
    assert len(stopped.logprobs) == len(stopped.completion_token_ids)


async def test_seeded_sampling_is_reproducible_whatever_the_batch(local_model: Any) -> None:
    def sample(index: int) -> ChatRequest:
        return ask(QUESTIONS[1], index, temperature=1.0, top_p=0.95, seed=1234, max_tokens=12)

    request = sample(0)
    alone = await local_model.generate(request)
    others = [ask(q, temperature=0.7, max_tokens=12) for q in QUESTIONS] + [ask(QUESTIONS[0], max_tokens=3)]
    mixed = await asyncio.gather(local_model.generate(request), *[local_model.generate(r) for r in others])
    assert mixed[0].completion_token_ids == alone.completion_token_ids
    assert all(lp <= 0 for lp in alone.logprobs)
    # The other samples of the same request (sample_index 1, 2, ...) draw with other seeds.
    samples = await asyncio.gather(*[local_model.generate(sample(i)) for i in range(4)])
    assert len({s.completion_token_ids for s in samples}) > 1
    assert samples[0].completion_token_ids == alone.completion_token_ids


async def test_a_failed_batch_becomes_model_errors_and_the_worker_survives(
    local_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("simulated out of memory")

    # Stand-in for a crash inside torch: the one failure mode we cannot provoke on demand with real inputs.
    # The continuous engine calls the model's forward, the static one its generate.
    monkeypatch.setattr(local_model.model, "forward", broken)
    monkeypatch.setattr(local_model.model, "generate", broken)
    results = await asyncio.gather(
        *[local_model.generate(ask(q, max_tokens=3)) for q in QUESTIONS[:2]], return_exceptions=True
    )
    assert all(isinstance(r, ModelError) and "simulated out of memory" in str(r) for r in results)
    monkeypatch.undo()
    reply = await local_model.generate(ask(QUESTIONS[0], max_tokens=3))
    assert reply.completion_token_ids


async def test_bad_requests_are_refused_before_they_join_a_batch(local_model: Any) -> None:
    with pytest.raises(ModelError, match="context"):
        await local_model.generate(ask("word " * 9000, max_tokens=4))
    for bad in ({"max_tokens": 0}, {"temperature": -1.0}, {"top_p": 0.0}):
        with pytest.raises(SpecError):
            await local_model.generate(ask("hi", **bad))


def test_weights_hash_is_the_sha256_of_the_weights_file(local_model: Any) -> None:
    from palaestra.models.embedded import sha256_file

    assert local_model.weights_hash == "sha256:" + sha256_file(local_model.path / "model.safetensors")


async def test_shared_prompt_prefix_is_computed_once_and_changes_nothing(embedded_dir: Any) -> None:
    from palaestra.models.local import LocalModel

    system = "You play a word game. " * 12  # a long shared system message, as environments' instructions are
    requests = [
        ChatRequest(
            (Message("system", system), Message("user", f"Say the number {n} in words.")), SamplingParams(max_tokens=8)
        )
        for n in range(6)
    ]
    cached = LocalModel(embedded_dir, spec="smollm2-135m")
    plain = LocalModel(embedded_dir, spec="smollm2-135m", prefix_cache=False)
    try:
        with_cache = await asyncio.gather(*[cached.generate(r) for r in requests])
        without = await asyncio.gather(*[plain.generate(r) for r in requests])
        assert cached.stats.prefix_hits == 6 and plain.stats.prefix_hits == 0
        shared = len(cached.prompt_token_ids(requests[0])) - 12  # at least the system message is shared
        assert cached.stats.cached_prompt_tokens >= 6 * (shared - 20)
        for a, b in zip(with_cache, without, strict=True):
            assert a.completion_token_ids == b.completion_token_ids and a.text == b.text
            assert a.prompt_token_ids == b.prompt_token_ids  # the record is the whole prompt either way
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)
        # a lone request later (the next turn, say) reuses the cached prefix
        again = await cached.generate(requests[3])
        assert cached.stats.prefix_hits == 7 and again.completion_token_ids == with_cache[3].completion_token_ids
    finally:
        await cached.close()
        await plain.close()
