"""Run model-written agent code in a sandboxed child process, never in the search process.

ADAS's Meta Agent Search (Hu et al., "Automated Design of Agentic Systems") has a meta agent write each new
agent as Python code and runs that code inside the search process, with no sandbox, cache or budget
(../shared/reference/OPTIMIZATION.md). Palaestra's ``meta-agent`` search runs it here instead.

The agent-code API (docs/sandbox.md): the generated module defines
``def act(observation: str, history: list[dict], instructions: str, llm) -> str``, where each history item is
``{"observation", "action", "reward"}`` and ``llm(messages, temperature=0.0, max_tokens=64) -> str`` calls the
model. The code runs in a child ``python -I -S -B`` with a fresh temporary working directory and a minimal
environment (``sandbox_child.py`` confines it: network namespace when permitted, an unprivileged user when
possible, resource limits, an audit hook). The parent keeps the model: the child sends model requests as JSON
lines and the parent answers them with its real ``Model``, counting calls and tokens. A wall-clock timeout
kills the child's whole process group.

Every failure (timeout, a limit, an exception, a syntax error, a bad return value, a protocol violation) comes
back as a ``SandboxResult`` with ``ok=False``, a ``kind`` and a ``reason``; nothing the code does raises in
the search process. ``SandboxedAgent`` turns a failure into ``SandboxError``, which the episode runner records
as an episode with ``status="error"`` and the reason in ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from palaestra.core.errors import PalaestraError, SpecError
from palaestra.core.types import Action, ChatRequest, Completion, Message, SamplingParams, Turn, Usage
from palaestra.envs.base import Env
from palaestra.models.base import Model

FailureKind = Literal[
    "timeout",  # wall-clock limit of a turn (or of loading the code) passed; the process group was killed
    "cpu_limit",  # killed by SIGXCPU: the CPU-seconds limit is used up
    "memory",  # MemoryError under the address-space limit
    "file_size",  # killed by SIGXFSZ
    "killed",  # died from another signal (SIGKILL at the hard CPU limit, SIGSEGV...)
    "exited",  # the process ended by itself (os._exit, SystemExit at import...)
    "exception",  # the code raised
    "refused",  # the code tried something the sandbox refuses (network, processes, writes outside...)
    "syntax",  # the code does not compile
    "signature",  # no usable act(observation, history, instructions, llm)
    "bad_return",  # act returned a non-string or a string over max_action_chars
    "protocol",  # the child sent something that is not the protocol
    "budget",  # too many model calls in one turn
    "start",  # the child process could not be started
    "aborted",  # the turn was abandoned (the model failed, or the episode was cancelled); the child was stopped
]

NOBODY = 65534  # uid and gid of "nobody" on Linux distributions


@dataclass(frozen=True)
class SandboxLimits:
    """What the sandboxed code may use. One child process serves one episode, so ``cpu_s`` is per episode.

    ``processes`` is ``RLIMIT_NPROC``, counted per user by the kernel: 0 forbids new processes and threads to
    an unprivileged user (root is exempt, hence the audit hook). ``turn_timeout_s`` counts the time the child
    works on one turn, not the time the parent spends on its model requests.
    """

    cpu_s: int = 30
    memory_mb: int = 512
    processes: int = 0
    file_size_mb: int = 8
    open_files: int = 32
    turn_timeout_s: float = 10.0
    start_timeout_s: float = 10.0
    max_action_chars: int = 10_000
    max_calls_per_turn: int = 16
    max_tokens_per_call: int = 1024
    max_message_bytes: int = 1 << 20
    isolate_network: bool = True
    drop_privileges: bool = True
    python: str | None = None  # the interpreter for the child; None: the one running the search

    def __post_init__(self) -> None:
        for name in ("cpu_s", "memory_mb", "file_size_mb", "open_files", "max_action_chars", "max_calls_per_turn"):
            if getattr(self, name) < 1:
                raise SpecError(f"sandbox limit {name} must be at least 1, got {getattr(self, name)}")
        if self.processes < 0:
            raise SpecError(f"sandbox limit processes must be 0 or more, got {self.processes}")
        if self.turn_timeout_s <= 0 or self.start_timeout_s <= 0:
            raise SpecError("sandbox timeouts must be positive numbers of seconds")
        if self.memory_mb < 64:
            raise SpecError(f"sandbox memory_mb={self.memory_mb} is too small for a Python interpreter; use 64 or more")


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of loading the code or of one turn: ``ok`` with ``action``, or a failure ``kind`` and ``reason``.

    ``calls`` are the model calls the code made (also on failure); ``stderr`` is the tail of what the child
    printed; ``layers`` says which containment layers were in force (set once the code is loaded).
    """

    ok: bool
    action: str | None = None
    kind: FailureKind | None = None
    reason: str = ""
    calls: tuple[Completion, ...] = ()
    stderr: str = ""
    layers: dict[str, Any] = field(default_factory=dict)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for call in self.calls:
            total = total + call.usage
        return total


class SandboxError(PalaestraError):
    """Sandboxed agent code failed (timeout, limit, exception, bad return...); ``result`` has the details.

    Raised by ``SandboxedAgent.act``: the episode runner records the episode as an error with this message.
    """

    def __init__(self, result: SandboxResult) -> None:
        self.result = result
        self.kind = result.kind
        self.reason = result.reason
        super().__init__(f"sandboxed agent code failed ({result.kind}): {result.reason}")


def code_hash(source: str) -> str:
    """A short stable name for a piece of agent code (used in ``sandbox:<hash>`` agent specs)."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _child_source() -> str:
    return Path(__file__).with_name("sandbox_child.py").read_text(encoding="utf-8")


@functools.cache
def _runs_unprivileged(python: str) -> bool:
    """Whether the user ``nobody`` can run ``python`` and import from its standard library (not so when the
    interpreter lives under a private home directory, e.g. pyenv's under /root)."""
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-B", "-c", "import json, inspect, traceback"],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _kill_group(process: asyncio.subprocess.Process | None) -> None:
    """SIGKILL the child's whole process group (it is its group's leader: ``start_new_session``)."""
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _cleanup(process: asyncio.subprocess.Process | None, directory: str) -> None:
    _kill_group(process)
    shutil.rmtree(directory, ignore_errors=True)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Sandbox:
    """One child process running one piece of agent code; serves ``act`` calls until closed or failed.

    Use as ``async with Sandbox(source, model) as box: result = await box.act(observation, history, instructions)``.
    After a failure the child is gone and every later call returns the same failure.
    """

    def __init__(
        self, source: str, model: Model | None = None, limits: SandboxLimits | None = None, *, seed: int = 0
    ) -> None:
        self.source = source
        self.model = model
        self.limits = limits or SandboxLimits()
        self.seed = seed
        self.layers: dict[str, Any] = {}
        self.calls = 0
        self.usage = Usage()
        self._process: asyncio.subprocess.Process | None = None
        self._dir: str | None = None
        self._failure: SandboxResult | None = None
        self._started = False
        self._lock = asyncio.Lock()
        self._seen: dict[str, int] = {}  # request key -> times asked, for sample_index
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def failure(self) -> SandboxResult | None:
        return self._failure

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> SandboxResult:
        """Start the child, load the code and check ``act``; ``ok`` when it is ready to play."""
        async with self._lock:
            return await self._start()

    async def _start(self) -> SandboxResult:
        if self._failure is not None:
            return self._failure
        if self._started:
            return SandboxResult(ok=True, layers=self.layers)
        self._started = True
        limits = self.limits
        python = limits.python or sys.executable
        self._dir = tempfile.mkdtemp(prefix="palaestra-sandbox-")
        workdir = os.path.join(self._dir, "work")
        os.mkdir(workdir, 0o700)
        source_path = os.path.join(workdir, "agent.py")
        Path(source_path).write_text(self.source, encoding="utf-8")
        uid = gid = None
        if limits.drop_privileges and os.geteuid() == 0 and _runs_unprivileged(python):
            uid = gid = NOBODY
            os.chmod(self._dir, 0o711)  # searchable, not listable: the child reaches only its working directory
            os.chown(workdir, NOBODY, NOBODY)
            os.chown(source_path, NOBODY, NOBODY)
        config = {
            "workdir": workdir,
            "source_path": source_path,
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "processes": limits.processes,
            "file_size_mb": limits.file_size_mb,
            "open_files": limits.open_files,
            "max_action_chars": limits.max_action_chars,
            "max_tokens_per_call": limits.max_tokens_per_call,
            "isolate_network": limits.isolate_network,
            "uid": uid,
            "gid": gid,
        }
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        stderr = open(os.path.join(self._dir, "stderr.log"), "wb")  # noqa: SIM115 - handed to the child
        try:
            self._process = await asyncio.create_subprocess_exec(
                python,
                "-I",
                "-S",
                "-B",
                "-c",
                _child_source(),
                json.dumps(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                cwd=workdir,
                env=env,
                start_new_session=True,  # its own process group, killed as a whole
                limit=limits.max_message_bytes,
            )
        except OSError as exc:
            return await self._fail("start", f"cannot start the sandbox interpreter {python!r}: {exc}")
        finally:
            stderr.close()
        self._finalizer = weakref.finalize(self, _cleanup, self._process, self._dir)
        message = await self._receive(limits.start_timeout_s, "loading the code")
        if isinstance(message, SandboxResult):
            return message
        if message.get("op") == "ready" and isinstance(message.get("layers"), dict):
            self.layers = dict(message["layers"])
            return SandboxResult(ok=True, layers=self.layers)
        return await self._child_error(message, "loading the code")

    async def close(self) -> None:
        """Stop the child (politely, then by force) and remove its directory. Safe to call twice."""
        process = self._process
        if process is not None and process.returncode is None and process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.write(b'{"op": "close"}\n')
                await asyncio.wait_for(process.stdin.drain(), 1.0)
                await asyncio.wait_for(process.wait(), 1.0)
        await self._reap()
        if self._finalizer is not None:
            self._finalizer()
        elif self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _reap(self) -> None:
        process = self._process
        if process is None:
            return
        _kill_group(process)
        with contextlib.suppress(Exception):
            await process.wait()
        # Anything the code left in its group (only possible if it got past the hook) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    # ------------------------------------------------------------------ turns

    async def act(self, observation: str, history: Sequence[Mapping[str, Any]], instructions: str) -> SandboxResult:
        """Run the code's ``act`` for one turn; the model calls it makes are served here and returned."""
        async with self._lock:
            started = await self._start()
            if not started.ok:
                return started
            calls: list[Completion] = []
            try:
                return await self._turn(observation, history, instructions, calls)
            except BaseException as exc:  # a model failure or a cancellation: the child must not outlive the turn
                await self._reap()
                self._failure = SandboxResult(
                    ok=False, kind="aborted", reason=f"the turn was abandoned: {type(exc).__name__}: {exc}"
                )
                raise

    async def _turn(
        self, observation: str, history: Sequence[Mapping[str, Any]], instructions: str, calls: list[Completion]
    ) -> SandboxResult:
        limits = self.limits
        items = [
            {"observation": str(h["observation"]), "action": str(h["action"]), "reward": float(h["reward"])}
            for h in history
        ]
        request = {"op": "act", "observation": observation, "history": items, "instructions": instructions}
        budget = limits.turn_timeout_s
        sent = await self._send(request, budget)
        if sent is not None:
            return sent
        while True:
            begun = time.monotonic()
            message = await self._receive(budget, "one turn", calls)
            budget -= time.monotonic() - begun  # the clock runs only while the child works
            if isinstance(message, SandboxResult):
                return message
            op = message.get("op")
            if op == "result":
                action = message.get("action")
                if not isinstance(action, str) or len(action) > limits.max_action_chars:
                    return await self._fail(
                        "protocol", "the child sent a result that is not a string within max_action_chars", calls
                    )
                return SandboxResult(ok=True, action=action, calls=tuple(calls), layers=self.layers)
            if op != "llm":
                return await self._child_error(message, "one turn", calls)
            if len(calls) >= limits.max_calls_per_turn:
                return await self._fail(
                    "budget",
                    f"act made more than {limits.max_calls_per_turn} model calls in one turn (max_calls_per_turn)",
                    calls,
                )
            parsed = self._parse_llm(message)
            if isinstance(parsed, str):
                return await self._fail("protocol", parsed, calls)
            if self.model is None:
                return await self._fail("protocol", "act called llm(), but this sandbox was given no model", calls)
            completion = await self.model.generate(parsed)
            calls.append(completion)
            self.calls += 1
            self.usage = self.usage + completion.usage
            sent = await self._send({"op": "reply", "text": completion.text}, budget, calls)
            if sent is not None:
                return sent

    def _parse_llm(self, message: Mapping[str, Any]) -> ChatRequest | str:
        """The child's model request as a ``ChatRequest``, or what is wrong with it (never trusted)."""
        raw, temperature, max_tokens = message.get("messages"), message.get("temperature"), message.get("max_tokens")
        if not isinstance(raw, list) or not raw:
            return "llm request without a list of messages"
        messages = []
        for m in raw:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
                return "llm request with a message that has no valid role"
            if not isinstance(m.get("content"), str):
                return "llm request with a message whose content is not a string"
            messages.append(Message(m["role"], m["content"]))
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            return "llm request with a temperature outside 0..2"
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            return "llm request without an integer max_tokens"
        if not 1 <= max_tokens <= self.limits.max_tokens_per_call:
            return f"llm request for {max_tokens} tokens; the limit is {self.limits.max_tokens_per_call}"
        key = json.dumps([raw, temperature, max_tokens])
        index = self._seen.get(key, 0)
        self._seen[key] = index + 1
        # Repeats of one request (self-consistency) are distinct samples: distinct sample_index for the
        # cache and, when sampling, a distinct but reproducible seed.
        seed = None if temperature == 0 else self.seed * 1_000_003 + self.calls
        sampling = SamplingParams(temperature=float(temperature), max_tokens=max_tokens, seed=seed)
        return ChatRequest(tuple(messages), sampling, sample_index=index)

    # ------------------------------------------------------------------ the pipe

    async def _send(
        self, message: dict[str, Any], budget: float, calls: Sequence[Completion] = ()
    ) -> SandboxResult | None:
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            process.stdin.write(json.dumps(message).encode() + b"\n")
            await asyncio.wait_for(process.stdin.drain(), max(budget, 0.0))
        except TimeoutError:
            return await self._fail("timeout", self._timeout_reason("one turn"), calls)
        except (BrokenPipeError, ConnectionResetError):
            return await self._died(calls)
        return None

    async def _receive(
        self, budget: float, stage: str, calls: Sequence[Completion] = ()
    ) -> dict[str, Any] | SandboxResult:
        process = self._process
        assert process is not None and process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), max(budget, 0.0))
        except TimeoutError:
            return await self._fail("timeout", self._timeout_reason(stage), calls)
        except ValueError:  # the line is over the stream limit
            return await self._fail(
                "protocol", f"the child sent a message over {self.limits.max_message_bytes} bytes", calls
            )
        if not line:
            return await self._died(calls)
        try:
            message = json.loads(line)
        except ValueError:
            return await self._fail("protocol", f"the child sent a line that is not JSON: {line[:200]!r}", calls)
        if not isinstance(message, dict):
            return await self._fail("protocol", "the child sent JSON that is not an object", calls)
        return message

    def _timeout_reason(self, stage: str) -> str:
        limit = self.limits.start_timeout_s if stage == "loading the code" else self.limits.turn_timeout_s
        name = "start_timeout_s" if stage == "loading the code" else "turn_timeout_s"
        return f"{stage} took longer than the wall-clock limit of {limit:g} s ({name}); the process group was killed"

    async def _child_error(
        self, message: Mapping[str, Any], stage: str, calls: Sequence[Completion] = ()
    ) -> SandboxResult:
        kinds: dict[str, FailureKind] = {
            "exception": "exception",
            "memory": "memory",
            "refused": "refused",
            "bad_return": "bad_return",
            "syntax": "syntax",
            "signature": "signature",
        }
        kind = kinds.get(str(message.get("kind")))
        if message.get("op") != "error" or kind is None:
            return await self._fail("protocol", f"unexpected message while {stage}: {str(message)[:200]}", calls)
        text = str(message.get("message", ""))[:2000]
        trace = str(message.get("traceback", ""))[-4000:]
        reasons = {
            "memory": f"{text} (address-space limit {self.limits.memory_mb} MiB, memory_mb)",
            "refused": f"{text}",
            "bad_return": f"{text}",
            "syntax": f"the code does not compile: {text}",
            "signature": text,
            "exception": f"the code raised while {stage}: {text}",
        }
        reason = reasons[kind]
        if trace and kind in ("exception", "refused", "memory"):
            reason += "\n" + trace
        return await self._fail(kind, reason, calls)

    async def _died(self, calls: Sequence[Completion]) -> SandboxResult:
        process = self._process
        assert process is not None
        try:
            code = await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            return await self._fail("protocol", "the child closed its output but did not exit", calls)
        if code >= 0:
            return await self._fail("exited", f"the sandbox process exited with status {code} before answering", calls)
        number = -code
        if number == signal.SIGXCPU:
            return await self._fail(
                "cpu_limit", f"killed by SIGXCPU: the CPU-time limit of {self.limits.cpu_s} s (cpu_s) is used up", calls
            )
        if number == signal.SIGXFSZ:
            return await self._fail(
                "file_size", f"killed by SIGXFSZ: a file grew past {self.limits.file_size_mb} MiB (file_size_mb)", calls
            )
        hint = " (the hard CPU limit, or the kernel's out-of-memory killer)" if number == signal.SIGKILL else ""
        return await self._fail("killed", f"the sandbox process was killed by {_signal_name(number)}{hint}", calls)

    async def _fail(self, kind: FailureKind, reason: str, calls: Sequence[Completion] = ()) -> SandboxResult:
        await self._reap()
        stderr = ""
        if self._dir is not None:
            with contextlib.suppress(OSError), open(os.path.join(self._dir, "stderr.log"), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4000))
                stderr = f.read().decode(errors="replace")
        self._failure = SandboxResult(
            ok=False, kind=kind, reason=reason, calls=tuple(calls), stderr=stderr, layers=self.layers
        )
        return self._failure


async def check_code(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Compile and import ``source`` in the sandbox and check that ``act`` has the right signature, without
    playing. ``ok`` when the code is ready to play; otherwise the failure says why."""
    async with Sandbox(source, None, limits) as box:
        return await box.start()


class SandboxedAgent:
    """An ``Agent`` whose decisions are made by generated code running in a ``Sandbox``.

    One child process per episode: it starts on the episode's first turn (empty history), serves every turn
    of the episode and is closed when the next episode starts or on ``close()``. Use one agent per episode
    at a time (as the runner's executor does) and close it when done (``async with``). When the code fails,
    ``act`` raises ``SandboxError`` and the episode runner records an error episode with the reason.

    The returned ``Action``: ``text`` is what ``act`` returned, ``raw`` the last model reply of the turn
    (None without model calls), ``parsed`` False for an empty action, ``calls`` the model calls of the turn.
    """

    def __init__(
        self,
        source: str,
        model: Model | None,
        limits: SandboxLimits | None = None,
        *,
        seed: int = 0,
        spec: str | None = None,
    ) -> None:
        self.source = source
        self.model = model
        self.limits = limits or SandboxLimits()
        self.seed = seed
        self.spec = spec or f"sandbox:{code_hash(source)}"
        self._sandbox: Sandbox | None = None

    @property
    def sandbox(self) -> Sandbox | None:
        """The sandbox of the current episode (None between episodes)."""
        return self._sandbox

    async def act(self, env: Env, history: Sequence[Turn], observation: str) -> Action:
        if not history or self._sandbox is None:  # a new episode gets a fresh process
            await self.close()
            self._sandbox = Sandbox(self.source, self.model, self.limits, seed=self.seed)
        items = [{"observation": t.observation, "action": t.action.text, "reward": t.step.reward} for t in history]
        result = await self._sandbox.act(observation, items, env.instructions)
        if not result.ok or result.action is None:
            await self.close()
            raise SandboxError(result)
        text = result.action.strip()
        raw = result.calls[-1].text if result.calls else None
        return Action(text=text, raw=raw, parsed=bool(text), calls=result.calls)

    async def close(self) -> None:
        """Close the current episode's child process, if any."""
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await sandbox.close()

    async def __aenter__(self) -> SandboxedAgent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
