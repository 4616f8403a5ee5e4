"""Tests of the reasoning item sets (reasoning-arithmetic-v0, reasoning-logic-v0) and their scripted policies.

Answers are checked by solvers written here from the problem *text* (regular expressions and brute force),
independently of the generator's own bookkeeping.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import re
import shlex
import sys
from pathlib import Path

import pytest

from palaestra.core.errors import EnvError, SpecError
from palaestra.envs import make, spec
from palaestra.envs.reasoning import ARITHMETIC_TEMPLATES, Item, ReasoningEnv, item_for_seed, parse_number
from palaestra.testing import check_env

IDS = ("reasoning-arithmetic-v0", "reasoning-logic-v0")
ARITH = Item("arithmetic", "hand", "What is 6 times 7?", "42", 1, "hand|6,7", distractors=("13", "67"))
LOGIC = Item("logic", "hand", "Who is first: Ada or Ben? Ada is ahead of Ben.", "Ada", 1, "hand", ("Ada", "Ben"))
KNIGHTS = Item("logic", "hand", "Is Ada a knight or a knave?", "knave", 1, "hand2", ("knight", "knave"))


async def started(env_id: str, item: Item, **overrides: int) -> ReasoningEnv:
    env = make(env_id, **overrides)
    assert isinstance(env, ReasoningEnv)
    await env.reset(options={"item": item})
    return env


# --------------------------------------------------------------------------- rules


async def test_reset_shows_the_question_and_the_answer_form() -> None:
    env = make("reasoning-arithmetic-v0")
    step = await env.reset(options={"item": ARITH})
    assert step.observation == "What is 6 times 7?\nReply 'Answer: <whole number>'."
    assert step.reward == 0.0 and not step.done and step.info["invalid_action"] is False
    env = make("reasoning-logic-v0")
    step = await env.reset(options={"item": KNIGHTS})
    assert step.observation.endswith("Reply 'Answer: <knight or knave>'.")


async def test_correct_answer_scores_one_and_ends_with_success() -> None:
    env = await started("reasoning-arithmetic-v0", ARITH)
    step = await env.step("Answer: 42")
    assert (step.reward, step.terminated, step.truncated) == (1.0, True, False)
    assert step.info == {"invalid_action": False, "success": True, "answer": "42", "given": "42"}
    assert step.observation == "Correct: the answer is 42."
    with pytest.raises(EnvError, match="reset"):
        await env.step("Answer: 42")


async def test_wrong_answer_scores_zero_and_reveals_the_answer() -> None:
    env = await started("reasoning-arithmetic-v0", ARITH)
    step = await env.step("Answer: 41")
    assert (step.reward, step.terminated, step.truncated) == (0.0, True, False)
    assert step.info == {"invalid_action": False, "success": False, "answer": "42", "given": "41"}
    assert step.observation == "Wrong: 41 is not the answer. The answer was 42."


@pytest.mark.parametrize(
    "reply",
    ["Answer: 42", "42", "answer: 42.", "ANSWER:42", "The answer is: 42", "$42", "42 dollars", "42.0", "**42**",
     "I multiply 6 by 7.\nAnswer: 42", "Answer: 40\nAnswer: 42"],
)  # fmt: skip
async def test_accepted_number_forms(reply: str) -> None:
    env = await started("reasoning-arithmetic-v0", ARITH)
    step = await env.step(reply)
    assert step.reward == 1.0 and step.info["invalid_action"] is False, reply


def test_parse_number_reads_commas_signs_and_decimals() -> None:
    assert parse_number("Answer: 1,200") == 1200
    assert parse_number("-7") == -7
    assert parse_number("Answer: 42.5") == pytest.approx(42.5)
    assert parse_number("Answer: 12 34") is None


async def test_a_fractional_number_is_a_valid_wrong_answer() -> None:
    env = await started("reasoning-arithmetic-v0", ARITH)
    step = await env.step("Answer: 42.5")
    assert step.reward == 0.0 and step.info["invalid_action"] is False and step.info["given"] == "42.5"


@pytest.mark.parametrize(
    "reply",
    ["", "   ", "%%%", "<script>alert(1)</script>", "x" * 10_000, "\U0001f642 ñ 日本語", "\x00\n\t", "forty-two",
     "6 times 7 is 42", "42\n43", "Answer:", "Answer: " + "9" * 300, "I think the answer is 42 or 43"],
)  # fmt: skip
async def test_replies_without_a_number_are_invalid_and_end_the_episode(reply: str) -> None:
    env = await started("reasoning-arithmetic-v0", ARITH)
    step = await env.step(reply)
    assert (step.reward, step.terminated, step.truncated) == (0.0, True, False)
    assert step.info["invalid_action"] is True and step.info["success"] is False and step.info["answer"] == "42"
    assert step.observation.startswith("No answer found in '") and "Reply 'Answer: <whole number>'" in step.observation
    assert len(step.observation) < 200  # garbage is never echoed in full


@pytest.mark.parametrize(("reply", "reward"), [("Answer: Ada", 1.0), ("ada", 1.0), ("Answer: the Ben.", 0.0)])
async def test_logic_answers_are_matched_case_insensitively_against_the_options(reply: str, reward: float) -> None:
    env = await started("reasoning-logic-v0", LOGIC)
    step = await env.step(reply)
    assert step.reward == reward and step.info["invalid_action"] is False and step.terminated


@pytest.mark.parametrize("reply", ["Answer: Cara", "Ada or Ben", "first", "Answer: knight", "x" * 10_000, ""])
async def test_a_logic_answer_outside_the_options_is_invalid(reply: str) -> None:
    env = await started("reasoning-logic-v0", LOGIC)
    step = await env.step(reply)
    assert step.info["invalid_action"] is True and step.reward == 0.0 and step.terminated
    assert "'Answer: <Ada or Ben>'" in step.observation


async def test_knights_accept_an_article() -> None:
    env = await started("reasoning-logic-v0", KNIGHTS)
    assert (await env.step("Answer: a knave")).reward == 1.0


async def test_several_attempts_with_max_turns() -> None:
    env = await started("reasoning-arithmetic-v0", ARITH, max_turns=3)
    first = await env.step("Answer: 40")
    assert (first.reward, first.done) == (0.0, False) and "success" not in first.info
    assert first.observation == (
        "Wrong: 40 is not the answer. 2 answers left. What is 6 times 7?\nReply 'Answer: <whole number>'."
    )
    second = await env.step("41")
    assert second.observation.startswith("Wrong: 41 is not the answer. 1 answer left.")
    third = await env.step("Answer: 42")
    assert (third.reward, third.terminated, third.info["success"]) == (1.0, True, True)

    env = await started("reasoning-arithmetic-v0", ARITH, max_turns=2)
    await env.step("1")
    last = await env.step("2")
    assert (last.reward, last.terminated, last.truncated, last.info["success"]) == (0.0, True, False, False)
    # an invalid reply ends the episode even with attempts left (rule "terminate")
    env = await started("reasoning-arithmetic-v0", ARITH, max_turns=3)
    assert (await env.step("???")).terminated
    check_env(make("reasoning-logic-v0", max_turns=3), seeds=range(3))


async def test_instructions_state_the_form_and_the_attempts() -> None:
    assert "'Answer: 42'" in make("reasoning-arithmetic-v0").instructions
    assert "You have one answer." in make("reasoning-arithmetic-v0").instructions
    assert "up to 3 answers" in make("reasoning-logic-v0", max_turns=3).instructions
    assert "'knight' or 'knave'" in make("reasoning-logic-v0").instructions


async def test_misuse_raises() -> None:
    with pytest.raises(EnvError, match="reset"):
        await make("reasoning-logic-v0").step("Answer: Ada")
    with pytest.raises(EnvError, match="unknown reset options"):
        await make("reasoning-logic-v0").reset(options={"level": 2})
    with pytest.raises(EnvError, match="logic Item"):
        await make("reasoning-logic-v0").reset(options={"item": ARITH})
    with pytest.raises(SpecError, match="'arithmetic' or 'logic'"):
        make("reasoning-logic-v0", kind="geometry")


@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id: str) -> None:
    check_env(make(env_id), seeds=[0, 1, 11_000, 11_001])


# --------------------------------------------------------------------------- generated items: solved from the text


def solve_arithmetic(item: Item) -> int:
    """The answer of a generated word problem, computed from its numbers as the text states them."""
    q = item.question
    n = [int(x) for x in re.findall(r"\d+", q)]
    fractions = {"half": 2, "a third": 3, "a quarter": 4}
    solvers = {
        "shopping-1": lambda: n[2] - n[0] * n[1],
        "shopping-2": lambda: n[4] - n[0] * n[1] - n[2] * n[3],
        "sharing-1": lambda: (n[0] - n[1]) // n[2],
        "sharing-2": lambda: (n[0] * n[1] - n[2]) // n[3],
        "rates-1": lambda: n[0] * n[1] * n[2],
        "rates-2": lambda: n[0] * n[1] * n[2] - n[3],
        "ages-1": lambda: n[2] - n[1] + n[0],
        "ages-2": lambda: n[2] - n[1] + n[0] + n[3],
        "savings": lambda: n[0] + n[1] * n[2] - n[3],
        "travel": lambda: n[0] * n[1] + n[2] * n[3],
        "packing-1": lambda: (n[0] + n[1]) // n[2],
        "packing-2": lambda: (n[0] + n[1]) // n[2] * n[3],
    }
    if item.template == "fractions":
        match = re.search(r"(Half|A third|A quarter) of them are red, (half|a third|a quarter) of the rest", q)
        assert match, q
        first = n[0] // fractions[match.group(1).lower()]
        rest = n[0] - first
        return rest - rest // fractions[match.group(2)]
    return int(solvers[item.template]())


def test_arithmetic_answers_are_what_the_text_says_for_every_template() -> None:
    templates, steps = set(), set()
    for seed in range(2000):
        item = item_for_seed("arithmetic", seed)
        assert item.answer == str(solve_arithmetic(item)), item.question
        assert int(item.answer) >= 0 and item.answer not in item.distractors
        templates.add(item.template.split("-")[0])
        steps.add(item.steps)
    assert templates == set(ARITHMETIC_TEMPLATES) and steps == {2, 3, 4}


def test_a_known_seed_gives_a_known_problem() -> None:
    item = item_for_seed("arithmetic", 0)
    assert item.question == (
        "Yusuf buys 6 tickets at $10 each and pays with a $100 bill. How many dollars of change does Yusuf get?"
    )
    assert item.answer == "40"  # 100 - 6 x 10


_ORDINAL = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4}


def solve_ordering(text: str) -> list[str]:
    """The answer of every ordering consistent with an ordering puzzle's clues (brute force)."""
    names = re.match(r"\d people, (.*?), (?:stand|sit|ran)", text)
    assert names, text
    people = re.split(r", | and ", names.group(1))
    checks = []
    for sentence in re.split(r"(?<=[.?]) ", text):
        a = next((p for p in people if sentence.startswith(p + " ")), None)
        found = [p for p in people if re.search(rf"\b{p}\b", sentence)]
        b = next((p for p in found if p != a), None) if len(found) == 2 else None
        if a and b and re.search(r"directly (ahead of|to the left of)", sentence):
            checks.append(lambda pos, a=a, b=b: pos[a] + 1 == pos[b])
        elif a and b and re.search(r"ahead of|to the left of", sentence):
            checks.append(lambda pos, a=a, b=b: pos[a] < pos[b])
        elif "are not next to" in sentence:
            checks.append(lambda pos, a=found[0], b=found[1]: abs(pos[a] - pos[b]) != 1)
        elif "are next to" in sentence:
            checks.append(lambda pos, a=found[0], b=found[1]: abs(pos[a] - pos[b]) == 1)
        elif "exactly one person between" in sentence:
            checks.append(lambda pos, a=found[0], b=found[1]: abs(pos[a] - pos[b]) == 2)
        elif "neither first nor last" in sentence:
            checks.append(lambda pos, a=found[0]: pos[a] not in (0, len(people) - 1))
        elif re.search(r"front or at the back|end chairs|first or last", sentence):
            checks.append(lambda pos, a=found[0]: pos[a] in (0, len(people) - 1))
    asked = _ORDINAL[re.search(r"(first|second|third|fourth|fifth)", text.rsplit(". ", 1)[-1]).group(1)]  # type: ignore[union-attr]
    answers = []
    for order in itertools.permutations(people):
        pos = {p: i for i, p in enumerate(order)}
        if all(check(pos) for check in checks):
            answers.append(order[asked])
    return answers


def solve_knights(text: str) -> list[str]:
    """The answer of every assignment consistent with a knights-and-knaves puzzle (brute force over 8)."""
    people = list(re.search(r"You meet (\w+), (\w+) and (\w+)\.", text).groups())  # type: ignore[union-attr]
    statements = re.findall(r'(\w+) says: "(.*?)\."', text)
    asked = re.search(r"Is (\w+) a knight or a knave\?$", text).group(1)  # type: ignore[union-attr]
    answers = []
    for kinds in itertools.product((True, False), repeat=3):
        knight = dict(zip(people, kinds, strict=True))

        def true(speaker: str, claim: str, knight: dict[str, bool] = knight) -> bool:
            def who(word: str) -> str:
                return speaker if word == "I" else word

            if m := re.fullmatch(r"(\w+) is a (knight|knave)", claim):
                return knight[m[1]] == (m[2] == "knight")
            if m := re.fullmatch(r"(\w+) and (\w+) are the same kind", claim):
                return knight[who(m[1])] == knight[who(m[2])]
            if m := re.fullmatch(r"(\w+) and (\w+) are both knights", claim):
                return knight[who(m[1])] and knight[who(m[2])]
            if m := re.fullmatch(r"(?:I am|(\w+) is) a knight or (?:I am|(\w+) is) a knave", claim):
                return knight[m[1] or speaker] or not knight[m[2] or speaker]
            if claim == "At least one of us three is a knave":
                return not all(knight.values())
            assert claim == "Exactly one of us three is a knight", claim
            return sum(knight.values()) == 1

        if all(knight[s] == true(s, c) for s, c in statements):
            answers.append("knight" if knight[asked] else "knave")
    return answers


def test_logic_puzzles_have_exactly_one_solution_and_no_redundant_clue() -> None:
    templates = set()
    for seed in range(200):
        item = item_for_seed("logic", seed)
        templates.add(item.template)
        solve = solve_ordering if item.template == "ordering" else solve_knights
        assert solve(item.question) == [item.answer], item.question  # one solution, with the stated answer
        assert item.answer in item.options
        sentences = re.split(r"(?<=[.?]) |(?<=[.?]\") ", item.question)
        clues = [i for i, x in enumerate(sentences) if i >= 2 and not x.endswith("?")]
        assert len(clues) == item.steps
        for i in clues:  # every clue is needed: without it the puzzle has several solutions
            assert len(solve(" ".join(sentences[:i] + sentences[i + 1 :]))) > 1, (item.question, sentences[i])
    assert templates == {"ordering", "knights"}


def test_known_logic_puzzle_text() -> None:
    item = item_for_seed("logic", 5)
    assert item.question == (
        "5 people, Zoe, Wen, Ximena, Uma and Quinn, stand in a line at a ticket window. The person at the front "
        "of the line is first. Ximena and Quinn are not next to each other. Wen stands directly ahead of Ximena. "
        "Wen and Uma are next to each other. Uma is at the front or at the back of the line. Who is second in line?"
    )
    # By hand: Uma is at an end and next to Wen, and Wen is directly ahead of Ximena, so the line is
    # Uma, Wen, Ximena, then Zoe and Quinn; Quinn is not next to Ximena, so Uma Wen Ximena Zoe Quinn.
    assert item.answer == "Wen"


# --------------------------------------------------------------------------- splits, determinism, copies


@pytest.mark.parametrize("kind", ["arithmetic", "logic"])
def test_test_items_never_appear_under_train_seeds(kind: str) -> None:
    env = make(f"reasoning-{kind}-v0")
    train = [item_for_seed(kind, s, "train") for s in env.spec.seeds("train", 3000)]  # type: ignore[arg-type]
    test = [item_for_seed(kind, s, "test") for s in env.spec.seeds("test")]  # type: ignore[arg-type]
    assert {i.pool() for i in train} == {"train"} and {i.pool() for i in test} == {"test"}
    assert not {i.question for i in train} & {i.question for i in test}
    assert not {i.key for i in train} & {i.key for i in test}  # nor a renaming of one
    assert len({i.question for i in test}) > 900  # the test split is not a handful of repeats


async def test_seeds_use_their_split_and_are_deterministic() -> None:
    env = make("reasoning-arithmetic-v0")
    assert isinstance(env, ReasoningEnv)
    first = await env.reset(seed=11_005)
    assert env.item.pool() == "test"
    assert await env.reset(seed=11_005) == first
    assert (await env.reset(seed=11_006)).observation != first.observation


async def test_copy_is_independent() -> None:
    env = await started("reasoning-arithmetic-v0", ARITH, max_turns=2)
    clone = env.copy()
    assert (await clone.step("Answer: 42")).reward == 1.0
    step = await env.step("Answer: 1")
    assert step.reward == 0.0 and not step.done  # the original still had both attempts


# --------------------------------------------------------------------------- scripted policies


@pytest.mark.parametrize("env_id", IDS)
async def test_scripted_policies(env_id: str) -> None:
    env = make(env_id)
    policies = env.scripted_policies()
    means = {}
    for name in ("optimal", "random", "noisy"):
        total = 0.0
        for seed in env.spec.seeds("test", 300):
            rng = random.Random(seed)
            await env.reset(seed=seed)
            step = await env.step(policies[name](env, rng))
            assert step.done and step.info["invalid_action"] is False
            total += step.reward
        means[name] = total / 300
    assert means["optimal"] == 1.0
    assert 0.1 < means["random"] < means["noisy"] < 1.0


SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "normalization.py"


@pytest.mark.parametrize("env_id", IDS)
def test_registered_normalization_is_reproduced_by_the_script(env_id: str) -> None:
    module_spec = importlib.util.spec_from_file_location("palaestra_normalization_script_reasoning", SCRIPT)
    assert module_spec and module_spec.loader
    script = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = script
    module_spec.loader.exec_module(script)
    norm = spec(env_id).normalization
    assert norm is not None
    args = shlex.split(norm.source)
    assert args[:3] == ["scripts/normalization.py", env_id, "--episodes"]
    assert script.normalization(env_id, int(args[3])) == {"min": norm.min, "avg": norm.avg, "max": norm.max}
    assert norm.min < norm.avg < norm.max == 1.0
