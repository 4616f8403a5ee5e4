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

# --------------------------------------------------------------------------- textnav
_TEXTNAV_INVALID = InvalidActionRule(
    "penalty", 0.0, "not one of the admissible commands: reward 0, nothing happens, the episode goes on"
)

# 40 turns: twice the longest possible shortest walkthrough (20 commands in a 6-room house; the longest
# among the first 10,000 train seeds is 18), so the optimal path always fits with room to explore.
register(
    "textnav-fo-v0",
    "palaestra.envs.textnav:TextNavEnv",
    description="Text-Nav, fully observed: put an object in a container in a generated house (LMRL-Gym).",
    max_turns=40,
    reward_range=(0.0, 1.0),
    invalid_action=_TEXTNAV_INVALID,
    normalization=Normalization(0.016, 0.977, 1.0, source="scripts/normalization.py textnav-fo-v0 --episodes 1000"),
    splits=_SPLITS,
    kwargs={"observability": "full"},
)

# The same constants as textnav-fo-v0: the scripted policies read the true state whatever the agent sees.
register(
    "textnav-po-v0",
    "palaestra.envs.textnav:TextNavEnv",
    description="Text-Nav, partially observed: no location or inventory, only the current room (LMRL-Gym).",
    max_turns=40,
    reward_range=(0.0, 1.0),
    invalid_action=_TEXTNAV_INVALID,
    normalization=Normalization(0.016, 0.977, 1.0, source="scripts/normalization.py textnav-po-v0 --episodes 1000"),
    splits=_SPLITS,
    kwargs={"observability": "partial"},
)

# --------------------------------------------------------------------------- chess
_CHESS_INVALID = InvalidActionRule("terminate", -1.0, "not a legal move in SAN: -1 and the game ends (a loss)")

register(
    "chess-v0",
    "palaestra.envs.chess:ChessEnv",  # needs Stockfish: bash scripts/stockfish.sh
    description="Chess as White against Stockfish at Elo 1200 (its weakest level), moves in SAN (LMRL-Gym).",
    max_turns=100,
    reward_range=(-1.0, 1.0),
    invalid_action=_CHESS_INVALID,
    normalization=Normalization(-1.0, -0.88, 1.0, source="scripts/normalization.py chess-v0 --episodes 100"),
    splits=_SPLITS,
    kwargs={"opponent_elo": 1200, "optimal_nodes": 20_000},
)

register(
    "endgames-v0",
    "palaestra.envs.chess:EndgamesEnv",
    description="Chess endgames: checkmate a lone king with K+Q, K+R, K+2B or K+P against Stockfish (LMRL-Gym).",
    max_turns=50,
    reward_range=(-1.0, 1.0),
    invalid_action=_CHESS_INVALID,
    normalization=Normalization(0.0, 0.15, 1.0, source="scripts/normalization.py endgames-v0 --episodes 100"),
    splits=_SPLITS,
    kwargs={"opponent_elo": None, "opponent_nodes": 10_000, "optimal_nodes": 200_000},
)

# --------------------------------------------------------------------------- questions
_QUESTIONS_INVALID = InvalidActionRule(
    "penalty",
    -1.0,
    "neither a question ('?' or a question word) nor a guess, or over 300 characters: -1, uses up a turn",
)

register(
    "twenty-questions-v0",
    "palaestra.envs.questions:TwentyQuestionsEnv",
    description="20 Questions: find the hidden object with yes/no questions, then guess it (LMRL-Gym).",
    max_turns=20,
    reward_range=(-1.0, 0.0),
    invalid_action=_QUESTIONS_INVALID,
    normalization=Normalization(
        -19.752, -12.77, -6.848, source="scripts/normalization.py twenty-questions-v0 --episodes 500"
    ),
    splits=_SPLITS,
    kwargs={"oracle": "rules"},
)

register(
    "guess-my-city-v0",
    "palaestra.envs.questions:GuessMyCityEnv",
    description="Guess My City: find the hidden city with yes/no and open questions, then guess it (LMRL-Gym).",
    max_turns=20,
    reward_range=(-1.0, 0.0),
    invalid_action=_QUESTIONS_INVALID,
    normalization=Normalization(
        -19.68, -4.692, -1.908, source="scripts/normalization.py guess-my-city-v0 --episodes 500"
    ),
    splits=_SPLITS,
    kwargs={"oracle": "rules"},
)

# --------------------------------------------------------------------------- car-dealer
# Reward bounds: not bought, 1 - budget/MSRP >= 1 - 90,000/22,800 = -2.95; bought, a price of at most 1.2 x
# budget over (budget + MSRP) / 2 <= 1.92 (see MSRP_MIN, MAX_STRETCH in car_dealer.py).
register(
    "car-dealer-v0",
    "palaestra.envs.car_dealer:CarDealerEnv",
    description="Car Dealer: sell a car to a simulated buyer with a hidden persona and budget (LMRL-Gym).",
    max_turns=20,
    reward_range=(-3.0, 2.0),
    invalid_action=InvalidActionRule(
        "penalty",
        0.0,
        "empty, neither words nor a price, markup tags or over 500 characters: 0, the buyer does not "
        "understand, uses up a message and the buyer's patience; a message without a price is valid",
    ),
    normalization=Normalization(0.426, 0.54, 0.817, source="scripts/normalization.py car-dealer-v0 --episodes 2000"),
    splits=_SPLITS,
    kwargs={"buyer": "rules"},
)
