"""The search harness: evaluate candidates honestly and affordably, under a budget, and keep every one.

What most published design searches skip (../shared/reference/OPTIMIZATION.md: ADAS evaluated every archive
member on the test split and reported the best test score; it had no cache and no budget), done here:

- **Splits.** Candidates are compared on validation seeds only (``EnvSpec.seeds("validation", ...)``). The
  test split is reached through one method, :meth:`SearchHarness.test_seeds`, which counts its calls, and
  is scored once, after the search, for the default and the chosen candidate (``test_accesses`` stays 0
  while the search runs; ``test_passes`` ends at 1).
- **Staged evaluation.** Every candidate first plays a small batch of validation seeds; it plays the rest
  of the validation seeds only if the upper end of its batch's 95% bootstrap interval reaches the best
  fully validated score so far (AFlow and ADAS evaluate every candidate in full).
- **Scores.** Each episode's return is normalised with its environment's ``Normalization`` (0 random,
  50 scripted mixture, 100 optimal; the raw return when the spec has none); a candidate's score is the
  mean over seeds of the average over environments, with a percentile-bootstrap 95% interval over seeds.
- **One model, one cache.** All candidates share one model instance behind one ``CachedModel``: a request
  two candidates both make (same messages, sampling and sample index) reaches the model once.
- **Budgets** in model calls, tokens and wall time. Calls and tokens count what reached the model (cache
  misses). An estimate is printed before the search, and a budget too small for one small batch of the
  default candidate is refused before anything runs or is stored. The budget is checked before each
  evaluation stage, and a stage whose estimated time does not fit in the time left is not started (the
  estimate is measured: seconds per model call so far, times the stage's episodes, turns and calls per
  turn), so a search overruns its time only by what that estimate misses; the final test pass is played
  after it.
- **The archive.** Every stage of every candidate is a run in the store (one per environment) whose config
  holds ``purpose="search"``, the search id, the method, the candidate's dict and hash, its parents' hashes
  and the stage (``batch``, ``full`` or ``test``). The search's summary is the config of one last run, of
  stage ``summary``, with no episodes. No schema change.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from palaestra.agents import make_agent
from palaestra.core.errors import PalaestraError, SpecError
from palaestra.core.types import ChatRequest, Completion, EnvSpec, Episode, Usage
from palaestra.envs.base import Env
from palaestra.envs.multi import MultiAgentEnv
from palaestra.envs.registry import make_any
from palaestra.envs.registry import spec as env_spec
from palaestra.eval.stats import bootstrap_ci
from palaestra.improve.gate import GateResult, paired_gate
from palaestra.models.base import Model
from palaestra.models.cache import CachedModel
from palaestra.models.pool import ModelPool
from palaestra.runner.executor import AsyncioExecutor, EpisodeJob
from palaestra.search.space import Candidate, SearchSpace
from palaestra.store import Store

if TYPE_CHECKING:
    from palaestra.search.methods import SearchMethod

STAGES = ("batch", "full", "test", "summary")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
# A rough characters-per-token ratio of BPE tokenizers on English text, for the estimate made before any
# model call; the estimate is replaced by measured figures after the default's first small batch.
CHARS_PER_TOKEN = 4.0


class BudgetError(SpecError):
    """The budget cannot pay for even one evaluation; raised before anything runs or is stored."""


# --------------------------------------------------------------------------- budgets and costs


@dataclass(frozen=True)
class Budget:
    """Limits of a search: model calls, tokens (prompt + completion) and wall-clock seconds; None = no limit."""

    calls: int | None = None
    tokens: int | None = None
    time_s: float | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"calls=2000,tokens=1e6,time=30m"`` (time in s, m or h; any subset of the three)."""
        values: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            try:
                if not sep or key not in ("calls", "tokens", "time"):
                    raise ValueError
                if key == "time":
                    match = re.fullmatch(r"([0-9.eE+]+)\s*([smh]?)", value.strip())
                    if not match:
                        raise ValueError
                    values["time_s"] = float(match[1]) * _UNITS[match[2]]
                else:
                    number = float(value)
                    if number != int(number):
                        raise ValueError
                    values[key] = int(number)
            except (ValueError, OverflowError):
                raise SpecError(
                    f"bad budget item {item!r}; write e.g. 'calls=2000,tokens=1e6,time=30m' "
                    "(calls and tokens are whole numbers, time in s, m or h)"
                ) from None
        budget = cls(**values)
        if not values:
            raise SpecError("the budget names no limit; give at least one of calls=N, tokens=N, time=30m")
        for name, limit in (("calls", budget.calls), ("tokens", budget.tokens), ("time", budget.time_s)):
            if limit is not None and limit <= 0:
                raise BudgetError(f"budget {name}={limit} leaves nothing to spend; give a positive limit")
        return budget

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        parts = []
        if self.calls is not None:
            parts.append(f"calls={self.calls}")
        if self.tokens is not None:
            parts.append(f"tokens={self.tokens}")
        if self.time_s is not None:
            parts.append(f"time={self.time_s:g}s")
        return ",".join(parts) or "unlimited"


@dataclass
class Cost:
    """What a piece of search cost. ``calls`` / ``tokens``: every request the agents made (cache hits
    included: what a candidate costs without a cache); ``model_calls`` / ``model_tokens``: what reached the
    model (what the budget pays)."""

    episodes: int = 0
    calls: int = 0
    tokens: int = 0
    model_calls: int = 0
    model_tokens: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class MeteredModel:
    """Counts the requests and tokens that reach ``inner`` (below the cache, so hits are not counted)."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.spec: str = inner.spec
        self.weights_hash: str | None = inner.weights_hash
        self.calls = 0
        self.tokens = 0

    async def generate(self, request: ChatRequest) -> Completion:
        completion = await self.inner.generate(request)
        self.calls += 1
        self.tokens += completion.usage.total_tokens
        return completion

    async def close(self) -> None:
        return None  # the caller owns the inner model


class _Recorder:
    """A stand-in model that records the first request of an agent's turn (for the estimate); no model runs."""

    spec = "estimate"
    weights_hash: str | None = None

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    async def generate(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        return Completion(text="", model=self.spec, usage=Usage())

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------- configuration and results


@dataclass(frozen=True)
class SearchConfig:
    """One search: which environments, method, space and model, the budget and the split sizes.

    ``batch_episodes`` and ``validation_episodes`` count seeds per environment; ``staged=False`` evaluates
    every candidate on all validation seeds at once and ``cache=False`` turns the shared cache off (both only
    for measuring what they save, in benchmarks/search_savings.py).
    """

    envs: tuple[str, ...]
    method: str = "mcts"
    space: str = "prompt"
    model: str | None = None
    budget: Budget = Budget(calls=2000)
    seed: int = 0
    validation_episodes: int = 20
    batch_episodes: int = 5
    test_episodes: int = 20
    concurrency: int = 16
    max_turns: int | None = None
    max_candidates: int | None = None
    staged: bool = True
    cache: bool = True

    def __post_init__(self) -> None:
        if not self.envs:
            raise SpecError("name at least one environment to search on (see `palaestra envs`)")
        if not 1 <= self.batch_episodes <= self.validation_episodes:
            raise SpecError(
                f"--batch-episodes ({self.batch_episodes}) must be from 1 to --validation-episodes "
                f"({self.validation_episodes}): the small batch is the first part of the validation seeds"
            )
        if self.test_episodes < 1:
            raise SpecError("--test-episodes must be at least 1: the chosen candidate is scored on the test split")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise SpecError("--max-candidates must be at least 1 (the default candidate)")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["envs"] = list(self.envs)
        return data


def _se2(values: Sequence[float]) -> float:
    """The squared standard error of the mean of ``values`` (inf with fewer than two)."""
    return float(np.var(values, ddof=1) / len(values)) if len(values) > 1 else math.inf


@dataclass
class Evaluation:
    """One candidate in the archive: its validation results so far, its lineage and its cost.

    ``values`` maps each environment to {seed position in the validation split: normalised return} of its ok
    episodes.
    """

    candidate: Candidate
    parents: tuple[str, ...]
    index: int
    values: dict[str, dict[int, float]] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    run_ids: list[str] = field(default_factory=list)
    errors: int = 0
    failure: str | None = None  # why the candidate could not be evaluated at all
    wall_s: float = 0.0

    @property
    def hash(self) -> str:
        return self.candidate.hash

    @property
    def full(self) -> bool:
        return "full" in self.stages

    @property
    def failed(self) -> bool:
        return self.failure is not None or not self.per_seed()

    def per_seed(self) -> list[float]:
        """One value per validation seed position: the average over environments of that seed's score."""
        return _per_seed(self.values)

    @property
    def score(self) -> float:
        values = self.per_seed()
        return float(np.mean(values)) if values else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        return bootstrap_ci(self.per_seed())

    @property
    def noise(self) -> float:
        """The variance of ``score`` (the squared standard error over seeds), for the value model."""
        return _se2(self.per_seed())

    @property
    def tokens_per_episode(self) -> float:
        return self.cost.tokens / self.cost.episodes if self.cost.episodes else float("nan")

    def to_dict(self) -> dict[str, Any]:
        low, high = self.ci
        return {
            "index": self.index,
            "hash": self.hash,
            "agent": self.candidate.agent_spec(),
            "candidate": self.candidate.to_dict(),
            "parents": list(self.parents),
            "stages": list(self.stages),
            "score": _finite(self.score),
            "ci": [_finite(low), _finite(high)],
            "seeds": len(self.per_seed()),
            "errors": self.errors,
            "failure": self.failure,
            "tokens_per_episode": _finite(self.tokens_per_episode),
            "cost": self.cost.to_dict(),
            "run_ids": list(self.run_ids),
            "wall_s": round(self.wall_s, 3),
        }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(float(value), 4)


def _per_seed(values: Mapping[str, Mapping[int, float]]) -> list[float]:
    """One value per seed position of the split: the mean over the environments with an ok episode there."""
    positions: dict[int, list[float]] = {}
    for by_position in values.values():
        for position, value in by_position.items():
            positions.setdefault(position, []).append(value)
    return [float(np.mean(v)) for _, v in sorted(positions.items())]


@dataclass(frozen=True)
class Estimate:
    """What one evaluation costs: per episode, and for one small batch / the rest of validation / the test
    pass; ``source`` says whether it comes from the environments' turn limits or from measured episodes."""

    source: str
    calls_per_episode: float
    tokens_per_episode: float
    batch_episodes: int
    full_episodes: int
    test_episodes: int

    def cost(self, episodes: int) -> tuple[float, float]:
        return episodes * self.calls_per_episode, episodes * self.tokens_per_episode

    def candidates(self, budget: Budget, *, full: bool) -> int | None:
        """How many candidates the budget's calls and tokens pay for (None: neither is limited)."""
        calls, tokens = self.cost(self.batch_episodes + (self.full_episodes if full else 0))
        counts = [
            int(limit // need) if need > 0 else None
            for limit, need in ((budget.calls, calls), (budget.tokens, tokens))
            if limit is not None
        ]
        known = [c for c in counts if c is not None]
        return min(known) if known else None

    def lines(self, budget: Budget) -> list[str]:
        batch_calls, batch_tokens = self.cost(self.batch_episodes)
        full_calls, full_tokens = self.cost(self.full_episodes)
        test_calls, test_tokens = self.cost(2 * self.test_episodes)
        at_batch, at_full = self.candidates(budget, full=False), self.candidates(budget, full=True)
        allows = (
            "no call or token limit: the time limit or --max-candidates ends the search"
            if at_batch is None
            else f"the budget ({budget}) pays for about {at_batch} candidates on the small batch alone, "
            f"{at_full} if every one were validated in full (the cache makes repeated requests free)"
        )
        return [
            f"estimate ({self.source}): {self.calls_per_episode:.1f} model calls and "
            f"{self.tokens_per_episode:.0f} tokens per episode",
            f"  small batch ({self.batch_episodes} episodes): {batch_calls:.0f} calls, {batch_tokens:.0f} tokens; "
            f"rest of validation ({self.full_episodes} episodes): {full_calls:.0f} calls, {full_tokens:.0f} tokens",
            f"  {allows}",
            f"  after the search, the test pass (default and chosen, {2 * self.test_episodes} episodes): "
            f"about {test_calls:.0f} calls, {test_tokens:.0f} tokens, paid after the budget",
        ]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TestRow:
    """A candidate's score on the test seeds."""

    agent: str
    hash: str
    values: dict[str, dict[int, float]]
    episodes: list[Episode]
    cost: Cost
    run_ids: list[str]

    @property
    def score(self) -> float:
        values = _per_seed(self.values)
        return float(np.mean(values)) if values else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        return bootstrap_ci(_per_seed(self.values))

    def to_dict(self) -> dict[str, Any]:
        low, high = self.ci
        ok = [e for e in self.episodes if e.status == "ok"]
        return {
            "agent": self.agent,
            "hash": self.hash,
            "score": _finite(self.score),
            "ci": [_finite(low), _finite(high)],
            "episodes": len(ok),
            "errors": len(self.episodes) - len(ok),
            "success_rate": round(float(np.mean([e.success for e in ok])), 4) if ok else None,
            "tokens_per_episode": _finite(self.cost.tokens / self.cost.episodes) if self.cost.episodes else None,
            "run_ids": self.run_ids,
        }


@dataclass
class TestReport:
    """The one pass over the test split: the default and the chosen candidate, and the paired verdict."""

    default: TestRow
    chosen: TestRow | None  # None when the search chose the default itself
    gate: GateResult | None

    @property
    def verdict(self) -> str:
        if self.chosen is None or self.gate is None:
            return "the search found nothing better than the default on validation; the default is kept"
        g = self.gate
        if g.diff_mean is None or g.diff_ci is None:
            return g.reason
        pct = round(100 * g.confidence)
        low, high = g.diff_ci
        where = f"over {g.pairs} paired test episodes, difference {g.diff_mean:+.2f} [{low:+.2f}, {high:+.2f}]"
        if g.promoted:
            return f"the chosen candidate beats the default on the test seeds with {pct}% confidence ({where})"
        return f"not better than the default on the test seeds with {pct}% confidence ({where})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "default": self.default.to_dict(),
            "chosen": self.chosen.to_dict() if self.chosen is not None else None,
            "paired": self.gate.to_dict() if self.gate is not None else None,
            "verdict": self.verdict,
        }


@dataclass
class SearchResult:
    """Everything a search found: the archive in order, the Pareto front, the choice and its test score."""

    search_id: str
    config: SearchConfig
    space: str
    archive: list[Evaluation]
    chosen: Evaluation
    test: TestReport
    estimate: Estimate
    spent: Cost
    wall_s: float
    stopped: str
    test_passes: int
    summary_run: str | None = None

    @property
    def front(self) -> list[Evaluation]:
        return pareto_front(self.archive)

    def to_dict(self) -> dict[str, Any]:
        return {
            "search_id": self.search_id,
            "config": self.config.to_dict(),
            "space": self.space,
            "stopped": self.stopped,
            "estimate": self.estimate.to_dict(),
            "spent": self.spent.to_dict(),
            "wall_s": round(self.wall_s, 3),
            "candidates": len(self.archive),
            "fully_validated": sum(e.full for e in self.archive),
            "front": [e.hash for e in self.front],
            "chosen": self.chosen.to_dict(),
            "test": self.test.to_dict(),
            "test_passes": self.test_passes,
            "note": "candidates were compared on validation seeds only; the test split was scored once, "
            "after the search, for the default and the chosen candidate",
            "archive": [e.to_dict() for e in self.archive],
            "summary_run": self.summary_run,
        }


def pareto_front(archive: Sequence[Evaluation]) -> list[Evaluation]:
    """Fully validated candidates that no other beats on both score (higher) and tokens per episode (lower),
    by rising tokens per episode."""
    pool = [e for e in archive if e.full and not e.failed and not math.isnan(e.tokens_per_episode)]
    front = [
        e
        for e in pool
        if not any(
            o.score >= e.score
            and o.tokens_per_episode <= e.tokens_per_episode
            and (o.score > e.score or o.tokens_per_episode < e.tokens_per_episode)
            for o in pool
        )
    ]
    return sorted(front, key=lambda e: (e.tokens_per_episode, -e.score))


def normalised(spec: EnvSpec, episode_return: float) -> float:
    """An episode's return on its environment's 0-100 scale (the raw return when the spec has none)."""
    return spec.normalization.score(episode_return) if spec.normalization else episode_return


# --------------------------------------------------------------------------- the harness


Log = Callable[[str], None]


class SearchHarness:
    """Evaluates candidates of ``space`` on ``config.envs`` with ``model``, keeps the archive, enforces the
    budget and the splits. ``run(method)`` is a whole search.

    Args:
        model: the model every candidate's agent uses (not closed here); the harness puts one request cache
            in front of it (``config.cache``).
        log: where progress lines go (the CLI prints them on stderr); None for silence.
    """

    def __init__(
        self, config: SearchConfig, store: Store, space: SearchSpace, model: Model, *, log: Log | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.space = space
        self.meter = MeteredModel(model)
        self.model: Model = CachedModel(self.meter, close_inner=False) if config.cache else self.meter
        self.pool = ModelPool(self.model)
        self.log = log or (lambda _line: None)
        self.search_id = f"s-{uuid.uuid4().hex[:8]}"
        self.method_name = config.method
        self.envs: list[Env] = []
        for env_id in config.envs:
            # --max-turns caps each environment's own limit: it shortens a long maze, never lengthens Wordle
            limit = env_spec(env_id).max_turns
            env = make_any(env_id, **({"max_turns": min(limit, config.max_turns)} if config.max_turns else {}))
            if isinstance(env, MultiAgentEnv):
                raise SpecError(
                    f"{env_id} is a multi-agent environment; design search plays single-agent environments "
                    "(a team is searched as one agent of a single-agent environment)"
                )
            self.envs.append(env)
        for env in self.envs:
            env.spec.seeds("validation", config.validation_episodes)  # SpecError now if the split is too small
        self.archive: list[Evaluation] = []
        self.by_hash: dict[str, Evaluation] = {}
        self.test_accesses = 0  # calls of test_seeds: 0 until the search is over
        self.test_passes = 0
        self.estimate: Estimate | None = None
        self.stopped = ""
        # Model calls a method makes outside evaluations (a proposer model writing candidates): part of the
        # budget and of ``spent``.
        self.overhead = Cost()
        self._started = time.monotonic()
        self._played_s = 0.0  # wall time of the validation stages played, for the time estimate of the next
        self._halt: str | None = None  # a stage that would not fit in the time left stops the search

    # ----------------------------------------------------------------- seeds

    def validation_seeds(self, spec: EnvSpec, stage: str) -> list[int]:
        """The small batch (the first ``batch_episodes`` validation seeds) or the rest of validation."""
        batch, total = self.config.batch_episodes, self.config.validation_episodes
        if not self.config.staged:
            return spec.seeds("validation", total)
        if stage == "batch":
            return spec.seeds("validation", batch)
        return spec.seeds("validation", total - batch, offset=batch)

    def test_seeds(self, spec: EnvSpec) -> list[int]:
        """The test seeds of one environment. The only way to them: every call is counted."""
        self.test_accesses += 1
        return spec.seeds("test", self.config.test_episodes)

    # ----------------------------------------------------------------- budget

    @property
    def spent(self) -> Cost:
        total = self.overhead
        for evaluation in self.archive:
            total = total + evaluation.cost
        return total

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def exhausted(self) -> str | None:
        """Why the search must stop now (a limit reached), or None."""
        budget = self.config.budget
        if self._halt is not None:
            return self._halt
        if budget.calls is not None and self.meter.calls >= budget.calls:
            return f"budget spent: {self.meter.calls} model calls of {budget.calls}"
        if budget.tokens is not None and self.meter.tokens >= budget.tokens:
            return f"budget spent: {self.meter.tokens} tokens of {budget.tokens}"
        if budget.time_s is not None and self.elapsed >= budget.time_s:
            return f"budget spent: {self.elapsed:.0f} s of {budget.time_s:.0f} s"
        return None

    async def preflight(self) -> Estimate:
        """Estimate one evaluation's cost from the turn limits and the default's first request (no model call,
        nothing stored) and refuse a budget that cannot pay for the default's small batch."""
        default = self.space.default()
        self.space.save(default)
        per_episode_calls = per_episode_tokens = 0.0
        for env in self.envs:
            recorder = _Recorder()
            agent = make_agent(default.agent_spec(), env, recorder, seed=0)
            # A train seed: the estimate must not look at validation or test tasks.
            step = await env.reset(seed=env.spec.seeds("train", 1)[0])
            await agent.act(env, [], step.observation)
            calls_per_turn = max(len(recorder.requests), 1)
            tokens_per_call = 0.0
            for request in recorder.requests:
                chars = sum(len(m.content) for m in request.messages)
                tokens_per_call += chars / CHARS_PER_TOKEN + request.sampling.max_tokens
            tokens_per_call /= calls_per_turn
            per_episode_calls += env.spec.max_turns * calls_per_turn
            per_episode_tokens += env.spec.max_turns * calls_per_turn * tokens_per_call
            await env.close()
        n = len(self.envs)
        estimate = self._estimate(
            f"up to {', '.join(str(e.spec.max_turns) for e in self.envs)} turns",
            per_episode_calls / n,
            per_episode_tokens / n,
        )
        self._refuse_if_too_small(estimate)
        return estimate

    def _estimate(self, source: str, calls: float, tokens: float) -> Estimate:
        n = len(self.envs)
        batch = self.config.batch_episodes if self.config.staged else self.config.validation_episodes
        return Estimate(
            source=source,
            calls_per_episode=calls,
            tokens_per_episode=tokens,
            batch_episodes=batch * n,
            full_episodes=(self.config.validation_episodes - batch) * n,
            test_episodes=self.config.test_episodes * n,
        )

    def _refuse_if_too_small(self, estimate: Estimate) -> None:
        calls, tokens = estimate.cost(estimate.batch_episodes)
        budget = self.config.budget
        what = (
            f"one small batch of the default candidate ({estimate.batch_episodes} episodes at "
            f"{estimate.calls_per_episode:.0f} model calls and {estimate.tokens_per_episode:.0f} tokens per episode, "
            f"{estimate.source})"
        )
        if budget.calls is not None and budget.calls < calls:
            raise BudgetError(
                f"the budget of {budget.calls} model calls is too small for {what}: it needs about {calls:.0f}. "
                f"Raise calls= to at least {math.ceil(calls)}, or lower --batch-episodes or --max-turns."
            )
        if budget.tokens is not None and budget.tokens < tokens:
            raise BudgetError(
                f"the budget of {budget.tokens} tokens is too small for {what}: it needs about {tokens:.0f}. "
                f"Raise tokens= to at least {math.ceil(tokens)}, or lower --batch-episodes or --max-turns."
            )

    # ----------------------------------------------------------------- evaluation

    async def evaluate(
        self, candidate: Candidate, parents: Sequence[str] = (), *, failure: str | None = None
    ) -> Evaluation:
        """Evaluate a candidate in stages, add it to the archive and return it (the archived one if seen).

        ``failure``: the candidate is already known to be broken (generated code that failed the sandbox's
        check): it is archived as failed with that reason, and nothing is played."""
        if candidate.hash in self.by_hash:
            return self.by_hash[candidate.hash]
        started = time.monotonic()
        evaluation = Evaluation(candidate, tuple(parents), len(self.archive), failure=failure)
        try:
            if failure is None:
                self.space.save(candidate)
                for env in self.envs:
                    make_agent(candidate.agent_spec(), env, _Recorder())  # a bad spec fails here, before any run
        except PalaestraError as exc:
            evaluation.failure = f"{type(exc).__name__}: {exc}"
        if evaluation.failure is None:
            first = "batch" if self.config.staged else "full"
            self._halt = self._too_long(candidate, first)
            if self._halt is not None:  # not played, not archived: the search stops here
                self.stopped = self._halt
                self.log(f"not evaluated: {self._halt}")
                return evaluation
            await self._stage(evaluation, first)
            if first == "batch" and self._promising(evaluation):
                self._halt = self._too_long(candidate, "full")
                reason = self.exhausted()
                if reason is None:
                    await self._stage(evaluation, "full")
                else:
                    self.stopped = reason
        evaluation.wall_s = time.monotonic() - started
        self.archive.append(evaluation)
        self.by_hash[candidate.hash] = evaluation
        self.log(self._line(evaluation))
        return evaluation

    def _too_long(self, candidate: Candidate, stage: str) -> str | None:
        """Why ``stage`` of ``candidate`` must not start under the time budget (None when it fits or cannot be
        estimated yet). Its time is estimated as episodes x turns per episode (the default's, measured) x the
        candidate's calls per turn x seconds per model call (measured on the stages played so far); the cache
        makes this an overestimate. Without this check, one slow stage could overrun the budget many times
        over (a tree-search candidate makes ten calls a turn)."""
        limit = self.config.budget.time_s
        default = self.archive[0] if self.archive else None
        if limit is None or default is None or not default.cost.episodes or not self.meter.calls:
            return None
        episodes = sum(len(self.validation_seeds(env.spec, stage)) for env in self.envs)
        turns = default.cost.calls / default.cost.episodes  # the default makes one call a turn
        calls_per_turn = getattr(candidate, "call_estimate", lambda: 1)()
        seconds = episodes * turns * calls_per_turn * self._played_s / self.meter.calls
        left = limit - self.elapsed
        if seconds <= left:
            return None
        return (
            f"budget: the {stage} stage of {candidate.hash} needs about {seconds:.0f} s "
            f"({episodes} episodes x {turns:.1f} turns x {calls_per_turn} calls), and {max(left, 0):.0f} s are left "
            f"(raise time= in --budget, or lower --batch-episodes, to evaluate more)"
        )

    def best(self) -> Evaluation | None:
        """The fully validated candidate with the highest validation score (the earliest among equals)."""
        full = [e for e in self.archive if e.full and not e.failed]
        return max(full, key=lambda e: e.score) if full else None

    def _promising(self, evaluation: Evaluation) -> bool:
        """Full validation only if the batch's upper confidence bound reaches the best validated score."""
        if evaluation.failed or self.config.validation_episodes == self.config.batch_episodes:
            return False
        best = self.best()
        # A tie may still win on the rest of the seeds; the tolerance absorbs float sums of equal returns.
        return best is None or evaluation.ci[1] >= best.score - 1e-9

    async def _stage(self, evaluation: Evaluation, stage: str) -> None:
        seeds = {env.spec.id: self.validation_seeds(env.spec, stage) for env in self.envs}
        episodes, cost, run_ids = await self._play(evaluation.candidate, evaluation.parents, stage, seeds)
        evaluation.stages.append(stage)
        evaluation.cost = evaluation.cost + cost
        evaluation.run_ids += run_ids
        for env_id, by_position in self._values(episodes, "validation").items():
            evaluation.values.setdefault(env_id, {}).update(by_position)
        evaluation.errors += sum(e.status != "ok" for e in episodes)
        # Generated code that fails (SandboxError) is the candidate's fault, not the infrastructure's: leaving
        # those episodes out would score the code on the seeds where it happened not to crash.
        broken = [e for e in episodes if e.status != "ok" and (e.error or "").startswith("SandboxError")]
        if evaluation.failure is None and (broken or (episodes and not evaluation.per_seed())):
            first = (broken or [e for e in episodes if e.status != "ok"])[0]
            what = "generated code failed" if broken else "every episode failed"
            evaluation.failure = f"{what} (seed {first.seed} of {first.env_id}): {(first.error or '')[:1500]}"

    def _values(self, episodes: Sequence[Episode], split: str) -> dict[str, dict[int, float]]:
        """Normalised returns of the ok episodes by environment and seed position within ``split``."""
        specs = {env.spec.id: env.spec for env in self.envs}
        values: dict[str, dict[int, float]] = {}
        for episode in episodes:
            if episode.status == "ok":
                spec = specs[episode.env_id]
                position = episode.seed - spec.splits[split][0]
                values.setdefault(episode.env_id, {})[position] = normalised(spec, episode.total_return)
        return values

    async def _play(
        self, candidate: Candidate, parents: Sequence[str], stage: str, seeds: Mapping[str, list[int]]
    ) -> tuple[list[Episode], Cost, list[str]]:
        """One run per environment for ``stage``; play every seed with the shared model; store each episode."""
        agent = candidate.agent_spec()
        jobs: list[EpisodeJob] = []
        run_ids: list[str] = []
        for env in self.envs:
            config = {
                "purpose": "search",
                "search_id": self.search_id,
                "method": self.method_name,
                "space": self.space.name,
                "candidate": candidate.to_dict(),
                "candidate_hash": candidate.hash,
                "parents": list(parents),
                "stage": stage,
                "split": "test" if stage == "test" else "validation",
                "seeds": list(seeds[env.spec.id]),
                "envs": [env.spec.id],
                "agents": [agent],
                "model": self.model.spec,
                "max_turns": self.config.max_turns,
                "max_tokens": None,
                "timeout_s": None,
                "concurrency": self.config.concurrency,
            }
            run_id = self.store.create_run(
                env_spec=env.spec,
                agent_spec=agent,
                model_spec=self.model.spec,
                weights_hash=self.model.weights_hash,
                config=config,
            )
            run_ids.append(run_id)
            jobs += [EpisodeJob(run_id, env.spec, agent, self.model.spec, seed) for seed in seeds[env.spec.id]]
        calls_before, tokens_before = self.meter.calls, self.meter.tokens
        played: dict[tuple[str, int], Episode] = {}

        def on_episode(job: EpisodeJob, episode: Episode) -> None:
            self.store.record_episode(job.run_id, episode)
            played[(episode.env_id, job.seed)] = episode

        status = "interrupted"
        started = time.monotonic()
        try:
            await AsyncioExecutor(self.model, self.config.concurrency, models=self.pool).run(jobs, on_episode)
            status = "complete"
        finally:
            if stage != "test":
                self._played_s += time.monotonic() - started
            for run_id in run_ids:
                done = status if not self.store.pending_seeds(run_id) or status == "interrupted" else "incomplete"
                self.store.finish_run(run_id, done)
        episodes = [played[(job.env_spec.id, job.seed)] for job in jobs]  # plan order: reproducible
        cost = Cost(episodes=len(episodes))
        for episode in episodes:
            for turn in episode.turns:
                for call in turn.action.calls:
                    cost.calls += 1
                    cost.tokens += call.usage.total_tokens
        cost.model_calls = self.meter.calls - calls_before
        cost.model_tokens = self.meter.tokens - tokens_before
        return episodes, cost, run_ids

    def _line(self, e: Evaluation) -> str:
        budget = self.config.budget
        spent = f"calls {self.meter.calls}" + (f"/{budget.calls}" if budget.calls else "")
        spent += f", tokens {self.meter.tokens}" + (f"/{budget.tokens}" if budget.tokens else "")
        spent += f", {self.elapsed:.0f}s" + (f"/{budget.time_s:.0f}s" if budget.time_s else "")
        if e.failed:
            result = f"failed: {e.failure or 'no episode played ok'}"
        else:
            low, high = e.ci
            result = f"{'+'.join(e.stages)} {e.score:.1f} [{low:.1f}, {high:.1f}] on {len(e.per_seed())} seeds"
        return (
            f"[{e.index + 1}] {e.hash} {e.candidate.agent_spec()}  {result}  "
            f"{e.cost.model_calls}/{e.cost.calls} calls new/asked  spent {spent}"
        )

    # ----------------------------------------------------------------- the whole search

    async def run(self, method: SearchMethod) -> SearchResult:
        """Search: the default first, then the method's proposals until the budget or the space runs out;
        then the one test pass and the summary run."""
        self.method_name = method.name
        bind = getattr(method, "bind", None)
        if callable(bind):  # methods that read the store or ask a model get the harness first
            bind(self)
        self.estimate = await self.preflight()
        for line in self.estimate.lines(self.config.budget):
            self.log(line)
        rng = random.Random(self.config.seed)
        default = await self.evaluate(self.space.default())
        if default.cost.episodes:
            self.estimate = self._estimate(
                "measured on the default's validation episodes",
                default.cost.calls / default.cost.episodes,
                default.cost.tokens / default.cost.episodes,
            )
            for line in self.estimate.lines(self.config.budget):
                self.log(line)
        idle = 0
        while not self.stopped:
            reason = self.exhausted()
            if reason is not None:
                self.stopped = reason
                break
            if self.config.max_candidates is not None and len(self.archive) >= self.config.max_candidates:
                self.stopped = f"--max-candidates {self.config.max_candidates} reached"
                break
            proposed = method.propose(self.archive, rng)
            if inspect.isawaitable(proposed):  # methods that ask a model (reflect, meta-agent) are async
                proposed = await proposed
            proposals = [p for p in proposed if p.candidate.hash not in self.by_hash]
            if not proposals:
                idle += 1
                if idle >= 3:
                    self.stopped = f"{method.name} proposed nothing new three times: the space looks exhausted"
                    break
                continue
            idle = 0
            for proposal in proposals:
                if self.exhausted() or (
                    self.config.max_candidates is not None and len(self.archive) >= self.config.max_candidates
                ):
                    break
                await self.evaluate(proposal.candidate, proposal.parents, failure=proposal.failure)
        chosen = self.best() or default
        self.log(f"search over ({self.stopped}); chosen on validation: {chosen.hash} {chosen.candidate.agent_spec()}")
        test = await self.score_test(default, chosen)
        result = SearchResult(
            search_id=self.search_id,
            config=self.config,
            space=self.space.name,
            archive=list(self.archive),
            chosen=chosen,
            test=test,
            estimate=self.estimate,
            spent=self.spent,
            wall_s=self.elapsed,
            stopped=self.stopped,
            test_passes=self.test_passes,
        )
        result.summary_run = self._save_summary(result)
        return result

    async def score_test(self, default: Evaluation, chosen: Evaluation) -> TestReport:
        """The one pass over the test split: the default and (when different) the chosen candidate."""
        if self.test_passes:
            raise SpecError("the test split of a search is scored once, for its final choice; it was already scored")
        self.test_passes += 1
        seeds = {env.spec.id: self.test_seeds(env.spec) for env in self.envs}
        self.log(f"scoring the test split once: {sum(map(len, seeds.values()))} seeds per candidate")
        rows = []
        for evaluation in [default] if chosen is default else [default, chosen]:
            episodes, cost, run_ids = await self._play(evaluation.candidate, evaluation.parents, "test", seeds)
            values = self._values(episodes, "test")
            rows.append(TestRow(evaluation.candidate.agent_spec(), evaluation.hash, values, episodes, cost, run_ids))
        if len(rows) == 1:
            return TestReport(rows[0], None, None)
        # The paired bootstrap of the promotion gate, on normalised returns so environments weigh the same.
        specs = {env.spec.id: env.spec for env in self.envs}

        def scaled(episodes: list[Episode]) -> list[Episode]:
            return [dataclasses.replace(e, total_return=normalised(specs[e.env_id], e.total_return)) for e in episodes]

        gate = paired_gate(scaled(rows[0].episodes), scaled(rows[1].episodes), seed=self.config.seed)
        return TestReport(rows[0], rows[1], gate)

    def _save_summary(self, result: SearchResult) -> str:
        env = self.envs[0]
        summary = result.to_dict()
        run_id = self.store.create_run(
            env_spec=env.spec,
            agent_spec=result.chosen.candidate.agent_spec(),
            model_spec=self.model.spec,
            weights_hash=self.model.weights_hash,
            config={
                "purpose": "search",
                "search_id": self.search_id,
                "method": self.method_name,
                "space": self.space.name,
                "stage": "summary",
                "candidate": result.chosen.candidate.to_dict(),
                "candidate_hash": result.chosen.hash,
                "parents": list(result.chosen.parents),
                "seeds": [],
                "summary": summary,
            },
        )
        self.store.finish_run(run_id, "complete")
        return run_id


def search_runs(store: Store, search_id: str) -> list[Any]:
    """The runs of one search (every stage of every candidate, and the summary), oldest first."""
    runs = [r for r in store.list_runs(limit=None) if r.config.get("search_id") == search_id]
    return sorted(runs, key=lambda r: (r.created_at, r.id))


def load_archive(store: Store, search_id: str) -> list[dict[str, Any]]:
    """The archive of a stored search from its runs: one entry per candidate, in order of evaluation, with
    its hash, dict, agent spec, parents' hashes, stages played and run ids."""
    entries: dict[str, dict[str, Any]] = {}
    for run in search_runs(store, search_id):
        config = run.config
        if config.get("stage") == "summary":
            continue
        entry = entries.setdefault(
            config["candidate_hash"],
            {
                "hash": config["candidate_hash"],
                "candidate": config["candidate"],
                "agent": run.agent_spec,
                "parents": config["parents"],
                "method": config["method"],
                "stages": [],
                "run_ids": [],
            },
        )
        if config["stage"] not in entry["stages"]:
            entry["stages"].append(config["stage"])
        entry["run_ids"].append(run.id)
    return list(entries.values())


async def run_search(
    config: SearchConfig,
    store: Store,
    space: SearchSpace,
    method: SearchMethod,
    *,
    model: Model | None = None,
    log: Log | None = None,
) -> SearchResult:
    """A whole search. ``model``: an already built model (else ``config.model`` is built and closed)."""
    own = model is None
    if model is None:
        if not config.model:
            raise SpecError("a search needs a model for its agents: pass --model (e.g. --model smollm2-135m)")
        from palaestra.models import make_model

        model = make_model(config.model)
    try:
        harness = SearchHarness(config, store, space, model, log=log)
        return await harness.run(method)
    finally:
        if own:
            await model.close()
