"""Tests of the maze environments (maze-fo-v0, maze-po-v0) and their scripted policies."""

from __future__ import annotations

import random
import re

import pytest

from palaestra.core.errors import EnvError, SpecError
from palaestra.envs import make
from palaestra.envs.maze import LAYOUTS, MazeEnv, MazeLayout, parse_move


async def test_fully_observed_reset_states_goal_position_and_walls() -> None:
    env = make("maze-fo-v0")
    step = await env.reset(seed=0, options={"layout": "double_t", "start": (1, 1)})
    assert step.observation == (
        "The goal is at position 8, 6. Your current position is at position 1, 1. "
        "There are walls above you, below you and to your left."
    )
    assert step.reward == 0.0 and not step.done and step.info["invalid_action"] is False


async def test_moves_change_position_and_cost_one() -> None:
    env = make("maze-fo-v0")
    await env.reset(options={"layout": "double_t", "start": (1, 5)})
    step = await env.step("move right")
    assert isinstance(env, MazeEnv) and env.position == (1, 6)
    assert step.reward == -1.0 and not step.done and step.info == {"invalid_action": False, "hit_wall": False}
    assert step.observation == (
        "You moved right. The goal is at position 8, 6. Your current position is at position 1, 6. "
        "There is a wall above you."
    )
    step = await env.step("move down")
    assert env.position == (2, 6)
    assert step.observation.endswith("There are walls to your left and to your right.")


async def test_hitting_a_wall_keeps_position_and_is_a_valid_move() -> None:
    env = make("maze-fo-v0")
    await env.reset(options={"layout": "double_t", "start": (1, 1)})
    step = await env.step("move up")
    assert isinstance(env, MazeEnv) and env.position == (1, 1)
    assert step.reward == -1.0
    assert step.info == {"invalid_action": False, "hit_wall": True}
    assert step.observation.startswith("You tried to move up but hit a wall, so you did not move.")


async def test_reaching_the_goal_gives_zero_and_success() -> None:
    env = make("maze-fo-v0")
    await env.reset(options={"layout": "double_t", "start": (7, 6)})
    step = await env.step("move down")
    assert step.reward == 0.0 and step.terminated and not step.truncated
    assert step.info["success"] is True
    assert "reached the goal" in step.observation
    with pytest.raises(EnvError, match="reset"):
        await env.step("move up")


@pytest.mark.parametrize(
    ("text", "direction"),
    [
        ("move up", "up"),
        ("Move Up.", "up"),
        ("  MOVE   down\n", "down"),
        ("**move left**", "left"),
        ("right", "right"),
        ("`move right`!", "right"),
    ],
)
def test_parse_move_accepts_lenient_forms(text: str, direction: str) -> None:
    assert parse_move(text) == direction


@pytest.mark.parametrize(
    "text", ["", "move", "move upward", "go up", "move up and left", "up down", "moveup", "x" * 10_000, "上"]
)
def test_parse_move_rejects_everything_else(text: str) -> None:
    assert parse_move(text) is None


async def test_invalid_action_costs_four_keeps_state_and_explains_format() -> None:
    env = make("maze-fo-v0")
    await env.reset(options={"layout": "pillars", "start": (1, 1)})
    step = await env.step("<script>alert(1)</script>")
    assert isinstance(env, MazeEnv) and env.position == (1, 1)
    assert step.reward == -4.0 and not step.done and step.info["invalid_action"] is True
    assert "move up, move down, move left, move right" in step.observation
    assert "Your current position is at position 1, 1" in step.observation


async def test_truncation_at_max_turns_is_a_failure() -> None:
    env = make("maze-fo-v0", max_turns=3)
    await env.reset(options={"layout": "double_t", "start": (1, 1)})
    steps = [await env.step("move up") for _ in range(3)]
    assert [s.truncated for s in steps] == [False, False, True]
    assert not steps[-1].terminated and steps[-1].info["success"] is False
    assert sum(s.reward for s in steps) == -3.0
    with pytest.raises(EnvError):
        await env.step("move down")


async def test_step_before_reset_raises() -> None:
    with pytest.raises(EnvError, match="reset"):
        await make("maze-po-v0").step("move up")


async def test_partial_observation_hides_coordinates_and_goal() -> None:
    env = make("maze-po-v0")
    step = await env.reset(seed=3, options={"layout": "double_t", "start": (1, 1)})
    assert step.observation == "Find the goal. There are walls above you, below you and to your left."
    texts = [step.observation]
    for action in ["move right", "move up", "move down", "nonsense"]:
        texts.append((await env.step(action)).observation)
    for text in texts:
        assert not re.search(r"\d|position|goal is", text), text
    assert "hit a wall" in texts[2]


async def test_instructions_give_exact_action_format_and_limit() -> None:
    for env_id in ("maze-fo-v0", "maze-po-v0"):
        text = make(env_id).instructions
        assert "move up, move down, move left or move right" in text
        assert "at most 50 moves" in text
    assert "row 0 is the top row" in make("maze-fo-v0").instructions


@pytest.mark.parametrize("env_id", ["maze-fo-v0", "maze-po-v0"])
async def test_optimal_policy_solves_every_test_seed_in_the_shortest_path(env_id: str) -> None:
    env = make(env_id)
    optimal = env.scripted_policies()["optimal"]
    rng = random.Random(0)
    for seed in env.spec.seeds("test"):
        await env.reset(seed=seed)
        assert isinstance(env, MazeEnv)
        shortest = env.layout.distance[env.position]
        total, step = 0.0, None
        while step is None or not step.done:
            step = await env.step(optimal(env, rng))
            total += step.reward
        assert step.info["success"] is True, seed
        assert total == -(shortest - 1), seed  # -1 per move except the last


async def test_optimal_direction_is_correct_from_every_cell_of_every_layout() -> None:
    env = make("maze-fo-v0")
    assert isinstance(env, MazeEnv)
    for name, layout in LAYOUTS.items():
        for start in layout.open_cells:
            if start == layout.goal:
                continue
            await env.reset(options={"layout": name, "start": start})
            moves = 0
            step = None
            while step is None or not step.done:
                step = await env.step("move " + layout.optimal_direction(env.position))
                moves += 1
            assert step.info["success"] and moves == layout.distance[start], (name, start)


async def test_seeds_draw_several_layouts_and_starts_deterministically() -> None:
    env = make("maze-fo-v0")
    layouts, starts = set(), set()
    for seed in range(100):
        first = await env.reset(seed=seed)
        layouts.add(first.info["layout"])
        assert isinstance(env, MazeEnv)
        starts.add((first.info["layout"], env.position))
        again = await env.reset(seed=seed)
        assert again == first
    assert layouts == set(LAYOUTS)
    assert len(starts) > 50


async def test_layout_kwarg_fixes_the_layout() -> None:
    env = make("maze-fo-v0", layout="zigzag")
    assert env.spec.kwargs == {"observability": "full", "layout": "zigzag"}
    for seed in range(20):
        assert (await env.reset(seed=seed)).info["layout"] == "zigzag"


def test_bad_constructor_arguments_say_what_to_use() -> None:
    with pytest.raises(SpecError, match="double_t"):
        make("maze-fo-v0", layout="nope")
    with pytest.raises(SpecError, match="'full' or 'partial'"):
        make("maze-fo-v0", observability="hidden")


async def test_bad_reset_options_raise_env_error() -> None:
    env = make("maze-fo-v0")
    with pytest.raises(EnvError, match="not an open"):
        await env.reset(options={"layout": "double_t", "start": (0, 0)})
    with pytest.raises(EnvError, match="start"):
        await env.reset(options={"layout": "double_t", "start": (8, 6)})  # the goal itself
    with pytest.raises(EnvError, match="unknown reset options"):
        await env.reset(options={"speed": 2})


def test_layouts_are_validated() -> None:
    with pytest.raises(SpecError, match="cannot reach the goal"):
        MazeLayout("broken", ("#####", "#.#G#", "#####"))
    with pytest.raises(SpecError, match="exactly one goal"):
        MazeLayout("no_goal", ("####", "#..#", "####"))


async def test_random_and_noisy_policies_rank_between_bounds() -> None:
    env = make("maze-fo-v0")
    policies = env.scripted_policies()
    returns: dict[str, float] = {}
    for name in ("random", "noisy", "optimal"):
        total = 0.0
        for seed in range(100):
            rng = random.Random(seed)
            step = await env.reset(seed=seed)
            while not step.done:
                step = await env.step(policies[name](env, rng))
                assert step.info["invalid_action"] is False
                total += step.reward
        returns[name] = total / 100
    assert returns["random"] < returns["noisy"] < returns["optimal"]


async def test_copy_is_independent() -> None:
    env = make("maze-fo-v0")
    await env.reset(options={"layout": "pillars", "start": (1, 1)})
    clone = env.copy()
    await clone.step("move right")
    assert isinstance(env, MazeEnv) and isinstance(clone, MazeEnv)
    assert env.position == (1, 1) and clone.position == (1, 2)
