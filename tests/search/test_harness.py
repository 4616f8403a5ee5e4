"""The search harness with real episodes of maze-fo-v0, a real SQLite store and a scripted model.

The scripted "maze player" reads the observation and walks towards the goal, around the walls it is told
about, without stepping straight back (it solves about 8 of the first 12 validation mazes). Its reply
depends on the request, so prompt options change how it plays: with the ``compact`` template (no
instructions) it always answers ``move up``; with ``max_tokens=8`` its reply is cut to ``move ri``
(invalid); unless ``top_p=0.9``, it wastes a move on a third of the observations. So ``prompt:top_p=0.9`` is
better than the default, and a search can find it.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from palaestra.cli import main
from palaestra.core.errors import SpecError
from palaestra.core.types import ChatRequest
from palaestra.models.scripted import ScriptedModel
from palaestra.search.harness import (
    Budget,
    BudgetError,
    Evaluation,
    SearchConfig,
    SearchHarness,
    SearchResult,
    load_archive,
    pareto_front,
    run_search,
    search_runs,
)
from palaestra.search.methods import Proposal, SearchMethod, make_method
from palaestra.search.space import PromptCandidate, PromptSpace
from palaestra.store import Store

DOC = Path(__file__).resolve().parents[2] / "docs" / "search.md"
_POSITION = re.compile(r"goal is at position (\d+), (\d+)\. Your current position is at position (\d+), (\d+)\.")
_WALLS = {"above": "up", "below": "down", "left": "left", "right": "right"}
_BACK = {"up": "down", "down": "up", "left": "right", "right": "left"}


def maze_player(request: ChatRequest) -> str:
    if "Answer with the action only" not in request.messages[0].content:
        return "move up"
    observation = [m for m in request.messages if m.role == "user"][-1].content
    match = _POSITION.search(observation)
    if match is None:
        return "move up"
    goal_row, goal_col, row, col = map(int, match.groups())
    wanted = [("down", goal_row > row), ("up", goal_row < row), ("right", goal_col > col), ("left", goal_col < col)]
    toward = [move for move, want in wanted if want]
    order = toward + [m for m in ("up", "down", "left", "right") if m not in toward]
    key = observation.encode()
    if request.sampling.top_p != 0.9 and zlib.crc32(key) % 3 == 0:
        return "move " + order[-1]  # the wasted move
    blocked = {move for word, move in _WALLS.items() if word in observation[match.end() :]}
    # No stepping straight back (the last assistant message is the previous move), and a pseudo-random
    # free move on a quarter of the requests, to get out of dead ends.
    replies = [m.content for m in request.messages if m.role == "assistant"]
    back = _BACK.get(replies[-1].rpartition(" ")[2]) if replies else None
    free = [m for m in order if m not in blocked]
    choices = [m for m in free if m != back] or free
    if zlib.crc32(key + str(len(request.messages)).encode()) % 4 == 0:
        return "move " + choices[zlib.crc32(key) % len(choices)]
    return "move " + choices[0]


def player() -> ScriptedModel:
    return ScriptedModel(maze_player, spec="scripted:maze-player")


def config(**changes: Any) -> SearchConfig:
    values: dict[str, Any] = {
        "envs": ("maze-fo-v0",),
        "method": "mcts",
        "budget": Budget(calls=100_000),
        "validation_episodes": 6,
        "batch_episodes": 2,
        "test_episodes": 4,
        "max_turns": 20,
        "concurrency": 4,
        "max_candidates": 6,
    }
    return SearchConfig(**{**values, **changes})


def candidate(**options: Any) -> PromptCandidate:
    space = PromptSpace()
    return space.from_dict({**space.default().to_dict(), **options})


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(str(tmp_path / "search.db")) as s:
        yield s


def episodes_played(store: Store, run_ids: list[str]) -> int:
    return sum(len(store.episodes(r)) for r in run_ids)


# --------------------------------------------------------------------------- the test split


class Spy:
    """Wraps a method and notes the harness's count of test-split accesses each time it is asked."""

    def __init__(self, inner: SearchMethod, harness: SearchHarness) -> None:
        self.inner, self.harness = inner, harness
        self.name = inner.name
        self.seen: list[int] = []

    def propose(self, archive: Any, rng: Any) -> list[Proposal]:
        self.seen.append(self.harness.test_accesses)
        return self.inner.propose(archive, rng)


def test_the_test_split_is_untouched_during_search_and_scored_once(store: Store) -> None:
    space = PromptSpace()
    harness = SearchHarness(config(), store, space, player())
    spy = Spy(make_method("mcts", space), harness)
    result = asyncio.run(harness.run(spy))
    assert len(spy.seen) >= 4 and set(spy.seen) == {0}, "the test split was reached while searching"
    assert harness.test_passes == 1
    assert harness.test_accesses == 1  # one environment, one pass
    with pytest.raises(Exception, match="scored once"):
        asyncio.run(harness.score_test(result.archive[0], result.chosen))
    assert harness.test_accesses == 1
    # The store agrees: validation seeds in every search stage, test seeds only in the two test runs.
    runs = search_runs(store, harness.search_id)
    test_runs = [r for r in runs if r.config["stage"] == "test"]
    assert {r.config["candidate_hash"] for r in test_runs} == {result.archive[0].hash, result.chosen.hash}
    assert len(test_runs) == (1 if result.chosen is result.archive[0] else 2)
    for run in runs:
        low, high = run.env_spec.splits["test" if run.config["stage"] == "test" else "validation"]
        assert all(low <= seed < high for seed in run.config["seeds"])
    assert "test split was scored once" in json.dumps(result.to_dict())


# --------------------------------------------------------------------------- staged evaluation


def test_staged_evaluation_skips_full_validation_for_hopeless_candidates(store: Store) -> None:
    harness = SearchHarness(config(max_turns=None), store, PromptSpace(), player())
    default = asyncio.run(harness.evaluate(candidate()))
    hopeless = asyncio.run(harness.evaluate(candidate(max_tokens=8), [default.hash]))  # replies cut to 'move ri'
    promising = asyncio.run(harness.evaluate(candidate(top_p=0.9), [default.hash]))
    assert default.stages == ["batch", "full"]  # the first is always validated in full
    assert hopeless.stages == ["batch"]
    assert hopeless.ci[1] < default.score
    assert promising.stages == ["batch", "full"]
    assert promising.ci[1] >= default.score
    assert episodes_played(store, default.run_ids) == 6
    assert episodes_played(store, hopeless.run_ids) == 2  # the small batch only
    assert episodes_played(store, promising.run_ids) == 6
    assert [e.cost.episodes for e in (default, hopeless, promising)] == [6, 2, 6]
    assert pareto_front(harness.archive)[0].full


def test_without_staging_every_candidate_plays_all_validation_seeds(store: Store) -> None:
    harness = SearchHarness(config(staged=False), store, PromptSpace(), player())
    asyncio.run(harness.evaluate(candidate()))
    hopeless = asyncio.run(harness.evaluate(candidate(max_tokens=8)))
    assert hopeless.stages == ["full"] and episodes_played(store, hopeless.run_ids) == 6


# --------------------------------------------------------------------------- the shared cache


def test_the_shared_cache_makes_a_repeated_request_free(store: Store) -> None:
    model = player()
    harness = SearchHarness(config(staged=False), store, PromptSpace(), model)  # both play the same 6 seeds
    default = asyncio.run(harness.evaluate(candidate()))
    calls = model.calls
    assert calls == default.cost.model_calls > 0
    # maze replies get 16 tokens by default: max_tokens=16 asks exactly the same requests
    same = asyncio.run(harness.evaluate(candidate(max_tokens=16)))
    assert model.calls == calls
    assert same.cost.model_calls == 0 and same.cost.model_tokens == 0
    assert same.cost.calls == default.cost.calls and same.cost.tokens == default.cost.tokens
    assert same.score == default.score
    # Without the cache every request asked reaches the model (repeats within an episode too: a stuck
    # player asks the same thing again).
    assert default.cost.calls > calls
    uncached = player()
    plain = SearchHarness(config(staged=False, cache=False), store, PromptSpace(), uncached)
    asyncio.run(plain.evaluate(candidate()))
    asyncio.run(plain.evaluate(candidate(max_tokens=16)))
    assert uncached.calls == 2 * default.cost.calls


# --------------------------------------------------------------------------- budgets


def test_budget_parsing() -> None:
    assert Budget.parse("calls=2000,tokens=1e6,time=30m") == Budget(calls=2000, tokens=1_000_000, time_s=1800.0)
    assert Budget.parse("time=2h") == Budget(time_s=7200.0)
    assert Budget.parse("time=90") == Budget(time_s=90.0)
    for bad in ("calls=1.5", "money=3", "calls", "time=soon", ""):
        with pytest.raises(Exception, match="budget"):
            Budget.parse(bad)
    with pytest.raises(BudgetError, match="nothing to spend"):
        Budget.parse("calls=0")


@pytest.mark.parametrize(
    ("budget", "needed"),
    [(Budget(calls=30), "40 model calls|about 40"), (Budget(tokens=500), "tokens")],
)
def test_a_budget_too_small_is_refused_before_anything_runs(store: Store, budget: Budget, needed: str) -> None:
    model = player()
    space = PromptSpace()
    # One small batch of the default: 2 episodes of up to 20 turns, one call per turn: up to 40 calls.
    with pytest.raises(BudgetError, match="too small") as refused:
        asyncio.run(run_search(config(budget=budget), store, space, make_method("mcts", space), model=model))
    assert re.search(needed, str(refused.value))
    assert model.calls == 0
    assert store.list_runs(limit=None) == []


def test_a_search_stops_when_the_budget_is_spent(store: Store) -> None:
    model = player()
    space = PromptSpace()
    result = asyncio.run(
        run_search(
            config(budget=Budget(calls=150), max_candidates=None), store, space, make_method("mcts", space), model=model
        )
    )
    assert result.stopped.startswith("budget spent")
    search_calls = result.spent.model_calls
    assert search_calls >= 150
    assert search_calls < 150 + 4 * 20  # overrun by at most one stage (the rest of validation: 4 x 20 turns)
    assert len(result.archive) >= 2
    assert result.test_passes == 1  # what was found is still scored
    assert model.calls == search_calls + sum(r.cost.model_calls for r in _test_rows(result))


def _test_rows(result: SearchResult) -> list[Any]:
    return [r for r in (result.test.default, result.test.chosen) if r is not None]


def test_a_time_budget_keeps_what_was_evaluated(store: Store) -> None:
    space = PromptSpace()
    result = asyncio.run(
        run_search(config(budget=Budget(time_s=1e-6)), store, space, make_method("evolve", space), model=player())
    )
    assert result.stopped.startswith("budget spent")
    assert [e.stages for e in result.archive] == [["batch"]]  # the full stage was not started
    assert result.chosen is result.archive[0]
    assert result.test.chosen is None and "default is kept" in result.test.verdict


# --------------------------------------------------------------------------- reproducibility and lineage


def fingerprint(result: SearchResult) -> list[tuple[Any, ...]]:
    return [(e.hash, e.parents, tuple(e.stages), e.score, e.cost.model_calls) for e in result.archive]


@pytest.mark.parametrize("method", ["mcts", "evolve"])
def test_searches_are_reproducible_from_a_seed(tmp_path: Path, method: str) -> None:
    results = []
    for name in ("one", "two"):
        with Store(str(tmp_path / f"{name}.db")) as store:
            space = PromptSpace()
            results.append(
                asyncio.run(run_search(config(seed=5), store, space, make_method(method, space), model=player()))
            )
    first, second = results
    assert len(first.archive) == 6
    assert fingerprint(first) == fingerprint(second)
    assert first.test.to_dict() | {"default": None, "chosen": None} == second.test.to_dict() | {
        "default": None,
        "chosen": None,
    }
    assert first.test.default.score == second.test.default.score


def test_a_search_finds_the_better_option_and_the_test_verdict_says_so(store: Store) -> None:
    space = PromptSpace()
    result = asyncio.run(
        run_search(
            config(validation_episodes=8, batch_episodes=3, test_episodes=8, max_candidates=8, max_turns=None),
            store,
            space,
            make_method("mcts", space),
            model=player(),
        )
    )
    assert result.chosen.candidate.to_dict()["top_p"] == 0.9
    assert result.chosen.score > result.archive[0].score
    assert result.test.chosen is not None and result.test.gate is not None
    assert result.test.chosen.score > result.test.default.score
    assert result.test.gate.pairs == 8
    assert result.test.gate.promoted == (result.test.gate.diff_ci is not None and result.test.gate.diff_ci[0] > 0)
    assert result.test.verdict.startswith(
        "the chosen candidate beats the default" if result.test.gate.promoted else "not"
    )


def test_archive_rows_carry_lineage(store: Store) -> None:
    space = PromptSpace()
    result = asyncio.run(run_search(config(), store, space, make_method("evolve", space), model=player()))
    archive = load_archive(store, result.search_id)
    assert [e["hash"] for e in archive] == [e.hash for e in result.archive]
    assert archive[0]["candidate"] == space.default().to_dict() and archive[0]["parents"] == []
    for index, entry in enumerate(archive[1:], start=1):
        assert entry["parents"] and set(entry["parents"]) <= {e["hash"] for e in archive[:index]}
        assert entry["method"] == "evolve"
        assert space.from_dict(entry["candidate"]).hash == entry["hash"]
        assert entry["agent"] == space.from_dict(entry["candidate"]).agent_spec()
        assert entry["stages"][0] == "batch"
    for run in search_runs(store, result.search_id):
        assert run.config["purpose"] == "search" and run.config["search_id"] == result.search_id
    summary = store.get_run(result.summary_run or "")
    assert summary.config["stage"] == "summary" and store.episodes(summary.id) == []
    recorded = summary.config["summary"]
    assert recorded["chosen"]["hash"] == result.chosen.hash
    assert recorded["test_passes"] == 1 and len(recorded["archive"]) == len(result.archive)
    assert recorded["front"] == [e.hash for e in result.front]


def test_pareto_front_by_hand() -> None:
    def made(name: str, score: float, tokens: int, full: bool = True) -> Evaluation:
        e = Evaluation(candidate(shots={"a": 0, "b": 1, "c": 2, "d": 4}[name]), (), 0)
        e.values = {"x": {0: score, 1: score}}
        e.stages = ["batch", "full"] if full else ["batch"]
        e.cost.episodes, e.cost.tokens = 2, 2 * tokens
        return e

    a, b, c, d = made("a", 50, 100), made("b", 60, 200), made("c", 55, 300), made("d", 90, 50, full=False)
    # c is beaten by b (better and cheaper); d was never validated in full
    assert pareto_front([a, b, c, d]) == [a, b]


# --------------------------------------------------------------------------- the command line


def test_cli_search_end_to_end(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    args = [
        "search",
        "maze-fo-v0",
        "--method",
        "evolve",
        "--space",
        "prompt",
        "--model",
        "scripted:cycle:move right|move down|move left|move up",
        "--budget",
        "calls=5000,time=10m",
        "--validation-episodes",
        "4",
        "--batch-episodes",
        "2",
        "--test-episodes",
        "3",
        "--max-candidates",
        "5",
        "--max-turns",
        "10",
        "--db",
        db,
    ]
    runner = CliRunner()
    done = runner.invoke(main, [*args, "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["candidates"] == 5 and result["test_passes"] == 1
    assert result["archive"][0]["agent"] == "prompt"
    assert "estimate" in done.stderr and "[1] p-" in done.stderr  # the estimate and a progress line per candidate
    assert len(re.findall(r"^\[\d+\] ", done.stderr, flags=re.M)) == 5
    text = runner.invoke(main, args)
    assert text.exit_code == 0, text.output
    for expected in ("Pareto front", "chosen on validation", "before / after on the test seeds", "verdict:"):
        assert expected in text.stdout
    with Store(str(db)) as store:
        searches = {r.config.get("search_id") for r in store.list_runs(limit=None)}
    assert searches == {result["search_id"], _other(searches, result["search_id"])}


def _other(ids: set[Any], known: str) -> Any:
    (other,) = ids - {known}
    return other


def test_cli_refuses_a_budget_too_small_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "refused.db"
    done = CliRunner().invoke(
        main,
        ["search", "maze-fo-v0", "--model", "scripted:echo", "--budget", "calls=10", "--db", str(db)],
    )
    assert done.exit_code == 2
    assert "too small" in done.stderr and "250" in done.stderr  # 5 episodes x 50 turns
    with Store(str(db)) as store:
        assert store.list_runs(limit=None) == []


def test_cli_help_explains_the_discipline() -> None:
    done = CliRunner().invoke(main, ["search", "--help"])
    assert done.exit_code == 0
    for phrase in ("VALIDATION", "TEST", "scored once", "--budget", "refused", "--space-arg"):
        assert phrase in done.output
    choices = done.output.split("--method [")[1].split("]")[0]
    assert choices.split("|") == ["mcts", "evolve", "reflect", "meta-agent", "team"]


def test_space_args_build_the_space_and_bad_ones_are_refused() -> None:
    pytest.importorskip("palaestra.search.design")
    from palaestra.search.commands import make_space, parse_space_args

    args = parse_space_args(["allow_team=false", "patterns=tree", "ks=3,5", "temperatures=0.7"])
    assert args == {"allow_team": False, "patterns": "tree", "ks": (3, 5), "temperatures": 0.7}
    space = make_space("design", args)
    assert space.patterns == ("direct", "tree") and space.allow_team is False
    assert {c.to_dict()["pattern"] for c in space.children(space.default())} <= {"direct", "tree"}
    with pytest.raises(SpecError, match="KEY=VALUE"):
        parse_space_args(["allow_team"])
    with pytest.raises(SpecError, match="bad --space-arg for the prompt space"):
        make_space("prompt", {"no_such_option": 1})
    done = CliRunner().invoke(main, ["search", "maze-fo-v0", "--space-arg", "nope"])
    assert done.exit_code == 2 and "KEY=VALUE" in done.output


def test_design_space_when_it_exists(tmp_path: Path) -> None:
    pytest.importorskip("palaestra.search.design", reason="the design space is built by another part of issue 7")
    from palaestra.search.commands import make_space

    space = make_space("design")
    default = space.default()
    assert space.from_dict(default.to_dict()).hash == default.hash
    with Store(str(tmp_path / "design.db")) as store:
        result = asyncio.run(
            run_search(
                config(space="design", max_candidates=3), store, space, make_method("evolve", space), model=player()
            )
        )
    assert len(result.archive) == 3 and result.test_passes == 1


# --------------------------------------------------------------------------- the documentation


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_doc_blocks_run(index: int, run_doc_block: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_doc_block(_blocks()[index], f"docs/search.md block {index}")


# --------------------------------------------------------------------------- turn limits and the time guard


def test_max_turns_caps_each_environments_own_limit(store: Store) -> None:
    harness = SearchHarness(config(envs=("maze-fo-v0", "wordle-v0"), max_turns=15), store, PromptSpace(), player())
    assert {env.spec.id: env.spec.max_turns for env in harness.envs} == {"maze-fo-v0": 15, "wordle-v0": 6}
    longer = SearchHarness(config(envs=("wordle-v0",), max_turns=100), store, PromptSpace(), player())
    assert longer.envs[0].spec.max_turns == 6  # a cap never lengthens an environment


class SlowPlayer(ScriptedModel):
    """The maze player, taking 0.1 s a call (concurrent calls wait together)."""

    async def generate(self, request: ChatRequest) -> Any:
        await asyncio.sleep(0.1)
        return await super().generate(request)


class Then:
    """Proposes the given candidates, one a round, then nothing."""

    name = "then"

    def __init__(self, *candidates: Any) -> None:
        self.queue = list(candidates)

    def propose(self, archive: Any, rng: Any) -> list[Proposal]:
        return [Proposal(self.queue.pop(0), (archive[0].hash,))] if self.queue else []


def test_a_stage_that_cannot_fit_in_the_time_left_is_not_started(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from palaestra.search.design import Design, DesignSpace

    monkeypatch.setenv("PALAESTRA_DESIGNS", str(tmp_path / "designs"))
    space = DesignSpace(allow_team=False, allow_code=False)
    # The default's 6 validation episodes of about 10 one-call turns take a few seconds at 0.1 s a call. The
    # tree design makes up to 16 x 8 = 128 calls a turn: its small batch (2 episodes) is estimated at over
    # 100 s, more than the 60 s budget has left, so it must not start. The cheap one after it is not reached.
    tree = Design(pattern="tree", k=16, depth=8, temperature=0.7)
    cheap = Design(temperature=0.3)
    model = SlowPlayer(maze_player, spec="scripted:maze-player")
    harness = SearchHarness(config(budget=Budget(time_s=60), max_candidates=None), store, space, model)
    result = asyncio.run(harness.run(Then(tree, cheap)))
    assert result.stopped.startswith(f"budget: the batch stage of {tree.hash} needs about")
    assert "raise time= in --budget" in result.stopped
    assert [e.hash for e in result.archive] == [space.default().hash]  # the tree was neither played nor archived
    assert result.wall_s < 60
    assert not [r for r in search_runs(store, harness.search_id) if r.config["candidate_hash"] == tree.hash]
    assert result.test_passes == 1
