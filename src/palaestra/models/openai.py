"""``OpenAIModel``: any OpenAI-compatible chat server (OpenAI, vLLM, SGLang, llama.cpp, transformers serve).

Spec ``openai:<model>@<base url>``. Plain httpx, no SDK: one POST to ``/v1/chat/completions`` per request,
with a concurrency limit, timeouts, and retries with exponential back-off and jitter on connection errors,
timeouts, 429 and 5xx. Other 4xx are the caller's mistake and raise at once with the server's message.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from palaestra.core.errors import ModelError
from palaestra.core.types import ChatRequest, Completion, Usage
from palaestra.models.spec import request_seed

DEFAULT_BASE_URL = "https://api.openai.com/v1"
API_KEY_VARS = ("PALAESTRA_OPENAI_API_KEY", "OPENAI_API_KEY")  # first set one wins
BASE_URL_VARS = ("PALAESTRA_OPENAI_BASE_URL", "OPENAI_BASE_URL")
MAX_BACKOFF_S = 30.0


@dataclass
class ServerStats:
    """What an ``OpenAIModel`` has done: requests sent (attempts), retries, failures, peak concurrency."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


def chat_completions_url(base_url: str) -> str:
    """The endpoint for a base URL: a bare host gets ``/v1/chat/completions``, a path ``/chat/completions``.

    So both ``http://127.0.0.1:8000`` and ``https://api.openai.com/v1`` (the OpenAI SDK's convention) work.
    """
    base = base_url.rstrip("/")
    return base + ("/v1/chat/completions" if urlsplit(base).path in ("", "/") else "/chat/completions")


def _server_message(response: httpx.Response) -> str:
    """The error text a server sent, from OpenAI's ``{"error": {"message": ...}}`` or FastAPI's ``detail``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for field in ("error", "detail", "message"):
            if body.get(field):
                return str(body[field])
    return str(body)[:500]


class OpenAIModel:
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        model: the model name the server knows.
        base_url: e.g. ``http://127.0.0.1:8000`` or ``https://api.openai.com/v1``; None reads
            ``PALAESTRA_OPENAI_BASE_URL`` / ``OPENAI_BASE_URL``, else uses api.openai.com.
        api_key: None reads ``PALAESTRA_OPENAI_API_KEY`` / ``OPENAI_API_KEY``; local servers need none.
        max_concurrency: requests in flight at once (the rest wait their turn).
        timeout_s: per-attempt timeout.
        max_retries: retries after the first attempt on connection errors, timeouts, 429 and 5xx.
        backoff_s: first back-off; doubles on each retry, plus up to as much again of random jitter.
        request_logprobs: ask for ``logprobs``; switched off by itself if the server rejects the field.
        extra_body: extra JSON fields for every request (e.g. vLLM's ``{"return_token_ids": True}``).
    """

    weights_hash: str | None = None  # a remote server does not tell us which weights it runs

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        request_logprobs: bool = True,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self.model = model
        self.base_url = (
            base_url or next((os.environ[v] for v in BASE_URL_VARS if os.environ.get(v)), DEFAULT_BASE_URL)
        ).rstrip("/")
        self.spec: str = f"openai:{model}@{self.base_url}"
        self.url = chat_completions_url(self.base_url)
        self._api_key = api_key or next((os.environ[v] for v in API_KEY_VARS if os.environ.get(v)), None)
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.request_logprobs = request_logprobs
        self.extra_body = dict(extra_body or {})
        self.stats = ServerStats()
        # An httpx client and a semaphore belong to one event loop; tests and notebooks may use several.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def _bind(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._client is None or self._semaphore is None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._client = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(max_connections=self.max_concurrency),
            )
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop
        return self._client, self._semaphore

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        sampling = request.sampling
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.stop:
            payload["stop"] = list(sampling.stop)
        seed = request_seed(request)
        if seed is not None:
            payload["seed"] = seed
        if self.request_logprobs:
            payload["logprobs"] = True
        payload.update(self.extra_body)
        return payload

    async def generate(self, request: ChatRequest) -> Completion:
        client, semaphore = self._bind()
        async with semaphore:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            try:
                return await self._call(client, request)
            except ModelError:
                self.stats.failures += 1
                raise
            finally:
                self.stats.in_flight -= 1

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (retry - 1))
        delay += random.uniform(0, delay)  # jitter: clients that failed together do not retry together
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_BACKOFF_S))
        return delay

    async def _call(self, client: httpx.AsyncClient, request: ChatRequest) -> Completion:
        problem = ""
        retry_after: float | None = None
        retry = 0
        while True:
            if retry:
                await asyncio.sleep(self._backoff(retry, retry_after))
            retry_after = None
            started = time.perf_counter()
            self.stats.attempts += 1
            try:
                response = await client.post(self.url, json=self._payload(request))
            except httpx.TimeoutException:
                problem = f"no reply within timeout_s={self.timeout_s}"
            except httpx.TransportError as exc:
                problem = f"cannot reach {self.url} ({type(exc).__name__}: {exc or 'connection failed'})"
            else:
                status = response.status_code
                if status < 400:
                    return self._parse(response, request, time.perf_counter() - started)
                message = _server_message(response)
                if status == 429 or status >= 500:
                    problem = f"HTTP {status} from {self.url}: {message}"
                    retry_after = _retry_after(response)
                elif self.request_logprobs and status in (400, 422) and "logprob" in message.lower():
                    # The server does not do logprobs: carry on without them (and do not ask again).
                    self.request_logprobs = False
                    continue
                else:
                    raise ModelError(
                        f"{self.spec}: the server rejected the request (HTTP {status}): {message}. {_hint(status)}"
                    )
            if retry >= self.max_retries:
                raise ModelError(
                    f"{self.spec}: {problem}; gave up after {retry + 1} attempt(s). Check that the server is "
                    f"up and reachable at {self.base_url}, or raise timeout_s / max_retries."
                )
            retry += 1
            self.stats.retries += 1

    def _parse(self, response: httpx.Response, request: ChatRequest, latency_s: float) -> Completion:
        try:
            data = response.json()
            choice = data["choices"][0]
            text = (choice.get("message") or {}).get("content") or ""
            finish = choice.get("finish_reason") or "stop"
            usage = data.get("usage") or {}
            logprobs = None
            content = (choice.get("logprobs") or {}).get("content")
            if content:
                logprobs = tuple(float(entry["logprob"]) for entry in content)
            token_ids = choice.get("token_ids")  # vLLM, when asked with return_token_ids
            prompt_ids = data.get("prompt_token_ids") or choice.get("prompt_token_ids")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ModelError(
                f"{self.spec}: the server's reply is not an OpenAI chat completion ({type(exc).__name__}: "
                f"{exc}); got {response.text[:300]!r}. Is {self.base_url} an OpenAI-compatible server?"
            ) from exc
        # Some servers (transformers serve among them) leave the stop string in the text; OpenAI does not.
        cuts = [text.index(s) for s in request.sampling.stop if s and s in text]
        if cuts:
            text = text[: min(cuts)]
        return Completion(
            text=text,
            model=self.spec,
            finish_reason=finish,
            usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
            latency_s=latency_s,
            prompt_token_ids=tuple(prompt_ids) if prompt_ids else None,
            completion_token_ids=tuple(token_ids) if token_ids else None,
            logprobs=logprobs,
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()

    def __repr__(self) -> str:
        return f"OpenAIModel({self.spec!r})"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _hint(status: int) -> str:
    if status in (401, 403):
        return f"Set an API key in {' or '.join(API_KEY_VARS)}, or pass api_key=."
    if status == 404:
        return "Check the base URL (it should end before /chat/completions) and the model name."
    return "Fix the request or the model name in the spec."
