"""The ``palaestra`` command line: list environments, run evaluations, inspect and export runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from palaestra.core.errors import PalaestraError

F = TypeVar("F", bound=Callable[..., Any])

DB_HELP = (
    "Database: a SQLAlchemy URL (sqlite:///file.db, postgresql+psycopg://user@host/db) or a file path. "
    "Default: $PALAESTRA_DB, else ./palaestra.db."
)


def db_option(func: F) -> F:
    return click.option("--db", envvar="PALAESTRA_DB", default=None, metavar="URL", help=DB_HELP)(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")(func)


def open_store(db: str | None, *, readonly: bool = False) -> Any:
    from palaestra.store import Store

    return Store(db, readonly=readonly)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in rows) and rows for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        parts = [c.rjust(w) if numeric[i] and n else c.ljust(w) for i, (c, w) in pairs]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) or (
        isinstance(value, str) and value.replace(".", "", 1).lstrip("-").isdigit()
    )


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def fmt_ci(value: float | None, ci: tuple[float, float] | None, digits: int = 2) -> str:
    if value is None or ci is None:
        return "-"
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


class PalaestraGroup(click.Group):
    """Turns the package's own errors into a one-line message and exit status 2, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PalaestraError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=PalaestraGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="palaestra")
def main() -> None:
    """Palaestra: run language agents in multi-turn environments, measure them honestly, store everything.

    \b
    Quick start (embedded SmolLM2-135M, runs on a CPU):
      palaestra envs
      palaestra eval maze-fo-v0 wordle-v0 --agent prompt --agent optimal --agent random \\
          --model smollm2-135m --episodes 10
      palaestra runs
      palaestra show RUN
    """


@main.command()
@json_option
def envs(as_json: bool) -> None:
    """List the registered environments with their descriptions."""
    from palaestra.envs import registered

    specs = registered()
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in specs.values()], indent=2))
        return
    rows = [
        (
            s.id,
            "multi" if s.multi_agent else "single",
            s.max_turns,
            s.invalid_action.mode,
            " ".join(f"{k}={a}..{b - 1}" for k, (a, b) in s.splits.items()),
            s.description,
        )
        for s in specs.values()
    ]
    click.echo(table(rows, ["id", "players", "max turns", "invalid action", "seeds", "description"]))


def _summaries(store: Any, run_ids: Sequence[str]) -> list[Any]:
    from palaestra.eval import summarize_run

    return [summarize_run(store, r) for r in run_ids]


def _averages(store: Any, run_ids: Sequence[str]) -> list[Any]:
    from palaestra.eval import task_averages

    return task_averages(store, run_ids)


def averages_table(averages: Sequence[Any]) -> str:
    """Per agent: the 0-100 normalised score averaged over the tasks it played."""
    rows = [
        (
            a.agent,
            a.model or "-",
            a.suite or f"{len(a.tasks)} tasks",
            fmt_ci(a.score, a.ci, 1),
            "  ".join(f"{t} {v:.0f}" for t, v in a.task_scores.items()),
        )
        for a in averages
    ]
    return table(rows, ["agent", "model", "over", "mean score [95% CI]", "per task"])


def leaderboard(summaries: Sequence[Any]) -> str:
    rows = [
        (
            s.env_id,
            s.agent,
            s.model or "-",
            f"{s.episodes}" + (f" (+{s.errors} err)" if s.errors else ""),
            fmt_ci(s.success_rate, s.success_ci),
            fmt_ci(s.mean_return, s.return_ci, 1),
            fmt_ci(s.score, s.score_ci, 1),
            "-" if s.invalid_action_rate is None else f"{100 * s.invalid_action_rate:.0f}%",
            fmt(s.turns, 1),
            fmt(s.tokens, 0),
            fmt(s.seconds, 1),
            s.run_id,
        )
        for s in sorted(summaries, key=lambda s: (s.env_id, -(s.mean_return if s.mean_return is not None else -1e18)))
    ]
    headers = [
        "env",
        "agent",
        "model",
        "episodes",
        "success [95% CI]",
        "return [95% CI]",
        "score [95% CI]",
        "invalid",
        "turns",
        "tokens",
        "s/ep",
        "run",
    ]
    return table(rows, headers)


def multi_agent_lines(summary: Any) -> list[str]:
    """`show` lines for a multi-agent run: the environment's metrics, returns by agent, success by size."""
    lines = []
    if summary.metrics:
        items = [f"{k} {fmt(m)} [{fmt(lo)}, {fmt(hi)}]" for k, (m, lo, hi) in summary.metrics.items()]
        lines.append("  env metrics     " + "; ".join(items))
    if summary.return_by_agent:
        lines.append("  return by agent " + "; ".join(f"{a} {fmt(v)}" for a, v in summary.return_by_agent.items()))
    if summary.success_by_size:
        parts = [f"{n} players {100 * rate:.0f}% (n={k})" for n, (rate, k) in summary.success_by_size.items()]
        lines.append("  success by size " + "; ".join(parts))
    return lines


def size_table(summaries: Sequence[Any]) -> str | None:
    """Success by number of players, when runs of one environment and agent differ only in it (AgentsNet's
    graph sizes: one run per size, e.g. `--env-arg n_agents=50`); None when there is nothing to compare."""
    groups: dict[tuple[str, str, str | None], list[Any]] = {}
    for s in summaries:
        if s.n_players is not None and s.success_rate is not None:
            groups.setdefault((s.env_id, s.agent, s.model), []).append(s)
    rows = [
        (env, agent, s.n_players, s.episodes, fmt_ci(s.success_rate, s.success_ci), s.run_id)
        for (env, agent, _), runs in groups.items()
        if len({r.n_players for r in runs}) > 1
        for s in sorted(runs, key=lambda r: r.n_players)
    ]
    if not rows:
        return None
    return "success by number of agents:\n" + table(
        rows, ["env", "agent", "agents", "episodes", "success [95% CI]", "run"]
    )


def team_lines(summary: Any, summaries: Sequence[Any]) -> list[str]:
    """`show` lines for a team run: its costs, and its errors against its members' first answers and, when a
    run of one member alone (the member spec, e.g. 'prompt') on the same environment and seeds is shown
    too, against that single agent."""
    team = summary.team
    if not team:
        return []
    lines = [
        f"  team            {fmt(team['rounds_per_episode'], 1)} rounds, {fmt(team['messages_per_episode'], 1)} "
        f"messages, {fmt(team['tokens_per_episode'], 0)} tokens per episode"
    ]
    amplification = "-" if team["error_amplification"] is None else fmt(team["error_amplification"]) + "x"
    lines.append(
        f"  team errors     {fmt(team['error_rate'])} of episodes; members' first answers wrong "
        f"{fmt(team['member_error_rate'])}; amplification {amplification}; "
        f"{team['coordination_errors']} failures lost a right first answer"
    )
    member = summary.agent.partition("/")[2] or "prompt"
    single = [
        s
        for s in summaries
        if s.agent == member and s.env_id == summary.env_id and s.model == summary.model and s.success_rate is not None
    ]
    if single:
        base = 1.0 - single[0].success_rate
        ratio = fmt(team["error_rate"] / base) + "x" if base else "- (the single agent made no errors)"
        lines.append(
            f"  vs single agent error rate {fmt(base)} ({member}, run {single[0].run_id}): amplification {ratio}"
        )
    return lines


def parse_env_args(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``[ENV:]KEY=VALUE`` strings to ``{env id or "*": {key: value}}``; values are JSON when they parse
    (numbers, true/false, null, lists), else plain strings."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, key_value = "*", item
        head, sep, tail = item.partition(":")
        if sep and "=" not in head:
            target, key_value = head, tail
        key, sep, raw = key_value.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(
                f"{item!r}: use KEY=VALUE (every environment) or ENV:KEY=VALUE, "
                "e.g. --env-arg twenty-questions-v0:oracle=smollm2-135m",
                param_hint="--env-arg",
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(target, {})[key] = value
    return out


def agent_specs(agents: Sequence[str], mix: Sequence[str], team: str | None) -> tuple[str, ...]:
    """The runs' agent specs from --agent (one run each), --agents (one mixed run) and --team (wraps the
    model agents: 'dylan:4' with 'prompt' makes 'dylan:4/prompt')."""
    from palaestra.agents import needs_model

    specs = list(agents) or ([] if mix else ["prompt"])
    if team:
        if "/" in team:
            raise click.UsageError(f"--team {team!r}: give the topology only; members come from --agent")
        specs = [f"{team}/{a}" if needs_model(a) else a for a in specs]
        mix = [f"{team}/{m}" if needs_model(m.split("*")[0]) else m for m in mix]
    if mix:
        specs.append(" + ".join(mix))
    return tuple(specs)


def suite_envs(env_ids: Sequence[str], suites: Sequence[str]) -> tuple[str, ...]:
    """The environments named directly plus those of each suite, in order, without repeats."""
    from palaestra.envs.suites import suite

    ids = list(env_ids)
    for name in suites:
        ids += suite(name)
    return tuple(dict.fromkeys(ids))


def suite_option(func: F) -> F:
    from palaestra.envs.suites import SUITES

    return click.option(
        "--suite",
        "suites",
        multiple=True,
        type=click.Choice(sorted(SUITES)),
        help="Add every environment of a named suite (lmrl: LMRL-Gym's eight tasks, ten ids).",
    )(func)


def env_arg_option(func: F) -> F:
    return click.option(
        "--env-arg",
        "env_args",
        multiple=True,
        metavar="[ENV:]KEY=VALUE",
        help="Environment constructor argument, repeatable, for every environment or one id, e.g. "
        "twenty-questions-v0:oracle=smollm2-135m (a model oracle) or chess-v0:elo=1500.",
    )(func)


@main.command(name="eval")
@click.argument("env_ids", nargs=-1, metavar="ENV...")
@suite_option
@env_arg_option
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="SPEC",
    help="Agent spec, repeatable: 'prompt' (a model, options as prompt:temperature=0.7,history=4) "
    "or a scripted policy of the environment ('optimal', 'random', 'noisy'). Each is its own run and, in a "
    "multi-agent environment, plays every seat. Default: prompt.",
)
@click.option(
    "--agents",
    "mix",
    multiple=True,
    metavar="SPEC[*N]",
    help="Multi-agent environments: one run with different agents in the seats, filled in order, repeatable: "
    "--agents greedy --agents 'sustainable*4' (a greedy outsider among four sustainable players).",
)
@click.option(
    "--team",
    default=None,
    metavar="TOPOLOGY[:N]",
    help="Wrap each model agent in a team: single, independent:3, centralized:3, decentralized:3, dylan:4 "
    "(options as dylan:4,rounds=3). The team plays as one agent (in every seat of a multi-agent game).",
)
@click.option(
    "--model",
    default="smollm2-135m",
    show_default=True,
    metavar="SPEC",
    help="Model spec for model agents: smollm2-135m, local:<dir>, openai:<model>@<base url>, scripted:<name>.",
)
@click.option("--episodes", "-n", default=10, show_default=True, help="Episodes per environment and agent.")
@click.option("--seed", default=0, show_default=True, help="Index of the first seed within the split.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option(
    "--concurrency",
    "-c",
    default=32,
    show_default=True,
    help="Episodes played at once (the local model batches their requests).",
)
@click.option(
    "--max-turns",
    type=int,
    default=None,
    help="Override the environments' turn limit (normalised scores assume the default limit).",
)
@click.option("--max-tokens", type=int, default=None, help="Cap on model tokens per episode (prompt + completion).")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    help="Seconds per episode before it is stored as an error.",
)
@click.option(
    "--resume",
    "resume_ids",
    multiple=True,
    metavar="RUN",
    help="Play the missing and failed episodes of earlier runs instead of starting new ones (repeatable).",
)
@click.option(
    "--executor",
    "executor_kind",
    type=click.Choice(["asyncio", "ray"]),
    default="asyncio",
    show_default=True,
    help="Where episodes play: 'asyncio' in this process, or 'ray' on a Ray cluster (pip install "
    "'palaestra[ray]'; episodes on worker actors, the model in replica actors; see docs/ray.md).",
)
@click.option(
    "--address",
    default=None,
    metavar="HOST:PORT",
    help="With --executor ray: the cluster's head, as `ray start --head` prints it. Default: start (or join) "
    "a Ray instance on this machine.",
)
@click.option(
    "--replicas",
    default=1,
    show_default=True,
    help="With --executor ray: copies of the model, each a Ray actor batching its own requests (one GPU each "
    "when the cluster has GPUs).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@db_option
@json_option
def eval_command(
    env_ids: tuple[str, ...],
    suites: tuple[str, ...],
    env_args: tuple[str, ...],
    agents: tuple[str, ...],
    mix: tuple[str, ...],
    team: str | None,
    model: str,
    episodes: int,
    seed: int,
    split: str,
    concurrency: int,
    max_turns: int | None,
    max_tokens: int | None,
    timeout_s: float | None,
    resume_ids: tuple[str, ...],
    executor_kind: str,
    address: str | None,
    replicas: int,
    quiet: bool,
    db: str | None,
    as_json: bool,
) -> None:
    """Play agents on environments and print a leaderboard with 95% confidence intervals.

    Every episode is stored as soon as it ends; Ctrl-C keeps the finished ones and `--resume RUN` plays the
    rest. Episodes that fail for an infrastructure reason (model error, timeout) are stored as errors, left
    out of the scores and re-played by `--resume`.
    """
    from palaestra.runner import EvalConfig, evaluate, resume

    env_ids = suite_envs(env_ids, suites)
    env_kwargs = parse_env_args(env_args)
    if not env_ids and not resume_ids:
        raise click.UsageError("name at least one environment (see `palaestra envs`), a --suite, or pass --resume RUN")
    if env_ids and resume_ids:
        raise click.UsageError("give either environments or --resume, not both")
    if executor_kind != "ray" and (address is not None or replicas != 1):
        raise click.UsageError("--address and --replicas place episodes on a Ray cluster: add --executor ray")
    store = open_store(db)
    progress = not quiet and not as_json
    try:
        if resume_ids:
            coro = resume(
                resume_ids,
                store,
                concurrency=concurrency,
                progress=progress,
                executor_kind=executor_kind,
                address=address,
                replicas=replicas,
            )
        else:
            config = EvalConfig(
                envs=env_ids,
                agents=agent_specs(agents, mix, team),
                model=model,
                episodes=episodes,
                split=split,
                seed=seed,
                concurrency=concurrency,
                max_turns=max_turns,
                max_tokens=max_tokens,
                timeout_s=timeout_s,
                env_kwargs=env_kwargs,
                executor=executor_kind,
                address=address,
                replicas=replicas,
            )
            coro = evaluate(config, store, progress=progress)
        started = time.time()
        # Ray's driver prints cluster events (a worker died, ...) on stdout: keep stdout for the results.
        quiet_stdout = contextlib.redirect_stdout(sys.stderr) if executor_kind == "ray" else contextlib.nullcontext()
        try:
            with quiet_stdout:
                result = asyncio.run(coro)
        except KeyboardInterrupt:
            interrupted = store.list_runs(limit=None, status="interrupted")
            runs = list(resume_ids) or [r.id for r in interrupted if r.created_at >= started]
            click.echo(
                "\ninterrupted: finished episodes are stored. Complete the rest with:\n  palaestra eval --resume "
                + " --resume ".join(runs),
                err=True,
            )
            sys.exit(130)
        summaries = _summaries(store, result.run_ids)
        averages = _averages(store, result.run_ids)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "runs": [s.to_dict() for s in summaries],
                        "averages": [a.to_dict() for a in averages],
                        "ok": result.ok,
                        "errors": result.errors,
                    },
                    indent=2,
                )
            )
        else:
            click.echo(leaderboard(summaries))
            for summary in summaries:
                lines = multi_agent_lines(summary) + team_lines(summary, summaries)
                if lines:
                    click.echo(f"\n{summary.run_id}  {summary.env_id}  agent={summary.agent}\n" + "\n".join(lines))
            if averages:
                click.echo("\n" + averages_table(averages))
            if result.errors:
                click.echo(
                    f"\n{result.errors} episode(s) failed and are left out of the scores; re-play them with "
                    "`palaestra eval --resume " + " --resume ".join(result.run_ids) + "`",
                    err=True,
                )
    finally:
        store.close()


@main.command()
@click.option("--limit", default=50, show_default=True, help="Newest runs to list (0 for all).")
@click.option("--env", "env_id", default=None, help="Only runs of this environment id.")
@click.option("--status", default=None, help="Only runs with this status (complete, incomplete, interrupted, running).")
@db_option
@json_option
def runs(limit: int, env_id: str | None, status: str | None, db: str | None, as_json: bool) -> None:
    """List stored runs, newest first."""
    store = open_store(db, readonly=True)
    try:
        records = store.list_runs(limit=limit or None, env_id=env_id, status=status)
        if as_json:
            click.echo(json.dumps([r.to_dict() for r in records], indent=2, default=str))
            return
        rows = [
            (
                r.id,
                when(r.created_at),
                r.env_id,
                r.agent_spec,
                r.model_spec or "-",
                len(r.config.get("seeds", [])),
                r.status,
            )
            for r in records
        ]
        click.echo(
            table(rows, ["run", "created", "env", "agent", "model", "episodes", "status"]) if rows else "no runs yet"
        )
    finally:
        store.close()


def when(timestamp: float | None) -> str:
    """Local time of a unix timestamp, to the second."""
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


@main.command()
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@db_option
@json_option
def show(run_ids: tuple[str, ...], db: str | None, as_json: bool) -> None:
    """Summarise runs: success rate and mean return with bootstrap 95% CIs, normalised score, invalid-action
    rate, turns, tokens and time per episode, and lineage. When an agent's runs cover several tasks (e.g. a
    whole suite), also its 0-100 score averaged over them."""
    store = open_store(db, readonly=True)
    try:
        summaries = _summaries(store, run_ids)
        runs_ = [store.get_run(s.run_id) for s in summaries]
        averages = _averages(store, [s.run_id for s in summaries])
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "runs": [
                            {**s.to_dict(), "lineage": r.to_dict()} for s, r in zip(summaries, runs_, strict=True)
                        ],
                        "averages": [a.to_dict() for a in averages],
                    },
                    indent=2,
                    default=str,
                )
            )
            return
        for s, r in zip(summaries, runs_, strict=True):
            seeds = r.config.get("seeds", [])
            seed_text = f"{seeds[0]}..{seeds[-1]}" if seeds else "-"
            click.echo(f"run {s.run_id}  {s.env_id}  agent={s.agent}  model={s.model or '-'}  status={s.status}")
            click.echo(f"  episodes        {s.episodes} ok, {s.errors} errors, {s.planned} planned")
            click.echo(f"  success rate    {fmt_ci(s.success_rate, s.success_ci)}")
            click.echo(f"  mean return     {fmt_ci(s.mean_return, s.return_ci)}")
            click.echo(
                f"  normalised      {fmt_ci(s.score, s.score_ci, 1)}  (0 random, 50 scripted mixture, 100 optimal)"
            )
            inv = "-" if s.invalid_action_rate is None else f"{100 * s.invalid_action_rate:.1f}%"
            click.echo(f"  invalid actions {inv} of turns")
            click.echo(f"  per episode     {fmt(s.turns, 1)} turns, {fmt(s.tokens, 0)} tokens, {fmt(s.seconds, 2)} s")
            for line in multi_agent_lines(s) + team_lines(s, summaries):
                click.echo(line)
            click.echo(
                f"  lineage         {r.env_id} v{r.env_version} split={r.config.get('split')} seeds {seed_text}; "
                f"weights {r.weights_hash or '-'}; palaestra {r.package_version}"
                + (f" @ {r.git_commit[:10]}" if r.git_commit else "")
            )
        if averages:
            click.echo(
                "\nnormalised score averaged over tasks (each task weighs the same):\n" + averages_table(averages)
            )
        sizes = size_table(summaries)
        if sizes:
            click.echo("\n" + sizes)
    finally:
        store.close()


@main.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="File to write (default: standard output).",
)
@db_option
def export(run_id: str, output: str | None, db: str | None) -> None:
    """Export a run's episodes, with every turn, tokens and lineage, as JSON Lines."""
    store = open_store(db, readonly=True)
    try:
        if output is None:
            store.export_jsonl(run_id, sys.stdout)
            return
        path = Path(output)
        with path.open("w", encoding="utf-8") as fp:
            count = store.export_jsonl(run_id, fp)
        click.echo(f"wrote {count} episodes to {path}", err=True)
    finally:
        store.close()


@main.group()
def data() -> None:
    """Trajectory data for training: generate it with scripted policies, export it, import ADP files."""


@data.command(name="generate")
@click.argument("env_ids", nargs=-1, metavar="ENV...")
@suite_option
@env_arg_option
@click.option(
    "--policy",
    "policies",
    multiple=True,
    metavar="NAME",
    help="Scripted policy of the environment, repeatable: optimal, random, noisy (LMRL-Gym's dataset "
    "mixture)... Default: noisy.",
)
@click.option("--episodes", "-n", default=100, show_default=True, help="Episodes per environment and policy.")
@click.option("--seed", default=0, show_default=True, help="Index of the first seed within the split.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="train", show_default=True)
@click.option("--concurrency", "-c", default=32, show_default=True, help="Episodes played at once.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@db_option
@json_option
def data_generate(
    env_ids: tuple[str, ...],
    suites: tuple[str, ...],
    env_args: tuple[str, ...],
    policies: tuple[str, ...],
    episodes: int,
    seed: int,
    split: str,
    concurrency: int,
    quiet: bool,
    db: str | None,
    as_json: bool,
) -> None:
    """Play scripted policies and store their trajectories (train seeds by default), one run per
    environment and policy, ready for behaviour cloning and offline RL (`palaestra export RUN`)."""
    from palaestra.agents import needs_model
    from palaestra.runner import EvalConfig, evaluate

    env_ids = suite_envs(env_ids, suites)
    if not env_ids:
        raise click.UsageError("name at least one environment (see `palaestra envs`) or a --suite")
    policies = policies or ("noisy",)
    model_agents = [p for p in policies if needs_model(p)]
    if model_agents:
        raise click.BadParameter(
            f"{', '.join(model_agents)} is a model agent; data generate plays scripted policies "
            "(record a model agent's episodes with `palaestra eval --split train`)",
            param_hint="--policy",
        )
    config = EvalConfig(
        envs=env_ids,
        agents=policies,
        model=None,
        episodes=episodes,
        split=split,
        seed=seed,
        concurrency=concurrency,
        env_kwargs=parse_env_args(env_args),
        purpose="data",
    )
    store = open_store(db)
    try:
        result = asyncio.run(evaluate(config, store, progress=not quiet and not as_json))
        summaries = _summaries(store, result.run_ids)
        rows = [
            {
                "run_id": s.run_id,
                "env_id": s.env_id,
                "policy": s.agent,
                "episodes": s.episodes,
                "errors": s.errors,
                "turns": round(s.turns * s.episodes) if s.turns is not None else 0,
                "mean_return": s.mean_return,
                "success_rate": s.success_rate,
            }
            for s in summaries
        ]
        if as_json:
            click.echo(json.dumps({"runs": rows, "ok": result.ok, "errors": result.errors}, indent=2))
            return
        click.echo(
            table(
                [
                    (
                        r["env_id"],
                        r["policy"],
                        r["episodes"],
                        r["turns"],
                        fmt(r["mean_return"]),
                        fmt(r["success_rate"]),
                        r["run_id"],
                    )
                    for r in rows
                ],
                ["env", "policy", "episodes", "turns", "mean return", "success", "run"],
            )
        )
        click.echo(f"\nstored in {store.url}; export a run with `palaestra export RUN`", err=True)
    finally:
        store.close()


@data.command(name="export")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option(
    "--format",
    "fmt_",
    type=click.Choice(["adp", "hf", "jsonl"]),
    default="adp",
    show_default=True,
    help="adp: Agent Data Protocol JSON lines; jsonl: the palaestra export (`palaestra export`) of every run; "
    "hf: training examples (token ids and labels) as a Hugging Face datasets directory.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(writable=True),
    default=None,
    help="File to write (a new directory for hf). Default for adp and jsonl: standard output.",
)
@click.option(
    "--model",
    "model_spec",
    default=None,
    metavar="SPEC",
    help="hf: whose tokenizer builds the examples (smollm2-135m, local:DIR). Default: smollm2-135m.",
)
@click.option(
    "--prompt",
    "prompt_options",
    default=None,
    metavar="OPTIONS",
    help="hf: prompt-agent options for turns without token ids, e.g. 'shots=0,history=2'. "
    "Default: the run's own prompt options, else the default prompt agent's.",
)
@click.option("--player", "players", multiple=True, metavar="ID", help="hf: only this player's turns (repeatable).")
@db_option
def data_export(
    run_ids: tuple[str, ...],
    fmt_: str,
    output: str | None,
    model_spec: str | None,
    prompt_options: str | None,
    players: tuple[str, ...],
    db: str | None,
) -> None:
    """Export runs for training: as ADP trajectories, palaestra JSON lines, or tokenized training examples."""
    store = open_store(db, readonly=True)
    try:
        if fmt_ == "hf":
            from palaestra.agents.prompt import PromptConfig
            from palaestra.improve.examples import examples_from_runs, load_tokenizer, save_hf_dataset

            if output is None:
                raise click.UsageError("--format hf writes a dataset directory: give it with -o DIR")
            if Path(output).exists():
                raise click.UsageError(f"{output} already exists; give a new directory for the dataset")
            config = PromptConfig.parse(prompt_options.removeprefix("prompt:")) if prompt_options else None
            examples = examples_from_runs(
                store, run_ids, tokenizer=load_tokenizer(model_spec), prompt_config=config, agents=players or None
            )
            import datasets

            datasets.disable_progress_bars()  # one summary line below is enough
            save_hf_dataset(examples, output)
            exact = sum(1 for e in examples if e.source["tokens"] == "exact")
            tokens = sum(len(e.completion_ids) for e in examples)
            click.echo(
                f"wrote {len(examples)} examples ({exact} with exact tokens, {len(examples) - exact} re-templated; "
                f"{tokens} trained tokens) to {output}",
                err=True,
            )
            return
        from palaestra.improve.adp import export_adp

        def write(fp: Any) -> int:
            if fmt_ == "adp":
                return export_adp(store, run_ids, fp)
            return sum(store.export_jsonl(run_id, fp) for run_id in run_ids)

        if output is None:
            write(sys.stdout)
            return
        with Path(output).open("w", encoding="utf-8") as fp:
            count = write(fp)
        click.echo(f"wrote {count} episodes of {len(run_ids)} run(s) to {output}", err=True)
    finally:
        store.close()


@data.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--env",
    "env_id",
    default=None,
    metavar="ID",
    help="Environment of plain ADP trajectories (files not written by palaestra), e.g. maze-fo-v0.",
)
@db_option
@json_option
def data_import(file: str, env_id: str | None, db: str | None, as_json: bool) -> None:
    """Import an ADP file as new runs: palaestra exports come back with identical episodes and lineage, plain ADP
    trajectories as text-only episodes of --env. Prints the new run ids."""
    from palaestra.improve.adp import import_adp

    store = open_store(db)
    try:
        run_ids = import_adp(store, file, env_id=env_id)
        rows = [
            {"run_id": r.id, "env_id": r.env_id, "agent": r.agent_spec, "episodes": len(store.episodes(r.id))}
            for r in map(store.get_run, run_ids)
        ]
        if as_json:
            click.echo(json.dumps({"runs": rows}))
            return
        for row in rows:
            click.echo(row["run_id"])
            click.echo(f"  {row['episodes']} episodes of {row['env_id']} by {row['agent']}", err=True)
    finally:
        store.close()


# Report and dashboard (palaestra.dashboard.commands imports its heavy parts inside the commands).
from palaestra.dashboard.commands import dashboard, report  # noqa: E402

main.add_command(report)
main.add_command(dashboard)

# Training with gated promotion, and the model registry (training libraries are imported inside).
from palaestra.improve.commands import improve, models  # noqa: E402

main.add_command(improve)
main.add_command(models)

# Population simulations (numpy and the scenarios are imported inside the command).
from palaestra.sim.commands import simulate  # noqa: E402

main.add_command(simulate)

# Design search under a budget (the harness, runner and methods are imported inside the command).
from palaestra.search.commands import search  # noqa: E402

main.add_command(search)

if __name__ == "__main__":
    main()
