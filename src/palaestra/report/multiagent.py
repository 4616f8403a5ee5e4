"""Views of one multi-agent or team episode: its rounds, the AgentsNet network, the GovSim resource curve, and
a team's conversation with who spoke to whom. Shared by the report and the dashboard.

AgentsNet's graph is not stored with an episode; environments are deterministic, so it is rebuilt from the
run's environment spec and the episode's seed (``build_from_spec`` then ``reset(seed=...)``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from markupsafe import Markup

from palaestra.core.types import EnvSpec, Episode, Turn
from palaestra.report import svg

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass(frozen=True)
class Round:
    """The turns of one round (an environment step) of a multi-agent episode."""

    number: int
    phase: str | None
    turns: list[tuple[int, Turn]]  # (turn index, turn)


def rounds(episode: Episode) -> list[Round]:
    """A multi-agent episode's turns grouped by round, in order; empty for a single-agent episode."""
    if episode.players is None:
        return []
    grouped: dict[int, list[tuple[int, Turn]]] = {}
    for index, turn in enumerate(episode.turns):
        grouped.setdefault(turn.round if turn.round is not None else -1, []).append((index, turn))
    out = []
    for number, items in grouped.items():
        phases = {str(t.step.info.get("phase")) for _, t in items if t.step.info.get("phase")}
        out.append(Round(number, ", ".join(sorted(phases)) or None, items))
    return out


@dataclass(frozen=True)
class TeamTurn:
    """How a team decided one action: its members' messages, first answers, final answer and, for DyLAN,
    the members' importance scores."""

    index: int
    topology: str
    spec: str
    members: list[str]
    messages: list[dict[str, Any]]
    first_answers: dict[str, Any]
    final: Any
    importance: dict[str, float] = field(default_factory=dict)
    speakers: dict[tuple[str, str], int] = field(default_factory=dict)

    def speaker_graph(self) -> Markup:
        nodes = list(self.members) + sorted({n for pair in self.speakers for n in pair} - set(self.members))
        return svg.directed_graph(nodes, self.speakers, title=f"who spoke to whom (turn {self.index})")


def _who_to_whom(members: list[str], messages: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Message counts per (sender, receiver); a message ``to: all`` reaches every other member."""
    counts: Counter[tuple[str, str]] = Counter()
    for message in messages:
        sender, receiver = str(message.get("from", "?")), str(message.get("to", "?"))
        if receiver == "all":
            for member in members:
                if member != sender:
                    counts[(sender, member)] += 1
        else:
            counts[(sender, receiver)] += 1
    return dict(counts)


def team_turns(episode: Episode) -> list[TeamTurn]:
    """The turns whose action a team made (``Action.meta`` with a ``topology``)."""
    out = []
    for index, turn in enumerate(episode.turns):
        meta = turn.action.meta
        if "topology" not in meta:
            continue
        members = [str(m) for m in meta.get("members", [])]
        messages = [m for m in meta.get("messages", []) if isinstance(m, dict)]
        importance = meta.get("importance") if isinstance(meta.get("importance"), dict) else {}
        out.append(
            TeamTurn(
                index=index,
                topology=str(meta["topology"]),
                spec=str(meta.get("spec", "")),
                members=members,
                messages=messages,
                first_answers=dict(meta.get("first_answers") or {}),
                final=meta.get("final"),
                importance={str(k): float(v) for k, v in (importance or {}).items() if isinstance(v, int | float)},
                speakers=_who_to_whom(members, messages),
            )
        )
    return out


def resource_curve(episode: Episode) -> Markup | None:
    """GovSim: the shared resource at the start of each month and after its harvest; None for other episodes."""
    before = episode.metrics.get("resource_by_month")
    if not isinstance(before, list) or not before:
        return None
    months = [float(m + 1) for m in range(len(before))]
    series = [("before harvest", months, [float(v) for v in before])]
    after = episode.metrics.get("resource_after_harvest")
    if isinstance(after, list) and after:
        series.append(("after harvest", months[: len(after)], [float(v) for v in after]))
    return svg.line_chart(series, title=f"resource by month (seed {episode.seed})", x_label="month", y_label="stock")


_ANSWER = re.compile(r"^\s*[A-Za-z ]+:\s*(.+?)\s*$")


def agentsnet_network(env_spec: EnvSpec, episode: Episode) -> Markup | None:
    """AgentsNet: the episode's graph, rebuilt from the spec and seed, each node filled by its agent's final
    answer; None for other environments."""
    if not env_spec.entry_point.endswith(":AgentsNetEnv") or episode.players is None:
        return None
    import networkx as nx

    from palaestra.envs import build_from_spec

    env: Any = build_from_spec(env_spec)
    _run(env.reset(seed=episode.seed))
    net = env.network
    last: dict[str, str] = {}
    for turn in episode.turns:
        if turn.agent is not None:
            last[turn.agent] = turn.action.text
    graph = nx.Graph()
    graph.add_nodes_from(net.names)
    edges = [(net.names[i], net.names[j]) for i, adj in enumerate(net.adjacency) for j in adj if i < j]
    graph.add_edges_from(edges)
    raw = nx.spring_layout(graph, seed=1)
    xs = [float(p[0]) for p in raw.values()]
    ys = [float(p[1]) for p in raw.values()]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    positions = {n: ((float(p[0]) - min(xs)) / span_x, (float(p[1]) - min(ys)) / span_y) for n, p in raw.items()}
    nodes, groups = [], {}
    for player in episode.players:
        name = env.name_of(player)
        answer = last.get(player, "")
        match = _ANSWER.match(answer)
        groups[name] = (match.group(1) if match else answer)[:40] or "no answer"
        nodes.append((name, name, f"{name} ({player}): final answer {answer!r}"))
    title = f"{net.family} network, {net.n} agents, {net.n_edges} edges, diameter {net.diameter} (seed {episode.seed})"
    return svg.graph(nodes, edges, positions, title=title, groups=groups)
