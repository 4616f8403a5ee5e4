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

# --------------------------------------------------------------------------- reasoning
# One answer per item: reward 1 if right, 0 if wrong; the items on which teams meet a single agent.
_REASONING_INVALID = InvalidActionRule(
    "terminate", 0.0, "no answer in the form 'Answer: <value>' (not a number; for logic, not an option): 0, ends"
)

register(
    "reasoning-arithmetic-v0",
    "palaestra.envs.reasoning:ReasoningEnv",
    description="Multi-step arithmetic word problems (2 to 4 operations), one exact whole-number answer.",
    max_turns=1,
    reward_range=(0.0, 1.0),
    invalid_action=_REASONING_INVALID,
    normalization=Normalization(
        0.22, 0.62, 1.0, source="scripts/normalization.py reasoning-arithmetic-v0 --episodes 1000"
    ),
    splits=_SPLITS,
    kwargs={"kind": "arithmetic"},
)

register(
    "reasoning-logic-v0",
    "palaestra.envs.reasoning:ReasoningEnv",
    description="Logic puzzles (orderings from clues, knights and knaves) with a unique answer, a name or a word.",
    max_turns=1,
    reward_range=(0.0, 1.0),
    invalid_action=_REASONING_INVALID,
    normalization=Normalization(
        0.455, 0.706, 1.0, source="scripts/normalization.py reasoning-logic-v0 --episodes 1000"
    ),
    splits=_SPLITS,
    kwargs={"kind": "logic"},
)

# --------------------------------------------------------------------------- GovSim
# Three scenarios with GovSim's shared dynamics (Piatti et al. 2024). max_turns = a whole default episode:
# 11 months of harvest + 5 utterances + reflection, then the last month's harvest (govsim.episode_steps);
# pass max_turns to make_multi together with more months, players or utterances. Rewards are whole units
# collected in one month, at most the capacity (100). No normalisation: the scripted policies' returns are
# not a spread of skill (sustainable is GovSim's efficiency bound, greedy collapses in month 1).
_GOVSIM_INVALID = InvalidActionRule(
    "penalty",
    0.0,
    "harvest not a whole number >= 0 (negative, fractional, missing, garbage): counts as taking 0; an empty, "
    "over-long or garbled message or note is not delivered or saved: 0, feedback in the observation, the episode "
    "goes on",
)

for _scenario, _words in (
    ("fishery", "tons of fish in a lake"),
    ("pasture", "hectares of grass on a pasture grazed by flocks of sheep"),
    ("pollution", "a river's unpolluted water used up by factories producing widgets"),
):
    register(
        f"govsim-{_scenario}-v0",
        "palaestra.envs.govsim:GovSimEnv",
        description=f"GovSim {_scenario}: 5 agents share {_words} for 12 months; harvest, talk, reflect "
        "(Piatti et al. 2024).",
        max_turns=78,
        reward_range=(0.0, 100.0),
        invalid_action=_GOVSIM_INVALID,
        normalization=None,
        splits=_SPLITS,
        kwargs={"scenario": _scenario},
        multi_agent=True,
    )

# --------------------------------------------------------------------------- Repeated games and bargaining
_GAME_INVALID = InvalidActionRule(
    "penalty",
    0.0,
    "not exactly one of the game's two options: the player forfeits the round (0 points, its move recorded "
    "as invalid); the partner wins the most its own choice could have won",
)

for _game, _title, _high in (
    ("prisoners-dilemma", "Prisoner's Dilemma", 10.0),
    ("battle-of-the-sexes", "Battle of the Sexes", 10.0),
    ("chicken", "Chicken", 4.0),
    ("stag-hunt", "Stag Hunt", 4.0),
):
    register(
        f"repeated-{_game}-v0",
        "palaestra.envs.games:RepeatedGameEnv",
        description=f"The repeated {_title}: two players, 10 simultaneous rounds (Akata et al. 2023).",
        max_turns=10,
        reward_range=(0.0, _high),
        invalid_action=_GAME_INVALID,
        splits=_SPLITS,
        kwargs={"game": _game, "rounds": 10},
        multi_agent=True,
    )

# Two actions per round at most (an offer and its answer; a counter-offer is both), so 20 steps for 10
# rounds. Rewards: a deal's discounted units (0..100) or a reservation value (0..40), minus 1 per invalid
# action.
register(
    "bargaining-v0",
    "palaestra.envs.bargaining:BargainingEnv",
    description="Alternating-offers bargaining over 100 units with discounting and private reservation values.",
    max_turns=20,
    reward_range=(-1.0, 100.0),
    invalid_action=InvalidActionRule(
        "penalty",
        -1.0,
        "not 'Offer: <0..100>', 'Accept' or 'Reject', or Accept/Reject with no offer on the table: -1, the round "
        "ends without a deal and the other player proposes next",
    ),
    splits=_SPLITS,
    kwargs={"surplus": 100, "delta": 0.9, "max_rounds": 10, "max_reservation": 40},
    multi_agent=True,
)

# --------------------------------------------------------------------------- AgentsNet
# An episode is rounds + 1 steps (message rounds, then the answers); rounds is 2 x diameter + 1 by default
# (about 13 for 8 agents, 105 for a 10,000-node Delaunay graph), so 500 steps leave room for any override
# below 499 rounds. Reward: 1 to every agent when the team's answers pass the check, else 0.
_AGENTSNET_INVALID = InvalidActionRule(
    "penalty",
    0.0,
    "a line that is not 'All: <text>' / 'To <name>: <text>', a message to a non-neighbour or an unknown name, "
    "an over-long or empty message: 0, that message is dropped (the others are sent) and the agent is told why; "
    "a final answer in the wrong form or out of range counts as no answer, which fails the check",
)

for _task, _what in (
    ("coloring", "colour the graph with max degree + 1 colours so that neighbours differ"),
    ("leader-election", "elect exactly one leader"),
    ("consensus", "agree on one of the agents' private starting values"),
    ("matching", "form a maximal matching of neighbours, named consistently by both partners"),
    ("vertex-cover", "choose a minimal vertex cover of coordinators"),
):
    register(
        f"agentsnet-{_task}-v0",
        "palaestra.envs.agentsnet:AgentsNetEnv",
        description=f"AgentsNet: agents on a graph talk only to neighbours and must {_what} (Grötschla et al. 2025).",
        max_turns=500,
        reward_range=(0.0, 1.0),
        invalid_action=_AGENTSNET_INVALID,
        splits=_SPLITS,
        kwargs={"task": _task, "graph": "random", "n_agents": 8},
        multi_agent=True,
    )
