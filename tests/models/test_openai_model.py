"""OpenAIModel against real HTTP servers.

Retry, timeout and error handling run against a small scripted HTTP server (stdlib ``http.server`` in a
thread: a real socket and real HTTP, with replies chosen by the test). The end-to-end tests (marked slow)
run against ``transformers serve`` serving the embedded SmolLM2 (see conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from palaestra.core.errors import ModelError
from palaestra.core.types import ChatRequest, Message, SamplingParams
from palaestra.models.openai import OpenAIModel


def ask(text: str = "hello", sample_index: int = 0, **sampling: Any) -> ChatRequest:
    return ChatRequest((Message("user", text),), SamplingParams(**sampling), sample_index)


def completion_body(text: str = "hi there", **choice: Any) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", **choice}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=completion_body)
    delay_s: float = 0.0


@dataclass
class ScriptedServer:
    """Answers each POST with the next scripted reply (the last one repeats) and records what it got."""

    base_url: str
    replies: list[Reply]
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    state = ScriptedServer("", [Reply()])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            state.received.append(json.loads(self.rfile.read(length)))
            state.headers.append(dict(self.headers))
            reply = state.replies[min(len(state.received), len(state.replies)) - 1]
            time.sleep(reply.delay_s)
            data = json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up, as the timeout test intends

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


async def test_request_payload_and_parsed_reply(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PALAESTRA_OPENAI_API_KEY", "sk-test")
    logprobs = {"content": [{"token": "hi", "logprob": -0.5}, {"token": " there", "logprob": -0.25}]}
    server.replies = [Reply(body=completion_body("hi there. More", logprobs=logprobs))]
    model = OpenAIModel("m1", server.base_url)
    reply = await model.generate(
        ask("q", sample_index=2, temperature=0.5, top_p=0.9, max_tokens=9, stop=(".",), seed=3)
    )
    sent = server.received[0]
    assert sent["model"] == "m1" and sent["messages"] == [{"role": "user", "content": "q"}]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["stop"]) == (0.5, 0.9, 9, ["."])
    assert sent["logprobs"] is True and isinstance(sent["seed"], int) and sent["seed"] != 3  # sample 2's seed
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert reply.text == "hi there"  # the server left the stop string in; OpenAI semantics cut it
    assert reply.logprobs == (-0.5, -0.25)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, 3)
    assert reply.finish_reason == "stop" and reply.completion_token_ids is None
    assert reply.model == model.spec and reply.latency_s > 0
    await model.close()


async def test_retries_5xx_and_429_then_succeeds(server: ScriptedServer) -> None:
    server.replies = [
        Reply(503, {"error": {"message": "overloaded"}}),
        Reply(429, {"detail": "slow down"}),
        Reply(),
    ]
    model = OpenAIModel("m", server.base_url, backoff_s=0.01)
    reply = await model.generate(ask())
    assert reply.text == "hi there"
    assert len(server.received) == 3 and model.stats.retries == 2
    await model.close()


async def test_gives_up_after_max_retries_with_the_last_problem(server: ScriptedServer) -> None:
    server.replies = [Reply(500, {"error": {"message": "boom"}})]
    model = OpenAIModel("m", server.base_url, max_retries=2, backoff_s=0.01)
    with pytest.raises(ModelError, match=r"HTTP 500 .*boom.*gave up after 3 attempt"):
        await model.generate(ask())
    assert len(server.received) == 3 and model.stats.failures == 1


async def test_client_errors_are_not_retried_and_carry_the_servers_message(server: ScriptedServer) -> None:
    server.replies = [Reply(404, {"error": {"message": "The model 'nope' does not exist"}})]
    model = OpenAIModel("nope", server.base_url, backoff_s=0.01)
    with pytest.raises(ModelError, match=r"HTTP 404\): The model 'nope' does not exist.*model name"):
        await model.generate(ask())
    assert len(server.received) == 1


async def test_servers_without_logprobs_are_tolerated(server: ScriptedServer) -> None:
    server.replies = [Reply(400, {"error": {"message": "logprobs are not supported"}}), Reply()]
    model = OpenAIModel("m", server.base_url)
    reply = await model.generate(ask())
    assert reply.text == "hi there" and reply.logprobs is None
    assert "logprobs" in server.received[0] and "logprobs" not in server.received[1]
    await model.generate(ask())
    assert "logprobs" not in server.received[2]


async def test_timeouts_are_retried_then_fail(server: ScriptedServer) -> None:
    server.replies = [Reply(delay_s=1.0)]
    model = OpenAIModel("m", server.base_url, timeout_s=0.2, max_retries=1, backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"no reply within timeout_s=0\.2"):
        await model.generate(ask())
    assert time.monotonic() - started < 1.5 and len(server.received) == 2


async def test_nothing_listening_fails_after_retries_in_bounded_time(free_tcp_port: int) -> None:
    model = OpenAIModel("m", f"http://127.0.0.1:{free_tcp_port}", max_retries=2, backoff_s=0.05)
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"cannot reach .*gave up after 3 attempt.*server is up"):
        await model.generate(ask())
    assert time.monotonic() - started < 5
    assert model.stats.attempts == 3


async def test_malformed_replies_are_model_errors(server: ScriptedServer) -> None:
    server.replies = [Reply(body={"unexpected": True})]
    model = OpenAIModel("m", server.base_url)
    with pytest.raises(ModelError, match="not an OpenAI chat completion"):
        await model.generate(ask())


# --------------------------------------------------------------------------- transformers serve


@pytest.mark.slow
async def test_real_server_chat_completion(served_model: tuple[str, str], local_model: Any) -> None:
    name, base_url = served_model
    model = OpenAIModel(name, base_url, timeout_s=120)
    request = ask("What is the capital of France?", max_tokens=12)
    reply = await model.generate(request)
    assert reply.text.strip()
    assert reply.usage.prompt_tokens > 10 and 0 < reply.usage.completion_tokens <= 12
    assert reply.finish_reason in ("stop", "length")
    # Same weights, same chat template, greedy: the server and the in-process model agree.
    local = await local_model.generate(request)
    assert reply.text == local.text
    assert reply.usage.prompt_tokens == local.usage.prompt_tokens
    await model.close()


@pytest.mark.slow
async def test_real_server_concurrency_limit(served_model: tuple[str, str]) -> None:
    name, base_url = served_model
    model = OpenAIModel(name, base_url, max_concurrency=2, timeout_s=120)
    replies = await asyncio.gather(*[model.generate(ask(f"Count to {i}.", max_tokens=4)) for i in range(5)])
    assert all(r.usage.completion_tokens > 0 for r in replies)
    assert model.stats.max_in_flight == 2 and model.stats.requests == 5
    await model.close()


@pytest.mark.slow
async def test_real_server_rejects_an_unknown_model_clearly(served_model: tuple[str, str]) -> None:
    _, base_url = served_model
    model = OpenAIModel("no-such-model", base_url, timeout_s=60)
    with pytest.raises(ModelError, match=r"rejected the request \(HTTP 4\d\d\): .*no-such-model"):
        await model.generate(ask(max_tokens=2))
    assert model.stats.retries == 0
    await model.close()
