"""Chess and theoretical endgames against Stockfish (LMRL-Gym's Chess and Endgames tasks).

``chess-v0``: the agent plays White from the standard starting position against Stockfish limited to a
configured Elo (LMRL-Gym's 1200 by default, see :func:`skill_level` for what that means for Stockfish 15.1).
``endgames-v0``: the agent plays White from a seeded theoretical endgame (king and queen, king and rook,
king and two bishops, or king and pawn against a lone king) that Stockfish judges won but not trivially so,
against a full-strength Stockfish defence.

The agent's action is one move in SAN; the observation is the position as FEN (plus a board diagram).
Reward +1 for checkmating, -1 for being checkmated, 0 for a draw (stalemate, insufficient material,
threefold repetition, the fifty-move rule) or when ``max_turns`` cuts the game off. An illegal or
unparseable move ends the game with -1, as in LMRL-Gym; ``illegal="retry"`` makes it a penalty instead.

The rules come from python-chess. Stockfish runs as a pool of UCI processes shared by every environment of
the process (:class:`StockfishPool`); every search starts from a cleared hash with one thread and a fixed
depth or node limit, so a search's result depends only on the position, and episodes are reproducible
from their seed whatever else the pool is doing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import random
import shutil
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

import chess  # python-chess (an absolute import: this module is palaestra.envs.chess)
import chess.engine

from palaestra.core.errors import EnvError, MissingDependencyError, SpecError
from palaestra.core.types import EnvSpec, InvalidActionRule, Step
from palaestra.envs.base import Env, Policy

T = TypeVar("T")

# --------------------------------------------------------------------------- Stockfish

STOCKFISH_ENV_VAR = "PALAESTRA_STOCKFISH"
DEBIAN_STOCKFISH = "/usr/games/stockfish"  # Debian installs it outside root's usual PATH
INSTALL_HINT = (
    "install Stockfish with `bash scripts/stockfish.sh` (or `sudo apt-get install stockfish`), "
    f"or set {STOCKFISH_ENV_VAR} to the path of a Stockfish binary"
)

# Engine settings shared by every search. One thread and a hash cleared before each search (ucinewgame)
# make a search's result a function of the position and the limit only. The hash size changes results
# too, so it is fixed here.
ENGINE_OPTIONS: dict[str, str | int | bool] = {"Threads": 1, "Hash": 16}
POOL_SIZE = max(1, min(4, os.cpu_count() or 1))  # searches are CPU-bound: more processes than cores is waste
SEARCH_TIMEOUT_S = 120.0  # a search of the sizes used here takes well under a second


def find_stockfish() -> str:
    """The Stockfish binary: ``$PALAESTRA_STOCKFISH``, else ``stockfish`` on PATH, else Debian's path.

    Raises:
        MissingDependencyError: no binary found; the message says how to install one.
    """
    configured = os.environ.get(STOCKFISH_ENV_VAR)
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise MissingDependencyError(
            f"Stockfish: {STOCKFISH_ENV_VAR}={configured} is not an executable file, so the chess environments",
            f"point {STOCKFISH_ENV_VAR} at a Stockfish binary, or unset it and {INSTALL_HINT}",
        )
    found = shutil.which("stockfish")
    if found:
        return found
    if os.path.isfile(DEBIAN_STOCKFISH) and os.access(DEBIAN_STOCKFISH, os.X_OK):
        return DEBIAN_STOCKFISH
    raise MissingDependencyError("The chess environments (the Stockfish engine)", INSTALL_HINT)


class StockfishPool:
    """Up to ``size`` Stockfish processes for one binary, shared by every environment that uses it.

    The processes are driven with python-chess's asyncio UCI protocol from one event loop running in a
    daemon thread, so callers can search from any thread and from any event loop, synchronously
    (:meth:`search_sync`, for the scripted policies) or not (:meth:`search`). Processes start on the first
    search and are quit when the last user calls :meth:`release`.
    """

    def __init__(self, path: str, size: int = POOL_SIZE) -> None:
        self.path = path
        self.size = size
        self._mutex = threading.Lock()
        self._users = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="palaestra-stockfish", daemon=True)
        self._thread.start()
        # The following are touched only from the pool's own event loop.
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[chess.engine.UciProtocol] = []
        self._engines: dict[chess.engine.UciProtocol, asyncio.SubprocessTransport] = {}

    # ------------------------------------------------------------------ users

    def acquire(self) -> None:
        with self._mutex:
            self._users += 1

    def release(self) -> None:
        """Drop one user; the last one out quits every process (waiting for them to exit)."""
        with self._mutex:
            self._users -= 1
            if self._users > 0:
                return
            self._users = 0
            future = asyncio.run_coroutine_threadsafe(self._quit_all(), self._loop)
            if threading.current_thread() is not self._thread:  # never block the loop on itself
                future.result()

    @property
    def users(self) -> int:
        return self._users

    def pids(self) -> list[int]:
        """Process ids of the running Stockfish processes (for tests and diagnostics)."""
        return self._call(self._pids())

    # ------------------------------------------------------------------ searching

    async def search(self, board: chess.Board, limit: chess.engine.Limit, multipv: int = 1) -> list[Any]:
        """Stockfish's analysis of ``board`` (one dict per principal variation, best first)."""
        future = asyncio.run_coroutine_threadsafe(self._search(board.copy(), limit, multipv), self._loop)
        return await asyncio.wrap_future(future)

    def search_sync(self, board: chess.Board, limit: chess.engine.Limit, multipv: int = 1) -> list[Any]:
        """:meth:`search` for synchronous callers (never call it from the pool's own thread)."""
        return self._call(self._search(board.copy(), limit, multipv))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _search(self, board: chess.Board, limit: chess.engine.Limit, multipv: int) -> list[Any]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            engine = self._idle.pop() if self._idle else await self._start()
            try:
                # A new ``game`` object makes python-chess send ucinewgame, which clears the hash.
                infos = await asyncio.wait_for(
                    engine.analyse(board, limit, multipv=multipv, game=object()), SEARCH_TIMEOUT_S
                )
            except BaseException:
                await self._quit(engine)  # a failed or interrupted process is not reused
                raise
            self._idle.append(engine)
        return list(infos)

    async def _start(self) -> chess.engine.UciProtocol:
        transport, engine = await chess.engine.popen_uci(self.path)
        self._engines[engine] = transport
        await engine.configure(ENGINE_OPTIONS)
        return engine

    async def _quit(self, engine: chess.engine.UciProtocol) -> None:
        transport = self._engines.pop(engine, None)
        if engine in self._idle:
            self._idle.remove(engine)
        try:
            await asyncio.wait_for(engine.quit(), 10)
        except Exception:
            if transport is not None:
                transport.kill()
                await asyncio.wait_for(engine.returncode, 10)
        finally:
            if transport is not None:
                transport.close()  # an exited process's transport still warns "unclosed" unless closed

    async def _quit_all(self) -> None:
        for engine in list(self._engines):
            await self._quit(engine)

    async def _pids(self) -> list[int]:
        return [t.get_pid() for t in self._engines.values()]


_POOLS: dict[str, StockfishPool] = {}
_POOLS_LOCK = threading.Lock()


def stockfish_pool(path: str) -> StockfishPool:
    """The process-wide pool of the Stockfish binary at ``path``."""
    with _POOLS_LOCK:
        if path not in _POOLS:
            _POOLS[path] = StockfishPool(path)
        return _POOLS[path]


# --------------------------------------------------------------------------- the opponent

# Stockfish 15.1 maps UCI_Elo to a fractional skill level with this fit (src/search.cpp, ``Skill``), and
# refuses UCI_Elo below 1350; at and below about 1347 the level is 0, the weakest it plays.
_ELO_OFFSET, _ELO_SCALE, _ELO_POWER = 1346.6, 143.4, 1 / 0.806
_SKILL_MULTIPV = 4
_PAWN_CP = 100


def skill_level(elo: int) -> float:
    """Stockfish 15.1's skill level (0..20) for a target Elo; every Elo up to 1346 gives 0, the weakest."""
    if elo <= _ELO_OFFSET:
        return 0.0
    return min(20.0, ((elo - _ELO_OFFSET) / _ELO_SCALE) ** _ELO_POWER)


def _score_cp(info: dict[str, Any], color: chess.Color) -> int:
    return int(info["score"].pov(color).score(mate_score=100_000))


def pick_weakened_move(infos: list[dict[str, Any]], level: float, rng: random.Random, color: chess.Color) -> chess.Move:
    """Stockfish 15.1's ``Skill::pick_best`` with a seeded random generator instead of the clock.

    ``infos`` is a MultiPV search (best first). Every candidate's score gets a push towards the best score
    that is larger for weaker levels, plus a random term of up to ``delta`` (the score spread, at most a
    pawn); the candidate with the highest pushed score is played.
    """
    scores = [_score_cp(info, color) for info in infos]
    top = scores[0]
    delta = min(top - scores[-1], _PAWN_CP)
    weakness = 120 - 2 * level
    best, best_score = infos[0]["pv"][0], -(10**9)
    for info, score in zip(infos, scores, strict=True):
        push = int((weakness * (top - score) + delta * rng.randrange(int(weakness))) / 128)
        if score + push >= best_score:
            best_score, best = score + push, info["pv"][0]
    return best


# --------------------------------------------------------------------------- endgame positions

# Material of White besides its king; Black has a lone king. Each is a theoretical win when set up well.
ENDGAME_MATERIAL: dict[str, str] = {"KQvK": "Q", "KRvK": "R", "KBBvK": "BB", "KPvK": "P"}

# "Not trivially solvable": a search of this depth does not already see a forced mate. "Won": its score
# is at least WIN_CP for White (this rejects drawn king-and-pawn positions and stalemate traps).
FILTER_DEPTH = 12
WIN_CP = 200
_MAX_GENERATION_ATTEMPTS = 2000

# Share of endgame positions (by a hash of the position up to symmetry) held out for each evaluation split.
_POOL_PERCENT = {"test": 15, "validation": 15}

_SYMMETRIES_PAWNLESS = (
    lambda bb: bb,
    chess.flip_vertical,
    chess.flip_horizontal,
    chess.flip_diagonal,
    chess.flip_anti_diagonal,
    lambda bb: chess.flip_vertical(chess.flip_horizontal(bb)),
    lambda bb: chess.flip_vertical(chess.flip_diagonal(bb)),
    lambda bb: chess.flip_horizontal(chess.flip_diagonal(bb)),
)


def position_split(board: chess.Board) -> str:
    """The split (``train``/``validation``/``test``) an endgame position belongs to.

    Decided by a hash of the position's canonical form under the board's symmetries (all eight without
    pawns, the left-right mirror with them), so a test position's mirror images are never train positions.
    """
    symmetries = _SYMMETRIES_PAWNLESS if not board.pawns else _SYMMETRIES_PAWNLESS[:1] + _SYMMETRIES_PAWNLESS[2:3]
    canonical = min(board.transform(f).board_fen() for f in symmetries)
    bucket = int(hashlib.sha256(canonical.encode()).hexdigest(), 16) % 100
    if bucket < _POOL_PERCENT["test"]:
        return "test"
    if bucket < _POOL_PERCENT["test"] + _POOL_PERCENT["validation"]:
        return "validation"
    return "train"


def random_endgame(rng: random.Random, material: str) -> chess.Board:
    """A legal position with White to move: White's king and ``material``, Black's lone king.

    Bishops stand on squares of opposite colours; pawns on ranks 2 to 7. No Stockfish filter here.
    """
    pieces = "K" + ENDGAME_MATERIAL[material] + "k"
    while True:
        board = chess.Board(None)
        for symbol, square in zip(pieces, rng.sample(chess.SQUARES, len(pieces)), strict=True):
            board.set_piece_at(square, chess.Piece.from_symbol(symbol))
        if any(chess.square_rank(sq) in (0, 7) for sq in board.pieces(chess.PAWN, chess.WHITE)):
            continue
        bishops = list(board.pieces(chess.BISHOP, chess.WHITE))
        if len(bishops) == 2 and (chess.BB_LIGHT_SQUARES & chess.BB_SQUARES[bishops[0]]) == (
            chess.BB_LIGHT_SQUARES & chess.BB_SQUARES[bishops[1]]
        ):
            continue
        if board.is_valid() and not board.is_game_over():
            return board


def filter_verdict(infos: list[dict[str, Any]]) -> bool:
    """Whether a position's depth-``FILTER_DEPTH`` analysis makes it a task position: won, no mate in sight."""
    score = infos[0]["score"].white()
    return not score.is_mate() and (score.score() or 0) >= WIN_CP


@dataclasses.dataclass(frozen=True)
class Endgame:
    fen: str
    material: str


_ENDGAME_CACHE: dict[tuple[int, str | None, str | None], Endgame] = {}


async def generate_endgame(
    pool: StockfishPool, seed: int | None, split: str | None, material: str | None = None
) -> Endgame:
    """The endgame of ``seed``: random positions of a seeded material until one is in ``split`` (when given)
    and passes the Stockfish filter (:func:`filter_verdict`). Cached per seed in memory."""
    key = (seed, split, material) if seed is not None else None
    if key is not None and key in _ENDGAME_CACHE:
        return _ENDGAME_CACHE[key]
    rng = random.Random(f"endgame-{seed}" if seed is not None else None)
    material = material or rng.choice(sorted(ENDGAME_MATERIAL))
    for _ in range(_MAX_GENERATION_ATTEMPTS):
        board = random_endgame(rng, material)
        if split is not None and position_split(board) != split:
            continue
        if filter_verdict(await pool.search(board, chess.engine.Limit(depth=FILTER_DEPTH))):
            found = Endgame(board.fen(), material)
            if key is not None:
                _ENDGAME_CACHE[key] = found
            return found
    raise EnvError(f"no {material} endgame passed the filter in {_MAX_GENERATION_ATTEMPTS} attempts (seed {seed})")


# --------------------------------------------------------------------------- moves

_MAX_ACTION_CHARS = 40
_STRIP = " \t\r\n`'\"*"


def parse_move(board: chess.Board, action: str) -> tuple[chess.Move | None, str]:
    """The legal move that ``action`` names in ``board`` and ``""``, or ``None`` and what was wrong.

    Reads SAN (``e4``, ``Nf3``, ``exd5``, ``O-O``, ``e8=Q``, ``Qxf7#``), tolerating surrounding whitespace,
    quotes, backticks or asterisks and a trailing period. Through python-chess, fully specified moves
    (``g1f3``, ``e7e8q``: the UCI form) are read too. Null moves (``--``) are not moves.
    """
    if not isinstance(action, str) or len(action) > _MAX_ACTION_CHARS:
        return None, "not a move in SAN"
    text = action.strip(_STRIP).removesuffix(".").strip(_STRIP)
    if not text or not text.isascii():
        return None, "not a move in SAN"
    try:
        move = board.parse_san(text)
    except chess.AmbiguousMoveError:
        return None, "ambiguous: more than one piece can make it; add the file or rank it moves from (e.g. Nbd2)"
    except chess.IllegalMoveError:
        return None, "not a legal move in this position"
    except ValueError:  # chess.InvalidMoveError and anything else python-chess cannot read
        return None, "not a move in SAN"
    if not move:  # the null move
        return None, "not a move in SAN"
    return move, ""


def board_diagram(board: chess.Board) -> str:
    """The board with rank numbers and file letters; White's pieces are upper case, Black's lower case."""
    rows = str(board).splitlines()
    return "\n".join(f"{8 - i} {row}" for i, row in enumerate(rows)) + "\n  a b c d e f g h"


def game_outcome(board: chess.Board) -> str | None:
    """Why the game is over (``"checkmate"``, ``"stalemate"``, ...), or None while it goes on.

    Draws by threefold repetition and the fifty-move rule end the game as soon as they occur (as if the
    player to move claimed them), so games never run to the 75-move or fivefold rules.
    """
    if board.is_checkmate():
        return "checkmate"
    if board.is_stalemate():
        return "stalemate"
    if board.is_insufficient_material():
        return "insufficient material"
    if board.halfmove_clock >= 100:
        return "fifty-move rule"
    if board.is_repetition(3):
        return "threefold repetition"
    return None


def _shown(action: Any, limit: int = 30) -> str:
    """A short, printable-ASCII rendering of an action for feedback (never echo huge or odd text)."""
    text = action if isinstance(action, str) else repr(action)
    shown = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in text[:limit])
    return shown + ("..." if len(text) > limit else "")


# --------------------------------------------------------------------------- the environments

_REWARDS = {chess.WHITE: 1.0, chess.BLACK: -1.0}


class ChessEnv(Env):
    """Play White against Stockfish from the standard starting position (``chess-v0``).

    Args:
        opponent_elo: the opponent's strength as Stockfish 15.1's Elo scale (see :func:`skill_level`:
            everything up to 1346, LMRL-Gym's 1200 included, is skill level 0, Stockfish's weakest); ``None``
            plays at full strength with ``opponent_nodes`` per move.
        opponent_nodes: the full-strength opponent's search budget per move (nodes).
        optimal_nodes: the ``optimal`` scripted policy's search budget per move (nodes).
        illegal: ``"retry"`` turns an invalid move into a penalty of ``retry_penalty`` after which the agent
            moves again; ``"terminate"`` ends the game with -1; ``None`` keeps the registered rule.
        retry_penalty: the reward of an invalid move under ``illegal="retry"`` (between -1 and 0).
        diagram: add a board diagram to each observation (the FEN is always there).
    """

    side_name = "White"

    def __init__(
        self,
        opponent_elo: int | None = 1200,
        opponent_nodes: int = 10_000,
        optimal_nodes: int = 20_000,
        illegal: Literal["terminate", "retry"] | None = None,
        retry_penalty: float = -0.1,
        diagram: bool = True,
    ) -> None:
        if illegal not in (None, "terminate", "retry"):
            raise SpecError(f"illegal must be 'terminate', 'retry' or None, not {illegal!r}")
        if not -1.0 <= retry_penalty <= 0.0:
            raise SpecError(f"retry_penalty must be between -1 and 0, not {retry_penalty}")
        if opponent_elo is not None and not 0 < opponent_elo <= 3000:
            raise SpecError(
                f"opponent_elo must be a positive Elo up to 3000 (or None: full strength), not {opponent_elo}"
            )
        if opponent_nodes < 1 or optimal_nodes < 1:
            raise SpecError("opponent_nodes and optimal_nodes must be positive node counts")
        self.opponent_elo = opponent_elo
        self.opponent_nodes = opponent_nodes
        self.optimal_nodes = optimal_nodes
        self.illegal = illegal
        self.retry_penalty = float(retry_penalty)
        self.diagram = diagram
        self.stockfish_path = find_stockfish()
        self._board = chess.Board()
        self._rng = random.Random(0)
        self._turns = 0
        self._started = False
        self._done = False
        self._episode_info: dict[str, Any] = {}
        self._attach(stockfish_pool(self.stockfish_path))

    def _attach(self, pool: StockfishPool) -> None:
        self._pool = pool
        pool.acquire()
        # Release the pool when the environment is closed or garbage-collected, exactly once.
        self._release = weakref.finalize(self, pool.release)

    # ------------------------------------------------------------------ the invalid-action rule

    @property  # a property, so that ``illegal=`` can adjust the rule that make() sets
    def spec(self) -> EnvSpec:
        try:
            return self._spec
        except AttributeError:
            raise AttributeError("spec") from None

    @spec.setter
    def spec(self, value: EnvSpec) -> None:
        if self.illegal == "retry":
            rule = InvalidActionRule(
                "penalty",
                self.retry_penalty,
                f"not a legal move in SAN: {self.retry_penalty:g}, the position is unchanged and you move again",
            )
            value = dataclasses.replace(value, invalid_action=rule)
        elif self.illegal == "terminate":
            rule = InvalidActionRule("terminate", -1.0, "not a legal move in SAN: -1 and the game ends (a loss)")
            value = dataclasses.replace(value, invalid_action=rule)
        self._spec = value

    # ------------------------------------------------------------------ agent-facing text

    @property
    def instructions(self) -> str:  # type: ignore[override]  # reads the spec, set after __init__
        spec = getattr(self, "spec", None)
        turns = spec.max_turns if spec else 100
        rule = spec.invalid_action if spec else InvalidActionRule("terminate", -1.0)
        if rule.mode == "terminate":
            invalid = f"An illegal or unreadable move loses the game at once (reward {rule.penalty:g})."
        else:
            invalid = (
                f"An illegal or unreadable move costs {rule.penalty:g}; the position stays the same and you "
                "move again (it still counts as one of your moves)."
            )
        seeing = "the position as a FEN string"
        if self.diagram:
            seeing += " and as a board diagram (upper case: your White pieces, lower case: Black's; '.' is empty)"
        return (
            self._task_sentence()
            + f" Each turn you get {seeing}"
            + ". Reply with exactly one move in Standard Algebraic Notation (SAN) and nothing else, for example: "
            "e4, Nf3, exd5, Bb5+, O-O, O-O-O, e8=Q, Qxf7#.\n"
            "Reward: +1 if you checkmate Black, -1 if you are checkmated, 0 for a draw (stalemate, insufficient "
            f"material, threefold repetition, fifty moves without a capture or pawn move). After {turns} of your "
            f"moves the game stops as a draw (0). {invalid}"
        )

    def _task_sentence(self) -> str:
        return "You play chess as White against the Stockfish engine (Black), from the standard starting position."

    def _position_text(self) -> str:
        text = f"Position (FEN): {self._board.fen()}"
        if self.diagram:
            text += "\n" + board_diagram(self._board)
        return text

    # ------------------------------------------------------------------ the environment contract

    async def _initial(self, seed: int | None, options: dict[str, Any]) -> tuple[chess.Board, dict[str, Any]]:
        return chess.Board(), {}

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        """Start a game. ``options={"fen": ...}`` starts from that position instead (White to move)."""
        options = dict(options or {})
        fen = options.pop("fen", None)
        if fen is not None:
            try:
                board = chess.Board(fen)
            except ValueError as exc:
                raise EnvError(f"reset option fen={fen!r} is not a FEN string: {exc}") from None
            if not board.is_valid() or board.turn != chess.WHITE or game_outcome(board):
                raise EnvError(f"fen {fen!r} must be a legal position with White to move and the game not over")
            info: dict[str, Any] = {}
        else:
            board, info = await self._initial(seed, options)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}; {type(self).__name__} accepts {self._options()}")
        self._board, self._rng = board, random.Random(seed)
        self._turns, self._started, self._done = 0, True, False
        self._episode_info = info
        text = self._task_sentence() + " You are White, to move.\n" + self._position_text() + "\nYour move."
        return Step(text, 0.0, info={"invalid_action": False, "fen": board.fen(), **info})

    def _options(self) -> str:
        return "'fen'"

    async def step(self, action: str) -> Step:
        if not self._started:
            raise EnvError("call reset() before step(): the game has not started")
        if self._done:
            raise EnvError("the game has ended; call reset() before stepping again")
        spec = self._require_spec()
        self._turns += 1
        move, problem = parse_move(self._board, action)
        info: dict[str, Any] = {"invalid_action": move is None, "opponent_move": None}
        if move is None:
            rule = spec.invalid_action
            lines = [f"'{_shown(action)}' is {problem}."]
            terminated = rule.mode == "terminate"
            if terminated:
                lines.append("That ends the game: you lose.")
            else:
                lines.append(f"That costs {rule.penalty:g}. The position is unchanged; move again.")
            reward, outcome = rule.penalty, None
        else:
            lines = [f"You played {self._board.san(move)}."]
            self._board.push(move)
            outcome = game_outcome(self._board)
            if outcome is None:
                reply = await self._opponent_move()
                info["opponent_move"] = self._board.san(reply)
                lines = [lines[0][:-1] + f"; Black replied {info['opponent_move']}."]
                self._board.push(reply)
                outcome = game_outcome(self._board)
            terminated = outcome is not None
            reward = 0.0
            if outcome == "checkmate":
                reward = _REWARDS[not self._board.turn]  # the side not to move delivered the mate
        truncated = not terminated and self._turns >= spec.max_turns
        if outcome is not None:
            info["outcome"] = outcome
            if outcome == "checkmate":
                lines.append("Checkmate: you win!" if reward > 0 else "Checkmate: you lose.")
            else:
                lines.append(f"The game is drawn ({outcome}).")
        elif truncated:
            lines.append(f"That was your last move ({spec.max_turns}): the game stops here as a draw.")
        lines.append(self._position_text())
        if not (terminated or truncated):
            lines.append("Your move.")
        info["fen"] = self._board.fen()
        if terminated or truncated:
            self._done = True
            info["success"] = outcome == "checkmate" and reward > 0
        return Step("\n".join(lines), float(reward), terminated, truncated, info)

    async def _opponent_move(self) -> chess.Move:
        try:
            if self.opponent_elo is None:
                infos = await self._pool.search(self._board, chess.engine.Limit(nodes=self.opponent_nodes))
                return infos[0]["pv"][0]
            level = skill_level(self.opponent_elo)
            limit = chess.engine.Limit(depth=1 + int(level))
            infos = await self._pool.search(self._board, limit, multipv=_SKILL_MULTIPV)
        except chess.engine.EngineError as exc:
            raise _engine_failure(self.stockfish_path, exc) from exc
        return pick_weakened_move(infos, level, self._rng, self._board.turn)

    # ------------------------------------------------------------------ copies and resources

    def copy(self) -> ChessEnv:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._board = self._board.copy()
        clone._rng = random.Random()
        clone._rng.setstate(self._rng.getstate())
        clone._episode_info = dict(self._episode_info)
        clone._attach(self._pool)  # shares the processes, holds its own reference to them
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> ChessEnv:
        return self.copy()

    async def close(self) -> None:
        """Give back this environment's share of the Stockfish processes (the last one quits them)."""
        self._release()
        await super().close()

    # ------------------------------------------------------------------ state for scripted policies

    @property
    def board(self) -> chess.Board:
        """A copy of the current position (with its move history)."""
        return self._board.copy()

    def best_move(self, nodes: int | None = None) -> chess.Move:
        """Stockfish's move at full strength with ``nodes`` (default ``optimal_nodes``) per search."""
        if not self._started:
            raise EnvError("call reset() first: there is no position yet")
        if not self._release.alive:
            raise EnvError("the environment is closed; make a new one")
        try:
            infos = self._pool.search_sync(self._board, chess.engine.Limit(nodes=nodes or self.optimal_nodes))
        except chess.engine.EngineError as exc:
            raise _engine_failure(self.stockfish_path, exc) from exc
        return infos[0]["pv"][0]

    def scripted_policies(self) -> dict[str, Policy]:
        return {"optimal": optimal_policy, "random": random_policy, "noisy": noisy_policy}


class EndgamesEnv(ChessEnv):
    """Win a theoretical endgame as White against a lone black king (``endgames-v0``).

    Each seed gives a position of one of :data:`ENDGAME_MATERIAL` that Stockfish judges won but where a
    depth-``FILTER_DEPTH`` search does not already see the mate; train, validation and test seeds draw
    from disjoint sets of positions (:func:`position_split`). Takes the arguments of :class:`ChessEnv`, plus
    ``material`` to fix the piece set (e.g. ``"KRvK"``). The defaults differ: a full-strength defence
    (``opponent_elo=None``) and a larger ``optimal_nodes`` (200,000), which Stockfish needs to mate reliably
    with king and rook within the fifty-move rule when every search starts from an empty hash.
    """

    def __init__(
        self,
        *,
        material: str | None = None,
        opponent_elo: int | None = None,
        optimal_nodes: int = 200_000,
        **kwargs: Any,
    ) -> None:
        if material is not None and material not in ENDGAME_MATERIAL:
            raise SpecError(f"unknown endgame material {material!r}; choose one of {', '.join(ENDGAME_MATERIAL)}")
        super().__init__(opponent_elo=opponent_elo, optimal_nodes=optimal_nodes, **kwargs)
        self.material = material

    def _task_sentence(self) -> str:
        return (
            "You play a chess endgame as White against the Stockfish engine, whose king is alone: "
            "checkmate the black king."
        )

    def _options(self) -> str:
        return "'fen' and 'material'"

    async def _initial(self, seed: int | None, options: dict[str, Any]) -> tuple[chess.Board, dict[str, Any]]:
        material = options.pop("material", None) or self.material
        if material is not None and material not in ENDGAME_MATERIAL:
            raise EnvError(f"unknown endgame material {material!r}; choose one of {', '.join(ENDGAME_MATERIAL)}")
        try:
            endgame = await generate_endgame(self._pool, seed, self._split_of(seed), material)
        except chess.engine.EngineError as exc:
            raise _engine_failure(self.stockfish_path, exc) from exc
        return chess.Board(endgame.fen), {"material": endgame.material}


def _engine_failure(path: str, exc: Exception) -> EnvError:
    return EnvError(
        f"Stockfish ({path}) failed: {type(exc).__name__}: {exc}. Check that `{path}` starts and answers 'uci', "
        f"or reinstall it: {INSTALL_HINT}"
    )


# --------------------------------------------------------------------------- scripted policies

# Probability that the ``noisy`` policy (LMRL-Gym's dataset mixture) plays the optimal move.
NOISY_OPTIMAL_PROB = 0.5


def _chess(env: Env) -> ChessEnv:
    if not isinstance(env, ChessEnv):
        raise EnvError(f"chess policies drive ChessEnv, not {type(env).__name__}")
    return env


def optimal_policy(env: Env, rng: random.Random) -> str:
    """Stockfish at full strength with ``env.optimal_nodes`` nodes per move: the best available, not perfect."""
    game = _chess(env)
    return game.board.san(game.best_move())


def random_policy(env: Env, rng: random.Random) -> str:
    """A legal move, uniformly at random."""
    board = _chess(env).board
    return board.san(rng.choice(list(board.legal_moves)))


def noisy_policy(env: Env, rng: random.Random) -> str:
    """The ``optimal`` move with probability ``NOISY_OPTIMAL_PROB``, otherwise a uniformly random legal move."""
    if rng.random() < NOISY_OPTIMAL_PROB:
        return optimal_policy(env, rng)
    return random_policy(env, rng)
