"""Continuous batching for ``LocalModel``: rows join and leave the running batch one token step at a time.

``model.generate`` on a padded batch (the ``static`` engine) runs until its longest row is done: a row that
ended after 5 tokens waits, and is still computed, while another writes 60, and a request that arrives
meanwhile waits for the whole batch. In an evaluation that is most of the time: the episode whose reply
ended cannot take its next turn. This engine keeps one batch running instead (as vLLM and TGI do):

- each step feeds every active row its newest token (one forward pass for the batch) and samples the next;
- a row that ends (end-of-turn token, stop string, ``max_tokens``) leaves at once and its caller gets the
  completion, so its episode steps the environment and sends the next turn while the others decode;
- waiting requests are admitted between steps: their prompts are read in one pass per shared prefix (the
  prefix cache of ``LocalModel`` applies) and their keys and values join the batch's.

Rows of the batch have different lengths. Their keys and values share one column layout, left-padded, with
an attention mask; positions (for the rotary embedding) are each row's own count of real tokens, so padding
anywhere changes nothing. Columns that no row uses any more are dropped once they are a quarter of the
width. Sampling is the static engine's (``choose_tokens``): each row's own temperature, top-p and seeded
random stream, so a seeded request draws the same tokens whatever shares its batch. The engine runs in
``LocalModel``'s one worker thread; nothing here is shared.
"""

from __future__ import annotations

import copy
import inspect
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from palaestra.core.types import Completion, Usage
from palaestra.models.local import choose_tokens, cut_at_stops, pad_prompts, row_rng

if TYPE_CHECKING:
    from palaestra.models.local import LocalModel, _Pending


@dataclass
class _Row:
    pending: _Pending
    temperature: float
    top_p: float
    max_tokens: int
    stops: tuple[str, ...]
    rng: random.Random | None  # None: greedy
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    reason: str | None = None


class _GrowingLayer(DynamicLayer):
    """A cache layer whose keys and values are views ``[:rows, :, :columns]`` of buffers with spare rows and
    columns, so the running batch changes in place:

    - a decode step writes its one new column (``DynamicLayer`` concatenates, copying the whole cache at every
      step, a copy that grows with rows x tokens);
    - newcomers are written into spare rows, right-aligned, with zeros on their left;
    - a row that leaves is replaced by the last row (only that row's keys and values move).

    The whole cache is copied only when the buffers are full or the batch must get wider.
    """

    def set(self, keys: torch.Tensor, values: torch.Tensor, rows: int) -> None:
        """Hold ``keys`` and ``values`` ([rows, heads, columns, dim]) in new buffers with room for ``rows`` rows
        and some more columns."""
        count, heads, length, dim = keys.shape
        room = length + max(64, length // 4)
        shape = (max(rows, count), heads, room, dim)
        self._keys, self._values = keys.new_empty(shape), values.new_empty(shape)
        self._keys[:count, :, :length] = keys
        self._values[:count, :, :length] = values
        self._view(count, length)
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def _view(self, count: int, length: int) -> None:
        self._count, self._length = count, length
        self.keys, self.values = self._live()

    def _live(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values in use (views of the buffers)."""
        return self._keys[: self._count, :, : self._length], self._values[: self._count, :, : self._length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        added = key_states.shape[-2]
        if self._length + added > self._keys.shape[2]:
            self.set(*self._live(), self._keys.shape[0])  # no spare column left: bigger buffers
        end = self._length + added
        self._keys[: self._count, :, self._length : end] = key_states
        self._values[: self._count, :, self._length : end] = value_states
        self._view(self._count, end)
        return self.keys, self.values

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add rows whose keys and values are at most as wide as the batch, right-aligned."""
        count, width = keys.shape[0], keys.shape[2]
        if self._count + count > self._keys.shape[0]:
            self.set(*self._live(), self._count + count)
        rows, start = slice(self._count, self._count + count), self._length - width
        for buffer, new in ((self._keys, keys), (self._values, values)):
            buffer[rows, :, :start] = 0  # padding must hold finite numbers: masked scores still multiply them
            buffer[rows, :, start : self._length] = new
        self._view(self._count + count, self._length)

    def widen(self, width: int) -> None:
        """Pad every row on the left so the batch is ``width`` columns wide."""
        keys, values = self._live()
        self.set(_left_pad(keys, width), _left_pad(values, width), self._keys.shape[0])

    def move(self, pairs: list[tuple[int, int]], count: int) -> None:
        """Copy row ``source`` onto row ``target`` for each pair, then keep the first ``count`` rows."""
        for target, source in pairs:
            self._keys[target, :, : self._length] = self._keys[source, :, : self._length]
            self._values[target, :, : self._length] = self._values[source, :, : self._length]
        self._view(count, self._length)

    def columns(self, used: torch.Tensor) -> None:
        """Keep only the columns ``used`` (indices)."""
        keys, values = self._live()
        self.set(keys[:, :, used], values[:, :, used], self._keys.shape[0])


def _growing(cache: Any, rows: int) -> Any:
    """``cache`` with its layers turned into ``_GrowingLayer`` s (room for ``rows`` rows) with the same keys and
    values."""
    for i, layer in enumerate(cache.layers):
        grown = _GrowingLayer()
        grown.set(layer.keys, layer.values, rows)
        cache.layers[i] = grown
    return cache


def _left_pad(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """``tensor`` with zero columns added on the left of ``dim`` up to ``width`` (keys: dim 2; a mask: dim 1)."""
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    return F.pad(tensor, [0, 0] * (tensor.dim() - 1 - dim) + [missing, 0])


def supports(model: Any) -> bool:
    """Whether the continuous engine can drive ``model``: a decoder whose cache is plain per-layer keys and
    values (``DynamicCache`` of full-attention layers), which is what it pads, joins and slices, and whose
    forward takes ``logits_to_keep``. Others (sliding-window or recurrent layers) use ``generate``."""
    parameters = inspect.signature(model.forward).parameters
    if "logits_to_keep" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return False
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # a config this cache class does not understand
        return False
    layers = list(getattr(cache, "layers", None) or [])
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


class ContinuousBatch:
    """The running batch of one ``LocalModel`` (see the module docstring)."""

    def __init__(self, owner: LocalModel) -> None:
        self.owner = owner
        self.rows: list[_Row] = []
        self.cache: Any = None  # DynamicCache over the active rows, [rows, heads, columns, dim] per layer
        self.mask = torch.zeros((0, 0), dtype=torch.long)  # [rows, columns]: 1 where a real token sits
        self.next = torch.zeros(0, dtype=torch.long)  # each row's newest token, not yet in the cache

    @property
    def active(self) -> int:
        return len(self.rows)

    def pendings(self) -> list[_Pending]:
        return [row.pending for row in self.rows]

    def reset(self) -> None:
        """Forget every row (after a failure: their callers are told by the worker)."""
        self.rows, self.cache = [], None
        self.mask = torch.zeros((0, 0), dtype=torch.long)
        self.next = torch.zeros(0, dtype=torch.long)

    # ------------------------------------------------------------------ one step

    @torch.inference_mode()  # the buffers are made in forward passes: inference tensors, changed in place here
    def advance(self, new: list[_Pending]) -> list[tuple[_Pending, Completion]]:
        """Admit ``new`` requests, then decode one token for every active row; return the rows that ended."""
        owner = self.owner
        started = time.perf_counter()
        self._drop([i for i, row in enumerate(self.rows) if row.pending.future.done()])  # callers that gave up
        finished: list[tuple[_Pending, Completion]] = []
        if new:
            owner.stats.batches += 1
            owner.stats.requests += len(new)
            finished += self._admit(new)
        if self.rows:
            finished += self._decode()
        owner.stats.max_batch_size = max(owner.stats.max_batch_size, len(self.rows) + len(finished))
        owner.stats.generate_s += time.perf_counter() - started
        return finished

    def _admit(self, new: list[_Pending]) -> list[tuple[_Pending, Completion]]:
        owner = self.owner
        groups = [([new[i] for i in rows], prefix) for rows, prefix in owner.prefix_groups([p.prompt_ids for p in new])]
        finished = []
        for members, prefix in groups:
            finished += self._prefill(members, prefix)
        return finished

    def _prefill(self, members: list[_Pending], prefix: tuple[int, ...]) -> list[tuple[_Pending, Completion]]:
        owner = self.owner
        shared = len(prefix)
        ids, mask = pad_prompts([p.prompt_ids for p in members], owner.pad_id, shared)
        if shared:
            cache = copy.deepcopy(owner._prefix_cache(prefix))
            cache.batch_repeat_interleave(len(members))
            owner.stats.prefix_hits += len(members)
            owner.stats.cached_prompt_tokens += shared * len(members)
        else:
            cache = DynamicCache(config=owner.model.config)
        positions = (mask.cumsum(dim=1) - 1).clamp_(min=0)
        device = owner.device
        mask = mask.to(device)
        out = owner.model(
            input_ids=ids[:, shared:].to(device),
            attention_mask=mask,
            position_ids=positions[:, shared:].to(device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        owner.stats.generate_calls += 1
        owner.stats.prompt_tokens += sum(len(p.prompt_ids) for p in members)
        rows = [self._row(p) for p in members]
        self._join(rows, cache, mask)
        return self._choose(out.logits[:, -1, :], first=len(self.rows) - len(rows))

    def _decode(self) -> list[tuple[_Pending, Completion]]:
        owner = self.owner
        device = owner.device
        ones = torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=device)
        positions = self.mask.sum(dim=1, keepdim=True)  # the new token follows each row's real tokens
        self.mask = torch.cat([self.mask, ones], dim=1)
        out = owner.model(
            input_ids=self.next[:, None],
            attention_mask=self.mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
        )
        return self._choose(out.logits[:, -1, :], first=0)

    # ------------------------------------------------------------------ rows

    def _row(self, p: _Pending) -> _Row:
        sampling = p.request.sampling
        rng = row_rng(p.request) if sampling.temperature > 0 else None
        stops = tuple(s for s in sampling.stop if s)
        return _Row(p, sampling.temperature, sampling.top_p, sampling.max_tokens, stops, rng)

    def _choose(self, logits: torch.Tensor, *, first: int) -> list[tuple[_Pending, Completion]]:
        """Pick the next token of rows ``first..`` from their logits, record it, and retire rows that ended."""
        owner = self.owner
        rows = self.rows[first:]
        scores, device = logits.float(), logits.device
        sampled = [(i, row.rng) for i, row in enumerate(rows) if row.rng is not None]
        chosen, logprob = choose_tokens(
            scores,
            torch.tensor([i for i, _ in sampled], dtype=torch.long, device=device),
            torch.tensor([[rows[i].temperature] for i, _ in sampled], device=device),
            torch.tensor([rows[i].top_p for i, _ in sampled], device=device),
            torch.tensor([rng.random() for _, rng in sampled], device=device),
        )
        tokens, logprobs = chosen.tolist(), logprob.tolist()
        self.next = torch.cat([self.next[:first], chosen.to(self.next.device)])
        ended = []
        for i, row in enumerate(rows):
            row.tokens.append(tokens[i])
            row.logprobs.append(logprobs[i])
            if tokens[i] in owner.eos_ids or (row.stops and self._hit_stop(row)):
                row.reason = "stop"
            elif len(row.tokens) >= row.max_tokens:
                row.reason = "length"
            if row.reason is not None:
                ended.append(first + i)
        done = [(self.rows[i].pending, self._completion(self.rows[i])) for i in ended]
        self._drop(ended)
        return done

    def _hit_stop(self, row: _Row) -> bool:
        window = max(len(s) for s in row.stops) + 4  # a new stop string ends in the newest token
        text = self.owner.tokenizer.decode(row.tokens[-window:], skip_special_tokens=True)
        return any(stop in text for stop in row.stops)

    def _completion(self, row: _Row) -> Completion:
        owner = self.owner
        text = cut_at_stops(owner.tokenizer.decode(row.tokens, skip_special_tokens=True), row.stops)
        owner.stats.completion_tokens += len(row.tokens)
        return Completion(
            text=text,
            model=owner.spec,
            finish_reason=row.reason or "length",
            usage=Usage(len(row.pending.prompt_ids), len(row.tokens)),
            prompt_token_ids=tuple(row.pending.prompt_ids),
            completion_token_ids=tuple(row.tokens),
            logprobs=tuple(row.logprobs),
        )

    # ------------------------------------------------------------------ the shared cache

    def _join(self, rows: list[_Row], cache: Any, mask: torch.Tensor) -> None:
        """Append ``rows`` (their keys and values in ``cache``, laid out as ``mask``) to the running batch; the
        narrower side is padded on the left, so every row keeps its tokens at the right edge."""
        self.rows += rows
        if self.cache is None or not len(self.mask):
            self.cache, self.mask = _growing(cache, self.owner.max_batch_size), mask
            return
        if mask.shape[1] > self.mask.shape[1]:  # the newcomers are wider: widen the batch first
            for layer in self.cache.layers:
                layer.widen(mask.shape[1])
            self.mask = _left_pad(self.mask, mask.shape[1], dim=1)
        for old, add in zip(self.cache.layers, cache.layers, strict=True):
            old.append(add.keys, add.values)
        self.mask = torch.cat([self.mask, _left_pad(mask, self.mask.shape[1], dim=1)])

    def _drop(self, indices: list[int]) -> None:
        """Remove rows from the batch: the last rows move into their places. Columns no row uses any more are
        dropped once they are a quarter of the batch's width (that copies the whole cache)."""
        if not indices:
            return
        gone = set(indices)
        count = len(self.rows) - len(gone)
        if count == 0:
            self.reset()
            return
        holes = sorted(i for i in gone if i < count)
        pairs = list(zip(holes, [i for i in range(count, len(self.rows)) if i not in gone], strict=True))
        for layer in self.cache.layers:
            layer.move(pairs, count)
        for target, source in pairs:
            self.rows[target] = self.rows[source]
            self.mask[target] = self.mask[source]
            self.next[target] = self.next[source]
        self.rows, self.mask, self.next = self.rows[:count], self.mask[:count], self.next[:count]
        used = self.mask.any(dim=0)
        if 4 * int((~used).sum()) >= len(used):
            columns = torch.nonzero(used).flatten()
            for layer in self.cache.layers:
                layer.columns(columns)
            self.mask = self.mask[:, columns]
