"""Repeated 2x2 games between two players (Akata et al. 2023, "Playing repeated games with Large Language
Models"): ``repeated-prisoners-dilemma-v0``, ``repeated-battle-of-the-sexes-v0``, ``repeated-chicken-v0``,
``repeated-stag-hunt-v0``.

Both players choose one of two options at the same time, every round, for 10 rounds by default (as in the
paper); each round's reward is the player's payoff from the game's matrix, and each observation is the
history of both players' choices and points so far. The payoff matrices (``GAMES``), player 0's payoff
first:

- Prisoner's Dilemma, Akata et al.'s matrix (their options J and F): both cooperate 8/8, cooperate
  against defect 0/10, both defect 5/5.
- Battle of the Sexes, Akata et al.'s matrix: both choose player 0's favourite (football) 10/7, both
  choose player 1's favourite (ballet) 7/10, different choices 0/0.
- Chicken and Stag Hunt: Akata et al. draw their other games from the Robinson-Goforth topology without
  printing these two matrices, so here they take the standard ordinal form (payoffs ranked 4 best .. 1
  worst) of Rapoport & Guyer's 1966 taxonomy of 2x2 games. Chicken: both swerve 3/3, swerve against
  straight 2/4, both straight 1/1. Stag Hunt: both hunt the stag 4/4, stag against hare 1/3, both hare 2/2.

The scripted partners are the paper's (always cooperate, always defect, tit-for-tat, grim trigger,
alternating, random) plus ``optimal``, a strong policy per game (see ``OPTIMAL``). "Cooperate" means each
game's cooperative option (cooperate, swerve, stag; in the Battle of the Sexes the partner's favourite) and
"defect" its selfish one (defect, straight, hare; the player's own favourite).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import Step
from palaestra.envs.multi import MultiAgentEnv, MultiPolicy

PLAYERS: tuple[str, str] = ("player_0", "player_1")
DEFAULT_ROUNDS = 10
# Observations list at most this many past rounds (the totals still count every round), so a long game
# does not grow the prompt without bound.
MAX_HISTORY_SHOWN = 50
_MAX_ACTION_CHARS = 100


@dataclass(frozen=True)
class MatrixGame:
    """A two-player, two-option game: ``payoffs[(move of player 0, move of player 1)] = (points 0, points 1)``.

    ``cooperative[i]`` is player i's cooperative option (the other option is its selfish one).
    """

    name: str
    title: str
    options: tuple[str, str]
    payoffs: Mapping[tuple[str, str], tuple[int, int]]
    cooperative: tuple[str, str]
    source: str

    def __post_init__(self) -> None:
        wanted = {(a, b) for a in self.options for b in self.options}
        if set(self.payoffs) != wanted:
            raise SpecError(f"game {self.name!r}: payoffs must give exactly the pairs {sorted(wanted)}")
        if any(c not in self.options for c in self.cooperative):
            raise SpecError(f"game {self.name!r}: cooperative options {self.cooperative} must be among {self.options}")
        if min(p for pair in self.payoffs.values() for p in pair) < 0:
            raise SpecError(f"game {self.name!r}: payoffs must be >= 0 (an invalid move scores 0, the worst)")

    def payoff(self, move_0: str, move_1: str) -> tuple[int, int]:
        return self.payoffs[(move_0, move_1)]

    def mine(self, player: int, my_move: str, their_move: str) -> tuple[int, int]:
        """``(my points, their points)`` for player ``player`` (0 or 1)."""
        pair = (my_move, their_move) if player == 0 else (their_move, my_move)
        points = self.payoffs[pair]
        return (points[0], points[1]) if player == 0 else (points[1], points[0])

    def selfish(self, player: int) -> str:
        return next(o for o in self.options if o != self.cooperative[player])

    @property
    def max_payoff(self) -> int:
        return max(p for pair in self.payoffs.values() for p in pair)


GAMES: dict[str, MatrixGame] = {
    g.name: g
    for g in (
        MatrixGame(
            "prisoners-dilemma",
            "the Prisoner's Dilemma",
            ("cooperate", "defect"),
            {
                ("cooperate", "cooperate"): (8, 8),
                ("cooperate", "defect"): (0, 10),
                ("defect", "cooperate"): (10, 0),
                ("defect", "defect"): (5, 5),
            },
            ("cooperate", "cooperate"),
            "Akata et al. 2023 (options J = cooperate, F = defect)",
        ),
        MatrixGame(
            "battle-of-the-sexes",
            "the Battle of the Sexes",
            ("football", "ballet"),
            {
                ("football", "football"): (10, 7),
                ("football", "ballet"): (0, 0),
                ("ballet", "football"): (0, 0),
                ("ballet", "ballet"): (7, 10),
            },
            # Cooperating here is yielding to the partner's favourite.
            ("ballet", "football"),
            "Akata et al. 2023 (options J = football, player 0's favourite; F = ballet, player 1's)",
        ),
        MatrixGame(
            "chicken",
            "the game of Chicken",
            ("swerve", "straight"),
            {
                ("swerve", "swerve"): (3, 3),
                ("swerve", "straight"): (2, 4),
                ("straight", "swerve"): (4, 2),
                ("straight", "straight"): (1, 1),
            },
            ("swerve", "swerve"),
            "ordinal form of Rapoport & Guyer 1966",
        ),
        MatrixGame(
            "stag-hunt",
            "the Stag Hunt",
            ("stag", "hare"),
            {
                ("stag", "stag"): (4, 4),
                ("stag", "hare"): (1, 3),
                ("hare", "stag"): (3, 1),
                ("hare", "hare"): (2, 2),
            },
            ("stag", "stag"),
            "ordinal form of Rapoport & Guyer 1966",
        ),
    )
}


@dataclass(frozen=True)
class Round:
    """One played round: each player's move (None when its action was invalid) and points."""

    moves: tuple[str | None, str | None]
    points: tuple[int, int]


def _shown(action: str, limit: int = 40) -> str:
    """A short, printable-ASCII rendering of an action for feedback (never echo huge or odd text)."""
    text = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in action[:limit])
    return text + ("..." if len(action) > limit else "")


class RepeatedGameEnv(MultiAgentEnv):
    """A repeated 2x2 game for ``player_0`` and ``player_1`` with simultaneous moves.

    Args:
        game: a key of ``GAMES``.
        rounds: how many rounds are played (the players are told).

    An invalid action (anything but exactly one option name) forfeits the round: the player scores the
    spec's penalty (0, no more than any payoff) and its move is recorded as invalid; the partner scores the
    most its own choice could have earned, so a partner's mistake never costs a player anything. When both
    are invalid both score the penalty.
    """

    def __init__(self, game: str = "prisoners-dilemma", rounds: int = DEFAULT_ROUNDS) -> None:
        if game not in GAMES:
            raise SpecError(f"unknown game {game!r}; choose one of {', '.join(GAMES)}")
        if not isinstance(rounds, int) or rounds < 1:
            raise SpecError(f"rounds must be a positive integer, not {rounds!r}")
        self.game = GAMES[game]
        self.rounds = rounds
        self.possible_agents = list(PLAYERS)
        self.agents = []
        self.history: list[Round] = []
        options = "|".join(re.escape(o) for o in self.game.options)
        # The whole reply: optional punctuation or a leading "option:", then exactly one option name.
        self._action_re = re.compile(rf"[\W_]*(?:option\s*:?\s*)?({options})[\W_]*", re.IGNORECASE)

    # ------------------------------------------------------------------ the players' text

    def _penalty(self) -> float:
        spec = getattr(self, "spec", None)
        return spec.invalid_action.penalty if spec else 0.0

    def _choice_line(self) -> str:
        a, b = self.game.options
        return f"{a} or {b}"

    def instructions(self, agent: str) -> str:
        i = self._index(agent)
        a, b = self.game.options
        lines = [
            f"You are playing {self.game.title} repeatedly with another player: {self.rounds} rounds in total "
            f"with the same player. In each round you and the other player choose at the same time between two "
            f"options, {a} and {b}, without seeing each other's choice. The points for a round are:"
        ]
        for mine in self.game.options:
            for theirs in self.game.options:
                me, them = self.game.mine(i, mine, theirs)
                lines.append(
                    f"- If you choose {mine} and the other player chooses {theirs}, you win {me} points and the "
                    f"other player wins {them} points."
                )
        lines.append(
            "After each round you see both choices and both players' points. Your goal is to win as many points "
            "as possible in total over all rounds."
        )
        lines.append(
            f"Reply with exactly one word, the option you choose: {a} or {b}. Any other reply (empty, both "
            f"options, anything else) is invalid: you forfeit the round and win {self._penalty():g} points, "
            "while the other player wins the most its own choice could have won."
        )
        return "\n".join(lines)

    def _observe(self, agent: str, note: str = "") -> str:
        i = self._index(agent)
        j = 1 - i
        lines = [note] if note else []
        if not self.history:
            lines.append("No rounds have been played yet.")
        else:
            shown = self.history[-MAX_HISTORY_SHOWN:]
            first = len(self.history) - len(shown) + 1
            if first > 1:
                lines.append(f"(rounds 1 to {first - 1} are not listed)")
            for n, played in enumerate(shown, start=first):
                mine = f"you chose {played.moves[i]}" if played.moves[i] else "you made an invalid move"
                theirs = (
                    f"the other player chose {played.moves[j]}"
                    if played.moves[j]
                    else "the other player made an invalid move"
                )
                lines.append(
                    f"Round {n}: {mine}, {theirs}. You won {played.points[i]} points and the other player won "
                    f"{played.points[j]} points."
                )
        totals = self.totals()
        lines.append(f"Your total: {totals[i]:g} points; the other player's total: {totals[j]:g} points.")
        if self._finished():
            lines.append(f"The game is over after {len(self.history)} rounds.")
        else:
            lines.append(f"Round {len(self.history) + 1} of {self.rounds}: choose one option, {self._choice_line()}.")
        return "\n".join(lines)

    # ------------------------------------------------------------------ the environment contract

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, Step]:
        """Start a game. Nothing is random in the game itself; ``seed`` only names the episode."""
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}; RepeatedGameEnv takes none")
        self.history = []
        self.agents = list(self.possible_agents)
        return {a: Step(self._observe(a), 0.0, info={"invalid_action": False, "round": 0}) for a in self.agents}

    def parse(self, action: str) -> str | None:
        """The option named by ``action`` (``"Defect."`` -> ``"defect"``), or None if it is not exactly one."""
        if not isinstance(action, str) or len(action) > _MAX_ACTION_CHARS:
            return None
        match = self._action_re.fullmatch(action)
        return match.group(1).lower() if match else None

    async def step(self, actions: Mapping[str, str]) -> dict[str, Step]:
        self._check_actions(actions)
        moves = (self.parse(actions[PLAYERS[0]]), self.parse(actions[PLAYERS[1]]))
        self.history.append(Round(moves, self._points(moves)))
        limit = self._require_spec().max_turns
        over_limit = len(self.history) >= limit and len(self.history) < self.rounds
        terminated = len(self.history) >= self.rounds
        if terminated or over_limit:
            self.agents = []
        steps = {}
        for i, agent in enumerate(PLAYERS):
            invalid = moves[i] is None
            note = ""
            if invalid:
                note = (
                    f"Your reply '{_shown(actions[agent])}' was not a valid choice: reply with exactly one word, "
                    f"{self._choice_line()}. You forfeited round {len(self.history)}."
                )
            info = {
                "invalid_action": invalid,
                "round": len(self.history),
                "moves": dict(zip(PLAYERS, moves, strict=True)),
            }
            steps[agent] = Step(
                self._observe(agent, note),
                float(self.history[-1].points[i]),
                terminated,
                over_limit,
                info,
            )
        return steps

    def _points(self, moves: tuple[str | None, str | None]) -> tuple[int, int]:
        penalty = int(self._penalty())
        a, b = moves
        if a is not None and b is not None:
            return self.game.payoff(a, b)
        if a is None and b is None:
            return (penalty, penalty)
        if a is None:
            assert b is not None
            return (penalty, max(self.game.payoff(o, b)[1] for o in self.game.options))
        return (max(self.game.payoff(a, o)[0] for o in self.game.options), penalty)

    def _finished(self) -> bool:
        return not self.agents and bool(self.history)

    def _index(self, agent: str) -> int:
        try:
            return PLAYERS.index(agent)
        except ValueError:
            raise EnvError(f"unknown player {agent!r}; the players are {', '.join(PLAYERS)}") from None

    # ------------------------------------------------------------------ measures and policies

    def totals(self) -> tuple[float, float]:
        """Each player's points so far."""
        return (
            float(sum(r.points[0] for r in self.history)),
            float(sum(r.points[1] for r in self.history)),
        )

    def cooperated(self, played: Round, player: int) -> bool:
        return played.moves[player] == self.game.cooperative[player]

    def metrics(self) -> dict[str, Any]:
        """Totals, each player's cooperation rate, the mutual cooperation rate (and the coordination rate in
        the Battle of the Sexes: both chose the same option), over the rounds played."""
        n = len(self.history)

        def rate(hits: int) -> float:
            return hits / n if n else 0.0

        totals = self.totals()
        out: dict[str, Any] = {"rounds": n}
        for i, agent in enumerate(PLAYERS):
            out[f"payoff_{agent}"] = totals[i]
            out[f"cooperation_rate_{agent}"] = rate(sum(self.cooperated(r, i) for r in self.history))
            out[f"invalid_{agent}"] = sum(r.moves[i] is None for r in self.history)
        out["mutual_cooperation_rate"] = rate(
            sum(self.cooperated(r, 0) and self.cooperated(r, 1) for r in self.history)
        )
        if self.game.name == "battle-of-the-sexes":
            out["coordination_rate"] = rate(
                sum(r.moves[0] is not None and r.moves[0] == r.moves[1] for r in self.history)
            )
        return out

    def scripted_policies(self) -> dict[str, MultiPolicy]:
        return dict(POLICIES)


# --------------------------------------------------------------------------- scripted partners


def _game(env: MultiAgentEnv, agent: str) -> tuple[RepeatedGameEnv, int]:
    if not isinstance(env, RepeatedGameEnv):
        raise EnvError(f"repeated-game policies drive RepeatedGameEnv, not {type(env).__name__}")
    return env, env._index(agent)


def always_cooperate(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """The cooperative option every round."""
    game, i = _game(env, agent)
    return game.game.cooperative[i]


def always_defect(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """The selfish option every round."""
    game, i = _game(env, agent)
    return game.game.selfish(i)


def tit_for_tat(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """The cooperative option first, then the option the partner chose in the previous round (the selfish
    option after a partner's invalid move). In the Battle of the Sexes this follows the partner's last
    choice."""
    game, i = _game(env, agent)
    if not game.history:
        return game.game.cooperative[i]
    return game.history[-1].moves[1 - i] or game.game.selfish(i)


def grim_trigger(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Cooperate until the partner fails to cooperate once (an invalid move counts), then defect forever."""
    game, i = _game(env, agent)
    if any(not game.cooperated(r, 1 - i) for r in game.history):
        return game.game.selfish(i)
    return game.game.cooperative[i]


def alternating(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Cooperative in odd rounds (1, 3, ...), selfish in even ones."""
    game, i = _game(env, agent)
    return game.game.cooperative[i] if len(game.history) % 2 == 0 else game.game.selfish(i)


def random_choice(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Either option with probability 1/2."""
    game, _ = _game(env, agent)
    return rng.choice(game.game.options)


def follow_the_pattern(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """For coordination games: predict the partner's next option and choose the same one.

    The prediction (in the spirit of Akata et al.'s "social chain-of-thought": predict, then respond) comes
    from whichever of three simple partner models explained the partner's last six choices best: it copies
    this player's last option, it repeats its own last option, or it alternates (ties in that order). Round
    1 opens with the player's own favourite. While no model has predicted anything yet, player 0 keeps its
    favourite and player 1 takes the partner's last option: a fixed convention, so that two such players
    coordinate instead of swapping options forever.
    """
    game, i = _game(env, agent)
    favourite = game.game.selfish(i)
    history = game.history[-6:]
    if not history:
        return favourite
    a, b = game.game.options

    def other(option: str | None) -> str | None:
        return None if option is None else (b if option == a else a)

    def predictions(k: int) -> dict[str, str | None]:
        """What each model predicts for the partner's move after ``history[k]``."""
        last = history[k].moves[1 - i]
        return {"copy": history[k].moves[i], "repeat": last, "alternate": other(last)}

    score = dict.fromkeys(("copy", "repeat", "alternate"), 0)
    for k in range(len(history) - 1):
        for model, predicted in predictions(k).items():
            score[model] += predicted is not None and predicted == history[k + 1].moves[1 - i]
    best = max(score, key=lambda m: score[m])
    if score[best] == 0:
        return favourite if i == 0 else (history[-1].moves[1 - i] or favourite)
    return predictions(len(history) - 1)[best] or favourite


def cautious_tit_for_tat(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Tit-for-tat that gives in to a partner who chose the selfish option in each of the last two rounds:
    in Chicken, retaliating against a partner who always goes straight only means crashing every round."""
    game, i = _game(env, agent)
    last_two = game.history[-2:]
    if len(last_two) == 2 and not any(game.cooperated(r, 1 - i) for r in last_two):
        return game.game.cooperative[i]
    return tit_for_tat(env, agent, rng)


# The strong policy of each game (``optimal``; its results against every scripted partner are in
# docs/envs/games.md). Tit-for-tat where reciprocity pays: Axelrod's winner in the Prisoner's Dilemma, and
# in the Stag Hunt it hunts the stag with anyone who does. Grim trigger scores a little more against these
# fixed partners (it exploits the alternating and random ones once they defect) but never forgives, so one
# defection by an adaptive partner, such as a model, locks in mutual defection; tit-for-tat is the better
# teacher. In Chicken, a tit-for-tat that gives in to a stubborn partner; in the Battle of the Sexes, the
# pattern follower.
OPTIMAL: dict[str, MultiPolicy] = {
    "prisoners-dilemma": tit_for_tat,
    "battle-of-the-sexes": follow_the_pattern,
    "chicken": cautious_tit_for_tat,
    "stag-hunt": tit_for_tat,
}


def optimal(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """The game's strong policy (``OPTIMAL``)."""
    game, _ = _game(env, agent)
    return OPTIMAL[game.game.name](env, agent, rng)


POLICIES: dict[str, MultiPolicy] = {
    "optimal": optimal,
    "tit-for-tat": tit_for_tat,
    "grim-trigger": grim_trigger,
    "always-defect": always_defect,
    "always-cooperate": always_cooperate,
    "alternating": alternating,
    "random": random_choice,
}
