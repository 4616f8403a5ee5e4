"""Alternating-offers bargaining over a surplus with discounting and private reservation values:
``bargaining-v0``.

Rubinstein's (1982) alternating-offers game, finite and with private outside options. Two players split a
surplus of 100 units. In each round one player proposes how many units it keeps; the other accepts (the
deal is done), rejects (and proposes next), or rejects by making a counter-offer straight away. A deal
struck in round t is worth ``delta ** (t - 1)`` times the units to each player (delta 0.9 by default: delay
shrinks the pie). Each player has a private reservation value, drawn by the seed from 0..40 units, which it
receives if there is no deal after the last round (10 by default); only that player is told its value.
``player_0`` proposes first. The game is turn-based: ``acting()`` names the one player to move.

Rubinstein's infinite-horizon equilibrium gives the first proposer ``1 / (1 + delta)`` of the surplus
(52.6 units at delta 0.9); the ``optimal`` policy plays that stationary strategy (see ``optimal``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import Step
from palaestra.envs.multi import Mode, MultiAgentEnv, MultiPolicy

PLAYERS: tuple[str, str] = ("player_0", "player_1")
_MAX_ACTION_CHARS = 100
_EDGE = r"[\s*`'\".!]*"  # what may surround an action: whitespace, quotes, markdown emphasis, a full stop
_WORD_RE = re.compile(rf"{_EDGE}(accept|reject){_EDGE}", re.IGNORECASE)
_OFFER_RE = re.compile(rf"{_EDGE}offer\s*[:=]?\s*(.*?){_EDGE}", re.IGNORECASE | re.DOTALL)

# Greedy keeps this many units of a surplus of 100 (scaled for other sizes) and accepts only offers that
# leave it at least GREEDY_ACCEPT.
GREEDY_KEEP = 0.9
GREEDY_ACCEPT = 0.8


@dataclass(frozen=True)
class Move:
    """A parsed action: ``kind`` and, for an offer, the units the proposer keeps."""

    kind: Literal["offer", "accept", "reject"]
    keep: int | None = None


@dataclass(frozen=True)
class Event:
    """One thing that happened, for the history in the observations."""

    round: int
    agent: str
    kind: Literal["offer", "counter", "accept", "reject", "invalid"]
    keep: int | None = None


def parse_move(action: str, surplus: int) -> Move | str:
    """The move in ``action``, or a sentence saying why it is not one (for the invalid-action feedback)."""
    if not isinstance(action, str):
        return "an action must be text"
    if len(action) > _MAX_ACTION_CHARS:
        return f"the reply is over {_MAX_ACTION_CHARS} characters"
    word = _WORD_RE.fullmatch(action)
    if word:
        return Move("accept" if word.group(1).lower() == "accept" else "reject")
    offer = _OFFER_RE.fullmatch(action)
    if offer is None:
        return "it is not 'Offer: <your share>', 'Accept' or 'Reject'"
    amount = offer.group(1).strip()
    if not re.fullmatch(r"\d{1,9}", amount):
        return f"the offer must be a whole number of units from 0 to {surplus}"
    keep = int(amount)
    if keep > surplus:
        return f"the offer {keep} is out of range: you can keep from 0 to {surplus} units"
    return Move("offer", keep)


def _shown(action: str, limit: int = 40) -> str:
    """A short, printable-ASCII rendering of an action for feedback (never echo huge or odd text)."""
    text = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in action[:limit])
    return text + ("..." if len(action) > limit else "")


class BargainingEnv(MultiAgentEnv):
    """Alternating offers over ``surplus`` units between ``player_0`` (first proposer) and ``player_1``.

    Args:
        surplus: the units to split.
        delta: the discount factor per round (0 < delta <= 1).
        max_rounds: rounds before the game ends without a deal.
        max_reservation: reservation values are drawn uniformly from 0..max_reservation units.

    Actions: ``Offer: <n>`` (keep n units, the other gets the rest), ``Accept``, ``Reject``. A counter-offer
    rejects the offer on the table and starts the next round with the new offer; ``Reject`` ends the round
    and the rejecting player proposes next. In the last round there is no next round: a rejection or a
    counter-offer ends the game without a deal.

    Invalid actions (garbage, a number out of range or not whole, accepting or rejecting when no offer is on
    the table) cost the spec's penalty (-1); the round ends without a deal (an offer on the table lapses)
    and the other player proposes next.
    """

    mode: ClassVar[Mode] = "turn"
    reset_options = ("reservations",)

    def __init__(self, surplus: int = 100, delta: float = 0.9, max_rounds: int = 10, max_reservation: int = 40) -> None:
        if not isinstance(surplus, int) or surplus < 1:
            raise SpecError(f"surplus must be a positive whole number of units, not {surplus!r}")
        if not 0 < delta <= 1:
            raise SpecError(f"delta must be in (0, 1], not {delta!r}")
        if not isinstance(max_rounds, int) or max_rounds < 1:
            raise SpecError(f"max_rounds must be a positive integer, not {max_rounds!r}")
        if not isinstance(max_reservation, int) or not 0 <= max_reservation <= surplus:
            raise SpecError(f"max_reservation must be a whole number from 0 to surplus ({surplus})")
        self.surplus = surplus
        self.delta = float(delta)
        self.max_rounds = max_rounds
        self.max_reservation = max_reservation
        self.possible_agents = list(PLAYERS)
        self.agents = []
        self._reservation = {a: 0 for a in PLAYERS}
        self._reset_state()

    def _reset_state(self) -> None:
        self.round = 1
        self.turn = PLAYERS[0]
        self.proposer = PLAYERS[0]
        self.offer: int | None = None  # the units the proposer keeps, while an offer is on the table
        self.events: list[Event] = []
        self.deal: tuple[int, dict[str, int]] | None = None  # (round, units per player)
        self._steps = 0
        self._over = False

    # ------------------------------------------------------------------ state for players and policies

    def reservation(self, agent: str) -> int:
        """``agent``'s private reservation value (policies may read it; only ``agent`` is told it)."""
        return self._reservation[self._check_player(agent)]

    def weight(self, round: int | None = None) -> float:
        """What one unit agreed in ``round`` (default: the current round) is worth: ``delta ** (round - 1)``."""
        return self.delta ** ((self.round if round is None else round) - 1)

    @property
    def last_round(self) -> bool:
        return self.round >= self.max_rounds

    def offered_to(self, agent: str) -> int | None:
        """The units the offer on the table gives ``agent``, if ``agent`` is the one to answer it."""
        if self.offer is None or agent == self.proposer:
            return None
        return self.surplus - self.offer

    @staticmethod
    def other(agent: str) -> str:
        return PLAYERS[1] if agent == PLAYERS[0] else PLAYERS[0]

    def _check_player(self, agent: str) -> str:
        if agent not in PLAYERS:
            raise EnvError(f"unknown player {agent!r}; the players are {', '.join(PLAYERS)}")
        return agent

    def _penalty(self) -> float:
        spec = getattr(self, "spec", None)
        return spec.invalid_action.penalty if spec else -1.0

    # ------------------------------------------------------------------ the players' text

    def instructions(self, agent: str) -> str:
        self._check_player(agent)
        first = "You propose first." if agent == PLAYERS[0] else "The other player proposes first."
        return (
            f"You are bargaining with another player over how to split {self.surplus} units. {first} In each "
            "round one player proposes how many units it keeps; the other player gets the rest. The other player "
            "then accepts (the deal is done), rejects (and proposes next), or makes a counter-offer, which "
            "rejects the offer and proposes a new split at once. Proposers alternate.\n"
            f"Delay is costly: a deal in round t is worth {self.delta:g}^(t-1) times the units to each player "
            f"(round 1: full value; round 2: {self.delta:g}; round 3: {self.delta**2:g}; ...).\n"
            f"There are at most {self.max_rounds} rounds. If there is no deal by then, each player gets its own "
            "reservation value instead: yours is in every observation, and only you know it (the other player "
            "has its own, which you are not told).\n"
            "Your goal is the most value for yourself.\n"
            "Reply with exactly one action and nothing else:\n"
            f"- Offer: <n>   propose to keep n units (a whole number from 0 to {self.surplus}); the other player "
            f"gets {self.surplus} - n. Use it to propose, or to answer an offer with a counter-offer.\n"
            "- Accept        accept the offer on the table.\n"
            "- Reject        reject the offer on the table; you then propose in the next round.\n"
            f"Anything else, or Accept/Reject when no offer is on the table, is invalid: it costs "
            f"{self._penalty():g}, the round ends without a deal and the other player proposes next."
        )

    def _describe_event(self, agent: str, event: Event) -> str:
        who = "You" if event.agent == agent else "The other player"
        if event.kind in ("offer", "counter"):
            keep = event.keep or 0
            if event.agent == agent:
                split = f"you keep {keep}, the other player gets {self.surplus - keep}"
            else:
                split = f"it keeps {keep}, you get {self.surplus - keep}"
            verb = "rejected the offer and proposed" if event.kind == "counter" else "proposed"
            return f"Round {event.round}: {who} {verb}: {split}."
        if event.kind == "accept":
            return f"Round {event.round}: {who} accepted."
        if event.kind == "reject":
            return f"Round {event.round}: {who} rejected the offer."
        return f"Round {event.round}: {who} made an invalid move; the round ended without a deal."

    def _observe(self, agent: str, note: str = "") -> str:
        lines = [note] if note else []
        lines.append(
            f"Your reservation value is {self._reservation[agent]} (what you get if there is no deal; the other "
            "player does not know it)."
        )
        if self.events:
            lines.append("History:")
            lines.extend(self._describe_event(agent, e) for e in self.events[-2 * self.max_rounds :])
        lines.append(self._status(agent))
        return "\n".join(lines)

    def _status(self, agent: str) -> str:
        if self.deal is not None:
            round, units = self.deal
            mine = units[agent]
            return (
                f"Deal in round {round}: you get {mine} units, worth {mine * self.weight(round):g} to you. "
                "The game is over."
            )
        if self._over:
            return f"No deal. You get your reservation value, {self._reservation[agent]}. The game is over."
        where = (
            f"Round {self.round} of {self.max_rounds} (a unit agreed now is worth {self.weight():g})"
            + (", the last round" if self.last_round else "")
            + ": "
        )
        if agent != self.turn:
            waiting = "to answer your offer" if self.offer is not None else "to propose"
            return where + f"waiting for the other player {waiting}."
        if self.offer is None:
            return where + f"your turn to propose. Reply 'Offer: <n>' to keep n units (0 to {self.surplus})."
        given = self.surplus - self.offer
        counter = (
            "a counter-offer ends the game without a deal, since this is the last round"
            if self.last_round
            else "or a counter-offer 'Offer: <n>'"
        )
        return (
            where + f"the other player offers you {given} units (worth {given * self.weight():g} to you now). "
            f"Reply Accept, Reject, {counter}."
        )

    # ------------------------------------------------------------------ the environment contract

    def acting(self) -> list[str]:
        return [self.turn] if self.agents else []

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, Step]:
        """Start a game. ``options`` may fix ``"reservations"``: ``{"player_0": 12, "player_1": 30}``."""
        options = dict(options or {})
        rng = random.Random(seed)
        drawn = {a: rng.randint(0, self.max_reservation) for a in PLAYERS}
        fixed = options.pop("reservations", None)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}; BargainingEnv accepts 'reservations'")
        if fixed is not None:
            valid = all(isinstance(v, int) and 0 <= v <= self.surplus for v in fixed.values())
            if set(fixed) != set(PLAYERS) or not valid:
                raise EnvError(f"reservations must give each of {PLAYERS} a whole number from 0 to {self.surplus}")
            drawn = dict(fixed)
        self._reservation = drawn
        self._reset_state()
        self.agents = list(PLAYERS)
        return {a: Step(self._observe(a), 0.0, info={"invalid_action": False, "round": 1}) for a in PLAYERS}

    async def step(self, actions: Mapping[str, str]) -> dict[str, Step]:
        self._check_actions(actions)
        agent = self.turn
        action = actions[agent]
        self._steps += 1
        rewards = dict.fromkeys(PLAYERS, 0.0)
        move = parse_move(action, self.surplus)
        if isinstance(move, Move) and move.kind != "offer" and self.offer is None:
            move = f"there is no offer on the table to {move.kind}; propose with 'Offer: <n>'"
        note = ""
        if isinstance(move, str):
            rewards[agent] += self._penalty()
            note = f"Your reply '{_shown(action)}' was invalid: {move}. It cost {self._penalty():g}."
            self.events.append(Event(self.round, agent, "invalid"))
            self._end_round(next_proposer=self.other(agent))
        elif move.kind == "accept":
            assert self.offer is not None
            self.events.append(Event(self.round, agent, "accept"))
            units = {self.proposer: self.offer, agent: self.surplus - self.offer}
            self.deal = (self.round, units)
            self._over = True
            for a in PLAYERS:
                rewards[a] += units[a] * self.weight()
        elif move.kind == "reject":
            self.events.append(Event(self.round, agent, "reject"))
            self._end_round(next_proposer=agent)
        elif self.offer is None:
            self.events.append(Event(self.round, agent, "offer", move.keep))
            self.offer, self.turn = move.keep, self.other(agent)
        else:  # a counter-offer: a rejection, then this player's proposal in the next round
            if self.last_round:
                self.events.append(Event(self.round, agent, "reject"))
                note = "This was the last round, so your counter-offer ended the game as a rejection."
            self._end_round(next_proposer=agent)
            if not self._over:
                self.events.append(Event(self.round, agent, "counter", move.keep))
                self.offer, self.turn = move.keep, self.other(agent)
        truncated = not self._over and self._steps >= self._require_spec().max_turns
        if truncated:
            self._over = True
        if self._over and self.deal is None:
            for a in PLAYERS:
                rewards[a] += self._reservation[a]
        if self._over:
            self.agents = []
        return {
            a: Step(
                self._observe(a, note if a == agent else ""),
                rewards[a],
                self._over and not truncated,
                truncated,
                {"invalid_action": a == agent and isinstance(move, str), "round": self.round},
            )
            for a in PLAYERS
        }

    def _end_round(self, next_proposer: str) -> None:
        """The round ends without a deal: the next one starts with ``next_proposer``, or the game ends."""
        self.offer = None
        if self.last_round:
            self._over = True
            return
        self.round += 1
        self.proposer = self.turn = next_proposer

    # ------------------------------------------------------------------ measures and policies

    def metrics(self) -> dict[str, Any]:
        """Agreement, its round, each player's units and utility, efficiency, reservation values, invalid moves.

        Utility is the discounted value of the deal, or the reservation value without one. Efficiency is the
        share of the surplus realised: ``delta ** (round - 1)`` on agreement, 0 without (the surplus is lost).
        These are for analysis after the game; no player is shown the other's reservation value.
        """
        out: dict[str, Any] = {
            "agreement": self.deal is not None,
            "success": self.deal is not None,
            "agreement_round": self.deal[0] if self.deal else None,
            "efficiency": self.weight(self.deal[0]) if self.deal else 0.0,
            "rounds": self.round,
        }
        for a in PLAYERS:
            units = self.deal[1][a] if self.deal else None
            out[f"share_{a}"] = units
            out[f"utility_{a}"] = (
                units * self.weight(self.deal[0]) if self.deal and units is not None else float(self._reservation[a])
            )
            out[f"reservation_{a}"] = self._reservation[a]
            out[f"invalid_{a}"] = sum(e.kind == "invalid" and e.agent == a for e in self.events)
        return out

    def scripted_policies(self) -> dict[str, MultiPolicy]:
        return dict(POLICIES)


# --------------------------------------------------------------------------- scripted policies


def _bargaining(env: MultiAgentEnv) -> BargainingEnv:
    if not isinstance(env, BargainingEnv):
        raise EnvError(f"bargaining policies drive BargainingEnv, not {type(env).__name__}")
    return env


def _respond(env: BargainingEnv, agent: str, accept: bool, keep: int) -> str:
    if accept:
        return "Accept"
    return "Reject" if env.last_round else f"Offer: {keep}"


def rubinstein_keep(surplus: int, delta: float) -> int:
    """The proposer's share in Rubinstein's equilibrium, ``surplus / (1 + delta)``, rounded up."""
    return math.ceil(surplus / (1 + delta) - 1e-9)


def optimal(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Rubinstein's stationary equilibrium strategy, with the player's own reservation value as a floor.

    As proposer it keeps ``surplus / (1 + delta)`` (53 of 100 at delta 0.9), or more if that is worth less
    than its reservation value now. As responder it accepts a share of at least ``surplus - 53`` that beats
    its reservation value (in the last round, any share that beats it); otherwise it counter-offers. It uses
    only what its player knows: it never reads the other player's reservation value, and it ignores the
    finite horizon (which favours the last proposer), so it is strong but not unbeatable.
    """
    game = _bargaining(env)
    keep = rubinstein_keep(game.surplus, game.delta)
    floor = game.reservation(agent)
    offered = game.offered_to(agent)
    # The counter-offer proposes in the next round, where a unit is worth delta times less.
    next_weight = game.weight(game.round + 1)
    counter = min(game.surplus, max(keep, math.ceil(floor / next_weight - 1e-9)))
    if offered is None:
        return f"Offer: {min(game.surplus, max(keep, math.ceil(floor / game.weight() - 1e-9)))}"
    beats_floor = offered * game.weight() >= floor
    return _respond(game, agent, beats_floor and (game.last_round or offered >= game.surplus - keep), counter)


def greedy(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Always demands 90% of the surplus; accepts only offers of at least 80%."""
    game = _bargaining(env)
    keep = round(GREEDY_KEEP * game.surplus)
    offered = game.offered_to(agent)
    if offered is None:
        return f"Offer: {keep}"
    return _respond(game, agent, offered >= GREEDY_ACCEPT * game.surplus, keep)


def fair(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Proposes an even split (giving away the odd unit); accepts any offer of at least half."""
    game = _bargaining(env)
    keep = game.surplus // 2
    offered = game.offered_to(agent)
    if offered is None:
        return f"Offer: {keep}"
    return _respond(game, agent, offered * 2 >= game.surplus, keep)


def random_move(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """A uniformly random valid move: an offer keeping 0..surplus units; when answering an offer, Accept,
    Reject or a counter-offer with probability 1/3 each."""
    game = _bargaining(env)
    if game.offered_to(agent) is not None:
        kind = rng.choice(("accept", "reject", "offer"))
        if kind != "offer":
            return kind.capitalize()
    return f"Offer: {rng.randint(0, game.surplus)}"


POLICIES: dict[str, MultiPolicy] = {"optimal": optimal, "greedy": greedy, "fair": fair, "random": random_move}
