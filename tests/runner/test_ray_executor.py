"""The Ray executor against a real local Ray cluster that this module starts: a head node and one more
worker node, each a `ray start --block` process group with one CPU, stopped (the whole group) at the end.

The cluster tests compare the Ray executor with the in-process asyncio executor on the same jobs, kill an
episode worker's process with SIGKILL while it plays, and run `palaestra eval --executor ray` in a
subprocess. Without Ray installed they are skipped here and fail under CI (`$CI` set), so a broken set-up
cannot pass as green.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from subprocess import STDOUT
from typing import Any

import pytest

from palaestra.core.errors import SpecError
from palaestra.core.types import Episode
from palaestra.envs import make, make_any
from palaestra.models.scripted import ScriptedModel
from palaestra.runner import AsyncioExecutor, EpisodeJob, EvalConfig, Executor, evaluate, resume
from palaestra.runner.executor import OnEpisode
from palaestra.store import Store

try:
    import ray
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("Ray is not installed: pip install 'palaestra[ray]'", allow_module_level=True)

from palaestra.runner.ray_executor import (
    RayClusterError,
    RayExecutor,
    WorkerPlan,
    plan_workers,
    replica_resources,
)

VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
PALAESTRA = str(VENV_BIN / "palaestra")


# --------------------------------------------------------------------------- placement (no cluster)


def test_worker_plan_uses_the_cpus_the_replicas_leave():
    # two 1-CPU nodes, scripted agents: a worker per CPU, concurrency shared out
    assert plan_workers(2.0, 32) == WorkerPlan(count=2, cpus_each=1.0, slots_each=16)
    # a local model's replica took the only CPU: one worker that reserves nothing, playing everything
    assert plan_workers(0.0, 8) == WorkerPlan(count=1, cpus_each=0.0, slots_each=8)
    # never more workers than episodes in flight; half a CPU left is shared
    assert plan_workers(4.0, 3) == WorkerPlan(count=3, cpus_each=1.0, slots_each=1)
    assert plan_workers(1.5, 10, workers=3) == WorkerPlan(count=3, cpus_each=0.5, slots_each=4)


def test_replicas_ask_for_a_gpu_only_for_models_that_compute():
    assert replica_resources("smollm2-135m", cluster_gpus=2) == {"num_cpus": 1, "num_gpus": 1}
    assert replica_resources("local:/models/x", cluster_gpus=0) == {"num_cpus": 1}
    assert replica_resources("scripted:echo", cluster_gpus=8) == {"num_cpus": 0}
    assert replica_resources("openai:gpt-4o-mini@http://localhost:8000/v1", cluster_gpus=8) == {"num_cpus": 0}


def test_nothing_imports_ray_unless_the_ray_executor_is_used(tmp_path):
    code = (
        "import sys\n"
        "import palaestra.cli, palaestra.runner\n"
        "assert 'ray' not in sys.modules, 'importing palaestra imported ray'\n"
        "from click.testing import CliRunner\n"
        f"db = 'sqlite:///{tmp_path / 'a.db'}'\n"
        "r = CliRunner().invoke(palaestra.cli.main, ['eval', 'maze-fo-v0', '--agent', 'optimal', '-n', '2', "
        "'--db', db, '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'ray' not in sys.modules, 'an asyncio eval imported ray'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_missing_ray_names_the_install_command(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if Ray were not installed\n"
        "from click.testing import CliRunner\n"
        "import palaestra.cli\n"
        f"db = 'sqlite:///{tmp_path / 'a.db'}'\n"
        "r = CliRunner().invoke(palaestra.cli.main, ['eval', 'maze-fo-v0', '--agent', 'optimal', '-n', '1', "
        "'--executor', 'ray', '--db', db])\n"
        "print(r.exit_code)\n"
        "print(r.output)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    exit_code, _, output = done.stdout.partition("\n")
    assert exit_code == "2", done.stdout + done.stderr
    assert "the Ray executor (--executor ray) needs an optional dependency" in output
    assert "pip install 'palaestra[ray]'" in output


# --------------------------------------------------------------------------- the local cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a `ray start --block` and every process it started (they share its process group).

    SIGTERM to the leader alone lets it stop and reap its own processes; what is left after that (workers
    of a raylet that died first) is killed with the whole group.
    """
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def wait_for_nodes(address: str, count: int, timeout_s: float = 90) -> None:
    code = (
        "import sys, time, logging, ray\n"
        f"ray.init(address={address!r}, logging_level=logging.ERROR, log_to_driver=False)\n"
        f"deadline = time.time() + {timeout_s}\n"
        f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
        "    if time.time() > deadline: sys.exit('nodes did not join: ' + str(ray.nodes()))\n"
        "    time.sleep(0.5)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s + 30)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A Ray cluster on this machine: a head and a second node, one CPU each. Yields the head's address."""
    temp = Path(tempfile.mkdtemp(prefix="prt-", dir="/tmp"))  # short: Ray's socket paths live under it
    # A cluster bound to this machine, so no token authentication: otherwise `ray start` turns it on when
    # some earlier local `ray.init()` left a token in ~/.ray, and every client here would need it.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = [RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false"]
    head += [f"--dashboard-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}", *common]
    node = [RAY, "start", f"--address={address}", f"--dashboard-agent-listen-port={free_port()}", *common]
    groups: list[subprocess.Popen[bytes]] = []
    with (
        pytest.MonkeyPatch.context() as patch,  # for this process and the CLI subprocesses it starts
        open(temp / "head.log", "wb") as head_log,
        open(temp / "node.log", "wb") as node_log,
    ):
        patch.setenv("RAY_AUTH_MODE", "disabled")
        try:
            groups.append(subprocess.Popen(head, stdout=head_log, stderr=STDOUT, env=env, start_new_session=True))
            deadline = time.time() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline or groups[0].poll() is not None:
                        pytest.fail("the Ray head did not start:\n" + (temp / "head.log").read_text()[-3000:])
                    time.sleep(0.3)
            groups.append(subprocess.Popen(node, stdout=node_log, stderr=STDOUT, env=env, start_new_session=True))
            wait_for_nodes(address, 2)
            # This process stays connected for the module; executors reuse the connection.
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            yield address
        finally:
            if ray.is_initialized():
                ray.shutdown()
            for group in reversed(groups):
                stop_group(group)
            shutil.rmtree(temp, ignore_errors=True)


# --------------------------------------------------------------------------- helpers


def fingerprint(episode: Episode) -> tuple[Any, ...]:
    """Everything about an episode that does not depend on when or where it was played."""
    turns = tuple(
        (
            t.observation,
            t.agent,
            t.round,
            t.action.text,
            t.action.raw,
            t.action.parsed,
            tuple((c.text, c.finish_reason, c.prompt_token_ids, c.completion_token_ids) for c in t.action.calls),
            t.step.observation,
            t.step.reward,
            t.step.terminated,
            t.step.truncated,
            json.dumps(t.step.info, sort_keys=True, default=str),
        )
        for t in episode.turns
    )
    metrics = json.dumps(episode.metrics, sort_keys=True, default=str)
    return (
        episode.env_id,
        episode.seed,
        episode.status,
        episode.error,
        episode.first_observation,
        episode.total_return,
        episode.success,
        episode.terminated,
        episode.truncated,
        episode.players,
        metrics,
        turns,
    )


async def play(executor: Executor, jobs: Sequence[EpisodeJob]) -> dict[tuple[str, int], list[Episode]]:
    """Every episode the executor reports, by (run, seed): a list, so a second report would show."""
    seen: dict[tuple[str, int], list[Episode]] = {}
    await executor.run(jobs, lambda job, episode: seen.setdefault((job.run_id, job.seed), []).append(episode))
    return seen


def once_each(seen: dict[tuple[str, int], list[Episode]], jobs: Sequence[EpisodeJob]) -> dict[tuple[str, int], Any]:
    assert sorted(seen) == sorted((j.run_id, j.seed) for j in jobs)
    assert all(len(episodes) == 1 for episodes in seen.values()), {k: len(v) for k, v in seen.items()}
    return {key: fingerprint(episodes[0]) for key, episodes in seen.items()}


# --------------------------------------------------------------------------- against the cluster


@pytest.mark.slow
async def test_scripted_agents_give_the_asyncio_executor_results(cluster):
    maze = make("maze-fo-v0").spec
    govsim = make_any("govsim-fishery-v0").spec
    jobs = [EpisodeJob("maze-optimal", maze, "optimal", None, s) for s in maze.seeds("test", 6)]
    jobs += [EpisodeJob("maze-random", maze, "random", None, s) for s in maze.seeds("test", 6)]
    jobs += [EpisodeJob("govsim", govsim, "greedy + sustainable*4", None, s) for s in govsim.seeds("test", 3)]
    expected = once_each(await play(AsyncioExecutor(None, concurrency=8), jobs), jobs)

    executor = RayExecutor(None, address=cluster, concurrency=8)
    try:
        infos = await executor.worker_infos()
        got = once_each(await play(executor, jobs), jobs)
    finally:
        await executor.close()
    assert len(infos) == 2 and len({i.pid for i in infos}) == 2  # one worker per CPU of the two nodes
    assert got == expected
    assert executor.stats.lost_attempts == 0 and not executor.stats.retried
    # the mix really played: a greedy outsider in the first seat, four sustainable fishers, every episode ok
    seats = make_any("govsim-fishery-v0").possible_agents
    mix = dict(zip(seats, ["greedy"] + ["sustainable"] * 4, strict=True))
    govsim_runs = [fp for (run, _), fp in got.items() if run == "govsim"]
    assert len(govsim_runs) == 3 and all(fp[2] == "ok" and fp[9] == mix for fp in govsim_runs)


@pytest.mark.slow
async def test_prompt_agent_on_model_replicas_gives_the_asyncio_executor_results(cluster):
    spec = make("maze-fo-v0", max_turns=4).spec
    jobs = [EpisodeJob("prompt", spec, "prompt:shots=1", "scripted:echo", s) for s in spec.seeds("test", 8)]
    expected = once_each(await play(AsyncioExecutor(ScriptedModel("echo"), concurrency=8), jobs), jobs)

    executor = RayExecutor("scripted:echo", address=cluster, replicas=2, concurrency=8)
    try:
        await executor.start()
        assert executor.model is not None
        assert (executor.model.spec, executor.model.weights_hash) == ("scripted:echo", None)
        got = once_each(await play(executor, jobs), jobs)
    finally:
        await executor.close()
    assert got == expected
    # the replicas answered every turn: the workers have no other model, and a turn without one fails
    assert all(fp[2] == "ok" and len(fp[11]) == 4 for fp in got.values())
    assert all(len(turn[6]) == 1 and turn[6][0][0] == turn[4] for fp in got.values() for turn in fp[11])


class KillWorkerMidRun:
    """Wraps an executor: once the first episode is in, SIGKILLs an episode worker's process a little later,
    while the next wave of episodes is being played (each episode lasts several slow model calls)."""

    def __init__(self, inner: RayExecutor, pid: int, after_s: float) -> None:
        self.inner = inner
        self.pid = pid
        self.after_s = after_s
        self.killed = False

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.killed = True

    async def run(self, jobs: Sequence[EpisodeJob], on_episode: OnEpisode) -> None:
        armed = False

        def wrapped(job: EpisodeJob, episode: Episode) -> None:
            nonlocal armed
            if not armed:
                armed = True
                asyncio.get_running_loop().call_later(self.after_s, self.kill)
            on_episode(job, episode)

        await self.inner.run(jobs, wrapped)


@pytest.mark.slow
async def test_a_killed_worker_has_its_episodes_replayed_once_and_stored_once(cluster, tmp_path):
    # 12 episodes of 6 model calls of 0.15 s each, 4 at a time on 2 workers: the kill lands 0.4 s into
    # the second wave, so the killed worker is mid-episode on the ones it holds.
    config = EvalConfig(
        envs=("maze-fo-v0",),
        agents=("prompt:shots=0",),
        model="scripted:echo",
        episodes=12,
        max_turns=6,
        concurrency=4,
    )
    executor = RayExecutor(
        "scripted:echo", address=cluster, concurrency=4, max_retries=2, model_options={"delay_s": 0.15}
    )
    with Store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        try:
            victim = (await executor.worker_infos())[0]
            killer = KillWorkerMidRun(executor, victim.pid, after_s=0.4)
            result = await evaluate(config, store, executor=killer, progress=False)
            after = await executor.worker_infos()
        finally:
            await executor.close()
        (run_id,) = result.run_ids
        stored = store.episodes(run_id, with_turns=True)
        seeds = store.get_run(run_id).config["seeds"]

    assert killer.killed
    assert victim.pid not in {i.pid for i in after}  # Ray restarted the worker in a new process
    stats = executor.stats
    # the killed worker's in-flight episodes were started twice, every other episode once, none given up
    assert stats.retried and set(stats.retried.values()) == {2}
    assert stats.lost_attempts == len(stats.retried) and not stats.gave_up and stats.duplicates == 0
    assert len(stats.attempts) == 12
    # each seed once in the store, all ok, after one attempt each as the store counts them
    assert result.ok == 12 and result.errors == 0 and result.statuses[run_id] == "complete"
    assert [e.seed for e in stored] == sorted(seeds) and len(set(seeds)) == 12
    assert all(e.status == "ok" and len(e.turns) == 6 for e in stored)
    # a replayed episode is the whole episode, not the tail of its lost first attempt
    spec = make("maze-fo-v0", max_turns=6).spec
    jobs = [EpisodeJob(run_id, spec, "prompt:shots=0", "scripted:echo", s) for s in seeds]
    expected = once_each(await play(AsyncioExecutor(ScriptedModel("echo"), concurrency=12), jobs), jobs)
    assert {(run_id, e.seed): fingerprint(e) for e in stored} == expected


@pytest.mark.slow
async def test_an_episode_that_loses_every_attempt_is_an_error_that_resume_replays(cluster, tmp_path):
    # max_retries=0: the killed worker's episodes are not replayed but stored as errors, which --resume
    # (here `resume` with the same executor) then plays.
    config = EvalConfig(
        envs=("maze-fo-v0",),
        agents=("prompt:shots=0",),
        model="scripted:echo",
        episodes=8,
        max_turns=6,
        concurrency=4,
    )
    executor = RayExecutor(
        "scripted:echo", address=cluster, concurrency=4, max_retries=0, model_options={"delay_s": 0.15}
    )
    with Store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        try:
            victim = (await executor.worker_infos())[0]
            killer = KillWorkerMidRun(executor, victim.pid, after_s=0.4)
            result = await evaluate(config, store, executor=killer, progress=False)
            (run_id,) = result.run_ids
            lost = sorted(seed for _, seed in executor.stats.gave_up)
            errors = store.episodes(run_id, status="error")
            assert lost and result.errors == len(lost) and result.ok == 8 - len(lost)
            assert result.statuses[run_id] == "incomplete" and store.pending_seeds(run_id) == lost
            assert [e.seed for e in errors] == lost
            assert all(e.error.startswith("WorkerLost: the Ray worker playing this episode died") for e in errors)
            assert all(f"palaestra eval --resume {run_id}" in e.error for e in errors)

            again = await resume([run_id], store, executor=executor, progress=False)
        finally:
            await executor.close()
        assert again.ok == len(lost) and again.statuses[run_id] == "complete"
        assert [e.status for e in store.episodes(run_id)] == ["ok"] * 8


@pytest.mark.slow
async def test_a_bug_outside_the_episode_loop_is_raised_as_in_process(cluster):
    # A job whose environment cannot be built fails the run with the same error on both executors.
    spec = dataclasses.replace(make("maze-fo-v0").spec, entry_point="palaestra.envs.maze:NoSuchEnv")
    jobs = [EpisodeJob("bad", spec, "optimal", None, 0)]
    with pytest.raises(SpecError, match="has no 'NoSuchEnv'"):
        await play(AsyncioExecutor(None), jobs)
    executor = RayExecutor(None, address=cluster, concurrency=2)
    try:
        with pytest.raises(SpecError, match="has no 'NoSuchEnv'"):
            await play(executor, jobs)
    finally:
        await executor.close()


@pytest.mark.slow
async def test_a_dead_address_fails_within_seconds_naming_it(cluster):
    dead = f"127.0.0.1:{free_port()}"
    executor = RayExecutor(None, address=dead, connect_timeout_s=2)
    with pytest.raises(RayClusterError) as info:
        await executor.start()
    assert f"no Ray cluster answers at {dead}" in str(info.value)
    assert "ray start --head" in str(info.value)


@pytest.mark.slow
def test_eval_command_with_the_ray_executor_end_to_end(cluster, tmp_path):
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    base = [PALAESTRA, "eval", "maze-fo-v0", "-n", "4", "--db", db, "--json"]
    ray_args = ["--executor", "ray", "--address", cluster]

    def eval_json(args: list[str]) -> dict[str, Any]:
        done = subprocess.run(args, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        return dict(json.loads(done.stdout))

    on_ray = eval_json([*base, "--agent", "prompt", "--model", "scripted:echo", "--max-turns", "3", *ray_args])
    in_process = eval_json([*base, "--agent", "prompt", "--model", "scripted:echo", "--max-turns", "3"])
    assert on_ray["ok"] == in_process["ok"] == 4 and on_ray["errors"] == 0
    with Store(db) as store:
        (ray_run,) = [r["run_id"] for r in on_ray["runs"]]
        (local_run,) = [r["run_id"] for r in in_process["runs"]]
        ray_eps = store.episodes(ray_run, with_turns=True)
        local_eps = store.episodes(local_run, with_turns=True)
        assert [fingerprint(e) for e in ray_eps] == [fingerprint(e) for e in local_eps]
        assert store.get_run(ray_run).config["executor"] == "ray"
        # a run with two of its four seeds missing, completed by --resume on the cluster
        spec = make("maze-fo-v0").spec
        seeds = spec.seeds("test", 4)
        partial = store.create_run(
            env_spec=spec, agent_spec="optimal", model_spec=None, weights_hash=None, config={"seeds": seeds}
        )
        first_two = [EpisodeJob(partial, spec, "optimal", None, s) for s in seeds[:2]]
        for (_, _), (episode,) in asyncio.run(play(AsyncioExecutor(None), first_two)).items():
            store.record_episode(partial, episode)
        store.finish_run(partial, "interrupted")
    resumed = eval_json([PALAESTRA, "eval", "--resume", partial, "--db", db, "--json", *ray_args])
    assert resumed["ok"] == 2 and resumed["errors"] == 0
    with Store(db) as store:
        assert [e.seed for e in store.episodes(partial)] == sorted(seeds)
        assert store.get_run(partial).status == "complete"

    dead = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [*base, "--agent", "optimal", "--executor", "ray", "--address", dead],
        capture_output=True,
        text=True,
        timeout=60,  # Ray's own connect would retry for over a minute; the probe answers in seconds
    )
    assert done.returncode == 2
    assert f"error: no Ray cluster answers at {dead}" in done.stderr and "ray start --head" in done.stderr


DOC = Path(__file__).resolve().parents[2] / "docs" / "ray.md"


@pytest.mark.slow
def test_the_python_blocks_of_the_ray_doc_run(cluster, run_doc_block, capsys):
    # This process is connected to the test cluster, so the blocks' address=None joins it.
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 2
    for index, block in enumerate(blocks):
        run_doc_block(block, f"docs/ray.md block {index}")
    assert capsys.readouterr().out.splitlines() == ["6 episodes stored", "8 episodes, attempts: {1}"]
