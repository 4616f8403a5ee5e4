"""Tests of bargaining-v0: the alternating-offers rules, discounting, private reservation values, invalid
moves of every kind, the scripted policies, metrics, the turn-to-parallel converter and the conformance
checks."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import Step
from palaestra.envs import make_multi, turn_to_parallel
from palaestra.envs.bargaining import POLICIES, BargainingEnv, Move, parse_move, rubinstein_keep
from palaestra.envs.multi import MultiPolicy
from palaestra.testing import check_multi_env

P0, P1 = "player_0", "player_1"
FIXED = {"reservations": {P0: 37, P1: 23}}


def _env(**kwargs: object) -> BargainingEnv:
    env = make_multi("bargaining-v0", **kwargs)
    assert isinstance(env, BargainingEnv)
    return env


async def _act(env: BargainingEnv, actions: Sequence[str]) -> list[dict[str, Step]]:
    """Each action in turn from whichever player is to act."""
    out = []
    for action in actions:
        (agent,) = env.acting()
        out.append(await env.step({agent: action}))
    return out


async def _play(env: BargainingEnv, p0: MultiPolicy, p1: MultiPolicy, seed: int = 0, **reset: object) -> None:
    rng = random.Random(seed)
    await env.reset(seed=seed, **reset)  # type: ignore[arg-type]
    while env.agents:
        (agent,) = env.acting()
        await env.step({agent: (p0 if agent == P0 else p1)(env, agent, rng)})


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "move"),
    [
        ("Offer: 60", Move("offer", 60)),
        ("offer 0", Move("offer", 0)),
        ("OFFER:100.", Move("offer", 100)),
        ("**Offer: 55**", Move("offer", 55)),
        ("Accept", Move("accept")),
        (" accept! ", Move("accept")),
        ("Reject.", Move("reject")),
    ],
)
def test_parse_valid_moves(text: str, move: Move) -> None:
    assert parse_move(text, 100) == move


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not 'Offer"),
        ("I accept your offer", "not 'Offer"),
        ("Accept Reject", "not 'Offer"),
        ("Offer: 101", "out of range"),
        ("Offer: -5", "whole number"),
        ("Offer: 50.5", "whole number"),
        ("Offer: lots", "whole number"),
        ("Offer:", "whole number"),
        ("Offer: 60 and 40", "whole number"),
        ("x" * 10_000, "over 100 characters"),
        ("上", "not 'Offer"),
    ],
)
def test_parse_rejects_with_a_reason(text: str, why: str) -> None:
    reason = parse_move(text, 100)
    assert isinstance(reason, str) and why in reason


# --------------------------------------------------------------------------- rules and discounting


async def test_reset_states_only_the_players_own_reservation() -> None:
    env = _env()
    steps = await env.reset(seed=5, options=FIXED)
    assert steps[P0].observation == (
        "Your reservation value is 37 (what you get if there is no deal; the other player does not know it).\n"
        "Round 1 of 10 (a unit agreed now is worth 1): your turn to propose. Reply 'Offer: <n>' to keep n units "
        "(0 to 100)."
    )
    assert steps[P1].observation.startswith("Your reservation value is 23 ")
    assert steps[P1].observation.endswith(
        "Round 1 of 10 (a unit agreed now is worth 1): waiting for the other player to propose."
    )
    assert env.acting() == [P0]


async def test_reject_then_counter_proposal_accepted_in_round_two() -> None:
    env = _env()
    await env.reset(seed=0, options=FIXED)
    steps = await _act(env, ["Offer: 70", "Reject", "Offer: 60"])
    assert env.acting() == [P0] and env.round == 2
    assert "the other player offers you 40 units (worth 36 to you now)" in steps[-1][P0].observation
    (final,) = await _act(env, ["Accept"])
    # Round 2: worth 0.9 per unit; player 0 gets 40 units, player 1 60.
    assert final[P0].reward == pytest.approx(36.0) and final[P1].reward == pytest.approx(54.0)
    assert all(s.terminated for s in final.values()) and env.agents == []
    assert final[P0].observation.endswith("Deal in round 2: you get 40 units, worth 36 to you. The game is over.")
    metrics = env.metrics()
    assert metrics["agreement"] is True and metrics["success"] is True and metrics["agreement_round"] == 2
    assert (metrics["share_player_0"], metrics["share_player_1"]) == (40, 60)
    assert metrics["utility_player_0"] == pytest.approx(36.0) and metrics["efficiency"] == pytest.approx(0.9)
    with pytest.raises(EnvError):
        await env.step({P0: "Accept"})


async def test_counter_offers_with_a_steep_discount() -> None:
    env = _env(delta=0.5)
    await env.reset(seed=0, options=FIXED)
    steps = await _act(env, ["Offer: 80", "Offer: 70", "Offer: 55", "Accept"])
    # Two counter-offers: the deal is in round 3, worth 0.5 ** 2 = 0.25 per unit; player 0 keeps 55.
    assert steps[-1][P0].reward == pytest.approx(13.75) and steps[-1][P1].reward == pytest.approx(11.25)
    assert env.metrics()["agreement_round"] == 3 and env.metrics()["efficiency"] == pytest.approx(0.25)
    history = steps[-1][P1].observation.split("History:\n")[1]
    assert history.splitlines()[:4] == [
        "Round 1: The other player proposed: it keeps 80, you get 20.",
        "Round 2: You rejected the offer and proposed: you keep 70, the other player gets 30.",
        "Round 3: The other player rejected the offer and proposed: it keeps 55, you get 45.",
        "Round 3: You accepted.",
    ]


async def test_no_deal_after_the_last_round_pays_the_reservation_values() -> None:
    env = _env(max_rounds=2)
    await env.reset(seed=0, options=FIXED)
    steps = await _act(env, ["Offer: 70", "Reject", "Offer: 60"])
    assert all(s.reward == 0.0 for step in steps for s in step.values())
    assert "the last round" in steps[-1][P0].observation
    (final,) = await _act(env, ["Offer: 50"])  # a counter-offer in the last round is a rejection
    assert (final[P0].reward, final[P1].reward) == (37.0, 23.0)
    assert all(s.terminated and not s.truncated for s in final.values())
    assert "counter-offer ended the game as a rejection" in final[P0].observation
    assert final[P1].observation.endswith("No deal. You get your reservation value, 23. The game is over.")
    metrics = env.metrics()
    assert metrics["agreement"] is False and metrics["agreement_round"] is None and metrics["efficiency"] == 0.0
    assert (metrics["utility_player_0"], metrics["utility_player_1"]) == (37.0, 23.0)


async def test_max_turns_truncates_without_a_deal() -> None:
    env = _env(max_turns=3)
    await env.reset(seed=0, options=FIXED)
    steps = await _act(env, ["Offer: 70", "Reject", "Offer: 60"])
    assert all(s.truncated and not s.terminated for s in steps[-1].values())
    assert (steps[-1][P0].reward, steps[-1][P1].reward) == (37.0, 23.0)


async def test_only_the_acting_player_may_move() -> None:
    env = _env()
    await env.reset(seed=0)
    with pytest.raises(EnvError, match="not acting"):
        await env.step({P1: "Offer: 50"})
    await env.step({P0: "Offer: 50"})
    assert env.acting() == [P1]
    with pytest.raises(EnvError):
        await env.step({P0: "Accept", P1: "Accept"})


def test_bad_constructor_arguments_are_spec_errors() -> None:
    for kwargs in ({"delta": 0.0}, {"delta": 1.5}, {"surplus": 0}, {"max_rounds": 0}, {"max_reservation": 500}):
        with pytest.raises(SpecError):
            BargainingEnv(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- invalid actions


@pytest.mark.parametrize(
    "text", ["", "%%%", "Offer: 150", "Offer: -3", "Offer: 12.5", "Offer: half", "I think 50 is fair", "x" * 10_000]
)
async def test_invalid_proposal_costs_one_and_passes_the_turn(text: str) -> None:
    env = _env()
    await env.reset(seed=0, options=FIXED)
    steps = await env.step({P0: text})
    assert steps[P0].info == {"invalid_action": True, "round": 2}
    assert steps[P1].info == {"invalid_action": False, "round": 2}
    assert (steps[P0].reward, steps[P1].reward) == (-1.0, 0.0)
    assert steps[P0].observation.startswith("Your reply '") and "was invalid" in steps[P0].observation
    assert "Round 1: You made an invalid move; the round ended without a deal." in steps[P0].observation
    assert env.round == 2 and env.acting() == [P1] and env.offer is None
    assert len(steps[P0].observation) < 2000


@pytest.mark.parametrize("word", ["Accept", "Reject"])
async def test_accept_or_reject_with_no_offer_on_the_table_is_invalid(word: str) -> None:
    env = _env()
    await env.reset(seed=0, options=FIXED)
    steps = await env.step({P0: word})
    assert steps[P0].info["invalid_action"] is True and steps[P0].reward == -1.0
    assert f"there is no offer on the table to {word.lower()}" in steps[P0].observation


async def test_invalid_answer_lets_the_offer_lapse_and_the_proposer_propose_again() -> None:
    env = _env()
    await env.reset(seed=0, options=FIXED)
    steps = await _act(env, ["Offer: 60", "maybe later"])
    assert steps[-1][P1].info["invalid_action"] is True and steps[-1][P1].reward == -1.0
    assert env.offer is None and env.round == 2 and env.acting() == [P0]
    steps = await _act(env, ["Offer: 55", "Accept"])
    assert steps[-1][P0].reward == pytest.approx(55 * 0.9) and env.metrics()["invalid_player_1"] == 1


async def test_invalid_move_in_the_last_round_ends_the_game_with_the_penalty() -> None:
    env = _env(max_rounds=1)
    await env.reset(seed=0, options=FIXED)
    steps = await _act(env, ["Offer: 60", "???"])
    assert (steps[-1][P0].reward, steps[-1][P1].reward) == (37.0, 23.0 - 1.0)
    assert env.agents == []


# --------------------------------------------------------------------------- private valuations


async def test_a_reservation_value_is_never_shown_to_the_other_player() -> None:
    env = _env()
    greedy = POLICIES["greedy"]
    seen: dict[str, list[str]] = {P0: [env.instructions(P0)], P1: [env.instructions(P1)]}
    rng = random.Random(0)
    steps = await env.reset(seed=0, options=FIXED)
    while True:
        for agent, step in steps.items():
            seen[agent].append(step.observation)
            seen[agent].append(repr(step.info))
        if not env.agents:
            break
        (agent,) = env.acting()
        steps = await env.step({agent: greedy(env, agent, rng)})
    assert env.metrics()["agreement"] is False and len(seen[P0]) > 20  # a whole game of offers was seen
    assert all("37" not in text for text in seen[P1]) and all("23" not in text for text in seen[P0])
    observations = seen[P0][1::2]  # after the instructions: observation, info, observation, ...
    assert all(text.startswith("Your reservation value is 37 ") for text in observations)


async def test_seeds_draw_reservations_and_state_them_only_to_their_owner() -> None:
    env = _env()
    drawn = set()
    for seed in range(20):
        steps = await env.reset(seed=seed)
        r0, r1 = env.reservation(P0), env.reservation(P1)
        drawn.add((r0, r1))
        assert 0 <= r0 <= 40 and 0 <= r1 <= 40
        assert f"Your reservation value is {r0} " in steps[P0].observation
        assert f"Your reservation value is {r1} " in steps[P1].observation
        assert f"reservation value is {r0} " not in steps[P1].observation or r0 == r1
    assert len(drawn) > 10
    await env.reset(seed=7)
    first = (env.reservation(P0), env.reservation(P1))
    await env.reset(seed=7)
    assert (env.reservation(P0), env.reservation(P1)) == first


# --------------------------------------------------------------------------- scripted policies


def test_rubinstein_share() -> None:
    assert rubinstein_keep(100, 0.9) == 53  # 100 / 1.9 = 52.6
    assert rubinstein_keep(100, 1.0) == 50
    assert rubinstein_keep(100, 0.5) == 67  # 66.7


async def test_optimal_self_play_agrees_at_once_on_the_rubinstein_split() -> None:
    env = _env()
    for seed in range(5):
        await _play(env, POLICIES["optimal"], POLICIES["optimal"], seed=seed)
        m = env.metrics()
        assert m["agreement_round"] == 1 and (m["share_player_0"], m["share_player_1"]) == (53, 47)
        assert m["efficiency"] == 1.0


async def test_optimal_against_fair_agrees_in_round_two() -> None:
    env = _env()
    await _play(env, POLICIES["optimal"], POLICIES["fair"], options=FIXED)
    # Optimal keeps 53; fair wants 50 and counter-offers an even split, which optimal accepts (50 >= 47 and
    # 50 x 0.9 = 45 beats its reservation of 37).
    m = env.metrics()
    assert m["agreement_round"] == 2 and m["utility_player_0"] == pytest.approx(45.0)
    assert m["utility_player_1"] == pytest.approx(45.0)


async def test_optimal_raises_its_demand_to_beat_its_reservation_late() -> None:
    env = _env()
    await env.reset(seed=0, options={"reservations": {P0: 40, P1: 0}})
    await _act(env, ["Offer: 50", "Reject"] * 3 + ["Offer: 50"])  # round 4, proposed by player 1
    rng = random.Random(0)
    assert env.round == 4 and env.acting() == [P0]
    # 50 units x 0.9 ** 3 = 36.45 < 40: optimal rejects with a counter-offer for round 5 keeping
    # 40 / 0.9 ** 4 = 60.97 -> 61 units rather than the usual 53.
    assert POLICIES["optimal"](env, P0, rng) == "Offer: 61"
    await _act(env, ["Reject"])  # now it proposes in round 5 itself: the same demand
    assert env.round == 5 and POLICIES["optimal"](env, P0, rng) == "Offer: 61"
    await env.reset(seed=0, options={"reservations": {P0: 40, P1: 0}})
    assert POLICIES["optimal"](env, P0, rng) == "Offer: 53"


async def test_fair_and_greedy() -> None:
    env = _env()
    await _play(env, POLICIES["fair"], POLICIES["fair"], options=FIXED)
    assert env.metrics()["agreement_round"] == 1 and env.metrics()["share_player_0"] == 50
    await _play(env, POLICIES["greedy"], POLICIES["greedy"], options=FIXED)
    m = env.metrics()
    assert m["agreement"] is False and m["rounds"] == 10 and m["utility_player_0"] == 37.0
    await env.reset(seed=0, options=FIXED)
    rng = random.Random(0)
    assert POLICIES["greedy"](env, P0, rng) == "Offer: 90"
    await _act(env, ["Offer: 21"])  # leaves greedy 79 < 80
    assert POLICIES["greedy"](env, P1, rng) == "Offer: 90"
    await _act(env, ["Reject", "Offer: 20"])
    assert POLICIES["greedy"](env, P0, rng) == "Accept"


async def test_random_policy_plays_only_valid_moves_and_is_seeded() -> None:
    env = _env()
    for seed in range(10):
        rng = random.Random(seed)
        await env.reset(seed=seed)
        while env.agents:
            (agent,) = env.acting()
            action = POLICIES["random"](env, agent, rng)
            steps = await env.step({agent: action})
            assert steps[agent].info["invalid_action"] is False, action


# --------------------------------------------------------------------------- determinism, copies, converters


async def test_copy_mid_game_is_independent() -> None:
    env = _env()
    await env.reset(seed=3)
    await _act(env, ["Offer: 70", "Offer: 60"])
    clone = env.copy()
    a = await clone.step({P0: "Accept"})
    assert env.agents == [P0, P1] and env.deal is None and clone.deal is not None
    b = await env.step({P0: "Accept"})
    assert a == b


async def test_turn_to_parallel_applies_actions_in_turn_order() -> None:
    env = turn_to_parallel(_env())
    assert env.mode == "parallel"
    await env.reset(seed=0, options=FIXED)
    assert env.acting() == [P0, P1]
    # Player 0 proposes, then player 1 answers within the same parallel step.
    steps = await env.step({P0: "Offer: 60", P1: "Offer: 55"})
    assert all(s.reward == 0.0 for s in steps.values())
    steps = await env.step({P0: "Accept", P1: "Accept"})  # only player 0 is to act; the deal ends the game
    assert steps[P0].reward == pytest.approx(45 * 0.9) and steps[P1].reward == pytest.approx(55 * 0.9)
    assert env.agents == [] and env.metrics()["agreement_round"] == 2
    # Invalid actions are flagged through the wrapper.
    await env.reset(seed=0, options=FIXED)
    steps = await env.step({P0: "garbage", P1: "Offer: 50"})
    assert steps[P0].info["invalid_action"] is True and steps[P1].info["invalid_action"] is False
    assert steps[P0].reward == -1.0


def test_check_multi_env() -> None:
    check_multi_env("bargaining-v0", seeds=(0, 1, 2))


def test_check_multi_env_on_the_parallel_form() -> None:
    env = turn_to_parallel(make_multi("bargaining-v0"))
    check_multi_env(env, seeds=(0,))
