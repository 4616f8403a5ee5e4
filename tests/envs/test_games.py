"""Tests of the repeated 2x2 games (repeated-*-v0): payoffs, observations, invalid moves, the scripted
partners, metrics, the parallel-to-turn converter and the conformance checks."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from palaestra.core.errors import EnvError, SpecError
from palaestra.envs import make_multi, parallel_to_turn
from palaestra.envs.games import GAMES, POLICIES, RepeatedGameEnv
from palaestra.envs.multi import MultiAgentEnv, MultiPolicy
from palaestra.testing import check_multi_env

IDS = [f"repeated-{name}-v0" for name in GAMES]
P0, P1 = "player_0", "player_1"

# (move of player 0, move of player 1) -> (points of player 0, points of player 1), written out by hand
# from Akata et al. 2023 (PD, BoS) and the ordinal forms of Rapoport & Guyer 1966 (Chicken, Stag Hunt).
TABLES = {
    "prisoners-dilemma": {
        ("cooperate", "cooperate"): (8, 8),
        ("cooperate", "defect"): (0, 10),
        ("defect", "cooperate"): (10, 0),
        ("defect", "defect"): (5, 5),
    },
    "battle-of-the-sexes": {
        ("football", "football"): (10, 7),
        ("football", "ballet"): (0, 0),
        ("ballet", "football"): (0, 0),
        ("ballet", "ballet"): (7, 10),
    },
    "chicken": {
        ("swerve", "swerve"): (3, 3),
        ("swerve", "straight"): (2, 4),
        ("straight", "swerve"): (4, 2),
        ("straight", "straight"): (1, 1),
    },
    "stag-hunt": {
        ("stag", "stag"): (4, 4),
        ("stag", "hare"): (1, 3),
        ("hare", "stag"): (3, 1),
        ("hare", "hare"): (2, 2),
    },
}


def _env(env_id: str = "repeated-prisoners-dilemma-v0", **kwargs: object) -> RepeatedGameEnv:
    env = make_multi(env_id, **kwargs)
    assert isinstance(env, RepeatedGameEnv)
    return env


async def _play(env: MultiAgentEnv, p0: MultiPolicy, p1: MultiPolicy, seed: int = 0) -> list[dict[str, str]]:
    """Play a whole game; return each round's actions."""
    rng = random.Random(seed)
    await env.reset(seed=seed)
    rounds = []
    while env.agents:
        actions = {a: (p0 if a == P0 else p1)(env, a, rng) for a in env.acting()}
        rounds.append(actions)
        await env.step(actions)
    return rounds


async def _responses(policy: str, partner_moves: Sequence[str], game: str = "prisoners-dilemma") -> list[str]:
    """The moves ``policy`` (as player 0) makes against a fixed sequence of partner moves."""
    env = _env(f"repeated-{game}-v0", rounds=len(partner_moves))
    await env.reset(seed=0)
    rng = random.Random(0)
    out = []
    for move in partner_moves:
        mine = POLICIES[policy](env, P0, rng)
        out.append(mine)
        await env.step({P0: mine, P1: move})
    return out


# --------------------------------------------------------------------------- payoffs and text


@pytest.mark.parametrize("game", list(TABLES))
async def test_payoff_matrix_matches_the_hand_written_table(game: str) -> None:
    env = _env(f"repeated-{game}-v0")
    for (a, b), points in TABLES[game].items():
        await env.reset(seed=0)
        steps = await env.step({P0: a, P1: b})
        assert (steps[P0].reward, steps[P1].reward) == points
        assert steps[P0].info == {"invalid_action": False, "round": 1, "moves": {P0: a, P1: b}}


@pytest.mark.parametrize("game", list(TABLES))
def test_instructions_state_each_players_payoffs_and_the_format(game: str) -> None:
    env = _env(f"repeated-{game}-v0")
    a, b = env.game.options
    for i, agent in enumerate((P0, P1)):
        text = env.instructions(agent)
        assert "10 rounds in total" in text
        assert f"Reply with exactly one word, the option you choose: {a} or {b}." in text
        for (m0, m1), points in TABLES[game].items():
            mine, theirs = (m0, m1) if i == 0 else (m1, m0)
            me, them = points if i == 0 else points[::-1]
            assert (
                f"If you choose {mine} and the other player chooses {theirs}, you win {me} points and the other "
                f"player wins {them} points." in text
            )


async def test_observations_give_both_players_history_and_points() -> None:
    env = _env()
    first = await env.reset(seed=0)
    assert first[P0].observation == (
        "No rounds have been played yet.\n"
        "Your total: 0 points; the other player's total: 0 points.\n"
        "Round 1 of 10: choose one option, cooperate or defect."
    )
    await env.step({P0: "cooperate", P1: "defect"})
    steps = await env.step({P0: "defect", P1: "defect"})
    assert steps[P1].observation == (
        "Round 1: you chose defect, the other player chose cooperate. You won 10 points and the other player "
        "won 0 points.\n"
        "Round 2: you chose defect, the other player chose defect. You won 5 points and the other player won 5 "
        "points.\n"
        "Your total: 15 points; the other player's total: 5 points.\n"
        "Round 3 of 10: choose one option, cooperate or defect."
    )


async def test_the_game_ends_after_the_rounds_and_misuse_raises() -> None:
    env = _env(rounds=2)
    with pytest.raises(EnvError, match="before reset"):
        await env.step({P0: "cooperate", P1: "cooperate"})
    await env.reset(seed=0)
    with pytest.raises(EnvError, match="missing"):
        await env.step({P0: "cooperate"})
    first = await env.step({P0: "cooperate", P1: "cooperate"})
    assert not any(s.done for s in first.values())
    last = await env.step({P0: "cooperate", P1: "cooperate"})
    assert all(s.terminated and not s.truncated for s in last.values())
    assert last[P0].observation.endswith("The game is over after 2 rounds.")
    assert env.agents == []
    with pytest.raises(EnvError):
        await env.step({P0: "cooperate", P1: "cooperate"})


async def test_max_turns_below_the_rounds_truncates() -> None:
    env = _env(max_turns=3)
    await env.reset(seed=0)
    for _ in range(2):
        steps = await env.step({P0: "defect", P1: "defect"})
        assert not any(s.done for s in steps.values())
    steps = await env.step({P0: "defect", P1: "defect"})
    assert all(s.truncated and not s.terminated for s in steps.values())


def test_bad_constructor_arguments_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="unknown game"):
        RepeatedGameEnv(game="poker")
    with pytest.raises(SpecError, match="rounds"):
        RepeatedGameEnv(rounds=0)


# --------------------------------------------------------------------------- invalid moves


@pytest.mark.parametrize(
    ("text", "move"),
    [
        ("defect", "defect"),
        ("Defect.", "defect"),
        ("  COOPERATE\n", "cooperate"),
        ("**cooperate**", "cooperate"),
        ("Option: defect", "defect"),
        ("option defect", "defect"),
    ],
)
def test_lenient_forms_of_one_option_are_accepted(text: str, move: str) -> None:
    assert _env().parse(text) == move


@pytest.mark.parametrize(
    "text",
    ["", "   ", "cooperate defect", "cooperate or defect", "I cooperate", "maybe", "coop", "x" * 10_000, "上", "\x00"],
)
async def test_every_invalid_kind_forfeits_the_round(text: str) -> None:
    env = _env()
    await env.reset(seed=0)
    steps = await env.step({P0: text, P1: "defect"})
    assert steps[P0].info["invalid_action"] is True and steps[P1].info["invalid_action"] is False
    # The forfeiting player scores 0; the partner the most its own move (defect) could earn: 10.
    assert (steps[P0].reward, steps[P1].reward) == (0.0, 10.0)
    assert steps[P0].observation.startswith("Your reply '")
    assert "was not a valid choice: reply with exactly one word, cooperate or defect." in steps[P0].observation
    assert "Round 1: you made an invalid move, the other player chose defect." in steps[P0].observation
    assert "Round 1: you chose defect, the other player made an invalid move." in steps[P1].observation
    assert steps[P0].info["moves"] == {P0: None, P1: "defect"}
    assert len(steps[P0].observation) < 1000  # a huge reply is not echoed


async def test_invalid_partner_never_costs_the_other_player() -> None:
    env = _env("repeated-battle-of-the-sexes-v0")
    await env.reset(seed=0)
    steps = await env.step({P0: "ballet", P1: "???"})
    assert (steps[P0].reward, steps[P1].reward) == (7.0, 0.0)  # as if player 1 had joined player 0 at ballet
    steps = await env.step({P0: "", P1: ""})
    assert (steps[P0].reward, steps[P1].reward) == (0.0, 0.0)
    metrics = env.metrics()
    assert metrics["invalid_player_0"] == 1 and metrics["invalid_player_1"] == 2
    assert metrics["coordination_rate"] == 0.0


# --------------------------------------------------------------------------- scripted partners


async def test_tit_for_tat_cooperates_first_then_copies() -> None:
    partner = ["defect", "cooperate", "defect", "defect", "cooperate"]
    assert await _responses("tit-for-tat", partner) == ["cooperate", "defect", "cooperate", "defect", "defect"]


async def test_tit_for_tat_answers_an_invalid_move_with_defection() -> None:
    assert await _responses("tit-for-tat", ["cooperate", "nonsense", "cooperate"]) == [
        "cooperate",
        "cooperate",
        "defect",
    ]


async def test_grim_trigger_never_forgives() -> None:
    partner = ["cooperate", "cooperate", "defect", "cooperate", "cooperate", "cooperate"]
    assert await _responses("grim-trigger", partner) == ["cooperate"] * 3 + ["defect"] * 3
    assert await _responses("grim-trigger", ["cooperate", "", "cooperate"]) == ["cooperate", "cooperate", "defect"]


async def test_alternating_alternates_and_the_constant_ones_are_constant() -> None:
    partner = ["cooperate"] * 5
    assert await _responses("alternating", partner) == ["cooperate", "defect"] * 2 + ["cooperate"]
    assert await _responses("always-cooperate", ["defect"] * 3) == ["cooperate"] * 3
    assert await _responses("always-defect", ["cooperate"] * 3) == ["defect"] * 3


async def test_cooperate_and_defect_name_each_games_options() -> None:
    assert await _responses("always-cooperate", ["swerve"], "chicken") == ["swerve"]
    assert await _responses("always-defect", ["swerve"], "chicken") == ["straight"]
    assert await _responses("always-cooperate", ["stag"], "stag-hunt") == ["stag"]
    assert await _responses("always-defect", ["stag"], "stag-hunt") == ["hare"]
    # In the Battle of the Sexes cooperating is yielding to the partner's favourite, per player.
    env = _env("repeated-battle-of-the-sexes-v0")
    await env.reset(seed=0)
    rng = random.Random(0)
    assert [POLICIES["always-defect"](env, a, rng) for a in (P0, P1)] == ["football", "ballet"]
    assert [POLICIES["always-cooperate"](env, a, rng) for a in (P0, P1)] == ["ballet", "football"]
    # Tit-for-tat follows the partner's last option.
    assert await _responses("tit-for-tat", ["football", "ballet", "ballet"], "battle-of-the-sexes") == [
        "ballet",
        "football",
        "ballet",
    ]


async def test_random_plays_both_options_and_is_seeded() -> None:
    env = _env(rounds=40)
    rounds = await _play(env, POLICIES["random"], POLICIES["random"], seed=3)
    moves = [r[P0] for r in rounds]
    assert set(moves) == {"cooperate", "defect"}
    again = await _play(env, POLICIES["random"], POLICIES["random"], seed=3)
    assert again == rounds


async def test_optimal_is_tit_for_tat_in_the_prisoners_dilemma() -> None:
    partner = ["defect", "cooperate", "cooperate", "defect"]
    assert await _responses("optimal", partner) == await _responses("tit-for-tat", partner)


async def test_optimal_gives_in_to_a_stubborn_driver_in_chicken() -> None:
    env = _env("repeated-chicken-v0")
    rounds = await _play(env, POLICIES["optimal"], POLICIES["always-defect"])
    assert [r[P0] for r in rounds] == ["swerve", "straight"] + ["swerve"] * 8
    # 2 (swerve v straight) + 1 (crash) + 8 x 2; the partner 4 + 1 + 8 x 4.
    assert env.totals() == (19.0, 37.0)


async def test_optimal_coordinates_in_the_battle_of_the_sexes() -> None:
    env = _env("repeated-battle-of-the-sexes-v0")
    rounds = await _play(env, POLICIES["optimal"], POLICIES["optimal"])
    # Round 1 both ask for their favourite; then player 1 follows player 0 (the convention) and they stay.
    assert [(r[P0], r[P1]) for r in rounds] == [("football", "ballet")] + [("football", "football")] * 9
    assert env.totals() == (90.0, 63.0)
    assert env.metrics()["coordination_rate"] == 0.9
    # Against a partner who always insists on ballet it misses twice, then joins it.
    rounds = await _play(env, POLICIES["optimal"], POLICIES["always-defect"])
    assert [r[P0] for r in rounds] == ["football", "football"] + ["ballet"] * 8
    assert env.totals() == (56.0, 80.0)
    # Against the alternating partner it predicts the alternation from round 3 on.
    await _play(env, POLICIES["optimal"], POLICIES["alternating"])
    assert env.metrics()["coordination_rate"] == 0.9


# --------------------------------------------------------------------------- whole matches and metrics


async def test_tit_for_tat_against_always_defect() -> None:
    env = _env()
    await _play(env, POLICIES["tit-for-tat"], POLICIES["always-defect"])
    assert env.totals() == (45.0, 55.0)  # 0 + 9 x 5 and 10 + 9 x 5


async def test_grim_trigger_against_alternating() -> None:
    env = _env()
    await _play(env, POLICIES["grim-trigger"], POLICIES["alternating"])
    # C/C 8/8, C/D 0/10, then grim defects: D/C 10/0 in rounds 3,5,7,9 and D/D 5/5 in rounds 4,6,8,10.
    assert env.totals() == (68.0, 38.0)


async def test_metrics_of_tit_for_tat_against_alternating() -> None:
    env = _env()
    rounds = await _play(env, POLICIES["tit-for-tat"], POLICIES["alternating"])
    assert "".join(r[P0][0] for r in rounds) == "ccdcdcdcdc"
    assert "".join(r[P1][0] for r in rounds) == "cdcdcdcdcd"
    assert env.metrics() == {
        "rounds": 10,
        "payoff_player_0": 48.0,
        "cooperation_rate_player_0": 0.6,
        "invalid_player_0": 0,
        "payoff_player_1": 58.0,
        "cooperation_rate_player_1": 0.5,
        "invalid_player_1": 0,
        "mutual_cooperation_rate": 0.1,
    }


async def test_battle_of_the_sexes_match_and_coordination_rate() -> None:
    env = _env("repeated-battle-of-the-sexes-v0")
    await _play(env, POLICIES["tit-for-tat"], POLICIES["always-defect"])
    # Tit-for-tat opens with the partner's favourite (ballet) and keeps following it: 7/10 every round.
    assert env.totals() == (70.0, 100.0)
    metrics = env.metrics()
    assert metrics["coordination_rate"] == 1.0
    assert metrics["cooperation_rate_player_0"] == 1.0 and metrics["cooperation_rate_player_1"] == 0.0


# --------------------------------------------------------------------------- determinism, copies, converters


async def test_copy_mid_game_is_independent() -> None:
    env = _env()
    rng = random.Random(1)
    await env.reset(seed=1)
    for _ in range(4):
        await env.step({P0: POLICIES["random"](env, P0, rng), P1: "defect"})
    clone = env.copy()
    a = await env.step({P0: "cooperate", P1: "cooperate"})
    b = await clone.step({P0: "cooperate", P1: "cooperate"})
    assert a == b
    await clone.step({P0: "defect", P1: "cooperate"})
    assert len(env.history) == 5 and len(clone.history) == 6
    assert env.totals() != clone.totals()


async def test_parallel_to_turn_plays_the_same_game() -> None:
    moves = [("cooperate", "defect"), ("defect", "defect"), ("cooperate", "cooperate")]
    parallel = _env(rounds=3)
    await parallel.reset(seed=0)
    expected = []
    for a, b in moves:
        steps = await parallel.step({P0: a, P1: b})
        expected.append((steps[P0].reward, steps[P1].reward))
    turn = parallel_to_turn(_env(rounds=3))
    assert turn.mode == "turn"
    await turn.reset(seed=0)
    got = []
    for a, b in moves:
        assert turn.acting() == [P0]
        waiting = await turn.step({P0: a})
        assert all(s.reward == 0.0 for s in waiting.values())
        assert turn.acting() == [P1]
        steps = await turn.step({P1: b})
        got.append((steps[P0].reward, steps[P1].reward))
    assert got == expected == [(0.0, 10.0), (5.0, 5.0), (8.0, 8.0)]
    assert turn.agents == [] and turn.metrics() == parallel.metrics()
    # The scripted partners drive the wrapped game too.
    assert set(turn.scripted_policies()) == set(POLICIES)


@pytest.mark.parametrize("env_id", IDS)
def test_check_multi_env(env_id: str) -> None:
    check_multi_env(env_id, seeds=(0, 1))


def test_every_game_offers_the_spec_partners() -> None:
    for env_id in IDS:
        assert set(make_multi(env_id).scripted_policies()) == {
            "optimal",
            "tit-for-tat",
            "grim-trigger",
            "always-defect",
            "always-cooperate",
            "alternating",
            "random",
        }
