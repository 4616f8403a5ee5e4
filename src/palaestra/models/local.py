"""``LocalModel``: a transformers causal LM in this process, with concurrent requests batched together.

Every ``generate`` call joins a queue, served by a background worker in one worker thread (torch releases
the GIL). With the default ``continuous`` engine (``palaestra.models.engine``) the worker keeps one batch
running: waiting requests join it between token steps and each leaves as soon as its reply ends. With the
``static`` engine it takes what is waiting (after a short window, or as soon as ``max_batch_size`` requests
are there), left-pads the prompts into one batch and runs a single ``model.generate``; either way it
resolves each caller's future with its completion.

Requests with different sampling settings share a batch: temperature, top-p, the seed, ``max_tokens`` and
stop strings are applied per row by a logits processor and a stopping criterion of our own. That processor
samples each row from its own seeded random stream, so a seeded request gets the same tokens whatever else
is in its batch, and records the log-probability of each chosen token as it goes (one float per token
instead of keeping every step's full-vocabulary scores).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import random
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from palaestra.core.errors import MissingDependencyError, ModelError, SpecError
from palaestra.core.types import ChatRequest, Completion, SamplingParams, Usage
from palaestra.models.embedded import ensure_embedded_model, recorded_weights_hash, sha256_file
from palaestra.models.spec import EMBEDDED_SPEC, request_seed

if TYPE_CHECKING:
    from palaestra.models.engine import ContinuousBatch

try:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DynamicCache,
        GenerationConfig,
        LogitsProcessor,
        LogitsProcessorList,
        StoppingCriteria,
        StoppingCriteriaList,
    )
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise MissingDependencyError("the local model backend", "pip install torch==2.13.0 'palaestra[local]'") from exc

from transformers.utils import logging as _hf_logging

# Loading a 135M model takes a second: transformers' per-load progress bar would only clutter the CLI.
_hf_logging.disable_progress_bar()


# Automatic prefix caching. Every prompt of one environment starts with the same system message and
# demonstrations (a few hundred tokens); on a CPU, reading the prompt (prefill) is most of a turn's cost,
# so those tokens are computed once and reused by every row and turn that shares them.
MIN_PREFIX = 32  # shorter shared prefixes are not worth a separate pass
MAX_PREFIXES = 8  # cached prefixes kept (least recently used dropped); ~46 kB per token for SmolLM2-135M
RECENT_PROMPTS = 16  # recent prompts a lone request is compared with, to find a prefix worth caching
ENGINES = ("continuous", "static")


@dataclass
class BatchStats:
    """What the batching worker has done, for tests and benchmarks."""

    batches: int = 0
    requests: int = 0
    max_batch_size: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generate_s: float = 0.0  # time spent inside model.generate
    failed_batches: int = 0
    generate_calls: int = 0  # model.generate runs: one per batch, or one per prefix group in a batch
    prefix_hits: int = 0  # rows whose shared prompt prefix came from the prefix cache
    cached_prompt_tokens: int = 0  # prompt tokens those rows did not have to compute again


@dataclass
class _Pending:
    request: ChatRequest
    prompt_ids: list[int]
    future: asyncio.Future[Completion]
    enqueued: float


def weights_hash(model_dir: Path) -> str:
    """``sha256:<hex>`` of the weights file, or of ``sha256sum``-style lines when there are several.

    A hash recorded at conversion time (``palaestra-weights.json``) is used while the files are unchanged.
    """
    recorded = recorded_weights_hash(model_dir)
    if recorded:
        return recorded
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    if not files:
        raise ModelError(f"no weight files (*.safetensors, *.bin) in {model_dir}; is it a model directory?")
    if len(files) == 1:
        return "sha256:" + sha256_file(files[0])
    lines = "".join(f"{sha256_file(f)}  {f.name}\n" for f in files)
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int, shared: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask for a batch of prompts, padded on the left of each row's own part.

    With ``shared > 0`` (the rows' first ``shared`` tokens are the same) rows are laid out as
    ``[shared prefix | padding | own tokens]``, so the prefix sits at the same positions in every row and
    its cached keys and values can be reused; with ``shared == 0`` this is plain left padding.
    """
    width = shared + max(len(p) - shared for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        own = len(prompt) - shared
        input_ids[row, :shared] = torch.tensor(prompt[:shared], dtype=torch.long)
        attention[row, :shared] = 1
        input_ids[row, width - own :] = torch.tensor(prompt[shared:], dtype=torch.long)
        attention[row, width - own :] = 1
    return input_ids, attention


def _common_length(a: Sequence[int], b: Sequence[int], bound: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, at most ``bound``."""
    n = 0
    bound = min(bound, len(a), len(b))
    while n < bound and a[n] == b[n]:
        n += 1
    return n


class _RowSampler(LogitsProcessor):
    """Chooses every row's next token itself, records its log-probability, and makes ``generate`` take it.

    ``generate`` runs greedy (argmax) over what this returns: greedy rows keep the model's scores, sampled
    rows get scores that allow only the token drawn here. So each row has its own temperature, top-p and
    random stream (a ``random.Random`` seeded from the request: one uniform draw per token, inverse-CDF
    sampling), and a seeded request draws the same tokens whatever else shares its batch.
    """

    def __init__(self, requests: Sequence[ChatRequest], device: torch.device) -> None:
        self.sampled = [i for i, r in enumerate(requests) if r.sampling.temperature > 0]
        self.rows = torch.tensor(self.sampled, dtype=torch.long, device=device)
        self.temperature = torch.tensor([[requests[i].sampling.temperature] for i in self.sampled], device=device)
        self.top_p = torch.tensor([requests[i].sampling.top_p for i in self.sampled], device=device)
        self.rngs = [row_rng(requests[i]) for i in self.sampled]
        self.chosen_logprobs: list[torch.Tensor] = []  # one [batch] tensor per generated position

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = cast(torch.FloatTensor, scores.float())
        uniform = torch.tensor([rng.random() for rng in self.rngs], device=scores.device)
        chosen, logprob = choose_tokens(scores, self.rows, self.temperature, self.top_p, uniform)
        if self.sampled:  # make generate's argmax take the sampled tokens
            forced = torch.full_like(scores[self.rows], float("-inf")).scatter_(1, chosen[self.rows, None], 0.0)
            scores[self.rows] = forced  # generate made this tensor for this step alone: safe to overwrite
        self.chosen_logprobs.append(logprob)
        return scores


def row_rng(request: ChatRequest) -> random.Random:
    """The random stream a sampled row draws from: seeded from the request, so it draws the same tokens in
    any batch (a fresh random seed when the request has none)."""
    seed = request_seed(request)
    return random.Random(seed if seed is not None else secrets.randbits(64))


def choose_tokens(
    scores: torch.Tensor, rows: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, uniform: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next token of every row and its log-probability: greedy rows take the argmax (log-probability under
    the model's own distribution); the ``rows`` that sample draw with their ``temperature`` ([n, 1]), ``top_p``
    ([n]) and ``uniform`` draws ([n]) (log-probability under the distribution sampled)."""
    chosen = scores.argmax(dim=-1)
    logprob = scores.gather(1, chosen[:, None]).squeeze(1) - torch.logsumexp(scores, dim=-1)
    if len(rows):
        token, token_logprob = _sample(torch.log_softmax(scores[rows] / temperature, dim=-1), top_p, uniform)
        chosen[rows] = token
        logprob[rows] = token_logprob
    return chosen, logprob


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first of ``stops`` it contains (all of it when none)."""
    cuts = [text.index(s) for s in stops if s in text]
    return text[: min(cuts)] if cuts else text


def _sample(logp: torch.Tensor, top_p: torch.Tensor, uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row by inverse CDF; return the tokens and their log-probabilities.

    Args:
        logp: [rows, vocab] log-probabilities after temperature.
        top_p: [rows] nucleus mass; 1.0 samples from the whole distribution.
        uniform: [rows] uniform draws in [0, 1).

    The log-probability is under the distribution actually sampled: after temperature and, for top-p rows,
    renormalised over the nucleus.
    """
    token = torch.empty(len(logp), dtype=torch.long, device=logp.device)
    token_logprob = torch.empty(len(logp), dtype=logp.dtype, device=logp.device)
    full = torch.nonzero(top_p >= 1.0).flatten()
    if len(full):  # whole vocabulary, in vocabulary order: no sort needed
        cdf = logp[full].exp().cumsum(dim=-1)
        target = uniform[full, None] * cdf[:, -1:]
        picked = torch.searchsorted(cdf, target, right=True).clamp_(max=logp.shape[1] - 1)
        token[full] = picked.squeeze(1)
        token_logprob[full] = logp[full].gather(1, picked).squeeze(1)
    # Nucleus rows: sorting the vocabulary costs ~2 ms a row, so look at the top 64 tokens first and widen
    # only for rows whose nucleus is bigger (rare at usual temperatures).
    pending = torch.nonzero(top_p < 1.0).flatten()
    width = 64
    while len(pending):
        width = min(width, logp.shape[1])
        values, indices = logp[pending].topk(width, dim=-1)  # sorted, most likely first
        probs = values.exp()
        cdf = probs.cumsum(dim=-1)
        p = top_p[pending, None]
        covered = (cdf[:, -1:] >= p).squeeze(1) | (width == logp.shape[1])
        if covered.any():
            rows = pending[covered]
            keep = (cdf[covered] - probs[covered]) < p[covered]  # a prefix; the top token is always kept
            mass = (probs[covered] * keep).sum(dim=-1, keepdim=True)
            last = keep.sum(dim=-1, keepdim=True) - 1
            picked = torch.searchsorted(cdf[covered], uniform[rows, None] * mass, right=True)
            picked = torch.minimum(picked, last)
            token[rows] = indices[covered].gather(1, picked).squeeze(1)
            token_logprob[rows] = (values[covered].gather(1, picked) - mass.log()).squeeze(1)
        pending = pending[~covered]
        width *= 16
    return token, token_logprob


class _RowStopper(StoppingCriteria):
    """Per-row end of generation: end-of-turn token, a stop string, or the row's own ``max_tokens``."""

    def __init__(self, requests: Sequence[ChatRequest], prompt_width: int, eos_ids: set[int], tokenizer: Any) -> None:
        self.prompt_width = prompt_width
        self.max_tokens = [r.sampling.max_tokens for r in requests]
        self.stops = [tuple(s for s in r.sampling.stop if s) for r in requests]
        # A new stop string ends in the newest token and spans at most len(stop) tokens; decode a little more.
        self.window = max((len(s) for stops in self.stops for s in stops), default=0) + 4
        self.eos_ids = eos_ids
        self.tokenizer = tokenizer
        self.length = [0] * len(requests)  # real generated tokens per row (the rest is padding)
        self.reason: list[str | None] = [None] * len(requests)
        self.done = [False] * len(requests)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        step = input_ids.shape[1] - self.prompt_width
        newest = input_ids[:, -1].tolist()
        tails = input_ids[:, -min(self.window, step) :].tolist() if any(self.stops) else None
        for row, token in enumerate(newest):
            if self.done[row]:
                continue
            self.length[row] = step
            hit_stop = tails is not None and bool(self.stops[row]) and self._hit_stop(row, tails[row])
            if token in self.eos_ids or hit_stop:
                self.reason[row] = "stop"
            elif step >= self.max_tokens[row]:
                self.reason[row] = "length"
            self.done[row] = self.reason[row] is not None
        return cast(torch.BoolTensor, torch.tensor(self.done, dtype=torch.bool, device=input_ids.device))

    def _hit_stop(self, row: int, tail: list[int]) -> bool:
        text = self.tokenizer.decode(tail, skip_special_tokens=True)
        return any(stop in text for stop in self.stops[row])


class LocalModel:
    """A transformers causal LM on this machine, batching concurrent requests.

    Args:
        path: a transformers model directory (config, weights, tokenizer with a chat template).
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available, else CPU.
        dtype: torch dtype or its name (``"float32"``, ``"bfloat16"``); default: as stored.
        max_batch_size: most requests in one ``generate`` batch.
        batch_wait_s: how long the worker waits for more requests after the first one arrives.
        prefix_cache: compute a prompt prefix shared by several requests (an environment's instructions and
            demonstrations) once and reuse its keys and values; the output is the same, the prompt cost less.
        engine: ``"continuous"`` (default): one running batch that requests join and leave token by token
            (``palaestra.models.engine``); ``"static"``: one ``model.generate`` per batch, which runs until its
            longest row ends. Models the continuous engine cannot drive use ``static``.
        spec: the spec recorded with runs; default ``local:<absolute path>``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_batch_size: int = 32,
        batch_wait_s: float = 0.01,
        prefix_cache: bool = True,
        engine: str = "continuous",
        spec: str | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        _check_engine(engine)  # before the weights load: a typo should not cost seconds
        self.path = Path(path).expanduser().resolve()
        self._in_memory = False
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            loaded = AutoModelForCausalLM.from_pretrained(
                str(self.path), dtype=_dtype(dtype) if dtype is not None else "auto"
            )
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load a transformers model from {self.path}: {exc}. The directory needs config.json, "
                f"weights and tokenizer files (save_pretrained output)."
            ) from exc
        device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._setup(
            cast(Any, loaded).to(device_).eval(),
            tokenizer,
            spec=spec or f"local:{self.path}",
            max_batch_size=max_batch_size,
            batch_wait_s=batch_wait_s,
            prefix_cache=prefix_cache,
            engine=engine,
        )

    @classmethod
    def wrap(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        spec: str,
        path: str | Path | None = None,
        max_batch_size: int = 32,
        batch_wait_s: float = 0.01,
        prefix_cache: bool = False,
        engine: str = "continuous",
    ) -> LocalModel:
        """A ``LocalModel`` over a model already in memory (e.g. one being trained), used as it is: not moved,
        not switched to eval mode, sharing its weights. The prefix cache is off by default, since the caller may
        change the weights between calls."""
        self = cls.__new__(cls)
        self.path = Path(path).expanduser().resolve() if path is not None else Path.cwd()
        self._in_memory = True  # no weight files stand for these weights: weights_hash is None
        self._setup(
            model,
            tokenizer,
            spec=spec,
            max_batch_size=max_batch_size,
            batch_wait_s=batch_wait_s,
            prefix_cache=prefix_cache,
            engine=engine,
        )
        return self

    def _setup(
        self,
        model: Any,
        tokenizer: Any,
        *,
        spec: str,
        max_batch_size: int,
        batch_wait_s: float,
        prefix_cache: bool,
        engine: str,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        _check_engine(engine)
        self.spec = spec
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.prefix_cache = prefix_cache
        self.stats = BatchStats()
        # Any: transformers' annotations of the auto classes do not describe what they return.
        self.tokenizer: Any = tokenizer
        self.model: Any = model
        if not self.tokenizer.chat_template:
            raise ModelError(
                f"the tokenizer in {self.path} has no chat template; set tokenizer.chat_template and "
                f"save it (tokenizer.save_pretrained) so chat prompts can be built"
            )
        self.device = next(model.parameters()).device
        config = self.model.generation_config
        eos = config.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else config.pad_token_id
        self.pad_id: int = pad if pad is not None else min(self.eos_ids, default=0)
        self.context_length: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self._weights_hash: str | None = None
        # One thread runs generate: two concurrent batches would only fight over the same cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="palaestra-generate")
        self._hash_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # prompt prefix -> its KV cache
        self._recent: deque[tuple[int, ...]] = deque(maxlen=RECENT_PROMPTS)
        from palaestra.models.engine import ContinuousBatch, supports  # here: the engine imports this module

        self.engine = engine if engine == "static" or supports(model) else "static"
        self._running = ContinuousBatch(self) if self.engine == "continuous" else None

    def apply_adapter(self, adapter_dir: str | Path) -> None:
        """Merge a PEFT (LoRA) adapter into the weights, in place; the prefix cache starts afresh."""
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise MissingDependencyError("loading a LoRA checkpoint", "pip install 'palaestra[train]'") from exc
        merged = PeftModel.from_pretrained(self.model, str(adapter_dir)).merge_and_unload()
        self.model = cast(Any, merged).to(self.device).eval()
        self._prefixes.clear()
        self._weights_hash = None

    @classmethod
    def embedded(cls, **options: Any) -> LocalModel:
        """The embedded SmolLM2-135M-Instruct (spec ``smollm2-135m``), converting it on first use."""
        options.setdefault("spec", EMBEDDED_SPEC)
        return cls(ensure_embedded_model(), **options)

    @property
    def weights_hash(self) -> str | None:
        """``sha256:<hex>`` of the weight files; computed on first use (large models take a while)."""
        with self._hash_lock:
            if self._weights_hash is None and not self._in_memory:
                self._weights_hash = weights_hash(self.path)
            return self._weights_hash

    @weights_hash.setter
    def weights_hash(self, value: str | None) -> None:
        # Settable because the Model protocol declares a plain attribute; None means "compute again".
        self._weights_hash = value

    # ------------------------------------------------------------------ requests

    def prompt_token_ids(self, request: ChatRequest) -> list[int]:
        """The exact prompt tokens: the chat template with the assistant turn opened."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    async def generate(self, request: ChatRequest) -> Completion:
        if self._closed:
            raise ModelError(f"{self.spec}: the model is closed; build a new one with make_model")
        _check_sampling(request.sampling)  # here, not in the batch: one bad request must not fail the others
        prompt_ids = self.prompt_token_ids(request)
        needed = len(prompt_ids) + request.sampling.max_tokens
        if self.context_length and needed > self.context_length:
            raise ModelError(
                f"{self.spec}: prompt of {len(prompt_ids)} tokens plus "
                f"max_tokens={request.sampling.max_tokens} exceeds the model's context of "
                f"{self.context_length}; shorten the history or max_tokens"
            )
        queue = self._ensure_worker()
        loop = asyncio.get_running_loop()
        pending = _Pending(request, prompt_ids, loop.create_future(), time.perf_counter())
        queue.put_nowait(pending)
        return await pending.future

    def _ensure_worker(self) -> asyncio.Queue[_Pending]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None or self._worker is None or self._worker.done():
            # First use, or a new event loop (each test or asyncio.run has its own): start a worker there.
            self._loop = loop
            if self._running is not None:  # rows left by an earlier event loop belong to it: forget them
                self._executor.submit(self._running.reset)  # in the worker thread, after any step in flight
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work(self._queue), name=f"palaestra-batcher {self.spec}")
        return self._queue

    async def _work(self, queue: asyncio.Queue[_Pending]) -> None:
        if self._running is not None:
            await self._work_continuous(queue, self._running)
            return
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue, self.max_batch_size)
            if not batch:
                continue
            try:
                completions = await loop.run_in_executor(self._executor, self._generate_batch, batch)
            except Exception as exc:  # the worker must survive: fail this batch, keep serving the next
                self._fail(batch, exc)
                continue
            now = time.perf_counter()
            for p, completion in zip(batch, completions, strict=True):
                if not p.future.done():
                    p.future.set_result(dataclasses.replace(completion, latency_s=now - p.enqueued))

    async def _work_continuous(self, queue: asyncio.Queue[_Pending], running: ContinuousBatch) -> None:
        """Feed the running batch: admit what waits (up to ``max_batch_size`` rows), step, hand out what ended."""
        loop = asyncio.get_running_loop()
        while True:
            new: list[_Pending] = []
            if running.active:  # take what waits, without waiting: the running rows need their next step
                while not queue.empty() and running.active + len(new) < self.max_batch_size:
                    new.append(queue.get_nowait())
                new = [p for p in new if not p.future.done()]
            else:
                new = await self._collect(queue, self.max_batch_size)
                if not new:
                    continue
            try:
                ended = await loop.run_in_executor(self._executor, running.advance, new)
            except Exception as exc:  # the worker must survive: fail the running rows, keep serving the next
                joined = {id(p) for p in running.pendings()}
                failed = [*running.pendings(), *(p for p in new if id(p) not in joined)]
                running.reset()
                self._fail(failed, exc)
                continue
            now = time.perf_counter()
            for p, completion in ended:
                if not p.future.done():
                    p.future.set_result(dataclasses.replace(completion, latency_s=now - p.enqueued))

    async def _collect(self, queue: asyncio.Queue[_Pending], most: int) -> list[_Pending]:
        """Wait for a request, then up to ``batch_wait_s`` for more, up to ``most``; drop callers that gave up
        (cancelled, timed out)."""
        loop = asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + self.batch_wait_s
        while len(batch) < most:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.done()]

    def _fail(self, batch: Sequence[_Pending], exc: Exception) -> None:
        self.stats.failed_batches += 1
        error = ModelError(
            f"{self.spec}: generation failed for a batch of {len(batch)} "
            f"({type(exc).__name__}: {exc}); the model is still usable, retry the request"
        )
        error.__cause__ = exc
        for p in batch:
            if not p.future.done():
                p.future.set_exception(error)

    def prefix_groups(self, prompts: Sequence[list[int]]) -> list[tuple[list[int], tuple[int, ...]]]:
        """The prompts (by index) grouped by the prefix they share, each with that prefix (cached, or empty for
        the rows with no worthwhile shared prefix, which go last as one ordinary left-padded group)."""
        by_start: dict[tuple[int, ...], list[int]] = {}
        for row, prompt in enumerate(prompts):
            by_start.setdefault(tuple(prompt[:MIN_PREFIX]), []).append(row)
        groups: list[tuple[list[int], tuple[int, ...]]] = []
        plain: list[int] = []
        for rows in by_start.values():
            prefix = self._shared_prefix([prompts[r] for r in rows])
            if prefix:
                groups.append((rows, prefix))
            else:
                plain += rows
        if plain:
            groups.append((plain, ()))
        return groups

    def _generate_batch(self, batch: Sequence[_Pending]) -> list[Completion]:
        """Generate for a batch (in the worker thread): rows that share a long prompt prefix (the same
        instructions and demonstrations, as every turn of one environment has) are generated together on
        top of that prefix's cached keys and values; the others in one plain left-padded batch."""
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.max_batch_size = max(self.stats.max_batch_size, len(batch))
        groups = self.prefix_groups([p.prompt_ids for p in batch])
        results: dict[int, Completion] = {}
        for rows, prefix in groups:
            completions = self._generate_group([batch[r] for r in rows], prefix)
            results.update(zip(rows, completions, strict=True))
        return [results[row] for row in range(len(batch))]

    def _shared_prefix(self, prompts: Sequence[list[int]]) -> tuple[int, ...]:
        """The prompt prefix worth caching for these rows (empty when shorter than MIN_PREFIX).

        Several rows: their common prefix. A lone row: the longest cached prefix it starts with, else the
        longest prefix it shares with a recent prompt (the previous turn of the same episode, say).
        """
        if not self.prefix_cache:
            return ()
        first = prompts[0]
        limit = min(len(p) for p in prompts) - 1  # generate needs at least one uncached token per row
        if len(prompts) > 1:
            best = min(_common_length(first, other, limit) for other in prompts[1:])
        else:
            cached = [len(k) for k in self._prefixes if _common_length(first, k, limit) == len(k)]
            recent = (_common_length(first, r, limit) for r in self._recent)
            best = max(cached) if cached else max(recent, default=0)
            self._recent.append(tuple(first))
        return tuple(first[:best]) if best >= MIN_PREFIX else ()

    def _prefix_cache(self, prefix: tuple[int, ...]) -> Any:
        """Keys and values of ``prefix`` (batch of one), kept in a small LRU. A new prefix extends the
        longest cached one it starts with, so a slightly longer prefix costs only its extra tokens."""
        cache = self._prefixes.get(prefix)
        if cache is not None:
            self._prefixes.move_to_end(prefix)
            return cache
        bases = [k for k in self._prefixes if len(k) < len(prefix) and prefix[: len(k)] == k]
        base = max(bases, key=len, default=())
        cache = copy.deepcopy(self._prefixes[base]) if base else DynamicCache(config=self.model.config)
        with torch.inference_mode():
            rest = torch.tensor([prefix[len(base) :]], device=self.device)
            self.model(input_ids=rest, past_key_values=cache, use_cache=True)
        self._prefixes[prefix] = cache
        while len(self._prefixes) > MAX_PREFIXES:
            self._prefixes.popitem(last=False)
        return cache

    def _generate_group(self, batch: Sequence[_Pending], prefix: tuple[int, ...]) -> list[Completion]:
        requests = [p.request for p in batch]
        shared = len(prefix)
        # Rows are [shared prefix | padding | own suffix]: padding sits between the two, so the prefix keeps
        # positions 0..shared-1 in every row (positions come from the attention mask's running sum).
        input_ids, attention = pad_prompts([p.prompt_ids for p in batch], self.pad_id, shared)
        width = input_ids.shape[1]
        extra: dict[str, Any] = {}
        if shared:
            cache = copy.deepcopy(self._prefix_cache(prefix))
            cache.batch_repeat_interleave(len(batch))
            extra["past_key_values"] = cache
            self.stats.prefix_hits += len(batch)
            self.stats.cached_prompt_tokens += shared * len(batch)
        sampler = _RowSampler(requests, self.device)
        stopper = _RowStopper(requests, width, self.eos_ids, self.tokenizer)
        # The request alone decides decoding: neutralise distribution-changing defaults a model may ship in
        # its generation_config.json (generate fills every unset field from it).
        config = GenerationConfig(
            max_new_tokens=max(r.sampling.max_tokens for r in requests),
            do_sample=False,
            num_beams=1,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            min_new_tokens=0,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
        )
        started = time.perf_counter()
        with torch.inference_mode():
            sequences = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
                stopping_criteria=StoppingCriteriaList([stopper]),
                **extra,
            )
        elapsed = time.perf_counter() - started
        generated = sequences[:, width:].tolist()
        logprobs = torch.stack(sampler.chosen_logprobs, dim=1).tolist() if sampler.chosen_logprobs else []
        completions = []
        for row, p in enumerate(batch):
            n = stopper.length[row]
            ids = generated[row][:n]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            text = cut_at_stops(text, stopper.stops[row])
            completions.append(
                Completion(
                    text=text,
                    model=self.spec,
                    finish_reason=stopper.reason[row] or "length",
                    usage=Usage(len(p.prompt_ids), n),
                    prompt_token_ids=tuple(p.prompt_ids),
                    completion_token_ids=tuple(ids),
                    logprobs=tuple(logprobs[row][:n]) if n else (),
                )
            )
        stats = self.stats
        stats.generate_calls += 1
        stats.prompt_tokens += sum(len(p.prompt_ids) for p in batch)
        stats.completion_tokens += sum(stopper.length)
        stats.generate_s += elapsed
        return completions

    async def close(self) -> None:
        """Stop the worker; requests still waiting fail with ``ModelError``."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
        queue, self._queue = self._queue, None
        waiting = self._running.pendings() if self._running is not None else []
        while queue is not None and not queue.empty():
            waiting.append(queue.get_nowait())
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(ModelError(f"{self.spec}: the model was closed"))
        self._executor.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"LocalModel({self.spec!r}, device={self.device.type})"


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise SpecError(f"unknown engine {engine!r} for a local model; choose from {', '.join(ENGINES)}")


def _check_sampling(sampling: SamplingParams) -> None:
    if sampling.max_tokens < 1:
        raise SpecError(f"max_tokens must be at least 1, not {sampling.max_tokens}")
    if sampling.temperature < 0:
        raise SpecError(f"temperature must be >= 0 (0 means greedy), not {sampling.temperature}")
    if not 0 < sampling.top_p <= 1:
        raise SpecError(f"top_p must be in (0, 1], not {sampling.top_p}")


def _dtype(value: str | torch.dtype) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    found = getattr(torch, value, None)
    if not isinstance(found, torch.dtype):
        raise ValueError(f"unknown dtype {value!r}; use e.g. 'float32', 'bfloat16' or 'float16'")
    return found
