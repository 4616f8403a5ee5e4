"""The Ray executor: the runner's executor boundary over a Ray cluster (``palaestra eval --executor ray``).

What runs where:

- **Episodes** are played by ``EpisodeWorker`` actors spread over the cluster's nodes. Each is an async
  actor that plays several episodes at once on its own event loop, with the very code the in-process
  executor uses (``AsyncioExecutor.play``), so an episode's result does not depend on where it ran.
- **The agents' model** (when an agent needs one) lives in ``ModelReplica`` actors: ``replicas`` copies of
  ``make_model(spec)``. Their methods are async, so the requests of many episodes on every worker are in
  flight at once and a local model puts them into the same batches. A local model's replica asks for one
  GPU when the cluster has GPUs, else one CPU; scripted and OpenAI-compatible models need neither.
- **This process** (the driver) hands jobs to workers, receives each episode as soon as it finishes and
  calls ``on_episode`` with it; ``evaluate`` writes it to the store there, so only one process writes.

Failures: a worker process that dies (killed, out of memory, its node lost) makes its in-flight episodes
fail with a Ray actor error. Ray restarts the actor; the driver puts those episodes back in the queue and
plays them again from their start, up to ``max_retries`` times each, after which the episode is reported
with status ``error`` (left out of scores, re-played by ``palaestra eval --resume``). A replica that dies
is retried by the worker's ``RemoteModel`` on the next replica; the episode goes on.

Exactly once: ``on_episode`` is called once per job, with the episode of one complete attempt. A partial
attempt leaves nothing behind: workers never write to the store, and a failed attempt's object reference
resolves to the error, never to a result. The driver also refuses a second result for a job it has
already reported (counted in ``RunStats.duplicates``, which should stay 0).

Ray is imported by this module only: nothing else in palaestra imports it, so ``--executor asyncio``
(the default) never loads Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import palaestra
from palaestra.core.errors import MissingDependencyError, ModelError, PalaestraError, SpecError
from palaestra.core.types import ChatRequest, Completion, Episode
from palaestra.models.pool import ModelPool
from palaestra.runner.executor import AsyncioExecutor, EpisodeJob, OnEpisode

try:
    import ray
    import ray.exceptions
    import ray.util
except ImportError as exc:
    raise MissingDependencyError("the Ray executor (--executor ray)", "pip install 'palaestra[ray]'") from exc

# Errors that mean "the process (or node) holding this call is gone", not "the code raised": the call is
# safe to make again. A RayTaskError (the episode code raised) is not among them.
LOST = (
    ray.exceptions.RayActorError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.ObjectLostError,
)

# Environment variables the actors need to behave like this process: where models and caches live, the
# model hub's offline switch, an OpenAI-compatible server's key and URL.
FORWARDED_ENV_PREFIXES = ("PALAESTRA_", "HF_", "OPENAI_")

# Model specs whose replica computes nothing itself (a script, or an HTTP client of a model server).
LIGHT_MODEL_PREFIXES = ("scripted:", "openai:")

START_CLUSTER_HINT = (
    "Start a cluster with `ray start --head --port=6379` on the head machine (and "
    "`ray start --address=<head ip>:6379` on each other machine), then pass --address <head ip>:6379; "
    "or leave --address out to start a Ray instance on this machine. See docs/ray.md."
)


class RayClusterError(PalaestraError):
    """The Ray cluster cannot be reached, or cannot place or keep the actors an evaluation needs."""


@dataclass
class RunStats:
    """What happened during the last ``RayExecutor.run``.

    ``attempts`` maps a job's ``(run_id, seed)`` to the times it was started (1 unless a worker died
    under it); ``lost_attempts`` counts attempts lost to a dead worker; ``gave_up`` lists the jobs
    reported as errors after ``max_retries`` lost attempts.
    """

    attempts: dict[tuple[str, int], int] = field(default_factory=dict)
    lost_attempts: int = 0
    gave_up: list[tuple[str, int]] = field(default_factory=list)
    duplicates: int = 0

    @property
    def retried(self) -> dict[tuple[str, int], int]:
        """The jobs started more than once, with their number of starts."""
        return {key: n for key, n in self.attempts.items() if n > 1}


@dataclass(frozen=True)
class WorkerInfo:
    """Where an episode worker runs: palaestra's version there, its process id and its node's address."""

    version: str
    pid: int
    node_ip: str


def _ref_future(ref: Any) -> asyncio.Future[Any]:
    """An asyncio future for a Ray object reference (so it can be awaited and waited on with others)."""
    return asyncio.wrap_future(ref.future())


# --------------------------------------------------------------------------- actors


class RemoteModel:
    """A ``Model`` whose ``generate`` runs on model replica actors, taking them in turn.

    A replica that dies under a call is waited for (Ray restarts it) and the call is made again on the
    next replica, up to ``retries`` times; then the call fails with ``ModelError`` and the episode is
    stored as an error. An exception raised by the model itself reaches the caller as it was raised.
    """

    def __init__(
        self,
        replicas: Sequence[Any],
        spec: str,
        weights_hash: str | None,
        *,
        retries: int = 2,
        restart_timeout_s: float = 120.0,
    ) -> None:
        if not replicas:
            raise ValueError("RemoteModel needs at least one replica")
        self.replicas = list(replicas)
        self.spec = spec
        self.weights_hash = weights_hash
        self.retries = retries
        self.restart_timeout_s = restart_timeout_s
        self._next = 0

    async def generate(self, request: ChatRequest) -> Completion:
        lost: BaseException | None = None
        for _ in range(self.retries + 1):
            replica = self.replicas[self._next % len(self.replicas)]
            self._next += 1
            try:
                completion: Completion = await _ref_future(replica.generate.remote(request))
                return completion
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause
                raise (cause if isinstance(cause, Exception) else ModelError(str(exc))) from None
            except LOST as exc:
                lost = exc
                await _wait_alive(replica, self.restart_timeout_s)
        raise ModelError(
            f"the model replica for {self.spec} died {self.retries + 1} times during one call ({lost}); "
            "see `ray status` and the Ray logs of the cluster"
        )

    async def close(self) -> None:
        return None  # the replicas belong to the RayExecutor

    def __repr__(self) -> str:
        return f"RemoteModel({self.spec!r}, replicas={len(self.replicas)})"


async def _wait_alive(actor: Any, timeout_s: float) -> bool:
    """Wait until a (restarting) actor answers again; False if it does not within ``timeout_s``."""
    try:
        ping = actor.ping.options(max_task_retries=-1).remote()
        await asyncio.wait_for(_ref_future(ping), timeout_s)
        return True
    except (TimeoutError, *LOST):
        return False


class ModelReplica:
    """A Ray actor holding one model built from its spec; serves ``generate`` for every episode worker."""

    def __init__(self, spec: str, options: dict[str, Any]) -> None:
        from palaestra.models import make_model

        self.model = make_model(spec, **options)

    async def ping(self) -> tuple[str, str | None]:
        return self.model.spec, self.model.weights_hash

    async def generate(self, request: ChatRequest) -> Completion:
        return await self.model.generate(request)

    async def close(self) -> None:
        await self.model.close()


class EpisodeWorker:
    """A Ray actor that plays episodes, several at once on its event loop, as the in-process executor does.

    Models that environments use as partners (an oracle, a buyer) come from a pool in the worker: the
    agents' model under its spec (the replicas), any other spec built in this process on first use.
    """

    def __init__(
        self, replica_names: list[str], namespace: str, model_spec: str | None, weights_hash: str | None
    ) -> None:
        # Replicas by name, not handle: plain strings are the only constructor arguments, so Ray can always
        # rerun this constructor when it restarts the worker.
        replicas = [ray.get_actor(name, namespace=namespace) for name in replica_names]
        model = RemoteModel(replicas, model_spec, weights_hash) if replicas and model_spec else None
        self._executor = AsyncioExecutor(model, concurrency=1, models=ModelPool(model))

    async def ping(self) -> WorkerInfo:
        return WorkerInfo(palaestra.__version__, os.getpid(), ray.util.get_node_ip_address())

    async def play(self, job: EpisodeJob) -> Episode:
        return await self._executor.play(job)

    async def close(self) -> None:
        await self._executor.models.close()


# --------------------------------------------------------------------------- placement


def replica_resources(model_spec: str, cluster_gpus: float) -> dict[str, float]:
    """Ray resources for one replica: a GPU when the cluster has one, else a CPU; none for light models."""
    if model_spec.startswith(LIGHT_MODEL_PREFIXES):
        return {"num_cpus": 0}
    if cluster_gpus >= 1:
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": 1}


@dataclass(frozen=True)
class WorkerPlan:
    count: int
    cpus_each: float
    slots_each: int


def plan_workers(free_cpus: float, concurrency: int, workers: int | None = None) -> WorkerPlan:
    """How many episode workers, the CPUs each reserves, and the episodes each plays at once.

    By default one worker per CPU left free by the model replicas (at least one); each reserves up to a
    whole CPU of what is free (environments and agents run Python there) and plays its share of
    ``concurrency``.
    """
    count = workers if workers is not None else max(1, int(free_cpus))
    count = max(1, min(count, concurrency))
    cpus_each = min(1.0, free_cpus / count) if free_cpus > 0 else 0.0
    return WorkerPlan(count, cpus_each, math.ceil(concurrency / count))


def probe_address(address: str, timeout_s: float) -> None:
    """Fail within ``timeout_s`` when nothing listens at a Ray address (``ray.init`` itself waits minutes)."""
    target = address.removeprefix("ray://")
    host, sep, port_text = target.rpartition(":")
    if not sep:
        host, port_text = target, "6379"
    if not host or not port_text.isdigit():
        raise SpecError(f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379). {START_CLUSTER_HINT}")
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout_s):
            return
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise RayClusterError(
            f"no Ray cluster answers at {address} ({reason} within {timeout_s:g} s). {START_CLUSTER_HINT}"
        ) from None


# --------------------------------------------------------------------------- the executor


class RayExecutor:
    """Plays episode jobs on a Ray cluster; ``on_episode`` is called in this process as each one finishes.

    Args:
        model_spec: the agents' model (``make_model`` spec), served by ``replicas`` replica actors; None
            when every agent is scripted (then no replica is started).
        address: the cluster (``host:port`` of the head's GCS, as ``ray start --head`` prints); None
            starts a Ray instance on this machine, or joins the one ``ray start`` left running here.
        replicas: model replicas (one model copy each; one GPU each when the cluster has GPUs).
        concurrency: episodes in flight at once over the whole cluster.
        workers: episode worker actors (default: one per CPU not held by replicas).
        max_retries: times an episode is re-played after the worker playing it died.
        model_options: keyword arguments for ``make_model`` in the replicas (e.g. ``max_batch_size``).
        connect_timeout_s: how long an address may take to answer before the executor gives up.
        startup_timeout_s: how long replicas (loading weights) and workers may take to start.
    """

    def __init__(
        self,
        model_spec: str | None = None,
        *,
        address: str | None = None,
        replicas: int = 1,
        concurrency: int = 32,
        workers: int | None = None,
        max_retries: int = 2,
        model_options: dict[str, Any] | None = None,
        connect_timeout_s: float = 5.0,
        startup_timeout_s: float = 600.0,
    ) -> None:
        if replicas < 1:
            raise SpecError(f"--replicas must be at least 1 (got {replicas})")
        if concurrency < 1:
            raise SpecError(f"--concurrency must be at least 1 (got {concurrency})")
        if workers is not None and workers < 1:
            raise SpecError(f"workers must be at least 1 (got {workers})")
        if max_retries < 0:
            raise SpecError(f"max_retries must be 0 or more (got {max_retries})")
        self.model_spec = model_spec
        self.address = address
        self.replicas = replicas
        self.concurrency = concurrency
        self.workers = workers
        self.max_retries = max_retries
        self.model_options = dict(model_options or {})
        self.connect_timeout_s = connect_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.model: RemoteModel | None = None  # the replicas as a Model for this process: spec, weights hash
        self.stats = RunStats()
        self._own_ray = False
        self._replicas: list[Any] = []
        self._replica_names: list[str] = []
        self._workers: list[Any] = []
        self._plan: WorkerPlan | None = None
        self._started = False

    # ----------------------------------------------------------------------- life cycle

    def connect(self) -> None:
        """Join the cluster at ``address`` (or start/join a local one); a dead address fails in seconds."""
        if self.address not in (None, "auto", "local"):
            probe_address(self.address, self.connect_timeout_s)
        if ray.is_initialized():
            return  # the caller connected this process already; leave that connection to them
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
        try:
            ray.init(
                address=self.address,
                namespace="palaestra",
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                runtime_env={"env_vars": env} if env else None,
            )
        except ConnectionError as exc:
            raise RayClusterError(
                f"cannot join the Ray cluster at {self.address}: {exc}. {START_CLUSTER_HINT}"
            ) from exc
        self._own_ray = True

    async def start(self) -> None:
        """Connect, start the model replicas and the episode workers, and wait until all of them answer."""
        if self._started:
            return
        self.connect()
        try:
            await self._start_actors()
        except BaseException:
            await self.close()  # no actor (or Ray instance of ours) outlives a failed start
            raise
        self._started = True

    async def _start_actors(self) -> None:
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        reserved = 0.0
        if self.model_spec is not None:
            needs = replica_resources(self.model_spec, gpus)
            if needs.get("num_gpus", 0) * self.replicas > gpus >= 1:
                raise RayClusterError(
                    f"{self.replicas} replicas of {self.model_spec} need one GPU each but the cluster has "
                    f"{gpus:g}; pass --replicas {int(gpus)} or add GPU nodes"
                )
            reserved = needs["num_cpus"] * self.replicas
            if reserved > cpus:
                raise RayClusterError(
                    f"{self.replicas} replicas of {self.model_spec} need one CPU each but the cluster has "
                    f"{cpus:g}; pass fewer --replicas or add nodes (`ray status` shows what the cluster has)"
                )
            actor = ray.remote(ModelReplica)
            self._replica_names = [f"palaestra-replica-{uuid.uuid4().hex[:12]}" for _ in range(self.replicas)]
            self._replicas = [
                actor.options(name=name, max_restarts=3, max_concurrency=10_000, **needs).remote(
                    self.model_spec, self.model_options
                )
                for name in self._replica_names
            ]
            infos = await self._await_started([r.ping.remote() for r in self._replicas], "model replicas", needs)
            spec, weights_hash = infos[0]
            self.model = RemoteModel(self._replicas, spec, weights_hash, retries=self.max_retries)
        self._plan = plan_workers(cpus - reserved, self.concurrency, self.workers)
        self._workers = [self._new_worker() for _ in range(self._plan.count)]
        infos = await self._await_started(
            [w.ping.remote() for w in self._workers], "episode workers", {"num_cpus": self._plan.cpus_each}
        )
        versions = {info.version for info in infos}
        if versions != {palaestra.__version__}:
            raise RayClusterError(
                f"the cluster's workers run palaestra {', '.join(sorted(versions))} but this process runs "
                f"{palaestra.__version__}; install the same version on every node"
            )

    def _new_worker(self) -> Any:
        assert self._plan is not None
        spec = self.model.spec if self.model is not None else None
        weights = self.model.weights_hash if self.model is not None else None
        actor = ray.remote(EpisodeWorker).options(
            num_cpus=self._plan.cpus_each,
            max_concurrency=self._plan.slots_each + 2,  # + ping and close while it plays
            max_restarts=-1,  # per-episode retries are bounded by the driver, not here
            max_task_retries=0,  # a lost episode comes back to the driver, which decides
            scheduling_strategy="SPREAD",
        )
        namespace = ray.get_runtime_context().namespace
        return actor.remote(self._replica_names, namespace, spec, weights)

    async def _await_started(self, refs: list[Any], what: str, needs: dict[str, float]) -> list[Any]:
        try:
            return list(await asyncio.wait_for(asyncio.gather(*map(_ref_future, refs)), self.startup_timeout_s))
        except TimeoutError:
            raise RayClusterError(
                f"the Ray cluster did not start {len(refs)} {what} (each needing {needs}) within "
                f"{self.startup_timeout_s:g} s; `ray status` shows the resources it has"
            ) from None
        except ray.exceptions.RayActorError as exc:
            raise RayClusterError(f"the {what} could not start on the Ray cluster: {exc}") from exc

    async def worker_infos(self) -> list[WorkerInfo]:
        """Where each episode worker runs (version, process id, node address)."""
        await self.start()
        infos: list[WorkerInfo] = await asyncio.gather(*(_ref_future(w.ping.remote()) for w in self._workers))
        return infos

    async def close(self) -> None:
        """Stop the actors, and Ray itself when this executor started or joined it; safe to call twice."""
        actors, self._workers, self._replicas, self._replica_names = self._workers + self._replicas, [], [], []
        if actors:
            closing = [_ref_future(a.close.remote()) for a in actors]
            await asyncio.wait(closing, timeout=10)
            for actor in actors:
                with contextlib.suppress(Exception):  # already gone: nothing left to stop
                    ray.kill(actor)
        self.model = None
        self._started = False
        if self._own_ray:
            ray.shutdown()
            self._own_ray = False

    async def __aenter__(self) -> RayExecutor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------------- running

    async def run(self, jobs: Sequence[EpisodeJob], on_episode: OnEpisode) -> None:
        """Play every job on the cluster; call ``on_episode`` once per job, in the order they finish."""
        await self.start()
        assert self._plan is not None
        self.stats = stats = RunStats()
        queue = deque(range(len(jobs)))
        starts = [0] * len(jobs)
        reported = [False] * len(jobs)
        busy = [0] * len(self._workers)
        recovering: dict[asyncio.Future[Any], int] = {}  # worker being waited for
        # A worker lost in an earlier run may still be restarting: wait for it rather than lose jobs to it.
        alive = await asyncio.gather(*(_wait_alive(w, self.startup_timeout_s) for w in self._workers))
        retired = {w for w, ok in enumerate(alive) if not ok}  # workers that did not come back
        flights: dict[asyncio.Future[Any], tuple[int, int, Any]] = {}  # future -> (job, worker, object ref)

        def report(index: int, episode: Episode) -> None:
            if reported[index]:
                stats.duplicates += 1
                return
            reported[index] = True
            on_episode(jobs[index], episode)

        try:
            while queue or flights:
                usable = [w for w in range(len(self._workers)) if w not in retired and w not in recovering.values()]
                while queue and len(flights) < self.concurrency:
                    free = [w for w in usable if busy[w] < self._plan.slots_each]
                    if not free:
                        break
                    worker = min(free, key=lambda w: busy[w])
                    index = queue.popleft()
                    starts[index] += 1
                    job = jobs[index]
                    stats.attempts[(job.run_id, job.seed)] = starts[index]
                    ref = self._workers[worker].play.remote(job)
                    flights[_ref_future(ref)] = (index, worker, ref)
                    busy[worker] += 1
                if not flights and not recovering:
                    raise RayClusterError(
                        f"every episode worker died and none could be restarted; {len(queue)} episodes were "
                        "not played. `ray status` shows what the cluster has left."
                    )
                waiting: set[asyncio.Future[Any]] = {*flights, *recovering}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    if future in recovering:
                        worker = recovering.pop(future)
                        if not future.result():
                            retired.add(worker)
                        continue
                    index, worker, _ref = flights.pop(future)
                    busy[worker] -= 1
                    try:
                        episode = future.result()
                    except LOST as exc:
                        stats.lost_attempts += 1
                        if worker not in recovering.values() and worker not in retired:
                            task = asyncio.create_task(_wait_alive(self._workers[worker], self.startup_timeout_s))
                            recovering[task] = worker
                        if starts[index] > self.max_retries:
                            job = jobs[index]
                            stats.gave_up.append((job.run_id, job.seed))
                            report(index, _lost_episode(job, starts[index], exc))
                        else:
                            queue.appendleft(index)  # first in line: it has waited longest
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        # A bug outside the episode loop (which turns its own failures into error episodes):
                        # raise it as the in-process executor would.
                        cause = exc.cause
                        raise (cause if isinstance(cause, Exception) else exc) from None
                    report(index, episode)
        finally:
            for _index, _worker, ref in flights.values():
                with contextlib.suppress(Exception):  # the call finished or its worker is gone
                    ray.cancel(ref)
            for waiter in recovering:
                waiter.cancel()


def _lost_episode(job: EpisodeJob, starts: int, exc: BaseException) -> Episode:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Episode(
        env_id=job.env_spec.id,
        seed=job.seed,
        status="error",
        error=(
            f"WorkerLost: the Ray worker playing this episode died on each of {starts} attempts "
            f"(last: {type(exc).__name__}: {first_line}); re-play it with `palaestra eval --resume {job.run_id}`"
        ),
        started_at=time.time(),
    )
