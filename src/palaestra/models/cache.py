"""``CachedModel``: a request cache in front of any model, in memory or in a SQLite file.

The key is the whole request (messages, sampling parameters, sample index) plus the inner model's spec and
weights hash, so a cache shared between models or weights never mixes their replies. Sampled requests
(temperature > 0) are cached too, one entry per ``sample_index``: asking again for sample 3 of a request
returns the same sample 3; ask for a new ``sample_index`` to get a fresh sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from palaestra.core.errors import ModelError, StoreError
from palaestra.core.types import ChatRequest, Completion, Usage
from palaestra.models.base import Model


@dataclass
class CacheStats:
    """Token accounting of a cached model. ``*_tokens`` count what the inner model really processed."""

    calls: int = 0
    hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0

    @property
    def misses(self) -> int:
        return self.calls - self.hits

    @property
    def hit_rate(self) -> float:
        return self.hits / self.calls if self.calls else 0.0

    @property
    def saved_tokens(self) -> int:
        return self.saved_prompt_tokens + self.saved_completion_tokens


def completion_to_json(completion: Completion) -> str:
    """Serialise a completion (the cache's storage format)."""
    # A shallow dict: dataclasses.asdict deep-copies every token-id tuple, which dominated a cache miss.
    data = {f.name: getattr(completion, f.name) for f in dataclasses.fields(completion)}
    data["usage"] = dataclasses.asdict(completion.usage)
    return json.dumps(data)


def completion_from_json(text: str) -> Completion:
    data: dict[str, Any] = json.loads(text)
    data["usage"] = Usage(**data["usage"])
    for name in ("prompt_token_ids", "completion_token_ids", "logprobs"):
        if data.get(name) is not None:
            data[name] = tuple(data[name])
    return Completion(**data)


class CachedModel:
    """Wraps a model; repeated requests are answered from the cache with ``cached=True``.

    Concurrent identical requests are sent to the inner model once; the others wait for that reply. Errors
    are never cached. A hit returns the completion as first recorded (same ``latency_s``), marked cached.

    Args:
        inner: the model to cache.
        path: a SQLite file that keeps the cache across processes; None keeps it in memory.
        close_inner: ``close()`` also closes the inner model.
    """

    def __init__(self, inner: Model, path: str | Path | None = None, *, close_inner: bool = True) -> None:
        self.inner = inner
        self.spec: str = inner.spec  # the cache does not change what the model replies
        self.weights_hash: str | None = inner.weights_hash
        self.stats = CacheStats()
        self.path = Path(path) if path is not None else None
        self.close_inner = close_inner
        self._memory: dict[str, str] = {}
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}
        self._db: sqlite3.Connection | None = None
        self._closed = False
        if self.path is not None:
            self._db = self._open(self.path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            # WAL lets several processes read while one writes (parallel runs sharing one cache file).
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS completions ("
                " key TEXT PRIMARY KEY, model_spec TEXT NOT NULL, weights_hash TEXT,"
                " request TEXT NOT NULL, completion TEXT NOT NULL, created_at REAL NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the model cache {str(path)!r}: {exc}. Check the path is a writable file, "
                f"or delete it if it is not a palaestra cache."
            ) from exc
        return db

    def key(self, request: ChatRequest) -> str:
        """The cache key of a request for this model (hex sha256)."""
        payload = json.dumps([self.inner.spec, self.inner.weights_hash, request.cache_key()])
        return hashlib.sha256(payload.encode()).hexdigest()

    def _lookup(self, key: str) -> Completion | None:
        if self._db is None:
            text = self._memory.get(key)
        else:
            row = self._db.execute("SELECT completion FROM completions WHERE key = ?", (key,)).fetchone()
            text = row[0] if row else None
        return completion_from_json(text) if text is not None else None

    def _save(self, key: str, request: ChatRequest, completion: Completion) -> None:
        text = completion_to_json(completion)
        if self._db is None:
            self._memory[key] = text
            return
        self._db.execute(
            "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?)",
            (key, self.inner.spec, self.inner.weights_hash, request.cache_key(), text, time.time()),
        )

    def _hit(self, completion: Completion) -> Completion:
        self.stats.hits += 1
        self.stats.saved_prompt_tokens += completion.usage.prompt_tokens
        self.stats.saved_completion_tokens += completion.usage.completion_tokens
        return dataclasses.replace(completion, cached=True)

    async def generate(self, request: ChatRequest) -> Completion:
        if self._closed:
            raise ModelError(f"{self!r} is closed; build a new CachedModel to keep using it")
        self.stats.calls += 1
        key = self.key(request)
        while True:
            found = self._lookup(key)
            if found is not None:
                return self._hit(found)
            pending = self._in_flight.get(key)
            if pending is None:
                break
            try:
                # shield: one waiter being cancelled must not cancel the call the others wait on
                return self._hit(await asyncio.shield(pending))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and task is not None and not task.cancelling():
                    continue  # the caller that owned the call was cancelled, not us: make the call ourselves
                raise
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            completion = await self.inner.generate(request)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            self._in_flight.pop(key, None)
        self.stats.prompt_tokens += completion.usage.prompt_tokens
        self.stats.completion_tokens += completion.usage.completion_tokens
        self._save(key, request, completion)
        future.set_result(completion)
        return completion

    def __len__(self) -> int:
        if self._db is None:
            return len(self._memory)
        return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def clear(self) -> None:
        """Forget every cached completion (of every model in a shared file)."""
        self._memory.clear()
        if self._db is not None:
            self._db.execute("DELETE FROM completions")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self.close_inner:
            await self.inner.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "memory"
        return f"CachedModel({self.inner!r}, {where})"
