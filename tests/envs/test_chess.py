"""Tests of chess-v0 and endgames-v0 (palaestra.envs.chess) with a real Stockfish process.

Stockfish must be installed (``bash scripts/stockfish.sh``); without it these tests fail with the
environment's own error message, which says how to install it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import sys
from pathlib import Path
from types import ModuleType

import chess
import chess.engine
import pytest

from palaestra.core.errors import EnvError, MissingDependencyError, PalaestraError
from palaestra.core.types import Step
from palaestra.envs import chess as chess_env
from palaestra.envs import make, spec
from palaestra.envs.chess import (
    ENDGAME_MATERIAL,
    FILTER_DEPTH,
    ChessEnv,
    EndgamesEnv,
    filter_verdict,
    generate_endgame,
    parse_move,
    position_split,
    skill_level,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "normalization.py"
START = chess.STARTING_FEN


async def play(env: ChessEnv, actions: list[str], seed: int = 0, fen: str | None = None) -> list[Step]:
    steps = [await env.reset(seed=seed, options={"fen": fen} if fen else None)]
    for action in actions:
        steps.append(await env.step(action))
    return steps


async def play_policy(env: ChessEnv, policy: str, seed: int) -> tuple[float, list[Step]]:
    act = env.scripted_policies()[policy]
    rng = random.Random(seed)
    steps = [await env.reset(seed=seed)]
    while not steps[-1].done:
        steps.append(await env.step(act(env, rng)))
    return sum(s.reward for s in steps), steps


# --------------------------------------------------------------------------- parsing moves


@pytest.mark.parametrize(
    ("text", "uci"),
    [
        ("e4", "e2e4"),
        ("  Nf3.  ", "g1f3"),
        ("`e4`", "e2e4"),
        ("**Nc3**", "b1c3"),
        ("e2e4", "e2e4"),  # long algebraic / UCI: python-chess reads a fully specified move
        ("g1f3", "g1f3"),
        ("Nf3+", "g1f3"),  # a wrong check sign is tolerated by python-chess
    ],
)
def test_san_is_read_tolerantly(text: str, uci: str) -> None:
    move, problem = parse_move(chess.Board(), text)
    assert move == chess.Move.from_uci(uci) and problem == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not a move in SAN"),
        ("   ", "not a move in SAN"),
        ("xyz", "not a move in SAN"),
        ("e4 e5", "not a move in SAN"),  # two moves
        ("--", "not a move in SAN"),  # the null move
        ("nf3", "not a move in SAN"),  # piece letters are upper case
        ("\U0001f642 ñ", "not a move in SAN"),
        ("e" * 1000, "not a move in SAN"),
        ("e5", "not a legal move in this position"),  # looks like a move, is not legal here
        ("Ke2", "not a legal move in this position"),
        ("O-O", "not a legal move in this position"),
        ("Nf6", "not a legal move in this position"),  # Black's move
        ("e2e5", "not a legal move in this position"),
    ],
)
def test_bad_moves_are_named(text: str, problem: str) -> None:
    assert parse_move(chess.Board(), text) == (None, problem)


def test_ambiguous_move_is_invalid_and_says_so() -> None:
    board = chess.Board("4k3/8/8/8/8/5N2/8/1N2K3 w - - 0 1")  # knights on b1 and f3 both reach d2
    move, problem = parse_move(board, "Nd2")
    assert move is None and problem.startswith("ambiguous")
    assert parse_move(board, "Nbd2")[0] == chess.Move.from_uci("b1d2")


def test_castling_and_promotion() -> None:
    board = chess.Board("4k3/P7/8/8/8/8/8/4K2R w K - 0 1")
    assert parse_move(board, "O-O")[0] == chess.Move.from_uci("e1g1")
    assert parse_move(board, "0-0")[0] == chess.Move.from_uci("e1g1")
    assert parse_move(board, "a8=Q")[0] == chess.Move.from_uci("a7a8q")
    assert parse_move(board, "a7a8q")[0] == chess.Move.from_uci("a7a8q")


# --------------------------------------------------------------------------- the game


async def test_reset_shows_fen_and_board() -> None:
    env = make("chess-v0")
    step = await env.reset(seed=3)
    assert f"Position (FEN): {START}" in step.observation
    assert "8 r n b q k b n r" in step.observation and "  a b c d e f g h" in step.observation
    assert step.info == {"invalid_action": False, "fen": START}
    assert "Standard Algebraic Notation" in env.instructions and "-1" in env.instructions
    await env.close()


async def test_a_legal_move_gets_a_reply_from_stockfish() -> None:
    env = make("chess-v0")
    steps = await play(env, ["e4"], seed=1)
    step = steps[-1]
    board = chess.Board()
    board.push_san("e4")
    board.push_san(step.info["opponent_move"])
    assert step.info["fen"] == board.fen() and f"Position (FEN): {board.fen()}" in step.observation
    assert step.observation.startswith(f"You played e4; Black replied {step.info['opponent_move']}.")
    assert (step.reward, step.done, step.info["invalid_action"]) == (0.0, False, False)
    await env.close()


async def test_mate_in_one_wins() -> None:
    env = make("chess-v0")
    step = (await play(env, ["Ra8"], fen="6k1/5ppp/8/8/8/8/8/R5K1 w - - 0 1"))[-1]
    assert (step.reward, step.terminated, step.truncated) == (1.0, True, False)
    assert step.info["success"] is True and step.info["outcome"] == "checkmate"
    assert "Checkmate: you win!" in step.observation and step.info["opponent_move"] is None
    await env.close()


async def test_being_mated_loses() -> None:
    env = make("chess-v0")  # after 1. f3 e5, 2. g4?? allows Qh4#; even the weakest Stockfish finds it
    fen = "rnbqkbnr/pppp1ppp/8/4p3/8/5P2/PPPPP1PP/RNBQKBNR w KQkq - 0 2"
    step = (await play(env, ["g4"], fen=fen))[-1]
    assert step.info["opponent_move"] == "Qh4#"
    assert (step.reward, step.terminated, step.info["success"]) == (-1.0, True, False)
    assert "Checkmate: you lose." in step.observation
    await env.close()


async def test_stalemate_is_a_draw() -> None:
    env = make("chess-v0")
    step = (await play(env, ["Qb6"], fen="k7/2K5/8/1Q6/8/8/8/8 w - - 0 1"))[-1]
    assert (step.reward, step.terminated, step.info["outcome"], step.info["success"]) == (
        0.0,
        True,
        "stalemate",
        False,
    )
    await env.close()


async def test_max_turns_truncates_as_a_draw() -> None:
    env = make("chess-v0", max_turns=2)
    steps = await play(env, ["Nf3", "Ng1"], seed=0)
    assert not steps[1].done
    assert (steps[2].reward, steps[2].terminated, steps[2].truncated, steps[2].info["success"]) == (
        0.0,
        False,
        True,
        False,
    )
    with pytest.raises(EnvError, match="ended"):
        await env.step("e4")
    await env.close()


async def test_step_before_reset_and_bad_reset_options_raise() -> None:
    env = make("endgames-v0")
    with pytest.raises(EnvError, match="reset"):
        await env.step("e4")
    with pytest.raises(EnvError, match="not a FEN"):
        await env.reset(options={"fen": "not a fen"})
    with pytest.raises(EnvError, match="White to move"):
        await env.reset(options={"fen": "4k3/8/8/8/8/8/8/4K2R b K - 0 1"})
    with pytest.raises(EnvError, match="unknown endgame material"):
        await env.reset(seed=0, options={"material": "KNvK"})
    with pytest.raises(EnvError, match="unknown reset options"):
        await env.reset(seed=0, options={"colour": "black"})
    await env.close()


# --------------------------------------------------------------------------- invalid actions

BAD_ACTIONS = ["", "xyz", "e5", "Ke2", "--", "Nf6", "\U0001f642 ñ 日本語", "x" * 10_000, "e4 e5"]


@pytest.mark.parametrize("env_id", ["chess-v0", "endgames-v0"])
async def test_invalid_move_ends_the_game_with_minus_one(env_id: str) -> None:
    env = make(env_id)
    assert env.spec.invalid_action.mode == "terminate" and env.spec.invalid_action.penalty == -1.0
    for action in BAD_ACTIONS:
        first = await env.reset(seed=11_000)
        step = await env.step(action)
        assert step.info["invalid_action"] is True, action
        assert (step.reward, step.terminated, step.truncated, step.info["success"]) == (-1.0, True, False, False)
        assert "That ends the game: you lose." in step.observation
        assert step.info["fen"] == first.info["fen"]  # nothing was played
    await env.close()


async def test_retry_rule_penalises_and_lets_the_agent_move_again() -> None:
    env = make("chess-v0", illegal="retry", retry_penalty=-0.25)
    rule = env.spec.invalid_action
    assert (rule.mode, rule.penalty) == ("penalty", -0.25) and env.spec.kwargs["illegal"] == "retry"
    assert "move again" in env.instructions
    await env.reset(seed=0)
    for action in BAD_ACTIONS:
        step = await env.step(action)
        assert (step.reward, step.done, step.info["invalid_action"]) == (-0.25, False, True), action
        assert step.info["fen"] == START and step.info["opponent_move"] is None
        assert "The position is unchanged; move again." in step.observation
    step = await env.step("d4")
    assert step.info["invalid_action"] is False and step.info["opponent_move"]
    await env.close()


async def test_retry_turns_count_towards_max_turns() -> None:
    env = make("chess-v0", illegal="retry", max_turns=3)
    steps = await play(env, ["??", "??", "??"])
    assert [s.truncated for s in steps[1:]] == [False, False, True]
    assert steps[-1].info["success"] is False
    await env.close()


def test_retry_spec_survives_a_rebuild_from_its_json() -> None:
    from palaestra.core.types import EnvSpec
    from palaestra.envs.registry import make_from_spec

    env = make("endgames-v0", illegal="retry")
    again = make_from_spec(EnvSpec.from_json(env.spec.to_json()))
    assert again.spec == env.spec and again.spec.invalid_action.mode == "penalty"


# --------------------------------------------------------------------------- Stockfish: missing, shared, cleaned up


def test_missing_stockfish_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PALAESTRA_STOCKFISH", str(tmp_path / "no-stockfish-here"))
    for env_id in ("chess-v0", "endgames-v0"):
        with pytest.raises(MissingDependencyError) as caught:
            make(env_id)
        message = str(caught.value)
        assert "PALAESTRA_STOCKFISH" in message and "scripts/stockfish.sh" in message
        assert "apt-get install stockfish" in message
        assert isinstance(caught.value, PalaestraError)


def test_stockfish_is_found_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PALAESTRA_STOCKFISH", raising=False)
    assert os.access(chess_env.find_stockfish(), os.X_OK)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_processes_are_shared_by_copies_and_quit_by_the_last_close(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A private path gives this test its own pool, whatever other tests left open.
    link = tmp_path / "stockfish"
    link.symlink_to(chess_env.find_stockfish())
    monkeypatch.setenv("PALAESTRA_STOCKFISH", str(link))
    env = make("chess-v0")
    pool = chess_env.stockfish_pool(str(link))
    assert pool.pids() == []  # processes start on the first search, not in make()
    await play(env, ["e4"])
    pids = pool.pids()
    assert pids and all(_alive(p) for p in pids)
    clone = env.copy()
    await env.close()
    await env.close()  # twice is fine
    assert pool.pids() == pids and all(_alive(p) for p in pids)  # the copy still holds them
    step = await clone.step("d4")
    assert step.info["invalid_action"] is False
    await clone.close()
    assert pool.pids() == [] and pool.users == 0
    assert not any(_alive(p) for p in pids)
    with pytest.raises(EnvError, match="closed"):
        clone.best_move()


async def test_concurrent_episodes_are_reproducible() -> None:
    """Episodes played at once, sharing the processes, equal the same episodes played one by one."""

    async def episode(seed: int) -> list[Step]:
        env = make("chess-v0", max_turns=20)
        try:
            return (await play_policy(env, "noisy", seed))[1]
        finally:
            await env.close()

    seeds = [5, 6, 7]
    together = await asyncio.gather(*(episode(s) for s in seeds))
    alone = [await episode(s) for s in seeds]
    assert together == alone


async def test_copy_is_independent() -> None:
    env = make("chess-v0")
    await play(env, ["e4"], seed=2)
    before = env.board.fen()
    clone = env.copy()
    a = await clone.step("d4")
    assert env.board.fen() == before  # the clone's move did not touch the original
    b = await env.step("d4")
    assert a == b  # same position, same opponent random state: same reply
    c = await clone.step("Nf3")
    d = await env.step("Nc3")
    assert c.info["fen"] != d.info["fen"] and clone.board.fen() == c.info["fen"]
    await env.close()
    await clone.close()


# --------------------------------------------------------------------------- the opponent


def test_elo_below_stockfish_floor_is_its_weakest_level() -> None:
    assert skill_level(1200) == 0.0 and skill_level(1346) == 0.0
    assert 0 < skill_level(1400) < 1 < skill_level(2000) < skill_level(2850) <= 20


async def test_opponent_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    env = make("chess-v0")
    replies = []
    for seed in (0, 0, 1, 2, 3, 4, 5, 6):
        replies.append((await play(env, ["e4", "Nf3", "Bc4"], seed=seed))[-1].info["fen"])
    assert replies[0] == replies[1]
    assert len(set(replies[1:])) > 1
    await env.close()


# --------------------------------------------------------------------------- endgame positions


async def test_endgames_have_the_right_material_and_split() -> None:
    env = make("endgames-v0")
    assert isinstance(env, EndgamesEnv)
    seen: dict[str, set[str]] = {}
    materials = set()
    for split in ("train", "test"):
        for seed in env.spec.seeds(split, 8):
            step = await env.reset(seed=seed)
            board = chess.Board(step.info["fen"])
            material = step.info["material"]
            materials.add(material)
            assert board.is_valid() and board.turn == chess.WHITE and not board.is_game_over()
            assert board.occupied_co[chess.BLACK] == board.kings & board.occupied_co[chess.BLACK]  # lone king
            white = "".join(sorted(board.piece_at(sq).symbol() for sq in chess.SquareSet(board.occupied_co[True])))
            assert white == "".join(sorted("K" + ENDGAME_MATERIAL[material]))
            bishops = list(board.pieces(chess.BISHOP, chess.WHITE))
            if len(bishops) == 2:
                colours = {bool(chess.BB_LIGHT_SQUARES & chess.BB_SQUARES[sq]) for sq in bishops}
                assert colours == {True, False}
            assert position_split(board) == split
            seen.setdefault(split, set()).add(board.board_fen())
    assert len(materials) >= 3
    assert not seen["train"] & seen["test"]
    await env.close()


async def test_endgame_filter_is_what_stockfish_says() -> None:
    """Every generated position is won for White at depth 12 without a mate in sight; rejected ones are not."""
    env = make("endgames-v0")
    pool = env._pool
    for seed in (0, 1, 2, 11_000, 11_001):
        fen = (await env.reset(seed=seed)).info["fen"]
        infos = await pool.search(chess.Board(fen), chess.engine.Limit(depth=FILTER_DEPTH))
        score = infos[0]["score"].white()
        assert not score.is_mate() and score.score() >= chess_env.WIN_CP
        assert filter_verdict(infos)
    # A mate in one and a drawn king-and-pawn position are both rejected.
    mate_in_one = await pool.search(chess.Board("6k1/8/6K1/8/8/8/8/R7 w - - 0 1"), chess.engine.Limit(depth=12))
    drawn = await pool.search(chess.Board("4k3/8/8/8/8/8/P7/K7 w - - 0 1"), chess.engine.Limit(depth=12))
    assert not filter_verdict(mate_in_one) and not filter_verdict(drawn)
    await env.close()


async def test_endgame_generation_is_deterministic_by_seed() -> None:
    env = make("endgames-v0")
    first = await generate_endgame(env._pool, 123, "train")
    chess_env._ENDGAME_CACHE.clear()
    again = await generate_endgame(env._pool, 123, "train")
    other = await generate_endgame(env._pool, 124, "train")
    assert first == again and first != other
    fixed = await generate_endgame(env._pool, 123, "train", material="KBBvK")
    assert fixed.material == "KBBvK"
    await env.close()


def test_position_split_is_the_same_for_mirror_images() -> None:
    board = chess.Board("8/8/3k4/8/8/7R/8/3K4 w - - 0 1")
    for flip in (chess.flip_horizontal, chess.flip_vertical, chess.flip_diagonal):
        assert position_split(board.transform(flip)) == position_split(board)
    pawn = chess.Board("8/8/3k4/8/8/7P/8/3K4 w - - 0 1")
    assert position_split(pawn.transform(chess.flip_horizontal)) == position_split(pawn)


# --------------------------------------------------------------------------- scripted policies

# Test-split seeds with a KRvK, KPvK, KBBvK and KQvK position (in that order), all won by `optimal`.
OPTIMAL_WINS = [11_001, 11_002, 11_003, 11_004]


async def test_optimal_policy_wins_endgames_on_fixed_seeds() -> None:
    env = make("endgames-v0")
    for seed in OPTIMAL_WINS:
        total, steps = await play_policy(env, "optimal", seed)
        assert total == 1.0 and steps[-1].info["success"] is True, seed
        assert steps[-1].info["outcome"] == "checkmate"
        assert steps[0].info["material"] == ["KRvK", "KPvK", "KBBvK", "KQvK"][OPTIMAL_WINS.index(seed)]
    await env.close()


async def test_random_policy_plays_only_legal_moves() -> None:
    env = make("chess-v0")
    for seed in range(3):
        _, steps = await play_policy(env, "random", seed)
        assert not any(s.info["invalid_action"] for s in steps[1:])
        assert steps[-1].reward == -1.0  # the weakest Stockfish still beats a random mover
    await env.close()


def test_policies_refuse_other_environments() -> None:
    wordle = make("wordle-v0")
    with pytest.raises(EnvError, match="ChessEnv"):
        chess_env.random_policy(wordle, random.Random(0))


# --------------------------------------------------------------------------- normalisation


@pytest.fixture(scope="module")
def script() -> ModuleType:
    module_spec = importlib.util.spec_from_file_location("palaestra_normalization_script_chess", SCRIPT)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    return module


def test_normalization_constants_are_registered_and_ordered() -> None:
    for env_id in ("chess-v0", "endgames-v0"):
        norm = spec(env_id).normalization
        assert norm is not None and norm.min < norm.avg < norm.max
        assert norm.source.startswith(f"scripts/normalization.py {env_id} --episodes ")


# The registered constants take minutes to recompute (see docs/envs/chess.md), so this re-runs the same
# script on the first train seeds and checks each policy's mean return and mean game length (in agent moves)
# against the numbers it gave when the constants were computed; a change in the rules, the opponent or the
# policies changes them.
SMALL_CHECK = {
    "chess-v0": (3, {"random": (-1.0, 64 / 3), "noisy": (-1.0, 110 / 3), "optimal": (1.0, 20.0)}),
    "endgames-v0": (2, {"random": (0.0, 3.5), "noisy": (0.5, 17.0), "optimal": (1.0, 14.0)}),
}


@pytest.mark.parametrize("env_id", sorted(SMALL_CHECK))
async def test_normalization_script_reproduces_a_small_run(script: ModuleType, env_id: str) -> None:
    episodes, expected = SMALL_CHECK[env_id]
    for policy, (mean_return, mean_turns) in expected.items():
        stats = await script.policy_stats(env_id, policy, episodes)
        assert stats.mean_return == mean_return and stats.mean_turns == pytest.approx(mean_turns), policy
        assert stats.invalid_actions == 0
