"""Tests of the Text-Nav environments (textnav-fo-v0, textnav-po-v0): rules, quest, splits and policies."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import random
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import InvalidActionRule
from palaestra.envs import make, spec
from palaestra.envs.textnav import HELD, House, TextNavEnv, _State, house_for_seed, normalize_command

ROOT = Path(__file__).resolve().parents[2]

# A hand-made house: the kitchen is north of the hallway (closed door), the bedroom east of it (open door).
#
#     kitchen (fridge)
#        |  closed
#     hallway (shoe cabinet: sock) --open-- bedroom (wardrobe: cookie; an apple and a banana on the floor)
HOUSE = House(
    rooms={"hallway": (0, 0), "kitchen": (-1, 0), "bedroom": (0, 1)},
    doors=(("hallway", "kitchen"), ("hallway", "bedroom")),
    containers={"fridge": "kitchen", "wardrobe": "bedroom", "shoe cabinet": "hallway"},
    objects={"apple": "bedroom", "banana": "bedroom", "cookie": "wardrobe", "sock": "shoe cabinet"},
    open_doors=frozenset({("hallway", "bedroom")}),
    open_containers=frozenset(),
    quest_object="apple",
    quest_container="fridge",
    start="hallway",
)
WALKTHROUGH = [
    "go east",
    "take apple",
    "go west",
    "open north door",
    "go north",
    "open fridge",
    "put apple in fridge",
    "close fridge",
]


async def started(env_id: str = "textnav-fo-v0", house: House = HOUSE, **kwargs: Any) -> TextNavEnv:
    env = make(env_id, **kwargs)
    assert isinstance(env, TextNavEnv)
    await env.reset(options={"house": house})
    return env


async def play(env: TextNavEnv, commands: list[str]) -> list[Any]:
    return [await env.step(c) for c in commands]


# --------------------------------------------------------------------------- observations


async def test_fully_observed_reset_states_task_location_inventory_room_and_commands() -> None:
    env = make("textnav-fo-v0")
    step = await env.reset(options={"house": HOUSE})
    assert step.observation == (
        "Your task: put the apple in the fridge, then close the fridge.\n"
        "Location: hallway. Inventory: nothing.\n"
        "You see a closed shoe cabinet. There is a closed door to the north and an open door to the east.\n"
        "Admissible commands: close east door, go east, inventory, open north door, open shoe cabinet."
    )
    assert step.reward == 0.0 and not step.done
    assert step.info == {
        "invalid_action": False,
        "admissible_commands": ["close east door", "go east", "inventory", "open north door", "open shoe cabinet"],
    }


async def test_partially_observed_hides_location_and_inventory() -> None:
    env = await started("textnav-po-v0")
    texts = [(await env.step(c)).observation for c in ["go east", "take apple", "open wardrobe", "go west"]]
    assert texts[0] == (
        "You go east.\n"
        "You see a closed wardrobe, an apple and a banana. There is an open door to the west.\n"
        "Admissible commands: close west door, go west, inventory, open wardrobe, take apple, take banana."
    )
    assert texts[2].startswith("You open the wardrobe. Inside it you see a cookie.\n")
    assert "an open wardrobe (containing a cookie)" in texts[2]
    for text in texts:
        assert not re.search(r"Location|Inventory|hallway|bedroom|kitchen", text), text
    # What it carries is known only from memory, or by asking (which costs a turn).
    step = await env.step("inventory")
    assert step.observation.startswith("You are carrying an apple.\n") and step.info["invalid_action"] is False


async def test_fully_observed_inventory_follows_take_and_drop() -> None:
    env = await started()
    step = await env.step("go east")
    assert "Location: bedroom. Inventory: nothing." in step.observation
    step = await env.step("take apple")
    assert step.observation.startswith("You take the apple.\nLocation: bedroom. Inventory: an apple.\n")
    assert "drop apple" in step.info["admissible_commands"] and "take apple" not in step.info["admissible_commands"]
    step = await env.step("take banana")
    assert "Inventory: an apple and a banana." in step.observation
    step = await env.step("drop banana")
    assert "Inventory: an apple." in step.observation and env.locations["banana"] == "bedroom"


# --------------------------------------------------------------------------- rules


async def test_doors_must_be_opened_and_are_shared_by_both_rooms() -> None:
    env = await started()
    step = await env.step("go north")  # the kitchen door is closed
    assert step.info["invalid_action"] is True and env.room == "hallway"
    await env.step("open north door")
    step = await env.step("go north")
    assert step.info["invalid_action"] is False and env.room == "kitchen"
    assert "an open door to the south" in step.observation
    step = await env.step("close south door")
    assert "a closed door to the south" in step.observation
    step = await env.step("go south")
    assert step.info["invalid_action"] is True and env.room == "kitchen"
    await play(env, ["open south door", "go south"])
    assert env.room == "hallway"


async def test_containers_must_be_open_to_take_from_or_put_into() -> None:
    env = await started()
    await play(env, ["go east", "take apple"])
    assert (await env.step("take cookie")).info["invalid_action"] is True  # in the closed wardrobe
    assert (await env.step("put apple in wardrobe")).info["invalid_action"] is True
    step = await env.step("open wardrobe")
    assert "take cookie" in step.info["admissible_commands"]
    assert "put apple in wardrobe" in step.info["admissible_commands"]
    step = await env.step("take cookie")
    assert step.observation.startswith("You take the cookie from the wardrobe.")
    assert env.locations["cookie"] == HELD
    step = await env.step("eat cookie")  # eating something else is harmless
    assert step.observation.startswith("You eat the cookie. Delicious.") and not step.done
    assert "cookie" not in env.locations


async def test_walkthrough_completes_the_quest_with_reward_one() -> None:
    env = await started()
    assert env.walkthrough() == WALKTHROUGH
    steps = await play(env, WALKTHROUGH)
    assert [s.reward for s in steps] == [0.0] * 7 + [1.0]
    assert [s.done for s in steps] == [False] * 7 + [True]
    last = steps[-1]
    assert last.terminated and not last.truncated and last.info == {"invalid_action": False, "success": True}
    assert last.observation == "You close the fridge. You have completed the task!"
    with pytest.raises(EnvError, match="reset"):
        await env.step("open fridge")


async def test_putting_the_object_in_without_closing_is_not_enough() -> None:
    env = await started()
    steps = await play(env, [*WALKTHROUGH[:-1], "take apple", "put apple in fridge", "go south", "go north"])
    assert all(s.reward == 0.0 and not s.done for s in steps)
    assert env.walkthrough() == ["close fridge"]
    assert (await env.step("close fridge")).info["success"] is True


async def test_eating_the_quest_object_fails_the_task() -> None:
    env = await started()
    await play(env, ["go east", "take apple"])
    step = await env.step("eat apple")
    assert step.terminated and not step.truncated and step.reward == 0.0
    assert step.info == {"invalid_action": False, "success": False}
    assert "failed the task" in step.observation


async def test_closing_a_wrong_container_on_the_quest_object_fails_the_task() -> None:
    env = await started()
    steps = await play(env, ["go east", "take apple", "open wardrobe", "put apple in wardrobe"])
    assert not steps[-1].done
    step = await env.step("close wardrobe")
    assert step.terminated and step.reward == 0.0 and step.info["success"] is False
    assert step.observation == (
        "You close the wardrobe. The apple was meant to go in the fridge: you have failed the task."
    )


async def test_taking_the_quest_object_back_out_of_a_wrong_container_is_safe() -> None:
    env = await started()
    await play(env, ["go east", "take apple", "open wardrobe", "put apple in wardrobe", "take apple"])
    step = await env.step("close wardrobe")
    assert not step.done and step.reward == 0.0


async def test_closing_the_container_the_quest_object_started_in_is_not_a_failure() -> None:
    house = dataclasses.replace(HOUSE, objects={**HOUSE.objects, "apple": "wardrobe"})
    env = await started(house=house)
    steps = await play(env, ["go east", "open wardrobe", "close wardrobe", "open wardrobe", "take apple"])
    assert not any(s.done for s in steps) and env.locations["apple"] == HELD


# --------------------------------------------------------------------------- invalid actions and parsing


@pytest.mark.parametrize(
    "action",
    [
        "",
        "   ",
        "%%%",
        "go north",  # well formed, but the door is closed
        "take apple",  # the apple is in another room
        "open fridge",  # the fridge is in another room
        "fly away",
        "go east and take apple",
        "x" * 10_000,
        "\U0001f642 ñ 日本語",
        "\x00\n\t",
        "<script>alert(1)</script>",
    ],
)
async def test_invalid_actions_give_zero_change_nothing_and_repeat_the_commands(action: str) -> None:
    env = await started()
    first = await env.reset(options={"house": HOUSE})
    step = await env.step(action)
    assert step.info["invalid_action"] is True and step.reward == 0.0 and not step.done
    assert step.observation.split("\n", 1)[0].endswith(
        "is not an admissible command. Reply with one of the admissible commands."
    )
    assert step.observation.split("\n", 1)[1] == first.observation.split("\n", 1)[1]  # nothing changed
    assert env.room == "hallway" and env.locations == HOUSE.objects
    assert len(step.observation) < 1000


async def test_the_invalid_action_rule_is_read_from_the_spec_at_run_time() -> None:
    env = await started()
    env.spec = dataclasses.replace(env.spec, invalid_action=InvalidActionRule("terminate", 0.0, "ends the game"))
    step = await env.step("dance")
    assert step.terminated and step.info == {"invalid_action": True, "success": False}
    assert "ends the game" in env.instructions


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("Open the Fridge.", "open fridge"),
        ("  PUT the apple INTO the fridge!  ", "put apple in fridge"),
        ("**take apple**", "take apple"),
        ("pick up the toy car", "take toy car"),
        ("get an apple", "take apple"),
        ("north", "go north"),
        ("go to the north", "go north"),
        ("open the door to the north", "open north door"),
        ("Close door east", "close east door"),
        ("`inventory`", "inventory"),
        ("", ""),
    ],
)
def test_normalize_command_is_lenient_about_case_punctuation_articles_and_synonyms(text: str, command: str) -> None:
    assert normalize_command(text) == command


async def test_lenient_forms_are_accepted_as_the_admissible_command() -> None:
    env = await started()
    steps = await play(env, ["Go East.", "pick up the apple", "WEST", "open the door to the north", "go north"])
    assert not any(s.info["invalid_action"] for s in steps) and env.room == "kitchen"
    steps = await play(env, ["open the fridge", "put the apple into the fridge", "Close the fridge!"])
    assert steps[-1].info["success"] is True


async def test_truncation_at_max_turns_is_a_failure() -> None:
    env = await started(max_turns=3)
    steps = await play(env, ["inventory", "nonsense", "go east"])
    assert [s.truncated for s in steps] == [False, False, True]
    assert not steps[-1].terminated and steps[-1].info["success"] is False
    assert steps[-1].observation.endswith("You have used all your commands without completing the task.")
    with pytest.raises(EnvError):
        await env.step("take apple")


async def test_step_before_reset_raises() -> None:
    with pytest.raises(EnvError, match="reset"):
        await make("textnav-po-v0").step("go north")


def test_instructions_give_the_command_format_rules_and_limit() -> None:
    for env_id in ("textnav-fo-v0", "textnav-po-v0"):
        text = make(env_id).instructions
        assert "Reply with exactly one admissible command" in text
        assert "put <object> in <container>" in text and "at most 40 commands" in text
        assert "fails the task" in text and "not admissible gives 0 and does nothing" in text
    assert "not its name" in make("textnav-po-v0").instructions


def test_bad_arguments_and_houses_raise_with_the_reason() -> None:
    with pytest.raises(SpecError, match="'full' or 'partial'"):
        make("textnav-fo-v0", observability="hidden")
    with pytest.raises(SpecError, match="not on adjacent cells"):
        dataclasses.replace(HOUSE, rooms={**HOUSE.rooms, "bedroom": (3, 3)})
    with pytest.raises(SpecError, match="tree"):
        dataclasses.replace(HOUSE, doors=(("hallway", "kitchen"),), open_doors=frozenset())
    with pytest.raises(SpecError, match="must not start inside"):
        dataclasses.replace(HOUSE, objects={**HOUSE.objects, "apple": "fridge"})
    with pytest.raises(SpecError, match="all be different"):
        dataclasses.replace(HOUSE, objects={**HOUSE.objects, "fridge": "kitchen"})


async def test_bad_reset_options_raise_env_error() -> None:
    env = make("textnav-fo-v0")
    with pytest.raises(EnvError, match="unknown reset options"):
        await env.reset(options={"speed": 2})
    with pytest.raises(EnvError, match="House"):
        await env.reset(options={"house": {"rooms": {}}})


# --------------------------------------------------------------------------- scripted policies


async def run_policy(env: TextNavEnv, name: str, seed: int) -> tuple[float, bool, int]:
    policy = env.scripted_policies()[name]
    rng = random.Random(seed)
    step = await env.reset(seed=seed)
    total, turns = 0.0, 0
    while not step.done:
        step = await env.step(policy(env, rng))
        assert step.info["invalid_action"] is False
        total, turns = total + step.reward, turns + 1
    return total, bool(step.info["success"]), turns


@pytest.mark.parametrize(("env_id", "episodes"), [("textnav-fo-v0", 1000), ("textnav-po-v0", 200)])
async def test_optimal_policy_solves_every_test_seed_along_its_walkthrough(env_id: str, episodes: int) -> None:
    env = make(env_id)
    assert isinstance(env, TextNavEnv)
    lengths = []
    for seed in env.spec.seeds("test", episodes):
        await env.reset(seed=seed)
        planned = len(env.walkthrough())
        total, success, turns = await run_policy(env, "optimal", seed)
        assert success and total == 1.0 and turns == planned, seed
        lengths.append(turns)
    assert max(lengths) <= 20 < env.spec.max_turns
    assert 7.0 < sum(lengths) / len(lengths) < 9.0  # documented: about 8 commands


def _state_key(state: _State) -> tuple[Any, ...]:
    return (
        state.room,
        frozenset(state.open_doors),
        frozenset(state.open_containers),
        tuple(sorted(state.where.items())),
        state.quest_object_put,
    )


def _clone(state: _State) -> _State:
    return _State(
        state.room, set(state.open_doors), set(state.open_containers), dict(state.where), state.quest_object_put
    )


async def shortest_solution(env: TextNavEnv, limit: int) -> int | None:
    """Breadth-first search over every admissible command: the fewest commands that complete the quest.

    It steps the real environment from each stored state (the private ``_state``: a cheaper copy than
    ``env.copy()`` of the whole environment, which keeps the search fast).
    """
    saved = (env._state, env._done, env._turns)
    frontier, seen = [_clone(env._state)], {_state_key(env._state)}
    try:
        for depth in range(1, limit + 1):
            nxt = []
            for state in frontier:
                env._state = state
                for command in env.admissible_commands():
                    env._state, env._done, env._turns = _clone(state), False, 0
                    step = await env.step(command)
                    if step.info.get("success"):
                        return depth
                    if not step.done and _state_key(env._state) not in seen:
                        seen.add(_state_key(env._state))
                        nxt.append(env._state)
            frontier = nxt
        return None
    finally:
        env._state, env._done, env._turns = saved


async def test_walkthrough_is_as_short_as_an_exhaustive_search() -> None:
    env = make("textnav-fo-v0", max_turns=100)
    assert isinstance(env, TextNavEnv)
    checked = 0
    for seed in range(60):
        await env.reset(seed=seed)
        planned = len(env.walkthrough())
        if planned > 7:  # keep the exhaustive search small
            continue
        assert await shortest_solution(env, planned) == planned, seed
        checked += 1
    assert checked >= 20
    # Also from a mid-episode state, with the object in hand and a door closed behind.
    await env.reset(options={"house": HOUSE})
    await play(env, ["go east", "take apple", "close west door"])
    assert await shortest_solution(env, 10) == len(env.walkthrough()) == 7


async def test_the_longest_walkthrough_is_twenty_commands_and_fits_the_limit() -> None:
    # Six rooms in a row, all doors closed; the object in a closed chest at the far end, the fridge at the start.
    names = ["kitchen", "hallway", "study", "garage", "attic", "living room"]
    house = House(
        rooms={name: (0, i) for i, name in enumerate(names)},
        doors=tuple(itertools.pairwise(names)),
        containers={"fridge": "kitchen", "wooden chest": "living room"},
        objects={"apple": "wooden chest"},
        open_doors=frozenset(),
        open_containers=frozenset(),
        quest_object="apple",
        quest_container="fridge",
        start="kitchen",
    )
    env = await started(house=house)
    walkthrough = env.walkthrough()
    assert len(walkthrough) == 20 < env.spec.max_turns
    steps = await play(env, walkthrough)
    assert steps[-1].info["success"] is True


@pytest.mark.parametrize("env_id", ["textnav-fo-v0", "textnav-po-v0"])
async def test_random_and_noisy_rank_below_optimal(env_id: str) -> None:
    env = make(env_id)
    assert isinstance(env, TextNavEnv)
    means = {}
    for name in ("random", "noisy", "optimal"):
        returns = [(await run_policy(env, name, seed))[0] for seed in range(200)]
        means[name] = sum(returns) / len(returns)
    assert means["random"] < 0.1 < 0.9 < means["noisy"] < means["optimal"] == 1.0
    assert env.scripted_policies()["walkthrough"] is env.scripted_policies()["noisy"]


# --------------------------------------------------------------------------- seeds, splits, copies


async def test_same_seed_same_episode_and_seeds_vary() -> None:
    env = make("textnav-po-v0")
    firsts = set()
    for seed in range(50):
        first = await env.reset(seed=seed)
        assert await env.reset(seed=seed) == first
        firsts.add(first.observation)
    assert len(firsts) == 50


async def test_copy_is_independent() -> None:
    env = await started()
    await env.step("go east")
    clone = env.copy()
    assert isinstance(clone, TextNavEnv)
    await play(clone, ["take apple", "go west"])
    assert env.room == "bedroom" and env.locations["apple"] == "bedroom"
    assert clone.room == "hallway" and clone.locations["apple"] == HELD
    step = await env.step("take apple")
    assert step.observation.startswith("You take the apple.")


def test_train_and_test_seeds_never_share_a_house() -> None:
    fo = spec("textnav-fo-v0")
    train = {house_for_seed(s, "train").layout_fingerprint() for s in fo.seeds("train", 2000)}
    validation = {house_for_seed(s, "validation").layout_fingerprint() for s in fo.seeds("validation", 200)}
    test = {house_for_seed(s, "test").layout_fingerprint() for s in fo.seeds("test", 200)}
    assert not train & test and not train & validation and not validation & test
    assert len(test) > 180 and len(train) > 1800  # many different houses, not a handful


async def test_registered_env_draws_each_seed_from_its_split_pool() -> None:
    env = make("textnav-fo-v0")
    assert isinstance(env, TextNavEnv)
    for split in ("train", "validation", "test"):
        for seed in env.spec.seeds(split, 30):
            await env.reset(seed=seed)
            assert env.house.pool() == split
            assert env.house == house_for_seed(seed, split)


def test_layout_fingerprint_ignores_rotation_mirroring_and_contents_but_not_the_plan() -> None:
    rotated = dataclasses.replace(HOUSE, rooms={"hallway": (0, 0), "kitchen": (0, 1), "bedroom": (1, 0)})
    mirrored = dataclasses.replace(HOUSE, rooms={"hallway": (5, 5), "kitchen": (4, 5), "bedroom": (5, 4)})
    other_quest = dataclasses.replace(HOUSE, quest_object="banana", start="kitchen", open_doors=frozenset())
    moved = dataclasses.replace(HOUSE, containers={**HOUSE.containers, "shoe cabinet": "bedroom"})
    fingerprint = HOUSE.layout_fingerprint()
    assert rotated.layout_fingerprint() == mirrored.layout_fingerprint() == other_quest.layout_fingerprint()
    assert rotated.layout_fingerprint() == fingerprint
    assert moved.layout_fingerprint() != fingerprint


# --------------------------------------------------------------------------- normalisation and docs


@pytest.fixture(scope="module")
def script() -> ModuleType:
    module_spec = importlib.util.spec_from_file_location(
        "palaestra_normalization_script", ROOT / "scripts/normalization.py"
    )
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses look their module up while being defined
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("env_id", ["textnav-fo-v0", "textnav-po-v0"])
def test_registered_constants_are_reproduced_by_the_script(script: ModuleType, env_id: str) -> None:
    norm = spec(env_id).normalization
    assert norm is not None
    args = shlex.split(norm.source)
    assert args[:3] == ["scripts/normalization.py", env_id, "--episodes"] and len(args) == 4
    assert script.normalization(env_id, int(args[3])) == {"min": norm.min, "avg": norm.avg, "max": norm.max}
    assert norm.min < norm.avg < norm.max == 1.0


DOC = ROOT / "docs" / "envs" / "textnav.md"


@pytest.mark.parametrize("index", range(len(re.findall(r"```python\n", DOC.read_text(encoding="utf-8")))))
def test_doc_python_blocks_run(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    block = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)[index]
    exec(compile(block, f"{DOC.name} block {index}", "exec"), {"__name__": f"textnav_doc_block_{index}"})
    printed = capsys.readouterr().out.strip()
    if printed:  # a block that prints is followed in the doc by a ``` block with exactly its output
        after = text.split(block, 1)[1]
        shown = re.match(r"```\n+```(?:text)?\n(.*?)```", after, flags=re.DOTALL)
        assert shown is not None, f"block {index} prints but the doc does not show its output"
        assert printed == shown.group(1).strip()
