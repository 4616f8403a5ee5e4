"""Fixtures for the model tests: the real embedded SmolLM2 (converted once) and a real OpenAI-style server.

The server is ``transformers serve`` on the converted embedded model, started once per session on a free
port of 127.0.0.1, offline (``HF_HUB_OFFLINE=1``), and killed at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# Everything here must work without the model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SERVER_START_TIMEOUT_S = 240  # loading torch and the model on a busy 2-core machine can take a minute


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_tcp_port() -> int:
    """A port on 127.0.0.1 where nothing listens (free when the test starts)."""
    return free_port()


def _transformers_cli() -> str:
    found = Path(sys.executable).with_name("transformers")
    if found.exists():
        return str(found)
    which = shutil.which("transformers")
    if not which:
        pytest.fail("the 'transformers' command is missing; pip install 'transformers[serving]'", pytrace=False)
    return which


@pytest.fixture(scope="session")
def served_model(embedded_dir: Path) -> Iterator[tuple[str, str]]:
    """(model name, base URL) of ``transformers serve`` running the embedded model."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # Not a with-block: the log must outlive this statement, for the whole session.
    log = tempfile.NamedTemporaryFile("w+", prefix="transformers-serve-", suffix=".log", delete=False)  # noqa: SIM115
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [_transformers_cli(), "serve", str(embedded_dir), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--device", "cpu"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"transformers serve exited with {process.returncode}:\n{log.read()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"transformers serve not ready after {SERVER_START_TIMEOUT_S}s:\n{log.read()[-3000:]}")
            time.sleep(0.5)
        yield str(embedded_dir), base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)
