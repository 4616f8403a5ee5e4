"""What the dashboard tests share: a database filled by real runs of scripted agents, the dashboard served by
a real uvicorn server on 127.0.0.1, and a browser page that records errors.

Chromium comes from ``$PALAESTRA_CHROMIUM``, ``chromium`` on PATH, or ``scripts/chromium.sh`` (which installs
Debian's package). When none works the browser tests fail under CI (``$CI`` set) and are skipped with the
reason elsewhere. Screenshots go to ``test-artifacts/dashboard/`` at the repository root (git ignores it),
or under ``$PALAESTRA_TEST_ARTIFACTS`` when set.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from palaestra.models.scripted import ScriptedModel
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import CheckpointRecord, Store

REPO = Path(__file__).resolve().parents[2]
XSS = "<script>alert(1)</script>"
XSS_SPEC = 'scripted:<img src=x onerror="alert(2)">'  # a model spec that is markup: shown on every page


@dataclass(frozen=True)
class Filled:
    """The test database and the ids of what is in it."""

    path: Path
    url: str
    maze_optimal: str
    maze_random: str
    govsim: str
    agentsnet: str
    team: str
    running: str


async def fill(url: str) -> Filled:
    store = Store(url)
    maze = await evaluate(
        EvalConfig(envs=("maze-fo-v0",), agents=("optimal", "random"), episodes=4), store, progress=False
    )
    govsim = await evaluate(
        EvalConfig(envs=("govsim-fishery-v0",), agents=("greedy + sustainable*4",), episodes=1), store, progress=False
    )
    agentsnet = await evaluate(
        EvalConfig(envs=("agentsnet-coloring-v0",), agents=("optimal",), episodes=1), store, progress=False
    )
    model = ScriptedModel([f"{XSS} I will not say"], spec=XSS_SPEC, honor_max_tokens=False)
    team = await evaluate(
        EvalConfig(envs=("reasoning-arithmetic-v0",), agents=("independent:3/prompt",), episodes=2),
        store,
        model=model,
        progress=False,
    )
    # A run still being played: 2 of its 5 planned episodes stored (copies of the optimal maze run's).
    source = store.get_run(maze.run_ids[0])
    running = store.create_run(
        env_spec=source.env_spec,
        agent_spec="optimal",
        model_spec=None,
        weights_hash=None,
        config={**source.config, "seeds": source.config["seeds"] + [11004]},
    )
    for episode in store.episodes(source.id, with_turns=True)[:2]:
        store.record_episode(running, episode)
    # Checkpoints as training writes them: a promoted one and a refused child, each with learning curves.
    base = CheckpointRecord(
        id="c-00000001",
        created_at=1_700_000_000.0,
        status="promoted",
        method="filtered-bc",
        base_model="smollm2-135m",
        env_ids=["maze-fo-v0"],
        data_runs=[maze.run_ids[0]],
        config={"lr": 1e-4},
        metrics={
            "loss": [2.0, 1.5, 1.2],
            "rounds": [{"round": 1, "score": 10.0}, {"round": 2, "score": 25.0}],
            "gate": {"promoted": True, "score": 25.0},
        },
        wall_s=12.0,
    )
    store.save_checkpoint(base)
    store.save_checkpoint(
        replace(
            base,
            id="c-00000002",
            created_at=1_700_000_100.0,
            status="refused",
            parent="c-00000001",
            metrics={"loss": [1.2, 1.1], "gate": {"promoted": False, "score": 20.0}},
        )
    )
    store.close()
    return Filled(
        Path(url.removeprefix("sqlite:///")),
        url,
        maze.run_ids[0],
        maze.run_ids[1],
        govsim.run_ids[0],
        agentsnet.run_ids[0],
        team.run_ids[0],
        running,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    url: str
    server: Any
    thread: threading.Thread


def serve(app: Any) -> Served:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; returns once it answers."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard's uvicorn server did not start")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", server, thread)


class Page:
    """A browser page that records console errors, uncaught exceptions and dialogs (an alert = a script ran)."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1300, "height": 1000})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()
