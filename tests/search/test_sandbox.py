"""The sandbox of generated agent code is attacked and holds; a sandboxed agent plays real episodes.

Every test starts a real child interpreter. Attacks use small limits (1 s, 128 MiB) so the file runs in a
few seconds.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from palaestra.agents.scripted import ScriptedAgent
from palaestra.core.errors import PalaestraError
from palaestra.core.types import ChatRequest
from palaestra.envs import make
from palaestra.envs.base import Env
from palaestra.models.scripted import ScriptedModel
from palaestra.runner.episode import run_episode
from palaestra.search.sandbox import (
    Sandbox,
    SandboxedAgent,
    SandboxError,
    SandboxLimits,
    SandboxResult,
    _runs_unprivileged,
    check_code,
    code_hash,
)

FAST = SandboxLimits(cpu_s=5, memory_mb=128, turn_timeout_s=1.0, start_timeout_s=5.0)
DOC = Path(__file__).resolve().parents[2] / "docs" / "sandbox.md"


def _proc_table() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process on the machine."""
    rows = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # it ended while we looked
            continue
        fields = text.rsplit(")", 1)[1].split()
        rows.append((int(entry), int(fields[1]), int(fields[2])))
    return rows


def _descendants(pid: int) -> set[int]:
    table = _proc_table()
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, ppid, _ in table:
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _group(pgid: int) -> set[int]:
    return {pid for pid, _, group in _proc_table() if group == pgid}


def _agent(body: str) -> str:
    """Agent code whose act runs ``body`` (one line or several, already indented by four spaces)."""
    return "def act(observation, history, instructions, llm):\n" + body + "\n    return 'move up'\n"


async def _one_turn(
    source: str, limits: SandboxLimits = FAST, model: ScriptedModel | None = None
) -> tuple[SandboxResult, int | None]:
    async with Sandbox(source, model or ScriptedModel("echo"), limits) as box:
        result = await box.act("You are at 1, 1.", [], "Reach the goal.")
        pid = box.pid
    return result, pid


# --------------------------------------------------------------------------- attacks


async def test_an_infinite_loop_is_killed_by_the_wall_clock_timeout() -> None:
    result, pid = await _one_turn(_agent("    while True:\n        pass"))
    assert not result.ok and result.kind == "timeout"
    assert "wall-clock limit of 1 s" in result.reason and "killed" in result.reason
    assert pid is not None and _group(pid) == set()


async def test_an_infinite_loop_is_killed_by_the_cpu_limit() -> None:
    limits = SandboxLimits(cpu_s=1, memory_mb=128, turn_timeout_s=60.0)
    result, _ = await _one_turn(_agent("    while True:\n        pass"), limits)
    assert not result.ok and result.kind == "cpu_limit"
    assert "SIGXCPU" in result.reason and "1 s" in result.reason


async def test_an_infinite_loop_while_loading_is_killed() -> None:
    result = await check_code("while True:\n    pass\n", SandboxLimits(start_timeout_s=1.0))
    assert not result.ok and result.kind == "timeout"
    assert "loading the code" in result.reason


# Each bomb tries 200 times to make a process that lingers for a minute. Bounded, so that a broken sandbox
# fails this test without taking the machine down; what it reports is how many processes it made.
_BOMB = """
def act(observation, history, instructions, llm):
    import importlib, os, time
    made = 0
    for _ in range(200):
        try:
            SPAWN
            made += 1
        except Exception:
            pass
    return f"made {made}"
"""


@pytest.mark.parametrize(
    "spawn",
    [
        "if os.fork() == 0:\n                time.sleep(60)\n                os._exit(0)",
        "os.posix_spawn('/bin/sleep', ['sleep', '60'], {})",
        "importlib.import_module('subprocess').Popen(['sleep', '60'])",
        "importlib.import_module('multiprocessing').Process(target=time.sleep, args=(60,)).start()",
        "os.system('sleep 60 &')",
    ],
    ids=["os.fork", "posix_spawn", "subprocess", "multiprocessing", "os.system"],
)
async def test_a_fork_bomb_is_contained(spawn: str) -> None:
    before = _descendants(os.getpid())
    async with Sandbox(_BOMB.replace("SPAWN", spawn), ScriptedModel("echo"), FAST) as box:
        result = await box.act("obs", [], "")
        pgid = box.pid
        assert pgid is not None and _group(pgid) == {pgid}  # alive, and alone in its process group
    assert result.ok and result.action == "made 0"
    assert _group(pgid) == set()
    assert _descendants(os.getpid()) == before


async def test_importing_subprocess_and_running_a_command_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    body = f"    import subprocess\n    subprocess.run(['touch', {str(marker)!r}])"
    result, _ = await _one_turn(_agent(body))
    assert not result.ok and result.kind == "refused"
    assert "import subprocess" in result.reason
    assert not marker.exists()


@pytest.mark.parametrize(
    "write",
    [
        "    open(TARGET, 'w').write('pwned')",
        "    import os\n    os.close(os.open(TARGET, os.O_WRONLY | os.O_CREAT))",
        "    import pathlib\n    pathlib.Path(TARGET).write_text('pwned')",
        "    import os\n    os.chdir(os.path.dirname(TARGET))\n    open(os.path.basename(TARGET), 'a')",
        "    import os\n    fd = os.open(os.path.dirname(TARGET), os.O_RDONLY)\n"
        "    os.open(os.path.basename(TARGET), os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
        "    import os\n    root = os.getcwd()\n    os.makedirs('a/b/c/d/e/f/g/h')\n    os.chdir('a/b/c/d/e/f/g/h')\n"
        "    fd = os.open(root, os.O_RDONLY)\n"
        "    os.open('../' * root.count('/') + TARGET.lstrip('/'), os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
        "    import os\n    os.symlink(TARGET, 'link')\n    open('link', 'w')",
        "    import os\n    open('inside', 'w').close()\n    os.rename('inside', TARGET)",
    ],
    ids=["open", "os.open", "pathlib", "chdir", "dir_fd", "dir_fd-inside", "symlink", "rename"],
)
async def test_writes_outside_the_sandbox_directory_are_refused(tmp_path: Path, write: str) -> None:
    target = tmp_path / "outside.txt"
    result, _ = await _one_turn(_agent(f"    TARGET = {str(target)!r}\n" + write))
    assert not result.ok and result.kind == "refused", result.reason
    assert "the sandbox refuses" in result.reason
    assert not target.exists()


async def test_writes_inside_the_sandbox_directory_work() -> None:
    body = (
        "    import os\n"
        "    open('notes.txt', 'w').write('kept')\n"
        "    return open('notes.txt').read() + ' ' + os.getcwd()"
    )
    result, _ = await _one_turn(_agent(body))
    assert result.ok
    assert result.action is not None
    kept, cwd = result.action.split(" ")
    assert kept == "kept" and "palaestra-sandbox-" in cwd
    assert not Path(cwd).exists()  # the directory is removed when the sandbox closes


async def test_a_socket_connection_to_a_local_server_is_refused() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        body = f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')"
        result, _ = await _one_turn(_agent(body))
        assert not result.ok and result.kind == "refused"
        assert "no network access" in result.reason
        # A connection the kernel had accepted would wait in the backlog: there is none.
        with pytest.raises(BlockingIOError):
            server.accept()
        # The server was really listening: a connection from this process gets through.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            server.setblocking(True)
            server.settimeout(5)
            conn, _ = server.accept()
            conn.close()
    finally:
        server.close()


@pytest.mark.parametrize(
    "body",
    [
        "    data = bytearray(4 * 1024 ** 3)",
        "    chunks = []\n    while True:\n        chunks.append(bytearray(1 << 20))",
    ],
    ids=["one-block", "gradual"],
)
async def test_a_huge_memory_allocation_is_refused(body: str) -> None:
    result, _ = await _one_turn(_agent(body))
    assert not result.ok and result.kind == "memory"
    assert "MemoryError" in result.reason and "128 MiB" in result.reason


async def test_raising_code_is_reported_with_its_traceback() -> None:
    result, _ = await _one_turn(_agent("    return {}['missing']"))
    assert not result.ok and result.kind == "exception"
    assert "KeyError: 'missing'" in result.reason
    assert "agent.py" in result.reason and "line 2" in result.reason


async def test_print_in_agent_code_goes_to_the_log_not_the_protocol() -> None:
    result, _ = await _one_turn(_agent("    print('chatter', flush=True)\n    raise ValueError('boom')"))
    assert result.kind == "exception"
    assert "chatter" in result.stderr


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    return 7", "act returned int, not str"),
        ("    return None", "act returned NoneType, not str"),
        ("    return ['move up']", "act returned list, not str"),
        ("    return 'x' * 1_000_000", "act returned a string of 1000000 characters; the limit is 10000"),
    ],
    ids=["int", "none", "list", "1MB"],
)
async def test_garbage_return_values_are_failures(body: str, expected: str) -> None:
    result, _ = await _one_turn(_agent(body), SandboxLimits(turn_timeout_s=5.0))
    assert not result.ok and result.kind == "bad_return"
    assert expected in result.reason


async def test_garbage_on_the_protocol_pipe_is_a_protocol_failure() -> None:
    body = (
        "    import os\n    for fd in range(3, 12):\n        try:\n            os.write(fd, b'not json\\n')\n"
        "        except OSError:\n            pass"
    )
    result, _ = await _one_turn(_agent(body))
    assert not result.ok and result.kind == "protocol"
    assert "not JSON" in result.reason


async def test_exiting_the_process_is_reported() -> None:
    result, _ = await _one_turn(_agent("    import os\n    os._exit(0)"))
    assert not result.ok and result.kind == "exited"


async def test_too_many_model_calls_in_one_turn_end_the_turn() -> None:
    body = "    for _ in range(100):\n        llm([{'role': 'user', 'content': 'again'}])"
    model = ScriptedModel("echo")
    result, _ = await _one_turn(_agent(body), SandboxLimits(max_calls_per_turn=3), model)
    assert not result.ok and result.kind == "budget"
    assert model.calls == 3 and len(result.calls) == 3


async def test_bad_model_requests_raise_inside_the_code() -> None:
    body = "    llm([{'role': 'robot', 'content': 'x'}])"
    model = ScriptedModel("echo")
    result, _ = await _one_turn(_agent(body), model=model)
    assert result.kind == "exception" and "each message needs a role" in result.reason
    assert model.calls == 0


async def test_a_failed_sandbox_stays_failed() -> None:
    async with Sandbox(_agent("    raise RuntimeError('first')"), ScriptedModel("echo"), FAST) as box:
        first = await box.act("obs", [], "")
        second = await box.act("obs", [], "")
    assert first.kind == "exception" and second == first


# --------------------------------------------------------------------------- check_code


async def test_check_code_accepts_a_well_formed_agent() -> None:
    result = await check_code("def act(observation, history, instructions, llm):\n    return 'move up'\n")
    assert result.ok and result.kind is None
    assert result.layers["audit_hook"] is True and result.layers["rlimits"] is True


@pytest.mark.parametrize(
    ("source", "kind", "words"),
    [
        ("def act(:\n", "syntax", "SyntaxError"),
        ("x = 1\n", "signature", "defines no function act"),
        ("act = 3\n", "signature", "defines no function act"),
        ("async def act(o, h, i, llm):\n    return ''\n", "signature", "not async"),
        ("def act(observation):\n    return ''\n", "signature", "must accept"),
        ("raise ImportError('no such helper')\ndef act(o, h, i, llm):\n    return ''\n", "exception", "ImportError"),
        ("import socket\nsocket.socket()\ndef act(o, h, i, llm):\n    return ''\n", "refused", "network"),
    ],
    ids=["syntax", "no-act", "not-callable", "async", "arity", "import-error", "refused-at-import"],
)
async def test_check_code_reports_why_code_cannot_play(source: str, kind: str, words: str) -> None:
    result = await check_code(source)
    assert not result.ok and result.kind == kind
    assert words in result.reason


@pytest.mark.skipif(
    os.geteuid() != 0 or not _runs_unprivileged("/usr/bin/python3"),
    reason="needs root and a system Python that the user nobody can run",
)
async def test_as_root_the_child_runs_as_nobody_when_the_interpreter_allows() -> None:
    body = "    import os\n    return str(os.getuid())"
    result, _ = await _one_turn(_agent(body), SandboxLimits(python="/usr/bin/python3", turn_timeout_s=5.0))
    assert result.ok and result.action == "65534"
    assert result.layers["uid"] == 65534


# --------------------------------------------------------------------------- playing episodes

MAZE_AGENT = """
def act(observation, history, instructions, llm):
    last = history[-1]["reward"] if history else None
    messages = [
        {"role": "system", "content": instructions},
        {"role": "user", "content": f"{observation}\\n(turn {len(history) + 1}, last reward {last})"},
    ]
    reply = llm(messages, temperature=0.0, max_tokens=48)
    return reply.rsplit("Action:", 1)[-1].strip()
"""


def _oracle(env: Env) -> ScriptedModel:
    """A scripted model that answers with the maze's optimal move (it reads the live environment)."""
    policy = env.scripted_policies()["optimal"]
    rng = random.Random(0)

    def reply(request: ChatRequest) -> str:
        return f"I should head for the goal. Action: {policy(env, rng)}"

    return ScriptedModel(reply, spec="scripted:maze-oracle")


async def test_a_sandboxed_agent_plays_a_maze_episode_through_the_parent_model() -> None:
    env = make("maze-fo-v0")
    model = _oracle(env)
    seed = env.spec.seeds("test", 1)[0]
    async with SandboxedAgent(MAZE_AGENT, model, FAST) as agent:
        episode = await run_episode(env, agent, seed)
    optimal = await run_episode(make("maze-fo-v0"), ScriptedAgent("optimal"), seed)

    assert episode.status == "ok", episode.error
    assert episode.success and episode.total_return == optimal.total_return
    assert len(episode.turns) == len(optimal.turns) == model.calls
    for turn in episode.turns:
        (call,) = turn.action.calls
        assert turn.action.raw == call.text and call.text.endswith("Action: " + turn.action.text)
        assert turn.action.parsed and re.fullmatch(r"move (up|down|left|right)", turn.action.text)
        assert call.usage.total_tokens > 0
    # The code's messages reached the model: instructions, the observation and the history it was given.
    for n, request in enumerate(model.requests, start=1):
        assert request.messages[0].content == env.instructions
        last = None if n == 1 else -1.0
        assert request.messages[1].content == f"{episode.turns[n - 1].observation}\n(turn {n}, last reward {last})"
        assert request.sampling.max_tokens == 48 and request.sampling.temperature == 0.0
    assert episode.usage.total_tokens == sum(c.usage.total_tokens for t in episode.turns for c in t.action.calls)
    assert agent.spec == f"sandbox:{code_hash(MAZE_AGENT)}"


async def test_each_episode_gets_its_own_process_and_none_is_left_behind() -> None:
    env = make("maze-fo-v0")
    before = _descendants(os.getpid())
    agent = SandboxedAgent(MAZE_AGENT, _oracle(env), FAST)
    seeds = env.spec.seeds("test", 2)
    await run_episode(env, agent, seeds[0])
    assert agent.sandbox is not None
    first = agent.sandbox.pid
    assert first is not None and _group(first) == {first}  # alive between turns: one process, no more
    await run_episode(env, agent, seeds[1])
    assert agent.sandbox is not None and agent.sandbox.pid != first
    assert _group(first) == set()
    await agent.close()
    assert agent.sandbox is None
    assert _descendants(os.getpid()) == before


async def test_a_sandboxed_agent_whose_code_raises_makes_an_error_episode() -> None:
    source = MAZE_AGENT.replace("    reply = llm", "    if len(history) == 2:\n        1 / 0\n    reply = llm")
    env = make("maze-fo-v0")
    async with SandboxedAgent(source, _oracle(env), FAST) as agent:
        episode = await run_episode(env, agent, env.spec.seeds("test", 1)[0])
        assert agent.sandbox is None  # closed on failure
    assert episode.status == "error"
    assert episode.error is not None and episode.error.startswith("SandboxError: ")
    assert "ZeroDivisionError: division by zero" in episode.error and "(exception)" in episode.error
    assert len(episode.turns) == 2


async def test_a_model_failure_is_recorded_as_a_model_error_and_stops_the_child() -> None:
    env = make("maze-fo-v0")
    model = ScriptedModel("Action: move down", fail_on_calls=[3])
    before = _descendants(os.getpid())
    async with SandboxedAgent(MAZE_AGENT, model, FAST) as agent:
        episode = await run_episode(env, agent, env.spec.seeds("test", 1)[0])
        assert agent.sandbox is not None and agent.sandbox.failure is not None
        assert agent.sandbox.failure.kind == "aborted"
        assert _descendants(os.getpid()) == before
    assert episode.status == "error" and episode.error is not None
    assert episode.error.startswith("ModelError: ") and "scripted failure on call 3" in episode.error
    assert len(episode.turns) == 2


async def test_cancelling_an_episode_mid_turn_kills_the_child() -> None:
    env = make("maze-fo-v0")
    before = _descendants(os.getpid())
    agent = SandboxedAgent(MAZE_AGENT, ScriptedModel("Action: move up", delay_s=30), FAST)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_episode(env, agent, env.spec.seeds("test", 1)[0]), 0.5)
    assert agent.sandbox is not None and agent.sandbox.failure is not None
    assert agent.sandbox.failure.kind == "aborted" and "CancelledError" in agent.sandbox.failure.reason
    assert _descendants(os.getpid()) == before
    await agent.close()


async def test_sandbox_error_is_a_palaestra_error_carrying_the_result() -> None:
    env = make("maze-fo-v0")
    await env.reset(seed=0)
    agent = SandboxedAgent("def act(o, h, i, llm):\n    return 42\n", None, FAST)
    with pytest.raises(SandboxError) as caught:
        await agent.act(env, [], "obs")
    assert isinstance(caught.value, PalaestraError)
    assert caught.value.kind == "bad_return" and "act returned int" in str(caught.value)


def test_the_python_blocks_of_the_sandbox_doc_run(run_doc_block: Callable[[str, str], None]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, "docs/sandbox.md should show an example agent"
    for i, block in enumerate(blocks):
        run_doc_block(block, f"sandbox_md_{i}")
