"""Tests of twenty-questions-v0 and guess-my-city-v0: the knowledge bases, the rule oracle, guesses, invalid
actions, the model oracle (scripted and the real embedded model), the scripted policies and the splits."""

from __future__ import annotations

import dataclasses
import importlib.util
import random
import re
import shlex
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from palaestra.agents import ScriptedAgent
from palaestra.core.errors import EnvError
from palaestra.core.types import InvalidActionRule
from palaestra.envs import make, spec
from palaestra.envs.questions import (
    CANNOT,
    MAX_ACTION_CHARS,
    GuessMyCityEnv,
    KnowledgeBase,
    Query,
    TwentyQuestionsEnv,
    _answer_matrix,
    _name_key,
    cities_kb,
    normalize_model_answer,
    objects_kb,
    parse_action,
)
from palaestra.runner.episode import run_episode
from palaestra.testing import ScriptedModel, check_env

ROOT = Path(__file__).resolve().parents[2]
IDS = ("twenty-questions-v0", "guess-my-city-v0")


def _kb(env_id: str) -> KnowledgeBase:
    return objects_kb() if env_id == "twenty-questions-v0" else cities_kb()


# --------------------------------------------------------------------------- the knowledge bases


def test_object_data_is_large_and_every_attribute_has_a_valid_value() -> None:
    kb = objects_kb()
    meta = kb.meta
    assert len(kb.items) >= 150
    names = [item.name for item in kb.items]
    assert len(names) == len(set(names))
    for item in kb.items:
        facts = item.facts
        assert facts["category"] in meta["categories"], item
        assert facts["size"] in meta["sizes"], item
        assert set(facts["colors"]) <= set(meta["colors"]), item
        assert set(facts["tags"]) <= set(meta["tags"]) and len(facts["tags"]) == len(set(facts["tags"])), item
        # worn_on is given exactly for the things people wear, and names a known body part
        assert ("worn_on" in facts) == ("wearable" in facts["tags"]), item
        assert facts.get("worn_on", "head") in meta["worn_on"], item
        if facts["category"] == "food":
            assert {"edible", "drink"} & set(facts["tags"]), item
        if facts["category"] not in ("animal", "plant", "food"):
            assert "manmade" in facts["tags"], item
        classes = {"mammal", "bird", "fish", "insect", "reptile", "amphibian"} & set(facts["tags"])
        assert len(classes) <= 1 and (not classes or facts["category"] == "animal"), item
        assert "four_legs" not in facts["tags"] or "legs" in facts["tags"], item
    assert len({item.facts["category"] for item in kb.items}) == len(meta["categories"])  # every category used


def test_city_data_is_large_and_every_attribute_has_a_valid_value() -> None:
    kb = cities_kb()
    meta = kb.meta
    assert len(kb.items) >= 100
    names = [item.name for item in kb.items]
    assert len(names) == len(set(names))
    flags = ("capital", "coastal", "river", "lake", "snow", "high_altitude", "olympics")
    for item in kb.items:
        facts = item.facts
        assert facts["country"] in meta["countries"], item
        assert facts["continents"] and set(facts["continents"]) <= set(meta["continents"]), item
        assert facts["region"] in meta["regions"] and facts["climate"] in meta["climates"], item
        assert facts["languages"] and all(isinstance(lang, str) and lang for lang in facts["languages"]), item
        assert -90 <= facts["lat"] <= 90 and -180 <= facts["lon"] <= 180, item
        assert 0 < facts["population_millions"] < 50, item
        assert all(isinstance(facts[flag], bool) for flag in flags) and facts["landmark"], item
    # a few facts checked by hand
    paris, cairo, sydney = (kb.lookup(n) for n in ("Paris", "Cairo", "Sydney"))
    assert paris and paris.facts["capital"] and paris.facts["country"] == "France" and paris.facts["olympics"]
    assert cairo and cairo.facts["continents"] == ["Africa"] and cairo.facts["climate"] == "arid"
    assert sydney and not sydney.facts["capital"] and sydney.facts["lat"] < 0


@pytest.mark.parametrize("env_id", IDS)
def test_names_and_aliases_are_unambiguous_and_every_name_guesses_its_item(env_id: str) -> None:
    kb = _kb(env_id)
    owners: dict[str, str] = {}
    for item in kb.items:
        for name in (item.name, *item.aliases):
            key = _name_key(name)
            assert owners.setdefault(key, item.name) == item.name, f"{name!r} names {owners[key]} and {item.name}"
            assert kb.lookup(name) is item
    for item in kb.items:
        parsed = parse_action(kb.guess_text(item), kb)
        assert parsed.kind == "guess" and parsed.item is item, (item, parsed)


@pytest.mark.parametrize("env_id", IDS)
def test_every_question_of_the_question_set_parses_back_and_every_item_is_distinguishable(env_id: str) -> None:
    kb = _kb(env_id)
    for text, query in kb.question_set():
        parsed = parse_action(text, kb)
        assert parsed.kind == "question" and parsed.query == query, (text, parsed)
        assert all(kb.answer(item, query) != CANNOT for item in kb.items), text
    # no two items give the same answers to every question, so the optimal policy can always single one out
    columns = _answer_matrix(kb).T
    assert len({column.tobytes() for column in columns}) == len(kb.items)


@pytest.mark.parametrize("env_id", IDS)
def test_hidden_pools_partition_the_items_and_seeds_draw_from_their_split(env_id: str) -> None:
    kb = _kb(env_id)
    pools = {split: kb.pool(split) for split in ("train", "validation", "test")}
    names = {split: {item.name for item in pool} for split, pool in pools.items()}
    assert names["train"].isdisjoint(names["test"]) and names["validation"].isdisjoint(names["test"])
    assert names["train"].isdisjoint(names["validation"])
    assert set().union(*names.values()) == {item.name for item in kb.items}
    assert all(len(pool) >= 10 for pool in pools.values())
    assert kb.pool(None) == kb.items


@pytest.mark.parametrize("env_id", IDS)
async def test_train_seeds_never_hide_a_test_item(env_id: str) -> None:
    env = make(env_id)
    assert isinstance(env, TwentyQuestionsEnv | GuessMyCityEnv)
    test_pool = {item.name for item in env.kb.pool("test")}
    seen = {split: set() for split in ("train", "test")}
    for split in seen:
        for seed in env.spec.seeds(split, 300):
            await env.reset(seed=seed)
            seen[split].add(env.hidden.name)
            assert env.hidden in env.kb.pool(split)
    assert seen["test"] <= test_pool and seen["train"].isdisjoint(test_pool)
    assert len(seen["test"]) == len(test_pool)  # 300 seeds reach every test item


# --------------------------------------------------------------------------- the rule oracle

OBJECT_CASES = [
    ("dog", "Is it an animal?", "Yes."),
    ("dog", "is it an ANIMAL", "Yes."),  # a question word is enough; case does not matter
    ("dog", "Is the object a living thing?", "Yes."),
    ("dog", "Is this a mammal??", "Yes."),
    ("dog", "Does it have four legs?", "Yes."),
    ("dog", "Is it furry?", "Yes."),
    ("dog", "Is it bigger than a bread box?", "Yes."),
    ("dog", "Can you hold it in one hand?", "No."),
    ("dog", "Is it natural?", "Yes."),
    ("dog", "Is it man-made?", "No."),
    ("dog", "Okay, is it something you can eat?", "No."),
    ("dog", "Hmm, let me think.\nIs it a carnivore?", "Yes."),
    ("dog", "**Is it a pet?**", "Yes."),
    ("dog", "Is it brown?", "It comes in many colours."),
    ("banana", "Is it yellow?", "Yes."),
    ("banana", "Is it food or drink?", "Yes."),
    ("banana", "Is it a kind of fruit?", "Yes."),
    ("banana", "Does it grow on trees?", "Yes."),
    ("banana", "Would you find it in a kitchen?", "Yes."),
    ("banana", "Is it alive?", "No."),
    ("frying pan", "Is it made of metal?", "Yes."),
    ("frying pan", "Is it used for cooking?", "Yes."),
    ("frying pan", "Does it get hot?", "Yes."),
    ("frying pan", "Is it kitchenware?", "Yes."),
    ("frying pan", "Is it electronic?", "No."),
    ("laptop", "Does it use electricity?", "Yes."),
    ("laptop", "Is it an electronic device?", "Yes."),
    ("laptop", "Does it have a screen?", "Yes."),
    ("sock", "Do you wear it on your feet?", "Yes."),
    ("sock", "Is it worn on the head?", "No."),
    ("sock", "Is it a piece of clothing?", "Yes."),
    ("bicycle", "Is it a vehicle?", "Yes."),
    ("bicycle", "Does it have wheels?", "Yes."),
    ("bicycle", "Does it have an engine?", "No."),
    ("bicycle", "Is it bigger than a person?", "No."),
    ("orange", "Is it orange?", "Yes."),  # the colour; "Is it an orange?" is a guess
    ("violin", "Does it have strings?", "Yes."),
    ("violin", "Is it a musical instrument?", "Yes."),
    ("violin", "Do you blow into it?", "No."),
    ("violin", "What colour is it?", CANNOT),  # 20 Questions takes yes/no questions only
    ("violin", "What is the meaning of life?", CANNOT),
]


@pytest.mark.parametrize(("name", "question", "expected"), OBJECT_CASES)
async def test_rule_oracle_answers_object_questions(name: str, question: str, expected: str) -> None:
    env = make("twenty-questions-v0")
    await env.reset(options={"answer": name})
    step = await env.step(question)
    assert step.observation.splitlines()[0] == expected
    assert step.reward == -1.0 and not step.done and step.info == {"invalid_action": False}


CITY_CASES = [
    ("Paris", "What continent is it on?", "Europe."),
    ("Paris", "Which continent is the city in?", "Europe."),
    ("Paris", "Is it in Europe?", "Yes."),
    ("Paris", "Is the city in Asia?", "No."),
    ("Paris", "Is it in France?", "Yes."),
    ("Paris", "Is it a French city?", "Yes."),
    ("Paris", "Is it in the USA?", "No."),
    ("Paris", "What language do they speak there?", "French."),
    ("Paris", "Do they speak French there?", "Yes."),
    ("Paris", "Is the main language Spanish?", "No."),
    ("Paris", "Is it the capital of its country?", "Yes."),
    ("Paris", "Is it by the sea?", "No."),
    ("Paris", "Is it landlocked?", "Yes."),
    ("Paris", "Does a river run through it?", "Yes."),
    ("Paris", "Has it hosted the Olympics?", "Yes."),
    ("Paris", "Does it have more than 5 million people?", "Yes."),
    ("Paris", "Does it have fewer than 2 million inhabitants?", "No."),
    ("Paris", "Is its population over 20 million?", "No."),
    ("Paris", "How many people live there?", "Its urban area has between 10 and 20 million people."),
    ("Paris", "Is it south of the equator?", "No."),
    ("Paris", "Where is it?", "Western Europe."),
    ("Paris", "What country is it in?", "I cannot name the country. Ask about it another way."),
    ("Paris", "What is it famous for?", CANNOT),
    ("Istanbul", "What continent is it on?", "Europe and Asia (it spans both)."),
    ("Istanbul", "Is it in Asia?", "Yes."),
    ("Istanbul", "Is it a capital city?", "No."),
    ("Cairo", "What's the weather like?", "Dry (desert or semi-desert): little rain, hot summers."),
    ("Cairo", "Is it hot?", "Yes."),
    ("Cairo", "Is it in the Middle East?", "No."),
    ("Cairo", "Is it in North Africa?", "Yes."),
    ("Cairo", "Do people speak Arabic there?", "Yes."),
    ("Sydney", "Is it in the southern hemisphere?", "Yes."),
    ("Sydney", "Is it on the coast?", "Yes."),
    ("Sydney", "Is it in Oceania?", "Yes."),
    ("Hong Kong", "Do they speak Chinese there?", "Yes."),
    ("Hong Kong", "What language do people speak there?", "Cantonese and English."),
    ("La Paz", "Is it at high altitude?", "Yes."),
    ("La Paz", "Is it in the Americas?", "Yes."),
    ("Denver", "Does it snow there in winter?", "Yes."),
    ("Denver", "Is it a megacity?", "No."),
]


@pytest.mark.parametrize(("name", "question", "expected"), CITY_CASES)
async def test_rule_oracle_answers_city_questions(name: str, question: str, expected: str) -> None:
    env = make("guess-my-city-v0")
    await env.reset(options={"answer": name})
    step = await env.step(question)
    assert step.observation.splitlines()[0] == expected
    assert step.reward == -1.0 and not step.done and step.info == {"invalid_action": False}


def test_parsed_queries_of_paraphrases_are_the_canonical_ones() -> None:
    kb = objects_kb()
    for text in ("Is it an animal?", "Is the hidden object an animal?", "So, is it a kind of animal?", "is it animal?"):
        assert parse_action(text, kb).query == Query("category", "animal")
    for text in ("Is it bigger than a breadbox?", "Is this thing larger than a bread box?", "Is it big?"):
        assert parse_action(text, kb).query == Query("size_above", "medium")


# --------------------------------------------------------------------------- guesses

GUESS_CASES = [
    ("twenty-questions-v0", "dog", "Is it a dog?"),
    ("twenty-questions-v0", "dog", "Is it a puppy?"),  # an alias
    ("twenty-questions-v0", "dog", "Guess: dog"),
    ("twenty-questions-v0", "dog", "My guess is a hound."),
    ("twenty-questions-v0", "dog", "I think it is a dog."),
    ("twenty-questions-v0", "mobile phone", "Is it a smartphone?"),
    ("twenty-questions-v0", "orange", "Is it an orange?"),
    ("twenty-questions-v0", "grapes", "Is it grapes?"),
    ("guess-my-city-v0", "New York City", "Is it NYC?"),
    ("guess-my-city-v0", "New York City", "Are you from New York?"),
    ("guess-my-city-v0", "Mumbai", "Is it Bombay?"),
    ("guess-my-city-v0", "Paris", "Is it Paris, France?"),
    ("guess-my-city-v0", "Sao Paulo", "Guess: São Paulo"),
    ("guess-my-city-v0", "Washington, D.C.", "Is the city Washington, D.C.?"),
    ("guess-my-city-v0", "Saint Petersburg", "Is it St. Petersburg?"),
]


@pytest.mark.parametrize(("env_id", "name", "guess"), GUESS_CASES)
async def test_correct_guess_wins_with_reward_zero(env_id: str, name: str, guess: str) -> None:
    env = make(env_id)
    await env.reset(options={"answer": name})
    await env.step("Is it red?" if env_id == "twenty-questions-v0" else "Is it in Europe?")
    step = await env.step(guess)
    assert step.reward == 0.0 and step.terminated and not step.truncated
    assert step.info == {"invalid_action": False, "success": True}
    assert step.observation.startswith("Yes! It is") and step.observation.endswith("You found it in 2 questions.")


async def test_wrong_guesses_cost_a_turn_and_the_game_goes_on() -> None:
    env = make("twenty-questions-v0")
    await env.reset(options={"answer": "dog"})
    wrong = await env.step("Is it a cat?")
    assert wrong.reward == -1.0 and not wrong.done and wrong.info == {"invalid_action": False}
    assert wrong.observation == "No.\n19 questions left."
    unknown = await env.step("Guess: unicorn")  # an explicit guess of a name the game does not know
    assert unknown.reward == -1.0 and not unknown.done and not unknown.info["invalid_action"]
    assert unknown.observation.startswith("No. ('unicorn' is not one of the object names I know.)")
    maybe = await env.step("Is it a unicorn?")  # could be a question or a guess: the oracle says so
    assert maybe.observation.startswith(CANNOT + ' (To make a guess, ask "Is it <name>?"')
    assert isinstance(env, TwentyQuestionsEnv)
    assert [c.name for c in env.candidates()].count("cat") == 0  # a wrong guess is no longer a candidate


# --------------------------------------------------------------------------- invalid actions and the episode

INVALID_ACTIONS = [
    "",
    "   ",
    "%%%",
    "?",
    "dog cat fish",
    "I have no idea",
    "x" * (MAX_ACTION_CHARS + 1),
    "\x00\n\t",
    "\U0001f642 \u00f1 \u65e5\u672c\u8a9e",
    "Is it an animal?" + " " * MAX_ACTION_CHARS,
]


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("action", INVALID_ACTIONS)
async def test_invalid_actions_cost_one_use_a_turn_and_get_no_answer(env_id: str, action: str) -> None:
    env = make(env_id)
    await env.reset(seed=11_000)
    step = await env.step(action)
    assert step.info == {"invalid_action": True} and step.reward == -1.0 and not step.done
    assert "is not a question or a guess" in step.observation and "That used up a turn." in step.observation
    assert step.observation.endswith("19 questions left.")
    assert len(step.observation) < 300  # huge actions are not echoed back
    assert isinstance(env, TwentyQuestionsEnv | GuessMyCityEnv) and env.transcript == ()


async def test_a_question_the_oracle_cannot_parse_is_a_wasted_turn_not_an_invalid_action() -> None:
    env = make("twenty-questions-v0")
    await env.reset(options={"answer": "dog"})
    step = await env.step("What is your favourite film?")
    assert step.info == {"invalid_action": False} and step.reward == -1.0
    assert step.observation == f"{CANNOT}\n19 questions left."


async def test_terminate_rule_read_at_run_time_ends_the_episode_on_invalid_action() -> None:
    env = make("guess-my-city-v0")
    env.spec = dataclasses.replace(env.spec, invalid_action=InvalidActionRule("terminate", -1.0, "ends it"))
    await env.reset(seed=11_000)
    step = await env.step("")
    assert step.terminated and step.info == {"invalid_action": True, "success": False} and step.reward == -1.0


async def test_twenty_wrong_turns_truncate_and_reveal_the_answer() -> None:
    env = make("twenty-questions-v0")
    first = await env.reset(options={"answer": "dog"})
    assert first.observation == "I am thinking of an object. You have 20 questions."
    steps = [await env.step("Is it a plant?") for _ in range(20)]
    assert [s.reward for s in steps] == [-1.0] * 20
    assert steps[-1].truncated and not steps[-1].terminated and steps[-1].info["success"] is False
    assert steps[-1].observation == "No.\nGame over. It was a dog."
    with pytest.raises(EnvError, match="ended"):
        await env.step("Is it a dog?")


async def test_transcript_observation_is_lmrl_style() -> None:
    env = make("guess-my-city-v0", observation="transcript")
    first = await env.reset(options={"answer": "Lima"})
    assert first.observation.endswith("Questions:")
    await env.step("Is it in Europe?")
    await env.step("blah")
    step = await env.step("Is it a capital city?")
    assert step.observation.split("\n") == [
        "Questions:",
        "Is it in Europe? No.",
        "Is it a capital city? Yes.",
        "17 questions left.",
    ]


async def test_reset_rejects_unknown_answers_and_options_and_step_needs_reset() -> None:
    env = make("twenty-questions-v0")
    with pytest.raises(EnvError, match="call reset"):
        await env.step("Is it red?")
    with pytest.raises(EnvError, match="knowledge base"):
        await env.reset(options={"answer": "unicorn"})
    with pytest.raises(EnvError, match="only 'answer'"):
        await env.reset(options={"object": "dog"})
    with pytest.raises(EnvError, match="observation"):
        make("twenty-questions-v0", observation="board")


@pytest.mark.parametrize("env_id", IDS)
async def test_same_seed_same_episode_and_copies_are_independent(env_id: str) -> None:
    env = make(env_id)
    policy = env.scripted_policies()["noisy"]
    a = await env.reset(seed=5)
    actions = [policy(env, random.Random(i)) for i in range(3)]
    steps = [await env.step(x) for x in actions]
    b = await env.reset(seed=5)
    assert a == b and [await env.step(x) for x in actions] == steps
    await env.reset(seed=5)
    await env.step(actions[0])
    clone = env.copy()
    assert isinstance(clone, TwentyQuestionsEnv | GuessMyCityEnv) and isinstance(env, type(clone))
    await clone.step("Guess: nothing at all")
    assert len(clone.transcript) == 2 and len(env.transcript) == 1
    assert (await env.step(actions[1])) == steps[1]
    assert clone.hidden is env.hidden


@pytest.mark.parametrize("env_id", IDS)
def test_conformance_with_the_transcript_observation_and_a_model_oracle(env_id: str) -> None:
    check_env(make(env_id, observation="transcript"), seeds=range(3))
    check_env(make(env_id, oracle="scripted:cycle:Yes"), seeds=range(3))


def test_instructions_state_the_rules_the_categories_and_the_question_forms() -> None:
    text = make("twenty-questions-v0").instructions
    assert "You have 20 turns" in text and "Guess: <name>" in text and "-1" in text
    assert all(desc in text for desc in objects_kb().meta["categories"].values())
    assert "Is it bigger than a breadbox?" in text
    assert make("twenty-questions-v0", max_turns=5).instructions.count("You have 5 turns") == 1
    # with a model oracle any question may be asked: no list of understood forms
    assert "understands questions like these" not in make("twenty-questions-v0", oracle="scripted:echo").instructions
    city = make("guess-my-city-v0").instructions
    assert "Oceania" in city and "What language do people speak there?" in city


# --------------------------------------------------------------------------- scripted policies


async def _play(env: TwentyQuestionsEnv | GuessMyCityEnv, name: str, seed: int) -> tuple[bool, int, float]:
    policy = env.scripted_policies()[name]
    rng = random.Random(seed)
    step = await env.reset(seed=seed)
    turns, total = 0, 0.0
    while not step.done:
        step = await env.step(policy(env, rng))
        turns += 1
        total += step.reward
        assert not step.info["invalid_action"]
    return step.info["success"], turns, total


@pytest.mark.parametrize(("env_id", "max_mean_turns"), [("twenty-questions-v0", 6.5), ("guess-my-city-v0", 2.6)])
async def test_optimal_policy_finds_every_test_item(env_id: str, max_mean_turns: float) -> None:
    env = make(env_id)
    assert isinstance(env, TwentyQuestionsEnv | GuessMyCityEnv)
    results = [await _play(env, "optimal", seed) for seed in env.spec.seeds("test", 200)]
    assert all(success for success, _, _ in results)  # measured: 1000 of 1000 test seeds
    turns = [t for _, t, _ in results]
    assert max(turns) <= 12
    # measured on the first 1000 test seeds: 5.87 turns (objects) and 2.28 (cities)
    assert sum(turns) / len(turns) < max_mean_turns


@pytest.mark.parametrize("env_id", IDS)
async def test_optimal_policy_never_reads_the_hidden_item(env_id: str) -> None:
    """The optimal policy's actions depend only on the answers so far and the pool: hidden items that get the
    same answer to the first question get the same second action."""
    env = make(env_id)
    assert isinstance(env, TwentyQuestionsEnv | GuessMyCityEnv)
    policy = env.scripted_policies()["optimal"]
    await env.reset(seed=0)
    pool = env.pool
    first = policy(env, random.Random(0))
    second: dict[str, set[str]] = {}
    for item in pool:
        await env.reset(options={"answer": item.name})
        env._pool = pool  # the same candidate space as seed 0
        assert policy(env, random.Random(0)) == first
        answer = (await env.step(first)).observation.splitlines()[0]
        second.setdefault(answer, set()).add(policy(env, random.Random(0)))
    assert len(second) >= 2 and all(len(actions) == 1 for actions in second.values())


@pytest.mark.parametrize("env_id", IDS)
async def test_policy_quality_is_ordered(env_id: str) -> None:
    env = make(env_id)
    assert isinstance(env, TwentyQuestionsEnv | GuessMyCityEnv)
    means = {}
    for name in ("random", "noisy", "optimal"):
        means[name] = sum([(await _play(env, name, s))[2] for s in range(40)]) / 40
    assert means["random"] < means["noisy"] < means["optimal"]


@pytest.fixture(scope="module")
def normalization_script() -> ModuleType:
    path = ROOT / "scripts" / "normalization.py"
    module_spec = importlib.util.spec_from_file_location("palaestra_normalization_script_questions", path)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("env_id", IDS)
def test_registered_constants_are_reproduced_by_the_script(normalization_script: ModuleType, env_id: str) -> None:
    norm = spec(env_id).normalization
    assert norm is not None
    args = shlex.split(norm.source)
    assert args[:3] == ["scripts/normalization.py", env_id, "--episodes"] and len(args) == 4
    assert normalization_script.normalization(env_id, int(args[3])) == {
        "min": norm.min,
        "avg": norm.avg,
        "max": norm.max,
    }
    assert norm.min < norm.avg < norm.max


# --------------------------------------------------------------------------- the model oracle


async def test_model_oracle_gets_the_hidden_item_and_the_question_and_its_answer_is_passed_on() -> None:
    model = ScriptedModel(["yes, it is!", "It is a small pet, like a Dog.", "no"], honor_max_tokens=False)
    env = make("twenty-questions-v0", oracle=model)
    await env.reset(options={"answer": "dog"})
    first = await env.step("Does it bark?")  # a question the rules would not understand
    assert first.observation == "Yes.\n19 questions left."
    request = model.requests[0]
    system, user = request.messages
    assert system.role == "system" and "The hidden object is: dog" in system.content
    assert "it is true that it is a mammal" in system.content  # the knowledge-base facts come along
    assert user.role == "user" and user.content == "Does it bark?"
    assert request.sampling.temperature == 0.0
    second = await env.step("Tell me something about it?")
    assert second.observation.splitlines()[0] == "It is a small pet, like a [hidden]."  # names are redacted
    guess = await env.step("Is it a dog?")  # guesses are judged by rules, without the model
    assert guess.info["success"] is True and model.calls == 2
    clone_env = make("twenty-questions-v0", oracle=model)
    await clone_env.reset(options={"answer": "dog"})
    await clone_env.step("Is it red?")
    clone = clone_env.copy()
    assert isinstance(clone, TwentyQuestionsEnv) and clone._model is model  # shared, not copied
    await clone.close()
    await clone_env.close()  # a ready model is never closed by the env


async def test_city_model_oracle_answers_open_questions_briefly() -> None:
    model = ScriptedModel(
        lambda request: "The locals speak French, as everywhere in France.\nMore text.", honor_max_tokens=False
    )
    env = make("guess-my-city-v0", oracle=model)
    await env.reset(options={"answer": "Paris"})
    step = await env.step("What do people speak there?")
    assert step.observation.splitlines()[0] == "The locals speak French, as everywhere in [hidden]."
    system = model.requests[0].messages[0].content
    assert "The hidden city is: Paris, France" in system and "the Eiffel Tower" in system


def test_model_answers_are_normalised() -> None:
    assert normalize_model_answer("Yes", ()) == "Yes."
    assert normalize_model_answer("  **No**, it is not.", ()) == "No."
    assert normalize_model_answer("The answer is yes.", ()) == "Yes."
    assert normalize_model_answer("", ()) == CANNOT
    assert normalize_model_answer("Yesterday it rained.", ()) == "Yesterday it rained."
    assert normalize_model_answer("Dogs? A Dog-like dog.", ("dog",)) == "Dogs? A [hidden]-like [hidden]."
    assert len(normalize_model_answer("word " * 200, ())) <= 200


async def test_model_oracle_built_from_a_spec_is_owned_and_closed() -> None:
    env = make("guess-my-city-v0", oracle="scripted:cycle:No")
    await env.reset(seed=1)
    step = await env.step("Is it on the moon?")
    assert step.observation.startswith("No.")
    await env.close()
    await env.close()  # twice is fine


@pytest.mark.parametrize("env_id", IDS)
async def test_a_failing_oracle_model_makes_an_error_episode_not_a_loss(env_id: str) -> None:
    model = ScriptedModel(["Yes"], fail_on_calls=[2])
    env = make(env_id, oracle=model)
    episode = await run_episode(env, ScriptedAgent("optimal", seed=0), seed=11_000)
    assert episode.status == "error" and episode.error and episode.error.startswith("ModelError:")
    assert len(episode.turns) == 1 and not episode.success


@pytest.mark.slow
async def test_the_real_embedded_model_as_oracle(local_model: object) -> None:
    env = make("twenty-questions-v0", oracle=local_model)
    await env.reset(seed=11_000)
    question = "Is it an animal?"
    step = await env.step(question)
    answer = step.observation.splitlines()[0]
    assert isinstance(answer, str) and answer and not step.done and step.info == {"invalid_action": False}
    assert isinstance(env, TwentyQuestionsEnv | GuessMyCityEnv) and env.transcript == ((question, answer),)
    guess = await env.step(env.kb.guess_text(env.hidden))
    assert guess.info["success"] is True


# --------------------------------------------------------------------------- the documentation

DOC = ROOT / "docs" / "envs" / "questions.md"


def test_doc_python_blocks_run_and_print_the_quoted_episodes(capsys: pytest.CaptureFixture[str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2
    outputs = []
    for index, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name} block {index}", "exec"), {"__name__": f"questions_doc_{index}"})
        outputs.append(capsys.readouterr().out)
    quoted = re.findall(r"```\n(I am thinking of.*?)```", text, flags=re.DOTALL)
    assert quoted == [outputs[0]]  # the example episodes in the doc are what the code prints


def test_doc_quotes_the_registered_constants() -> None:
    text = DOC.read_text(encoding="utf-8")
    for env_id in IDS:
        norm = spec(env_id).normalization
        assert norm is not None and f"{norm.min} / {norm.avg} / {norm.max}" in text


def test_object_categories_are_balanced_enough() -> None:
    counts = Counter(item.facts["category"] for item in objects_kb().items)
    assert min(counts.values()) >= 8
