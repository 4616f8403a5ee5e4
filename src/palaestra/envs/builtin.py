"""Registration of the built-in environments.

Entry points are strings, so importing ``palaestra`` does not import the environment modules (nor numpy's
Wordle tables); ``make`` imports a module the first time one of its ids is made.

Normalisation constants come from ``scripts/normalization.py`` (the command is in each ``source``):
min = the ``random`` policy's mean return, avg = the ``noisy`` policy's (LMRL-Gym's scripted dataset),
max = the ``optimal`` policy's, over the first train-split seeds.
"""

from __future__ import annotations

from palaestra.core.types import InvalidActionRule, Normalization
from palaestra.envs.registry import register

_SPLITS = {"train": (0, 10_000), "validation": (10_000, 11_000), "test": (11_000, 12_000)}

_MAZE_INVALID = InvalidActionRule(
    "penalty", -4.0, "not one of 'move up|down|left|right': -4, no move, the episode goes on"
)

register(
    "maze-fo-v0",
    "palaestra.envs.maze:MazeEnv",  # 50 turns: over twice the longest shortest path (22 moves)
    description="Maze navigation, fully observed: the goal, your position and adjacent walls (LMRL-Gym).",
    max_turns=50,
    reward_range=(-4.0, 0.0),
    invalid_action=_MAZE_INVALID,
    normalization=Normalization(-44.599, -16.441, -7.191, source="scripts/normalization.py maze-fo-v0 --episodes 1000"),
    splits=_SPLITS,
    kwargs={"observability": "full"},
)

# The same numbers as maze-fo-v0: the scripted policies read the true state whatever the agent sees. So
# the max (100) here is a policy that knows the map, an upper bound a partially observing agent can
# approach but not expect to reach on every episode.
register(
    "maze-po-v0",
    "palaestra.envs.maze:MazeEnv",
    description="Maze navigation, partially observed: only the walls next to you are given (LMRL-Gym).",
    max_turns=50,
    reward_range=(-4.0, 0.0),
    invalid_action=_MAZE_INVALID,
    normalization=Normalization(-44.599, -16.441, -7.191, source="scripts/normalization.py maze-po-v0 --episodes 1000"),
    splits=_SPLITS,
    kwargs={"observability": "partial"},
)

register(
    "wordle-v0",
    "palaestra.envs.wordle:WordleEnv",
    description="Wordle: find the hidden 5-letter word in 6 guesses from per-letter feedback (LMRL-Gym).",
    max_turns=6,
    reward_range=(-1.0, 0.0),
    invalid_action=InvalidActionRule(
        "penalty", -1.0, "not a single 5-letter word, or not in the word list: -1, uses up a guess"
    ),
    normalization=Normalization(-6.0, -4.802, -2.486, source="scripts/normalization.py wordle-v0 --episodes 500"),
    splits=_SPLITS,
    kwargs={},
)
