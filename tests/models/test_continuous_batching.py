"""The continuous-batching engine of LocalModel, on the real embedded SmolLM2-135M-Instruct."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from palaestra.core.errors import SpecError
from palaestra.core.types import ChatRequest, Completion, Message, SamplingParams

pytestmark = pytest.mark.slow

STORY = "Tell me a long story about a dragon."
QUESTIONS = ["What is the capital of France?", "Name a colour of the sky.", "Write one word: hello."]
SYSTEM = "You play a word game. Answer briefly. " * 8  # a shared prefix, as an environment's instructions are


def ask(text: str, system: str | None = None, **sampling: Any) -> ChatRequest:
    messages = ((Message("system", system),) if system else ()) + (Message("user", text),)
    return ChatRequest(messages, SamplingParams(**sampling))


async def test_a_short_request_does_not_wait_for_a_long_one(local_model: Any) -> None:
    assert local_model.engine == "continuous"
    long_request = ask(STORY, max_tokens=60)
    shorts = [ask(q, max_tokens=6) for q in QUESTIONS]
    alone_long = await local_model.generate(long_request)
    assert alone_long.finish_reason == "length" and len(alone_long.completion_token_ids) == 60
    alone_short = [await local_model.generate(r) for r in shorts]

    order: list[str] = []

    async def play(request: ChatRequest, name: str) -> Completion:
        completion = await local_model.generate(request)
        order.append(name)
        return completion

    long_task = asyncio.create_task(play(long_request, "long"))
    for _ in range(2000):  # until the long row is decoding (at most 10 s)
        if local_model._running.active:
            break
        await asyncio.sleep(0.005)
    assert local_model._running.active == 1
    together = await asyncio.gather(*[play(r, f"short {i}") for i, r in enumerate(shorts)])
    # The short ones joined the running batch and left it after at most 6 steps; the long one goes on.
    assert not long_task.done()
    long_reply = await long_task
    assert order[-1] == "long"
    assert long_reply.completion_token_ids == alone_long.completion_token_ids
    for a, b in zip(together, alone_short, strict=True):
        assert a.completion_token_ids == b.completion_token_ids and a.text == b.text


async def test_rows_joining_and_leaving_keep_the_batch_consistent(local_model: Any) -> None:
    from palaestra.models.engine import ContinuousBatch
    from palaestra.models.local import _Pending

    requests = [
        ask(QUESTIONS[0], SYSTEM, max_tokens=10),
        ask(QUESTIONS[1], SYSTEM, max_tokens=25),
        ask(STORY, max_tokens=30),
        ask(QUESTIONS[2], SYSTEM, max_tokens=4, temperature=1.0, seed=7),
        ask(QUESTIONS[1], max_tokens=12, stop=(" ",)),
        ask(STORY, SYSTEM, max_tokens=8, temperature=0.7, top_p=0.9, seed=3),
    ]
    alone = [await local_model.generate(r) for r in requests]
    loop = asyncio.get_running_loop()
    pendings = [_Pending(r, local_model.prompt_token_ids(r), loop.create_future(), 0.0) for r in requests]
    arrivals = {0: pendings[:3], 2: pendings[3:5], 9: pendings[5:]}  # step -> requests that arrive then
    running = ContinuousBatch(local_model)
    results: dict[int, Completion] = {}
    widths: set[int] = set()
    counts: list[int] = []
    step = 0
    while len(results) < len(requests):
        for p, completion in running.advance(arrivals.get(step, [])):
            results[pendings.index(p)] = completion
        # invariants: one mask row, one pending token and one cache row per active row; columns no row uses
        # are less than a quarter of the width (they are dropped then); padding holds zeros
        if running.active:
            layers = running.cache.layers
            keys = layers[0].keys
            assert running.mask.shape == (running.active, keys.shape[2]) and keys.shape[0] == running.active
            assert len(running.next) == running.active
            assert 4 * int((~running.mask.any(dim=0)).sum()) < running.mask.shape[1]
            padding = running.mask == 0
            for layer in (layers[0], layers[-1]):
                assert bool((layer.keys.abs().sum(dim=(1, 3))[padding] == 0).all())
                assert bool((layer.values.abs().sum(dim=(1, 3))[padding] == 0).all())
            widths.add(keys.shape[2])
            counts.append(running.active)
        step += 1
    assert running.active == 0
    assert max(counts) >= 4 and len(widths) > 10  # rows joined and left, the batch grew and shrank
    for i, (a, b) in enumerate(zip(alone, [results[i] for i in range(len(requests))], strict=True)):
        assert a.completion_token_ids == b.completion_token_ids, f"request {i}"
        assert a.text == b.text and a.finish_reason == b.finish_reason
        assert b.logprobs == pytest.approx(a.logprobs, abs=1e-3)
    assert results[4].finish_reason == "stop" and " " not in results[4].text  # the stop string ended it


async def test_rows_join_and_leave_after_the_cache_outgrew_its_spare_columns(local_model: Any) -> None:
    from palaestra.models.engine import ContinuousBatch
    from palaestra.models.local import _Pending

    long_request, short = ask(STORY, max_tokens=90), ask(QUESTIONS[0], max_tokens=5)
    alone_long, alone_short = await local_model.generate(long_request), await local_model.generate(short)
    assert alone_long.finish_reason == "length"  # it runs all 90 steps
    loop = asyncio.get_running_loop()
    pendings = [_Pending(r, local_model.prompt_token_ids(r), loop.create_future(), 0.0) for r in [long_request] * 2]
    late = _Pending(short, local_model.prompt_token_ids(short), loop.create_future(), 0.0)
    running = ContinuousBatch(local_model)
    results: dict[int, Completion] = {}
    capacity = []
    for step in range(200):
        for p, completion in running.advance(pendings if step == 0 else [late] if step == 75 else []):
            results[id(p)] = completion
        if not running.active:
            break
        capacity.append(running.cache.layers[0]._keys.shape[2])
    # The buffers grew during a decode step (inside the forward pass); the short row then joined in place and
    # left again while the long rows went on.
    assert capacity[0] < capacity[70] and len(results) == 3
    assert results[id(late)].completion_token_ids == alone_short.completion_token_ids
    for p in pendings:
        assert results[id(p)].completion_token_ids == alone_long.completion_token_ids


async def test_static_and_continuous_engines_give_the_same_replies(local_model: Any, embedded_dir: Path) -> None:
    from palaestra.models.local import LocalModel

    requests = [ask(q, max_tokens=16) for q in QUESTIONS] + [ask(STORY, max_tokens=12, temperature=1.0, seed=11)]
    static = LocalModel(embedded_dir, spec="smollm2-135m", engine="static")
    try:
        assert static.engine == "static"
        one = await asyncio.gather(*[static.generate(r) for r in requests])
        other = await asyncio.gather(*[local_model.generate(r) for r in requests])
    finally:
        await static.close()
    for a, b in zip(one, other, strict=True):
        assert a.completion_token_ids == b.completion_token_ids and a.text == b.text


def test_an_unknown_engine_is_refused(embedded_dir: Path) -> None:
    from palaestra.models.local import LocalModel

    with pytest.raises(SpecError, match="choose from continuous, static"):
        LocalModel(embedded_dir, engine="paged")
