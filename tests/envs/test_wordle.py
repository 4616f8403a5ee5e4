"""Tests of wordle-v0: feedback rules, word lists, the episode flow and the scripted policies."""

from __future__ import annotations

import random

import numpy as np
import pytest

from palaestra.core.errors import EnvError
from palaestra.envs import make
from palaestra.envs.wordle import (
    WordleEnv,
    _code,
    _encode,
    answer_pool,
    answers,
    feedback,
    parse_guess,
    pattern_codes,
    vocabulary,
)

# Worked out by hand (answer, guess, feedback): greens first, then yellows while unmatched copies remain.
FEEDBACK_CASES = [
    ("abbey", "babes", "yyggb"),  # b and a elsewhere; 2nd b and e right; no s
    ("crane", "eerie", "bbybg"),  # one e in crane and it is green, so the first two e's are black
    ("llama", "hello", "bbyyb"),  # both l's of hello are yellow: llama has two unmatched l's
    ("speed", "erase", "ybbyy"),  # two e's in speed, both unmatched: both e's of erase are yellow
    ("abbey", "kebab", "bygyy"),  # middle b green; the last b takes abbey's other b
    ("apple", "paper", "yygyb"),  # the green p uses one p; the first p takes the other
    ("crane", "crane", "ggggg"),
    ("crane", "bumpy", "bbbbb"),
]


@pytest.mark.parametrize(("answer", "guess", "expected"), FEEDBACK_CASES)
def test_feedback_handles_repeated_letters(answer: str, guess: str, expected: str) -> None:
    assert feedback(guess, answer) == expected


def test_vectorised_feedback_matches_reference_on_a_sample() -> None:
    rng = random.Random(1)
    guesses = [g for _, g, _ in FEEDBACK_CASES] + rng.sample(vocabulary(), 150)
    targets = [a for a, _, _ in FEEDBACK_CASES] + rng.sample(answers(), 150)
    codes = pattern_codes(_encode(tuple(guesses)), _encode(tuple(targets)))
    expected = np.array([[_code(feedback(g, t)) for t in targets] for g in guesses])
    assert np.array_equal(codes, expected)


def test_word_lists_are_large_clean_and_nested() -> None:
    vocab, answer_list = vocabulary(), answers()
    assert len(vocab) >= 2000 and len(answer_list) >= 2000
    assert set(answer_list) <= set(vocab)
    for words in (vocab, answer_list):
        assert list(words) == sorted(set(words))
        assert all(len(w) == 5 and w.isascii() and w.isalpha() and w.islower() for w in words)
    assert {"crane", "abbey", "llama", "hello"} <= set(vocab)
    assert not {"bitch", "negro", "harry", "japan"} & set(vocab)


def test_answer_pools_partition_the_answers() -> None:
    pools = {split: set(answer_pool(split)) for split in ("train", "validation", "test")}
    assert pools["train"].isdisjoint(pools["test"]) and pools["validation"].isdisjoint(pools["test"])
    assert pools["train"].isdisjoint(pools["validation"])
    assert set().union(*pools.values()) == set(answers())
    assert 250 <= len(pools["test"]) <= 450
    assert answer_pool(None) == answers()


async def test_seeds_draw_answers_from_their_split_pool() -> None:
    env = make("wordle-v0")
    assert isinstance(env, WordleEnv)
    for split in ("train", "test"):
        pool = set(answer_pool(split))
        for seed in env.spec.seeds(split, 30):
            await env.reset(seed=seed)
            assert env.answer in pool


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("crane", "crane"),
        ("Crane", "crane"),
        (" CRANE. ", "crane"),
        ("**crane**", "crane"),
        ("c r a n e", "crane"),
        ('"slate"\n', "slate"),
    ],
)
def test_parse_guess_accepts_one_word(text: str, word: str) -> None:
    assert parse_guess(text) == word


@pytest.mark.parametrize(
    "text", ["", "cranes", "cran", "my guess is crane", "crane slate", "cr4ne", "crâne", "x" * 10_000]
)
def test_parse_guess_rejects_everything_else(text: str) -> None:
    assert parse_guess(text) is None


async def test_episode_flow_board_rewards_and_success() -> None:
    env = make("wordle-v0")
    first = await env.reset(options={"answer": "abbey"})
    assert first.observation == "Guess the hidden 5-letter word. You have 6 guesses."
    step = await env.step("babes")
    assert step.reward == -1.0 and not step.done and step.info == {"invalid_action": False}
    assert step.observation == "Guess 1: b a b e s\nResult:  y y g g b\nYou have 5 guesses left."
    step = await env.step("Abbey.")
    assert step.reward == 0.0 and step.terminated and not step.truncated
    assert step.info["success"] is True
    assert step.observation.endswith("Guess 2: a b b e y\nResult:  g g g g g\nYou found the word in 2 guesses!")


async def test_invalid_guesses_cost_one_use_a_turn_and_give_no_feedback() -> None:
    env = make("wordle-v0")
    await env.reset(options={"answer": "crane"})
    await env.step("slate")
    not_a_word = await env.step("zzzzq")
    assert not_a_word.info["invalid_action"] is True and not_a_word.reward == -1.0
    assert "'zzzzq' is not in the word list" in not_a_word.observation
    assert "You have 4 guesses left." in not_a_word.observation
    garbage = await env.step("I think it is crane")
    assert garbage.info["invalid_action"] is True and garbage.reward == -1.0 and not garbage.done
    assert "exactly one 5-letter word" in garbage.observation
    assert isinstance(env, WordleEnv) and [g for g, _ in env.history] == ["slate"]


async def test_six_wrong_guesses_truncate_and_reveal_the_word() -> None:
    env = make("wordle-v0")
    await env.reset(options={"answer": "crane"})
    steps = [await env.step(word) for word in ["slate", "moist", "pudgy", "abbey", "hello", "llama"]]
    assert [s.reward for s in steps] == [-1.0] * 6
    assert steps[-1].truncated and not steps[-1].terminated and steps[-1].info["success"] is False
    assert steps[-1].observation.endswith("Game over. The word was crane.")
    with pytest.raises(EnvError):
        await env.step("crane")


async def test_reset_rejects_unknown_answer_and_options() -> None:
    env = make("wordle-v0")
    with pytest.raises(EnvError, match="vocabulary"):
        await env.reset(options={"answer": "qqqqq"})
    with pytest.raises(EnvError, match="only 'answer'"):
        await env.reset(options={"word": "crane"})


def test_instructions_explain_format_with_an_example() -> None:
    text = make("wordle-v0").instructions
    assert "Reply with exactly one 5-letter word" in text
    assert "'abbey'" in text and "'babes'" in text and "y y g g b" in text
    assert feedback("babes", "abbey") == "yyggb"  # the instructions' example is true


async def run_policy(env: WordleEnv, name: str, seed: int) -> tuple[bool, int, int]:
    policy = env.scripted_policies()[name]
    rng = random.Random(seed)
    step = await env.reset(seed=seed)
    turns = invalid = 0
    while not step.done:
        step = await env.step(policy(env, rng))
        turns += 1
        invalid += step.info["invalid_action"]
    return step.info["success"], turns, invalid


async def test_optimal_policy_solves_test_seeds_without_invalid_guesses() -> None:
    env = make("wordle-v0")
    assert isinstance(env, WordleEnv)
    results = [await run_policy(env, "optimal", seed) for seed in env.spec.seeds("test", 100)]
    assert sum(r[0] for r in results) >= 95  # measured: 100 of 100 (and 1000 of 1000 test seeds)
    assert sum(r[2] for r in results) == 0
    assert sum(r[1] for r in results) / len(results) < 4.0  # measured: 3.4 guesses on average


async def test_consistent_policy_only_guesses_words_matching_the_feedback() -> None:
    env = make("wordle-v0")
    assert isinstance(env, WordleEnv)
    policy = env.scripted_policies()["consistent"]
    rng = random.Random(0)
    for seed in range(20):
        step = await env.reset(seed=seed)
        while not step.done:
            guess = policy(env, rng)
            assert all(feedback(g, guess) == f for g, f in env.history), (guess, env.history)
            step = await env.step(guess)
            assert step.info["invalid_action"] is False


async def test_policy_quality_is_ordered() -> None:
    env = make("wordle-v0")
    assert isinstance(env, WordleEnv)
    seeds = range(60)
    rates = {}
    for name in ("random", "noisy", "optimal"):
        rates[name] = sum([(await run_policy(env, name, s))[0] for s in seeds]) / len(seeds)
    assert rates["random"] < rates["noisy"] < rates["optimal"]
