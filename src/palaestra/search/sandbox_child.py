"""The sandbox's child process: it confines itself, loads the generated agent code and serves its turns.

This file is never imported by the search process. ``palaestra.search.sandbox`` reads its source and runs it
as ``python -I -S -B -c <source> <config json>`` in a fresh working directory, so it may use only the
standard library. Before the generated code is even compiled it, in order:

1. moves its protocol off fds 0/1 (so ``print`` in the agent goes to the stderr log, not into the protocol);
2. tries to enter a new, empty network namespace (``unshare(CLONE_NEWNET)``; silently skipped when the
   kernel or the privileges refuse it);
3. switches to an unprivileged user when the parent asked for it (the parent only asks when it runs as root
   and the interpreter is readable by that user);
4. sets resource limits: CPU seconds, address space, processes, file size, open files, no core dumps;
5. installs an audit hook (PEP 578) that refuses network, process creation, native code (ctypes), raising
   limits, and writes outside the working directory.

Protocol (one JSON object per line; the child writes to its original stdout, reads its original stdin):
child ``{"op": "ready", "layers": {...}}`` or ``{"op": "error", "kind", "message"}`` once the code is loaded;
parent ``{"op": "act", "observation", "history", "instructions"}``; child any number of
``{"op": "llm", "messages", "temperature", "max_tokens"}`` each answered by parent ``{"op": "reply", "text"}``,
then ``{"op": "result", "action"}`` or ``{"op": "error", ...}``; parent ``{"op": "close"}`` or EOF ends it.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any, BinaryIO

CLONE_NEWNET = 0x40000000
_MB = 1024 * 1024
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# Events refused outright, with the reason given to the agent code.
_REFUSED_EVENTS = {
    "os.system": "starting processes",
    "os.exec": "starting processes",
    "os.posix_spawn": "starting processes",
    "os.spawn": "starting processes",
    "os.fork": "starting processes",
    "os.forkpty": "starting processes",
    "subprocess.Popen": "starting processes",
    "os.kill": "signalling processes",
    "os.killpg": "signalling processes",
    "signal.pthread_kill": "signalling processes",
    "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits",
    "os.symlink": "making links",
    "os.link": "making links",
    "os.unshare": "changing namespaces",
    "os.setns": "changing namespaces",
    # The hook itself must stay out of reach: these are the ways to find live objects without a reference.
    "gc.get_objects": "walking the garbage collector",
    "gc.get_referrers": "walking the garbage collector",
    "gc.get_referents": "walking the garbage collector",
}
_REFUSED_PREFIXES = {"socket.": "network access", "ctypes.": "native code (ctypes)"}
_REFUSED_MODULES = {
    "ctypes": "native code",
    "_ctypes": "native code",
    "subprocess": "starting processes",
    "_posixsubprocess": "starting processes",
    "multiprocessing": "starting processes",
    "_multiprocessing": "starting processes",
    "pty": "starting processes",
}
# Events that change the file system: (indices of path arguments, indices of dir_fd arguments).
_PATH_EVENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.mkdir": ((0,), (2,)),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.chflags": ((0,), ()),
    "os.lchflags": ((0,), ()),
    "os.truncate": ((0,), ()),
    "os.utime": ((0,), (3,)),
    "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
    "shutil.rmtree": ((0,), (1,)),
    "shutil.move": ((0, 1), ()),
    "shutil.copyfile": ((1,), ()),
    "shutil.copymode": ((1,), ()),
    "shutil.copystat": ((1,), ()),
    "shutil.chown": ((0,), ()),
}


class SandboxRefusal(PermissionError):
    """Raised inside the agent code when it tries something the sandbox does not allow."""


class BadReturn(Exception):
    """``act`` returned something that is not an action string within the size limit."""


class BadSignature(Exception):
    """The module has no usable ``act`` function."""


def _isolate_network() -> bool:
    """Enter a new network namespace (only a downed loopback in it); False when not permitted."""
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    if unshare is not None:
        try:
            unshare(CLONE_NEWNET)
            return True
        except OSError:
            return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.unshare(CLONE_NEWNET) == 0)
    except (OSError, AttributeError):
        return False
    finally:
        # Forget ctypes so that the agent code's own import of it goes through the audit hook.
        for name in [m for m in sys.modules if m in ("ctypes", "_ctypes") or m.startswith("ctypes.")]:
            del sys.modules[name]


def _drop_privileges(uid: int | None, gid: int | None) -> int:
    if uid is not None and gid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return os.geteuid()


def _set_limits(config: dict[str, Any]) -> None:
    cpu = int(config["cpu_s"])
    # At the soft limit the kernel sends SIGXCPU (fatal, Python does not catch it); at the hard one SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory = int(config["memory_mb"]) * _MB
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    size = int(config["file_size_mb"]) * _MB
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    files = int(config["open_files"])
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    processes = int(config["processes"])
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def _install_hook(root: str) -> None:
    """Install the audit hook; ``root`` is the only directory the agent code may change."""
    prefix = root.rstrip(os.sep) + os.sep
    realpath, fspath, isdir = os.path.realpath, os.fspath, os.path.isdir

    def resolve(path: Any) -> str:
        return realpath(os.fsdecode(fspath(path)))

    def inside(resolved: str) -> bool:
        return resolved == root or resolved.startswith(prefix)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        why = _REFUSED_EVENTS.get(event)
        if why is None:
            for start, reason in _REFUSED_PREFIXES.items():
                if event.startswith(start):
                    why = reason
        if why is not None:
            raise SandboxRefusal(f"the sandbox refuses {event}: no {why} from agent code")
        if event == "import":
            module = str(args[0]).partition(".")[0]
            if module in _REFUSED_MODULES:
                raise SandboxRefusal(f"the sandbox refuses to import {module}: no {_REFUSED_MODULES[module]}")
        elif event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):  # an already-open descriptor
                return
            resolved = resolve(path)
            writes = bool(flags & _WRITE_FLAGS) if isinstance(flags, int) else any(c in str(mode) for c in "wax+")
            # open() does not tell the hook its dir_fd, so a relative path is resolved here against the working
            # directory; with '..' in it, the same path taken from another directory could lead outside.
            if writes and ".." in os.fsdecode(fspath(path)).split(os.sep):
                raise SandboxRefusal(f"the sandbox refuses to open a path with '..' for writing: {path!r:.200}")
            if inside(resolved):
                return
            if writes:
                raise SandboxRefusal(f"the sandbox refuses to open {resolved} for writing: only {root} is writable")
            if isdir(resolved):  # a directory descriptor would let *at() calls write outside (dir_fd=...)
                raise SandboxRefusal(f"the sandbox refuses to open the directory {resolved} outside {root}")
        elif event in _PATH_EVENTS:
            paths, dir_fds = _PATH_EVENTS[event]
            for i in dir_fds:
                if i < len(args) and args[i] not in (None, -1):
                    raise SandboxRefusal(f"the sandbox refuses {event} with dir_fd: use paths inside {root}")
            for i in paths:
                if i < len(args) and not isinstance(args[i], int) and not inside(resolve(args[i])):
                    raise SandboxRefusal(f"the sandbox refuses {event} on {resolve(args[i])}: only {root} is writable")

    sys.addaudithook(hook)


class Channel:
    """The protocol pipe: JSON lines on private copies of the original stdin and stdout."""

    def __init__(self) -> None:
        self.reader: BinaryIO = os.fdopen(os.dup(0), "rb")
        self.writer: BinaryIO = os.fdopen(os.dup(1), "wb")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)  # print() in agent code lands in the stderr log

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(json.dumps(message).encode() + b"\n")
        self.writer.flush()

    def receive(self) -> dict[str, Any] | None:
        line = self.reader.readline()
        if not line:
            return None
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("protocol: expected a JSON object")
        return message


_ROLES = ("system", "user", "assistant")


def _make_llm(channel: Channel, max_tokens_limit: int) -> Any:
    def llm(messages: list[dict[str, str]], temperature: float = 0.0, max_tokens: int = 64) -> str:
        """Ask the model for a reply to ``messages`` (``[{"role": "system"|"user"|"assistant", "content": str}]``)."""
        if not isinstance(messages, list) or not messages:
            raise TypeError("llm(messages): messages must be a non-empty list of {'role', 'content'} dicts")
        clean = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
                raise TypeError(
                    f"llm(messages): each message needs a role in {_ROLES} and a str content, got {m!r:.200}"
                )
            clean.append({"role": m["role"], "content": m["content"]})
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise ValueError(f"llm(temperature=...): a number from 0 to 2, got {temperature!r:.50}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= max_tokens_limit:
            raise ValueError(f"llm(max_tokens=...): an int from 1 to {max_tokens_limit}, got {max_tokens!r:.50}")
        channel.send({"op": "llm", "messages": clean, "temperature": float(temperature), "max_tokens": max_tokens})
        reply = channel.receive()
        if reply is None or reply.get("op") != "reply" or not isinstance(reply.get("text"), str):
            raise SystemExit(3)  # the parent went away or broke the protocol: nothing sensible to do
        return str(reply["text"])

    return llm


def _describe(exc: BaseException, reserve: list[bytearray]) -> dict[str, Any]:
    """An error message for the parent; frees the memory reserve first so that a MemoryError can be told."""
    reserve.clear()
    if isinstance(exc, MemoryError):
        kind = "memory"
    elif isinstance(exc, SandboxRefusal):
        kind = "refused"
    elif isinstance(exc, BadReturn):
        kind = "bad_return"
    else:
        kind = "exception"
    try:
        import traceback

        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        # Frames of this bootstrap (run with -c, so named "<string>") say nothing about the agent's code.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != "<string>"][-6:]
        trace = "".join(traceback.format_list(frames)) + message if frames else ""
    except BaseException:
        message, trace = type(exc).__name__, ""
    return {"op": "error", "kind": kind, "message": message[:2000], "traceback": trace[-4000:]}


def _load(code: Any, path: str) -> Any:
    import inspect

    module: dict[str, Any] = {"__name__": "agent", "__file__": path}
    exec(code, module)
    act = module.get("act")
    if act is None or not callable(act):
        raise BadSignature("the module defines no function act(observation, history, instructions, llm)")
    if inspect.iscoroutinefunction(act) or inspect.isgeneratorfunction(act):
        raise BadSignature("act must be a plain 'def' returning a string, not async or a generator")
    try:
        inspect.signature(act).bind("", [], "", None)
    except (TypeError, ValueError) as exc:
        raise BadSignature(f"act must accept (observation, history, instructions, llm): {exc}") from None
    return act


def main() -> None:
    config = json.loads(sys.argv[1])
    channel = Channel()
    network = _isolate_network() if config["isolate_network"] else False
    uid = _drop_privileges(config.get("uid"), config.get("gid"))
    _set_limits(config)
    import inspect  # noqa: F401  (loaded before the hook and the limits bite, for _load)
    import traceback

    root = os.path.realpath(config["workdir"])
    _install_hook(root)
    layers = {"network_namespace": network, "uid": uid, "rlimits": True, "audit_hook": True}
    reserve = [bytearray(_MB)]
    path = config["source_path"]
    try:
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        channel.send({"op": "error", "kind": "syntax", "message": text[:2000], "traceback": ""})
        return
    try:
        act = _load(code, path)
    except BadSignature as exc:
        channel.send({"op": "error", "kind": "signature", "message": str(exc), "traceback": ""})
        return
    except BaseException as exc:
        channel.send(_describe(exc, reserve))
        return
    channel.send({"op": "ready", "layers": layers})
    llm = _make_llm(channel, int(config["max_tokens_per_call"]))
    limit = int(config["max_action_chars"])
    while True:
        message = channel.receive()
        if message is None or message.get("op") != "act":
            return
        try:
            action = act(message["observation"], message["history"], message["instructions"], llm)
            if not isinstance(action, str):
                raise BadReturn(f"act returned {type(action).__name__}, not str")
            if len(action) > limit:
                raise BadReturn(f"act returned a string of {len(action)} characters; the limit is {limit}")
        except BaseException as exc:
            channel.send(_describe(exc, reserve))
            return
        channel.send({"op": "result", "action": action})


if __name__ == "__main__":
    main()
