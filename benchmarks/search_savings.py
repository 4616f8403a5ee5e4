"""What the shared request cache and staged evaluation save in a design search.

Runs a search (``mcts`` over the prompt space by default) with both on, then evaluates the very same
candidates, in the same order on the same validation seeds, each in full and without the cache. Prints the
model calls, tokens and wall time of both and their ratios (measured in this one run).

The default model is a scripted maze player (a deterministic function of the request, so it runs in
seconds; prompt options change how it plays, see ``maze_player``); ``--model smollm2-135m`` uses the
embedded model (minutes on a CPU: lower --candidates and --max-turns).

    python benchmarks/search_savings.py
    python benchmarks/search_savings.py --model smollm2-135m --candidates 6 --max-turns 10
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import zlib
from pathlib import Path

from palaestra.core.types import ChatRequest
from palaestra.models import make_model
from palaestra.models.base import Model
from palaestra.models.scripted import ScriptedModel
from palaestra.search.harness import Budget, Evaluation, SearchConfig, SearchHarness
from palaestra.search.methods import make_method
from palaestra.search.space import PromptSpace
from palaestra.store import Store

_POSITION = re.compile(r"goal is at position (\d+), (\d+)\. Your current position is at position (\d+), (\d+)\.")
_WALLS = {"above": "up", "below": "down", "left": "left", "right": "right"}


def maze_player(request: ChatRequest) -> str:
    """Walk towards the goal around the walls it is told about; without the instructions (the ``compact``
    template) always ``move up``; unless ``top_p=0.9``, a wasted move on a third of the observations."""
    if "Answer with the action only" not in request.messages[0].content:
        return "move up"
    observation = [m for m in request.messages if m.role == "user"][-1].content
    match = _POSITION.search(observation)
    if match is None:
        return "move up"
    goal_row, goal_col, row, col = map(int, match.groups())
    wanted = [("down", goal_row > row), ("up", goal_row < row), ("right", goal_col > col), ("left", goal_col < col)]
    order = [m for m, want in wanted if want]
    order += [m for m in ("up", "down", "left", "right") if m not in order]
    if request.sampling.top_p != 0.9 and zlib.crc32(observation.encode()) % 3 == 0:
        return "move " + order[-1]
    blocked = {move for word, move in _WALLS.items() if word in observation[match.end() :]}
    return "move " + next((m for m in order if m not in blocked), order[0])


def build_model(spec: str) -> Model:
    if spec == "scripted:maze-player":
        return ScriptedModel(maze_player, spec=spec)
    return make_model(spec)


async def measure(args: argparse.Namespace) -> None:
    space = PromptSpace()
    config = SearchConfig(
        envs=tuple(args.envs),
        method=args.method,
        budget=Budget(calls=10**9),
        seed=args.seed,
        validation_episodes=args.validation_episodes,
        batch_episodes=args.batch_episodes,
        test_episodes=2,
        concurrency=args.concurrency,
        max_turns=args.max_turns,
        max_candidates=args.candidates,
    )
    model = build_model(args.model)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with Store(str(Path(tmp) / "search.db")) as store:
                harness = SearchHarness(config, store, space, model)
                result = await harness.run(make_method(args.method, space))
            searched = result.archive
            with Store(str(Path(tmp) / "full.db")) as store:
                full = SearchHarness(
                    SearchConfig(**{**config.__dict__, "staged": False, "cache": False}), store, space, model
                )
                baseline = [await full.evaluate(e.candidate, e.parents) for e in searched]
    finally:
        await model.close()

    def totals(evaluations: list[Evaluation]) -> tuple[int, int, float, int]:
        return (
            sum(e.cost.model_calls for e in evaluations),
            sum(e.cost.model_tokens for e in evaluations),
            sum(e.wall_s for e in evaluations),
            sum(e.cost.episodes for e in evaluations),
        )

    s_calls, s_tokens, s_wall, s_eps = totals(searched)
    f_calls, f_tokens, f_wall, f_eps = totals(baseline)
    full_count = sum(e.full for e in searched)
    print(
        f"search: {args.method} over the prompt space on {', '.join(args.envs)}, model {args.model}, "
        f"{len(searched)} candidates, {args.validation_episodes} validation seeds per environment "
        f"(small batch {args.batch_episodes}), max turns {args.max_turns or 'default'}"
    )
    print(f"  staged + shared cache: {full_count} of {len(searched)} candidates validated in full")
    print(f"{'':28}{'episodes':>10}{'model calls':>13}{'tokens':>12}{'wall s':>9}")
    print(f"{'staged + shared cache':28}{s_eps:>10}{s_calls:>13}{s_tokens:>12}{s_wall:>9.2f}")
    print(f"{'every candidate in full':28}{f_eps:>10}{f_calls:>13}{f_tokens:>12}{f_wall:>9.2f}")
    print(
        f"ratios (full / staged+cache): episodes {f_eps / max(s_eps, 1):.2f}x, model calls "
        f"{f_calls / max(s_calls, 1):.2f}x, tokens {f_tokens / max(s_tokens, 1):.2f}x, wall time "
        f"{f_wall / max(s_wall, 1e-9):.2f}x"
    )
    same = [a.hash for a in searched] == [b.hash for b in baseline]
    print(f"same candidates in the same order: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="scripted:maze-player", help="scripted:maze-player or a model spec")
    parser.add_argument("--envs", nargs="+", default=["maze-fo-v0"])
    parser.add_argument("--method", default="mcts", choices=["mcts", "evolve"])
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--validation-episodes", type=int, default=20)
    parser.add_argument("--batch-episodes", type=int, default=5)
    parser.add_argument("--max-turns", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
