"""The ``palaestra search`` command (registered in ``palaestra.cli``): design search under a budget."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from typing import Any

import click

from palaestra.core.errors import SpecError, UnknownSpecError
from palaestra.search.methods import METHODS

SPACES = ("prompt", "design")


def parse_space_args(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` options of a space's constructor: ``true``/``false`` are booleans, numbers are numbers,
    ``none`` is None, and a value with commas is a tuple of such values (``patterns=direct,tree``)."""

    def scalar(text: str) -> Any:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "none":
            return None
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text.strip()

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--space-arg wants KEY=VALUE (e.g. allow_team=false), not {item!r}")
        out[key.strip()] = tuple(scalar(v) for v in value.split(",")) if "," in value else scalar(value)
    return out


def make_space(name: str, options: dict[str, Any] | None = None) -> Any:
    """The search space called ``name``: ``prompt`` (the prompt agent's options) or ``design`` (typed agent
    designs, ``palaestra.search.design``, loaded only when asked for), built with ``options``."""
    options = options or {}
    if name == "prompt":
        from palaestra.search.space import PromptSpace

        space_cls: Any = PromptSpace
    elif name == "design":
        try:
            from palaestra.search.design import DesignSpace
        except ImportError as exc:
            raise SpecError(f"the design space is not available in this palaestra ({exc}); use --space prompt") from exc
        space_cls = DesignSpace
    else:
        raise UnknownSpecError("search space", name, SPACES)
    import inspect

    defaults = {k: v.default for k, v in inspect.signature(space_cls).parameters.items()}
    # a single value where the space takes several (patterns=tree) is a one-item tuple
    options = {
        k: (v,) if isinstance(defaults.get(k), tuple) and not isinstance(v, tuple) else v for k, v in options.items()
    }
    try:
        return space_cls(**options)
    except TypeError as exc:
        raise SpecError(f"bad --space-arg for the {name} space: {exc}") from exc


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _fmt_ci(value: float | None, ci: Any, digits: int = 1) -> str:
    if value is None or ci is None or ci[0] is None:
        return _fmt(value, digits)
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def render(result: dict[str, Any]) -> str:
    """The printed report of a search (from ``SearchResult.to_dict()``)."""
    from palaestra.cli import table

    archive = {e["hash"]: e for e in result["archive"]}
    lines = [
        f"search {result['search_id']}: {result['config']['method']} over the {result['space']} space on "
        f"{', '.join(result['config']['envs'])}; {result['candidates']} candidates, {result['fully_validated']} "
        f"validated in full; stopped: {result['stopped']}",
        f"spent {result['spent']['model_calls']} model calls and {result['spent']['model_tokens']} tokens "
        f"({result['spent']['calls']} calls asked, the cache answered the rest) in {result['wall_s']:.0f} s",
        "",
        "Pareto front on validation (score up, tokens per episode down):",
        table(
            [
                (
                    archive[h]["hash"],
                    archive[h]["agent"],
                    _fmt_ci(archive[h]["score"], archive[h]["ci"]),
                    _fmt(archive[h]["tokens_per_episode"], 0),
                    ",".join(archive[h]["parents"]) or "-",
                )
                for h in result["front"]
            ],
            ["candidate", "agent", "validation score [95% CI]", "tokens/ep", "parents"],
        ),
        "",
        f"chosen on validation: {result['chosen']['hash']}  {result['chosen']['agent']}",
        f"  {json.dumps(result['chosen']['candidate'], sort_keys=True)}",
        "",
        "before / after on the test seeds (scored once, after the search):",
    ]
    test = result["test"]
    rows = [test["default"]] + ([test["chosen"]] if test["chosen"] else [])
    lines.append(
        table(
            [
                (
                    name,
                    r["agent"],
                    _fmt_ci(r["score"], r["ci"]),
                    _fmt(r["success_rate"], 2),
                    _fmt(r["tokens_per_episode"], 0),
                    r["episodes"],
                )
                for name, r in zip(("default", "chosen"), rows, strict=False)
            ],
            ["", "agent", "test score [95% CI]", "success", "tokens/ep", "episodes"],
        )
    )
    lines += ["", f"verdict: {test['verdict']}"]
    lines.append(
        f"archive: {result['candidates']} candidates in the store (search id {result['search_id']}); "
        f"summary in run {result['summary_run']}"
    )
    return "\n".join(lines)


HELP = """Search for a better agent design on ENV..., choosing on validation seeds only.

\b
The discipline:
  - Seeds come from each environment's splits. Candidates are compared on VALIDATION seeds; the TEST split
    is scored once, after the search, for the default and the chosen candidate (the before/after table),
    with a paired bootstrap verdict at 95% confidence.
  - Staged evaluation: each candidate plays --batch-episodes validation seeds first, and the rest of the
    --validation-episodes only if its 95% upper confidence bound reaches the best validated score so far.
  - One model and one request cache serve every candidate: a request two candidates both make costs one call.
  - --budget limits model calls, tokens and wall time (calls=2000,tokens=1e6,time=30m). An estimate is
    printed before the search; a budget too small for one small batch of the default is refused before
    anything runs. The search stops when the budget is spent and keeps everything evaluated.
  - Every stage of every candidate is a run in the store (config purpose=search, with the candidate, its
    parents and the stage); the summary is the config of a last run of stage 'summary'.

\b
Methods: mcts (tree search guided by a value model's mean and uncertainty, after AgentSwift),
evolve (evolution with parents chosen by score and novelty), reflect (a model reads failed validation
turns and rewrites the instructions, parents from a Pareto front over tasks, after GEPA), meta-agent
(a model writes agents as code, run only in the sandbox, after ADAS), team (keep the members of a DyLAN
team with the highest Agent Importance Score). reflect, meta-agent and team search the design space;
--proposer-model gives reflect and meta-agent a separate (stronger) model, its calls counted in the
budget. See docs/search.md.

\b
Example (embedded SmolLM2-135M):
  palaestra search maze-fo-v0 wordle-v0 --method mcts --budget calls=20000,time=2h
"""


@click.command(help=HELP, short_help="Search agent designs under a budget; choose on validation, score test once.")
@click.argument("env_ids", nargs=-1, required=True, metavar="ENV...")
@click.option("--method", type=click.Choice(METHODS), default="mcts", show_default=True, help="Search method.")
@click.option(
    "--space",
    type=click.Choice(SPACES),
    default=None,
    help="prompt: the prompt agent's options (template, shots, history, temperature, top-p, reply tokens); "
    "design: typed agent designs (reasoning pattern, memory, instructions, ...). Default: prompt for mcts and "
    "evolve, design for reflect, meta-agent and team.",
)
@click.option("--model", default="smollm2-135m", show_default=True, metavar="SPEC", help="Model of every candidate.")
@click.option(
    "--proposer-model",
    default=None,
    metavar="SPEC",
    help="reflect and meta-agent: the model that writes instructions or agent code (e.g. openai:MODEL@URL); "
    "default: --model. Its calls and tokens count in the budget.",
)
@click.option(
    "--budget",
    default="calls=2000,time=30m",
    show_default=True,
    metavar="LIMITS",
    help="Model calls, tokens and wall time: calls=N,tokens=N,time=30m (any of them).",
)
@click.option(
    "--space-arg",
    "space_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the space's constructor (repeatable), e.g. allow_team=false or patterns=direct,tree "
    "(docs/design.md lists the design space's options).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the search method (same seed, same search).")
@click.option("--validation-episodes", default=20, show_default=True, help="Validation seeds per environment.")
@click.option("--batch-episodes", default=5, show_default=True, help="Validation seeds of the small batch.")
@click.option("--test-episodes", default=20, show_default=True, help="Test seeds per environment, scored once.")
@click.option("--max-candidates", type=int, default=None, help="Stop after this many candidates (default included).")
@click.option(
    "--max-turns",
    type=int,
    default=None,
    help="Cap each environment's turns at N (shortens a long maze; never lengthens Wordle's 6).",
)
@click.option("--concurrency", "-c", default=16, show_default=True, help="Episodes played at once.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
@click.option("--db", envvar="PALAESTRA_DB", default=None, metavar="URL", help="Database (default ./palaestra.db).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (archive included).")
def search(
    env_ids: tuple[str, ...],
    method: str,
    space: str | None,
    model: str,
    proposer_model: str | None,
    budget: str,
    space_args: tuple[str, ...],
    seed: int,
    validation_episodes: int,
    batch_episodes: int,
    test_episodes: int,
    max_candidates: int | None,
    max_turns: int | None,
    concurrency: int,
    quiet: bool,
    db: str | None,
    as_json: bool,
) -> None:
    from palaestra.search.harness import Budget, SearchConfig, run_search
    from palaestra.search.methods import PROPOSER_METHODS, make_method
    from palaestra.store import Store

    if space is None:
        space = "design" if method in ("reflect", "meta-agent", "team") else "prompt"
    if proposer_model is not None and method not in PROPOSER_METHODS:
        raise SpecError(f"--proposer-model is for {' and '.join(PROPOSER_METHODS)}; {method} asks no model to write")
    config = SearchConfig(
        envs=env_ids,
        method=method,
        space=space,
        model=model,
        budget=Budget.parse(budget),
        seed=seed,
        validation_episodes=validation_episodes,
        batch_episodes=batch_episodes,
        test_episodes=test_episodes,
        concurrency=concurrency,
        max_turns=max_turns,
        max_candidates=max_candidates,
    )
    try:
        search_space = make_space(space, parse_space_args(space_args))
    except SpecError as exc:
        raise click.UsageError(str(exc)) from exc
    make_method(method, search_space)  # a method that cannot search this space says so before anything runs
    log = None if quiet else (lambda line: click.echo(line, err=True))

    async def searched(store: Any) -> Any:
        proposer = None
        if proposer_model is not None:
            from palaestra.models import make_model

            proposer = make_model(proposer_model)
        try:
            method_ = make_method(method, search_space, proposer=proposer)
            return await run_search(config, store, search_space, method_, log=log)
        finally:
            if proposer is not None:
                await proposer.close()

    store = Store(db)
    try:
        result = asyncio.run(searched(store)).to_dict()
    except KeyboardInterrupt:
        click.echo("\ninterrupted: the candidates evaluated so far are stored as runs (purpose=search)", err=True)
        sys.exit(130)
    finally:
        store.close()
    click.echo(json.dumps(result, indent=2) if as_json else render(result))
