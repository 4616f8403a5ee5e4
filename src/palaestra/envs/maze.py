"""Maze navigation (LMRL-Gym's Maze task), fully and partially observed: ``maze-fo-v0`` and ``maze-po-v0``.

The agent moves on a grid with ``move up|down|left|right``. Reward: -1 per move, 0 on the move that
reaches the goal (which ends the episode with success); moving into a wall is a legal move that leaves
the agent in place. The fully observed variant states the goal and current position and the adjacent
walls every turn; the partially observed one states only the adjacent walls, so the agent has to infer
where it is from the history of its own moves.
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import Step
from palaestra.envs.base import Env, Policy

Position = tuple[int, int]  # (row, column); row 0 is the top row

DIRECTIONS: tuple[str, ...] = ("up", "down", "left", "right")
_DELTAS: dict[str, Position] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
_WALL_PHRASES = {"up": "above you", "down": "below you", "left": "to your left", "right": "to your right"}

# Probability that the ``noisy`` policy takes the optimal move rather than a uniformly random one. 0.5
# puts its mean return (the "dataset" average of the normalised score) well between random and optimal.
NOISY_OPTIMAL_PROB = 0.5

# Layouts: '#' wall, '.' open, 'G' goal. Every open cell must reach the goal (checked when parsed).
_LAYOUT_ROWS: dict[str, tuple[str, ...]] = {
    # A reconstruction of LMRL-Gym's "double T" maze from the paper's description (two T-shaped corridors,
    # the first T's stem running into the second T's bar); the exact original grid is not reproduced.
    # The goal sits at the foot of the lower stem, at (8, 6) as in the paper's example observation.
    "double_t": (
        "#############",
        "#...........#",
        "######.######",
        "######.######",
        "######.######",
        "#...........#",
        "######.######",
        "######.######",
        "######G######",
        "#############",
    ),
    "four_rooms": (
        "###########",
        "#....#....#",
        "#....#....#",
        "#.........#",
        "#....#....#",
        "##.####.###",
        "#....#....#",
        "#.........#",
        "#....#...G#",
        "###########",
    ),
    "zigzag": (
        "#########",
        "#.......#",
        "#######.#",
        "#.......#",
        "#.#######",
        "#......G#",
        "#########",
    ),
    "pillars": (
        "#########",
        "#.......#",
        "#.#.#.#.#",
        "#.......#",
        "#.#.#.#.#",
        "#...G...#",
        "#########",
    ),
    "labyrinth": (
        "#########",
        "#...#...#",
        "#.#.#.#.#",
        "#.#...#.#",
        "#.#####.#",
        "#...#...#",
        "###.#.###",
        "#.....#G#",
        "#.###...#",
        "#########",
    ),
}


@dataclass(frozen=True)
class MazeLayout:
    """A parsed layout: walls, open cells (goal included), the goal and each cell's distance to the goal."""

    name: str
    rows: tuple[str, ...]
    goal: Position = field(init=False)
    open_cells: tuple[Position, ...] = field(init=False)
    distance: dict[Position, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cells = [(r, c) for r, line in enumerate(self.rows) for c, ch in enumerate(line) if ch in ".G"]
        goals = [(r, c) for r, line in enumerate(self.rows) for c, ch in enumerate(line) if ch == "G"]
        if len(goals) != 1:
            raise SpecError(f"maze layout {self.name!r} must have exactly one goal 'G', found {len(goals)}")
        object.__setattr__(self, "goal", goals[0])
        object.__setattr__(self, "open_cells", tuple(cells))
        object.__setattr__(self, "distance", self._distances_to_goal())
        unreachable = [p for p in cells if p not in self.distance]
        if unreachable:
            raise SpecError(f"maze layout {self.name!r}: cells {unreachable} cannot reach the goal")

    def __deepcopy__(self, memo: dict[int, Any]) -> MazeLayout:
        return self  # immutable and shared: copies of an environment need not duplicate their map

    def is_open(self, pos: Position) -> bool:
        r, c = pos
        return 0 <= r < len(self.rows) and 0 <= c < len(self.rows[r]) and self.rows[r][c] in ".G"

    def _distances_to_goal(self) -> dict[Position, int]:
        # Breadth-first search outward from the goal gives every cell's shortest-path length at once.
        dist = {self.goal: 0}
        queue = deque([self.goal])
        while queue:
            r, c = queue.popleft()
            for dr, dc in _DELTAS.values():
                nxt = (r + dr, c + dc)
                if nxt not in dist and self.is_open(nxt):
                    dist[nxt] = dist[(r, c)] + 1
                    queue.append(nxt)
        return dist

    def walls_around(self, pos: Position) -> list[str]:
        """Directions (in ``DIRECTIONS`` order) in which the cell next to ``pos`` is a wall."""
        return [d for d in DIRECTIONS if not self.is_open(_moved(pos, d))]

    def optimal_direction(self, pos: Position) -> str:
        """A move that shortens the path to the goal (the first in ``DIRECTIONS`` order among ties)."""
        here = self.distance[pos]
        for d in DIRECTIONS:
            nxt = _moved(pos, d)
            if self.distance.get(nxt, here) == here - 1:
                return d
        raise EnvError(f"position {pos} is the goal of layout {self.name!r}; there is no move to make")


def _moved(pos: Position, direction: str) -> Position:
    dr, dc = _DELTAS[direction]
    return (pos[0] + dr, pos[1] + dc)


LAYOUTS: dict[str, MazeLayout] = {name: MazeLayout(name, rows) for name, rows in _LAYOUT_ROWS.items()}

# Whole reply: optional surrounding punctuation/whitespace, optional "move", one direction. Anything
# longer than this cap cannot be a valid action, so it is rejected before matching.
_ACTION_RE = re.compile(r"[\W_]*(?:move\s+)?(up|down|left|right)[\W_]*", re.IGNORECASE)
_MAX_ACTION_CHARS = 100


def parse_move(action: str) -> str | None:
    """The direction named by ``action`` (``"Move Up."`` -> ``"up"``), or None if it is not a move."""
    if len(action) > _MAX_ACTION_CHARS:
        return None
    match = _ACTION_RE.fullmatch(action)
    return match.group(1).lower() if match else None


def _shown(action: str, limit: int = 40) -> str:
    """A short, printable-ASCII rendering of an action for feedback (never echo huge or odd text)."""
    text = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in action[:limit])
    return text + ("..." if len(action) > limit else "")


def _walls_sentence(walls: list[str]) -> str:
    phrases = [_WALL_PHRASES[d] for d in walls]
    if not phrases:
        return "There are no walls next to you."
    if len(phrases) == 1:
        return f"There is a wall {phrases[0]}."
    return f"There are walls {', '.join(phrases[:-1])} and {phrases[-1]}."


class MazeEnv(Env):
    """Navigate a grid maze to the goal. ``observability="full"`` states positions; ``"partial"`` does not.

    Args:
        observability: ``"full"`` or ``"partial"``.
        layout: fix one layout by name (see ``LAYOUTS``); by default each seed draws one.
    """

    def __init__(self, observability: Literal["full", "partial"] = "full", layout: str | None = None) -> None:
        if observability not in ("full", "partial"):
            raise SpecError(f"observability must be 'full' or 'partial', not {observability!r}")
        if layout is not None and layout not in LAYOUTS:
            raise SpecError(f"unknown maze layout {layout!r}; choose one of {', '.join(LAYOUTS)} or None")
        self.observability = observability
        self.layout_name = layout
        self._layout: MazeLayout | None = None
        self._pos: Position = (0, 0)
        self._turns = 0
        self._done = False

    # ------------------------------------------------------------------ the agent-facing text

    @property
    def instructions(self) -> str:  # type: ignore[override]  # reads spec.max_turns, set after __init__
        spec = getattr(self, "spec", None)
        limit = f"You have at most {spec.max_turns} moves. " if spec else ""
        penalty = spec.invalid_action.penalty if spec else -4.0
        if self.observability == "full":
            seeing = (
                "Each turn you are told the goal's position, your current position and which of the four "
                "squares next to you are walls. Positions are 'row, column': row 0 is the top row and column "
                "0 the leftmost column, so moving down adds 1 to the row and moving right adds 1 to the "
                "column. "
            )
        else:
            seeing = (
                "You cannot see the map, your position or the goal: each turn you are only told which of "
                "the four squares next to you are walls and what your last move did. Remember where you "
                "have been and explore until you reach the goal. "
            )
        return (
            "You are in a maze on a square grid and must reach the goal square. "
            + seeing
            + "Reply with exactly one action and nothing else: move up, move down, move left or move right. "
            "Each move costs -1 reward; the move that reaches the goal gives 0 and ends the game. Moving "
            "into a wall leaves you where you are and still costs -1. "
            + limit
            + f"A reply that is not one of the four actions costs {penalty:g} and does not move you."
        )

    def _describe(self) -> str:
        layout = self._require_layout()
        walls = _walls_sentence(layout.walls_around(self._pos))
        if self.observability == "partial":
            return walls
        (gr, gc), (r, c) = layout.goal, self._pos
        return f"The goal is at position {gr}, {gc}. Your current position is at position {r}, {c}. {walls}"

    # ------------------------------------------------------------------ the environment contract

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        """Start an episode. ``options`` may fix ``"layout"`` (a name) and ``"start"`` (a ``(row, col)``)."""
        options = dict(options or {})
        rng = random.Random(seed)
        name = options.pop("layout", None) or self.layout_name or rng.choice(sorted(LAYOUTS))
        if name not in LAYOUTS:
            raise EnvError(f"unknown maze layout {name!r} in reset options; choose one of {', '.join(LAYOUTS)}")
        layout = LAYOUTS[name]
        starts = [p for p in layout.open_cells if p != layout.goal]
        start = options.pop("start", None)
        if start is None:
            start = rng.choice(starts)
        start = (int(start[0]), int(start[1]))
        if start not in starts:
            raise EnvError(f"start {start} is not an open, non-goal cell of layout {name!r}; pick one of {starts}")
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}; MazeEnv accepts 'layout' and 'start'")
        self._layout, self._pos, self._turns, self._done = layout, start, 0, False
        intro = "" if self.observability == "full" else "Find the goal. "
        return Step(intro + self._describe(), 0.0, info={"invalid_action": False, "layout": name})

    async def step(self, action: str) -> Step:
        layout = self._require_layout()
        if self._done:
            raise EnvError("the episode has ended; call reset() before stepping again")
        spec = self._require_spec()
        self._turns += 1
        direction = parse_move(action) if isinstance(action, str) else None
        info: dict[str, Any] = {"invalid_action": direction is None}
        if direction is None:
            reward = spec.invalid_action.penalty
            text = (
                f"Invalid action '{_shown(action if isinstance(action, str) else repr(action))}'. Reply with "
                "exactly one of: move up, move down, move left, move right. You did not move. " + self._describe()
            )
            terminated = spec.invalid_action.mode == "terminate"
        else:
            target = _moved(self._pos, direction)
            info["hit_wall"] = not layout.is_open(target)
            terminated = target == layout.goal
            reward = 0.0 if terminated else -1.0
            if info["hit_wall"]:
                text = f"You tried to move {direction} but hit a wall, so you did not move. " + self._describe()
            elif terminated:
                self._pos = target
                text = f"You moved {direction} and reached the goal!"
            else:
                self._pos = target
                text = f"You moved {direction}. " + self._describe()
        truncated = not terminated and self._turns >= spec.max_turns
        if truncated:
            text += " You have used all your moves without reaching the goal."
        if terminated or truncated:
            self._done = True
            info["success"] = terminated and direction is not None
        return Step(text, float(reward), terminated, truncated, info)

    def _require_layout(self) -> MazeLayout:
        if self._layout is None:
            raise EnvError("call reset() before step(): the episode has not started")
        return self._layout

    # ------------------------------------------------------------------ state for scripted policies

    @property
    def position(self) -> Position:
        """The agent's true position (scripted policies may read it even when the agent cannot)."""
        self._require_layout()
        return self._pos

    @property
    def layout(self) -> MazeLayout:
        return self._require_layout()

    def scripted_policies(self) -> dict[str, Policy]:
        return {"optimal": optimal_policy, "random": random_policy, "noisy": noisy_policy}


def _maze(env: Env) -> MazeEnv:
    if not isinstance(env, MazeEnv):
        raise EnvError(f"maze policies drive MazeEnv, not {type(env).__name__}")
    return env


def optimal_policy(env: Env, rng: random.Random) -> str:
    """Follow a shortest path to the goal (breadth-first search on the true layout)."""
    maze = _maze(env)
    return "move " + maze.layout.optimal_direction(maze.position)


def random_policy(env: Env, rng: random.Random) -> str:
    """One of the four moves, uniformly at random."""
    _maze(env)
    return "move " + rng.choice(DIRECTIONS)


def noisy_policy(env: Env, rng: random.Random) -> str:
    """The optimal move with probability ``NOISY_OPTIMAL_PROB``, otherwise a uniformly random move."""
    if rng.random() < NOISY_OPTIMAL_PROB:
        return optimal_policy(env, rng)
    return random_policy(env, rng)
