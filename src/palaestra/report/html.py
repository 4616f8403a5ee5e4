"""``palaestra report``: one self-contained HTML file about some runs (inline CSS and SVG, no script, nothing
fetched from anywhere) with the leaderboard, normalised scores per task, plots, sampled trajectories and
every run's lineage.

Its numbers are those of ``palaestra show``: the same summaries, computed by ``palaestra.eval``. Every cell
of the leaderboard also carries its exact value in ``data-*`` attributes, for scripts and tests.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from palaestra.core.types import Episode
from palaestra.eval import RunSummary, TaskAverage, summarize, task_averages
from palaestra.report import multiagent, svg
from palaestra.store import RunRecord, Store

TEMPLATES = Path(__file__).parent / "templates"
STYLESHEET = Path(__file__).parent / "static" / "palaestra.css"
TEXT_LIMIT = 4000  # characters of one observation or output shown in a report before it is cut
TURN_LIMIT = 60  # turns of one sampled trajectory shown in a report


@dataclass(frozen=True)
class RunData:
    """A stored run with its episodes (turns loaded) and its ``palaestra show`` summary."""

    record: RunRecord
    summary: RunSummary
    episodes: list[Episode]

    @property
    def ok(self) -> list[Episode]:
        return [e for e in self.episodes if e.status == "ok"]

    @property
    def label(self) -> str:
        return run_label(self.summary.agent, self.summary.model)


def run_label(agent: str, model: str | None) -> str:
    return f"{agent} · {model}" if model else agent


def load_run(store: Store, run_id: str) -> RunData:
    """Load a run once and summarise it exactly as ``palaestra.eval.summarize_run`` (``palaestra show``) does."""
    record = store.get_run(run_id)
    episodes = store.episodes(record.id, with_turns=True)
    summary = summarize(
        run_id=record.id,
        env_id=record.env_id,
        agent=record.agent_spec,
        model=record.model_spec,
        status=record.status,
        planned=len(record.config.get("seeds", [])),
        episodes=episodes,
        normalization=record.env_spec.normalization,
    )
    return RunData(record, summary, episodes)


def leaderboard_order(runs: Sequence[RunData]) -> list[RunData]:
    """The order of ``palaestra eval``'s leaderboard: by environment, best mean return first."""
    return sorted(
        runs,
        key=lambda r: (r.summary.env_id, -(r.summary.mean_return if r.summary.mean_return is not None else -1e18)),
    )


# --------------------------------------------------------------------------- formatting (as the CLI prints)


def fmt(value: float | None, digits: int = 2) -> str:
    from palaestra.cli import fmt as cli_fmt

    return cli_fmt(value, digits)


def fmt_ci(value: float | None, ci: Sequence[float] | None, digits: int = 2) -> str:
    from palaestra.cli import fmt_ci as cli_fmt_ci

    return cli_fmt_ci(value, tuple(ci) if ci is not None else None, digits)  # type: ignore[arg-type]


def percent(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def when(timestamp: float | None) -> str:
    from palaestra.cli import when as cli_when

    return cli_when(timestamp)


def exact(value: Any) -> str:
    """A number as ``repr`` would give it (round-trips exactly); empty for None."""
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(float(value)) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def clip(text: str | None, limit: int = TEXT_LIMIT) -> str:
    """A text cut to ``limit`` characters, saying how long it was."""
    if text is None:
        return ""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [cut: {len(text):,} characters in all]"


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


def environment(*directories: Path) -> jinja2.Environment:
    """Jinja with autoescaping on for every template (trajectories hold arbitrary model output) and the
    report's filters; ``directories`` are searched before the report's own templates."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*map(str, directories), str(TEMPLATES)]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fmt=fmt, fmt_ci=fmt_ci, percent=percent, when=when, exact=exact, clip=clip, to_json=to_json)
    return env


# --------------------------------------------------------------------------- plots


def overview_plots(runs: Sequence[RunData]) -> list[Markup]:
    """Charts comparing every run: success, normalised score and invalid-action rate."""
    multi_env = len({r.summary.env_id for r in runs}) > 1

    def label(r: RunData) -> str:
        return f"{r.summary.env_id} · {r.label}" if multi_env else r.label

    charts = [
        svg.bar_chart(
            [svg.Bar(label(r), r.summary.success_rate, r.summary.success_ci) for r in runs],
            title="success rate per agent and model (95% CI)",
            x_label="success rate",
            domain=(0.0, 1.0),
        ),
        svg.bar_chart(
            [svg.Bar(label(r), r.summary.invalid_action_rate) for r in runs],
            title="invalid-action rate (share of turns)",
            x_label="invalid actions / turns",
            domain=(0.0, 1.0),
        ),
    ]
    scored = [r for r in runs if r.summary.score is not None]
    if scored:
        charts.insert(
            1,
            svg.bar_chart(
                [svg.Bar(label(r), r.summary.score, r.summary.score_ci) for r in scored],
                title="normalised score (0 random, 50 scripted mixture, 100 optimal; 95% CI)",
                x_label="score",
            ),
        )
    return charts


def environment_plots(runs: Sequence[RunData]) -> list[Markup]:
    """Charts of the runs of one environment: mean return, return distribution, tokens and seconds per
    episode."""
    env_id = runs[0].summary.env_id
    return [
        svg.bar_chart(
            [svg.Bar(r.label, r.summary.mean_return, r.summary.return_ci) for r in runs],
            title=f"{env_id}: mean return per agent and model (95% CI)",
            x_label="return",
        ),
        svg.strip_plot(
            [(r.label, [e.total_return for e in r.ok]) for r in runs],
            title=f"{env_id}: return distribution (one dot per episode, bar at the mean)",
            x_label="return",
        ),
        svg.strip_plot(
            [(r.label, [float(e.usage.total_tokens) for e in r.ok]) for r in runs],
            title=f"{env_id}: tokens per episode",
            x_label="tokens (prompt + completion)",
        ),
        svg.strip_plot(
            [(r.label, [e.wall_s for e in r.ok]) for r in runs],
            title=f"{env_id}: seconds per episode",
            x_label="seconds",
        ),
    ]


# --------------------------------------------------------------------------- trajectories


@dataclass(frozen=True)
class Trajectory:
    """One sampled episode with the multi-agent and team views that apply to it."""

    run: RunData
    episode: Episode
    rounds: list[multiagent.Round]
    teams: list[multiagent.TeamTurn]
    visuals: list[Markup]
    notes: list[str]


def episode_visuals(record: RunRecord, episode: Episode) -> tuple[list[Markup], list[str]]:
    """The pictures of a multi-agent episode (AgentsNet network, GovSim resource curve) and notes on any
    that could not be drawn."""
    visuals: list[Markup] = []
    notes: list[str] = []
    curve = multiagent.resource_curve(episode)
    if curve is not None:
        visuals.append(curve)
    try:
        network = multiagent.agentsnet_network(record.env_spec, episode)
    except Exception as exc:  # the spec may name code that changed since the run: say so, draw the rest
        notes.append(f"the network could not be rebuilt from the run's environment spec: {type(exc).__name__}: {exc}")
    else:
        if network is not None:
            visuals.append(network)
    return visuals, notes


def trajectory(run: RunData, episode: Episode) -> Trajectory:
    visuals, notes = episode_visuals(run.record, episode)
    return Trajectory(run, episode, multiagent.rounds(episode), multiagent.team_turns(episode), visuals, notes)


def sample_trajectories(runs: Sequence[RunData], count: int, seed: int) -> list[Trajectory]:
    """About ``count`` episodes spread over the runs (at least one per run when ``count`` > 0), drawn with
    ``random.Random(seed)`` so the same report shows the same episodes; each run's failures first, since
    that is where one looks for what went wrong."""
    if count <= 0 or not runs:
        return []
    rng = random.Random(seed)
    per_run = max(1, math.ceil(count / len(runs)))
    out = []
    for run in runs:
        episodes = sorted(run.episodes, key=lambda e: e.seed)
        failed = [e for e in episodes if e.status != "ok" or not e.success]
        passed = [e for e in episodes if e.status == "ok" and e.success]
        picked = rng.sample(failed, min(len(failed), max(1, per_run // 2) if passed else per_run))
        picked += rng.sample(passed, min(len(passed), per_run - len(picked)))
        out += [trajectory(run, e) for e in sorted(picked, key=lambda e: e.seed)]
    return out


# --------------------------------------------------------------------------- the report


def build_report(
    store: Store, run_ids: Sequence[str], *, trajectories: int = 6, seed: int = 0, title: str | None = None
) -> str:
    """The report's HTML for ``run_ids`` (ids or unique prefixes), as one string."""
    runs = [load_run(store, r) for r in dict.fromkeys(run_ids)]
    ordered = leaderboard_order(runs)
    averages: list[TaskAverage] = task_averages(store, [r.record.id for r in runs])
    by_env: dict[str, list[RunData]] = {}
    for r in ordered:
        by_env.setdefault(r.summary.env_id, []).append(r)
    env_ids = sorted(env for env, rs in by_env.items() if rs[0].record.env_spec.normalization is not None)
    rows: dict[tuple[str, str | None], dict[str, list[RunData]]] = {}
    for r in ordered:
        rows.setdefault((r.summary.agent, r.summary.model), {}).setdefault(r.summary.env_id, []).append(r)
    template = environment().get_template("report.html.jinja")
    from palaestra import __version__

    return template.render(
        title=title or f"Palaestra report: {len(runs)} run{'s' if len(runs) != 1 else ''}",
        generated=when(time.time()),
        version=__version__,
        database=store.url,
        runs=runs,
        ordered=ordered,
        averages=averages,
        env_ids=env_ids,
        score_rows=rows,
        has_scores=any(r.summary.score is not None for r in runs),
        overview=overview_plots(ordered),
        env_plots={env: environment_plots(rs) for env, rs in by_env.items()},
        trajectories=sample_trajectories(runs, trajectories, seed),
        turn_limit=TURN_LIMIT,
        stylesheet=Markup(STYLESHEET.read_text(encoding="utf-8")),
    )


def write_report(store: Store, run_ids: Sequence[str], path: Path, **options: Any) -> int:
    """Write the report to ``path``; return its size in bytes."""
    text = build_report(store, run_ids, **options)
    data = text.encode("utf-8")
    path.write_bytes(data)
    return len(data)
