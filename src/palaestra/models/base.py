"""The model protocol: one async method, ``generate(ChatRequest) -> Completion``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from palaestra.core.types import ChatRequest, Completion


@runtime_checkable
class Model(Protocol):
    """A language model backend. Batching, caching, retries and rate limits live behind ``generate``.

    ``spec`` is the string that rebuilds the model (recorded with every run); ``weights_hash`` identifies
    the exact weights when known (local models), else None.
    """

    spec: str
    weights_hash: str | None

    async def generate(self, request: ChatRequest) -> Completion: ...

    async def close(self) -> None: ...
