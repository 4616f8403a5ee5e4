"""Tests of car-dealer-v0: price parsing, the LMRL reward, the rule buyer, invalid messages, splits, the
scripted policies, and model buyers (scripted, failing, and the real embedded model)."""

from __future__ import annotations

import dataclasses
import importlib.util
import random
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from palaestra.agents import ScriptedAgent
from palaestra.core.errors import EnvError
from palaestra.core.types import InvalidActionRule
from palaestra.envs import make, spec
from palaestra.envs.car_dealer import (
    BUDGETS,
    MAX_STRETCH,
    MAX_UTTERANCE_CHARS,
    MSRP_MAX,
    MSRP_MIN,
    CarDealerEnv,
    accepts_counter,
    draw_persona,
    lmrl_reward,
    optimal_policy,
    parse_buyer_reply,
    parse_prices,
    persona_split,
    seller_offer,
    utterance_problem,
)
from palaestra.models.scripted import ScriptedModel
from palaestra.runner import run_episode
from palaestra.testing import check_env

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "normalization.py"

# A polite buyer (patience 6, stretch 1.0, value 1.0, feature weight 0.03, opening 0.8, concession 0.35,
# walk factor 1.8) who wants a Toyota sedan with heated seats on a $30,000 budget; the car has heated seats
# and a sunroof, MSRP $28,000. So W = min(30,000, 28,000) = $28,000 until the seller points out features.
POLITE = {
    "personality": "polite",
    "brand": "Toyota",
    "car_type": "sedan",
    "features": ["heated seats"],
    "budget": 30_000,
}
CAR = {"features": ["heated seats", "sunroof"], "msrp": 28_000}
OPTIONS = {"persona": POLITE, "car": CAR}


def dealer(**kwargs: Any) -> CarDealerEnv:
    env = make("car-dealer-v0", **kwargs)
    assert isinstance(env, CarDealerEnv)
    return env


# --------------------------------------------------------------------------- prices


@pytest.mark.parametrize(
    ("text", "prices"),
    [
        ("I can do $23,500 for you.", [23_500]),
        ("23500 dollars and it's yours", [23_500]),
        ("How about 23.5k?", [23_500]),
        ("Only $23.5K today", [23_500]),
        ("USD 23,500", [23_500]),
        ("23 grand, final", [23_000]),
        ("It is 23,500.", [23_500]),
        ("$30,000.00 exactly", [30_000]),
        ("It was $40,000, now $35,000", [40_000, 35_000]),
        ("The 2023 model has 300 horsepower", []),  # bare numbers are not prices
        ("I'll take $2,000 off", []),  # a discount
        ("Just $400 a month", []),
        ("$400/month with $3,000 down", []),
        ("Save $1,000 today: the price is $25,000", [25_000]),
        ("Only 30,000 miles on it", []),
        ("A $5 coffee voucher", []),  # below $1,000: not a car price
        ("$2 million", []),  # above $1,000,000
    ],
)
def test_prices_are_read_from_the_usual_forms(text: str, prices: list[int]) -> None:
    assert parse_prices(text) == prices


def test_the_offer_is_the_lowest_price_named() -> None:
    assert seller_offer("The MSRP is $34,500, but for you $32,000.") == 32_000
    assert seller_offer("It has a sunroof.") is None


def test_acceptance_phrases() -> None:
    for text in ("Deal!", "OK, deal.", "It's a deal.", "You've got a deal", "I accept your offer.", "Agreed."):
        assert accepts_counter(text), text
    for text in ("I have a great deal for you.", "What is your budget?", "This car is ideal."):
        assert not accepts_counter(text), text


# --------------------------------------------------------------------------- the reward


def test_reward_formula_with_worked_numbers() -> None:
    # bought: buy_price / ((budget + msrp) / 2)
    assert lmrl_reward(True, 27_000, 30_000, 25_000) == pytest.approx(27_000 / 27_500)  # 0.9818
    assert lmrl_reward(True, 30_000, 50_000, 30_000) == pytest.approx(0.75)
    # not bought: -(budget - msrp) / msrp; negative when the buyer could afford the car ...
    assert lmrl_reward(False, None, 50_000, 40_000) == pytest.approx(-0.25)
    assert lmrl_reward(False, None, 90_000, 30_000) == pytest.approx(-2.0)
    # ... and positive when the budget is below the MSRP: not selling then earns 1 - budget / msrp
    assert lmrl_reward(False, None, 10_000, 40_000) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        lmrl_reward(True, None, 10_000, 40_000)


def test_declared_reward_range_bounds_every_outcome() -> None:
    lo, hi = spec("car-dealer-v0").reward_range
    for budget in BUDGETS:
        for msrp in (MSRP_MIN, MSRP_MAX):
            assert lo <= lmrl_reward(False, None, budget, msrp) <= hi
            # the most any buyer pays is MAX_STRETCH x budget
            assert 0 < lmrl_reward(True, int(MAX_STRETCH * budget), budget, msrp) <= hi


async def test_drawn_cars_stay_within_the_msrp_bounds() -> None:
    env = dealer()
    for seed in range(300):
        await env.reset(seed=seed)
        assert MSRP_MIN <= env.car.msrp <= MSRP_MAX
        assert env.car.brand == env.persona.brand and env.car.car_type == env.persona.car_type


# --------------------------------------------------------------------------- the rule buyer


async def test_buyer_accepts_an_offer_at_or_under_its_price() -> None:
    env = dealer()
    first = await env.reset(seed=3, options=OPTIONS)
    assert first.observation.startswith("Your car: a Toyota sedan with heated seats and sunroof. MSRP: $28,000.")
    assert "Buyer: Hi, I'm looking for a Toyota sedan." in first.observation
    # one round: the buyer's price rises to 0.8 + 0.35 * 0.2 = 0.87 of W = $24,360; $20,000 is below it
    step = await env.step("I can let it go for $20,000.")
    assert step.terminated and not step.truncated and step.info["success"] and step.info["bought"]
    assert step.info["buy_price"] == 20_000
    assert step.reward == pytest.approx(20_000 / ((30_000 + 28_000) / 2))
    assert step.observation.endswith("Decision: bought. MSRP: $28,000. Buy price: $20,000.")


async def test_buyer_counters_and_a_bare_deal_takes_the_counter() -> None:
    env = dealer()
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("It's $30,000.")
    assert not step.done and "$24,300" in step.observation.splitlines()[-1]  # floor(0.87 x 28,000) to $100
    assert env.rule_buyer.counter == 24_300
    step = await env.step("Deal!")
    assert step.info["bought"] and step.info["buy_price"] == 24_300
    assert step.reward == pytest.approx(24_300 / 29_000)


async def test_concessions_are_halved_when_the_seller_does_not_come_down() -> None:
    env = dealer()
    await env.reset(seed=3, options=OPTIONS)
    await env.step("It's $30,000.")
    await env.step("Still $30,000.")  # not lower: 0.87 + 0.175 x 0.13 = 0.89275 -> $24,997
    assert env.rule_buyer.counter == 24_900
    await env.reset(seed=3, options=OPTIONS)
    await env.step("It's $30,000.")
    await env.step("OK, $29,900.")  # lower: 0.87 + 0.35 x 0.13 = 0.9155 -> $25,634
    assert env.rule_buyer.counter == 25_600


async def test_pointing_out_wanted_features_raises_the_buyers_price() -> None:
    env = dealer()
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("It has a sunroof.")  # the car has it, but the buyer does not care
    assert env.rule_buyer.max_price() == pytest.approx(28_000)
    assert "price" in step.observation.splitlines()[-1]  # no price named: the buyer asks for one
    step = await env.step("And heated seats!")
    assert env.rule_buyer.max_price() == pytest.approx(28_000 * 1.03)
    assert "Heated seats" in step.observation.splitlines()[-1]
    await env.step("This Toyota is a gem.")  # naming the brand: +0.02 once
    await env.step("A great Toyota.")
    assert env.rule_buyer.max_price() == pytest.approx(28_000 * 1.05)


async def test_buyer_answers_questions_about_needs_and_budget() -> None:
    env = dealer()
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("What features are you looking for? And what is your budget?")
    last = step.observation.splitlines()[-1]
    assert "I'd like heated seats." in last and "My budget is about $30,000." in last
    await env.reset(seed=3, options={**OPTIONS, "persona": {**POLITE, "personality": "skeptical"}})
    step = await env.step("What's your budget?")
    assert "rather not say" in step.observation


async def test_buyer_walks_out_on_an_outrageous_price() -> None:
    env = dealer()
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("It's $60,000.")  # above 1.8 x W = $50,400
    assert step.terminated and not step.info["bought"] and not step.info["success"]
    assert step.reward == pytest.approx(-(30_000 - 28_000) / 28_000)
    assert step.observation.endswith("Decision: not bought. MSRP: $28,000.")


async def test_buyer_leaves_when_its_patience_runs_out() -> None:
    env = dealer()
    await env.reset(seed=3, options=OPTIONS)
    for _ in range(5):
        step = await env.step("Lovely weather today.")
        assert not step.done
    step = await env.step("Lovely weather today.")  # the polite buyer hears 6 messages
    assert step.terminated and not step.info["bought"]
    assert step.reward == pytest.approx(-2_000 / 28_000)


async def test_a_budget_below_the_msrp_makes_no_sale_worth_a_positive_reward() -> None:
    env = dealer()
    persona = {**POLITE, "budget": 10_000}
    await env.reset(seed=3, options={"persona": persona, "car": CAR})
    step = await env.step("It's $60,000.")
    assert step.terminated and not step.info["bought"]
    assert step.reward == pytest.approx(1 - 10_000 / 28_000)


# --------------------------------------------------------------------------- invalid messages


@pytest.mark.parametrize(
    "action",
    ["", "   \n", "%%%", "12345", "<b>It's $25,000</b>", "x" * (MAX_UTTERANCE_CHARS + 1), "日本語 🙂", "\x00\n\t"],
)
async def test_invalid_messages_follow_the_declared_rule(action: str) -> None:
    env = dealer()
    assert env.spec.invalid_action.mode == "penalty" and env.spec.invalid_action.penalty == 0.0
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step(action)
    assert step.info["invalid_action"] is True and step.reward == 0.0 and not step.done
    assert "could not understand" in step.observation and env.turns == 1 and env.offers == ()
    assert utterance_problem(action) is not None


async def test_valid_messages_include_ones_without_a_price_and_of_the_maximum_length() -> None:
    env = dealer()
    await env.reset(seed=3, options=OPTIONS)
    for action in ("Nice weather today.", "asdf qwer", "a" * MAX_UTTERANCE_CHARS, "$45,000"):
        step = await env.step(action)
        assert step.info["invalid_action"] is False and not step.done
    assert utterance_problem(None) is not None


async def test_invalid_messages_use_up_patience_and_the_last_one_ends_the_episode() -> None:
    env = dealer()
    impatient = {**POLITE, "personality": "impatient"}  # patience 3
    await env.reset(seed=3, options={"persona": impatient, "car": CAR})
    await env.step("")
    await env.step("%%%")
    step = await env.step("")
    assert step.terminated and step.info["invalid_action"] and not step.info["bought"]
    # the penalty (0) plus the not-bought reward of the episode's end
    assert step.reward == pytest.approx(-2_000 / 28_000)


async def test_a_terminate_rule_ends_the_episode_with_the_penalty() -> None:
    env = dealer()
    env.spec = dataclasses.replace(env.spec, invalid_action=InvalidActionRule("terminate", -1.0))
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("")
    assert step.terminated and step.reward == -1.0 and step.info["success"] is False


async def test_max_turns_truncates_without_a_sale() -> None:
    env = dealer(max_turns=2)
    await env.reset(seed=3, options=OPTIONS)
    await env.step("Hello!")
    step = await env.step("Hello again!")
    assert step.truncated and not step.terminated and step.info["success"] is False
    assert step.reward == pytest.approx(-2_000 / 28_000)
    with pytest.raises(EnvError):
        await env.step("anything")


async def test_misuse_raises_env_error() -> None:
    env = dealer()
    with pytest.raises(EnvError):
        await env.step("Hello")
    with pytest.raises(EnvError):
        await env.reset(seed=1, options={"colour": "red"})
    with pytest.raises(EnvError):
        await env.reset(seed=1, options={"persona": {**POLITE, "budget": 12_345}})
    with pytest.raises(EnvError):
        await env.reset(seed=1, options={"persona": POLITE, "car": {"msrp": 5}})


# --------------------------------------------------------------------------- determinism, copies, splits


async def play(env: CarDealerEnv, seed: int, policy: str) -> list[tuple[str, float, bool]]:
    rng = random.Random(seed)
    step = await env.reset(seed=seed)
    out = [(step.observation, step.reward, step.done)]
    while not step.done:
        step = await env.step(env.scripted_policies()[policy](env, rng))
        out.append((step.observation, step.reward, step.done))
    return out


async def test_same_seed_same_episode() -> None:
    env = dealer()
    for seed in (0, 7, 11_000):
        assert await play(env, seed, "noisy") == await play(dealer(), seed, "noisy")


async def test_copy_continues_independently() -> None:
    env = dealer()
    await env.reset(seed=3, options=OPTIONS)
    await env.step("It's $30,000.")
    clone = env.copy()
    assert isinstance(clone, CarDealerEnv) and clone.spec is env.spec
    done = await clone.step("Deal!")
    assert done.info["bought"]
    step = await env.step("It's $29,000.")
    assert not step.done and env.rule_buyer.counter != clone.rule_buyer.counter


def test_check_env_passes() -> None:
    check_env("car-dealer-v0", seeds=range(8))
    # a model buyer by spec (echo: deterministic; it never decides, so every episode runs to max_turns)
    check_env(make("car-dealer-v0", buyer="scripted:echo"), seeds=range(2))


async def test_test_personas_are_never_train_personas() -> None:
    env = dealer()
    seen: dict[str, set[str]] = {"train": set(), "test": set()}
    for split, n in (("train", 1_500), ("test", 1_000)):
        for seed in env.spec.seeds(split, n):
            await env.reset(seed=seed)
            assert persona_split(env.persona) == split
            seen[split].add(env.persona.key())
    assert seen["train"].isdisjoint(seen["test"])
    # the hash split gives each evaluation split about 15% of the persona space
    rng = random.Random(0)
    shares = [persona_split(draw_persona(rng, None)) for _ in range(4_000)]
    assert 0.12 < shares.count("test") / len(shares) < 0.18


# --------------------------------------------------------------------------- scripted policies


async def test_optimal_gets_the_most_the_rules_allow_on_a_fixed_persona() -> None:
    env = dealer()
    await env.reset(seed=3, options=OPTIONS)
    rng = random.Random(0)
    actions, step = [], None
    while step is None or not step.done:
        actions.append(optimal_policy(env, rng))
        step = await env.step(actions[-1])
    # one pitch message that points out the heated seats and names the brand: W = 28,000 x 1.05 = 29,400;
    # six full concessions from 0.8: 1 - 0.2 x 0.65^6 = 0.98491 of W
    assert "heated seats" in actions[0] and "Toyota" in actions[0]
    assert len(actions) == 6 and step.info["bought"]
    assert step.info["buy_price"] == int(29_400 * (1 - 0.2 * 0.65**6))
    assert step.reward == pytest.approx(step.info["buy_price"] / 29_000)


async def test_optimal_is_never_beaten_by_other_play() -> None:
    """Exploring policies (random prices around W, with or without the pitch, mixed with optimal moves)
    never get a higher return than the optimal policy on the same seed."""
    from palaestra.envs.car_dealer import _pitch

    def explorer(env: Any, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.4:
            return optimal_policy(env, rng)
        pitch = _pitch(env) if rng.random() < 0.7 else ""
        if r < 0.9:
            return f"{pitch} The price is ${round(env.rule_buyer.max_price() * rng.uniform(0.85, 1.15)):,}."
        return pitch or "Nice weather."

    env = dealer()
    for seed in range(40):
        rng = random.Random(0)
        step = await env.reset(seed=seed)
        best = 0.0
        while not step.done:
            step = await env.step(optimal_policy(env, rng))
            best += step.reward
        for k in range(25):
            rng = random.Random(k)
            step = await env.reset(seed=seed)
            total = 0.0
            while not step.done:
                step = await env.step(explorer(env, rng))
                total += step.reward
            assert total <= best + 1e-9, (seed, k)


async def test_optimal_walks_away_when_no_sale_is_worth_more() -> None:
    env = dealer()
    persona = {**POLITE, "budget": 10_000, "brand": "Porsche"}
    await env.reset(seed=3, options={"persona": persona})
    step = await env.step(optimal_policy(env, random.Random(0)))
    assert step.terminated and not step.info["bought"] and step.reward > 0.8


@pytest.fixture(scope="module")
def script() -> Any:
    module_spec = importlib.util.spec_from_file_location("palaestra_normalization_script", SCRIPT)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    return module


def test_registered_constants_are_reproduced_by_the_script(script: Any) -> None:
    norm = spec("car-dealer-v0").normalization
    assert norm is not None and norm.min < norm.avg < norm.max
    args = shlex.split(norm.source)
    assert args[:3] == ["scripts/normalization.py", "car-dealer-v0", "--episodes"]
    assert script.normalization("car-dealer-v0", int(args[3])) == {"min": norm.min, "avg": norm.avg, "max": norm.max}


# --------------------------------------------------------------------------- model buyers


def test_buyer_replies_are_parsed_robustly() -> None:
    said, decision = parse_buyer_reply("Sounds good to me.\nDECISION: BUY $25,000")
    assert said == "Sounds good to me." and decision is not None and (decision.kind, decision.price) == ("buy", 25_000)
    said, decision = parse_buyer_reply("Buyer: No thanks. DECISION: LEAVE")
    assert said == "No thanks." and decision is not None and decision.kind == "leave"
    _, decision = parse_buyer_reply("ok **Decision = accept 25000**")
    assert decision is not None and (decision.kind, decision.price) == ("buy", 25_000)
    said, decision = parse_buyer_reply("Let me think.\nSeller: DECISION: BUY $1,000")
    assert said == "Let me think." and decision is None


async def test_model_buyer_sees_persona_and_conversation_and_its_decision_ends_the_episode() -> None:
    model = ScriptedModel(["That's a lot for me. Would you take $25,000?", "Fine.\nDECISION: BUY $26,000"])
    env = dealer(buyer=model)
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("This Toyota sedan has heated seats. It's $27,000.")
    assert not step.done and "Buyer: That's a lot for me. Would you take $25,000?" in step.observation
    request = model.requests[0]
    system, user = request.messages[0].content, request.messages[1].content
    assert request.messages[0].role == "system" and request.messages[1].role == "user"
    for fact in ("polite", "Toyota sedan with heated seats", "$30,000", "MSRP: $28,000", "DECISION: BUY"):
        assert fact in system, fact
    assert "Buyer: Hi, I'm looking for a Toyota sedan." in user
    assert "Seller: This Toyota sedan has heated seats. It's $27,000." in user
    step = await env.step("I can do $26,000.")
    assert step.terminated and step.info["bought"] and step.info["buy_price"] == 26_000
    assert step.reward == pytest.approx(26_000 / 29_000)
    assert "DECISION" not in step.observation and step.observation.endswith("Buy price: $26,000.")
    assert "Seller: I can do $26,000." in model.requests[1].messages[1].content


async def test_model_buyer_deal_prices_are_prices_the_seller_named() -> None:
    # a price the seller never offered falls back to the seller's latest offer
    env = dealer(buyer=ScriptedModel(["DECISION: BUY $15,000"]))
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("It's $27,000.")
    assert step.info["buy_price"] == 27_000
    # "Deal" accepts the buyer's counter-offer, which becomes an offer of the seller
    env = dealer(buyer=ScriptedModel(["How about $25,500?", "Great.\nDECISION: BUY $25,500"]))
    await env.reset(seed=3, options=OPTIONS)
    await env.step("It's $27,000.")
    step = await env.step("Deal!")
    assert env.offers == (27_000, 25_500) and step.info["buy_price"] == 25_500
    # a purchase before any price was named is no decision: the conversation goes on
    env = dealer(buyer=ScriptedModel(["DECISION: BUY"]))
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("Hello there!")
    assert not step.done
    # a purchase beyond the buyer's means is no sale
    env = dealer(buyer=ScriptedModel(["DECISION: BUY $40,000"]))
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("It's $40,000.")  # above 1.2 x $30,000
    assert step.terminated and not step.info["bought"]


async def test_model_buyer_that_leaves_or_never_decides() -> None:
    env = dealer(buyer=ScriptedModel(["Not for me.\nDECISION: LEAVE"]))
    await env.reset(seed=3, options=OPTIONS)
    step = await env.step("It's $27,000.")
    assert step.terminated and not step.info["bought"] and step.reward == pytest.approx(-2_000 / 28_000)
    model = ScriptedModel(["Hmm."])
    env = dealer(buyer=model, max_turns=3)
    await env.reset(seed=3, options=OPTIONS)
    for action in ("It's $27,000.", "", "Still $27,000."):
        step = await env.step(action)
    assert step.truncated and not step.info["bought"]
    assert model.calls == 2  # invalid messages are answered without asking the model


async def test_model_buyer_by_spec_is_built_once_shared_by_copies_and_closed() -> None:
    env = dealer(buyer="scripted:cycle:Too pricey.")
    await env.reset(seed=3)
    await env.reset(seed=4)
    model = env._model
    assert isinstance(model, ScriptedModel)
    clone = env.copy()
    assert isinstance(clone, CarDealerEnv) and clone._model is model
    await clone.step("It's $27,000.")
    assert model.calls == 1
    assert "_own_models" in env.__dict__  # built outside the runner: the environment owns (and closes) it
    await env.close()
    await env.close()
    assert "_own_models" not in env.__dict__


class ClosableModel(ScriptedModel):
    closed = False

    async def close(self) -> None:
        self.closed = True


async def test_a_model_instance_is_shared_not_owned() -> None:
    model = ClosableModel(["Hmm."])
    env = dealer(buyer=model)
    await env.reset(seed=3)
    clone = env.copy()
    assert isinstance(clone, CarDealerEnv) and clone._model is model and env._model is model
    await clone.close()
    await env.close()
    assert not model.closed


async def test_a_failing_model_buyer_makes_an_error_episode() -> None:
    env = dealer(buyer=ScriptedModel(["Hmm."], fail_on_calls=[2]))
    episode = await run_episode(env, ScriptedAgent("optimal"), seed=11_000)
    assert episode.status == "error" and (episode.error or "").startswith("ModelError:")
    assert len(episode.turns) == 1  # the first turn went through; the second call failed


@pytest.mark.slow
async def test_the_embedded_model_as_buyer(local_model: Any) -> None:
    """A real model buyer: the episode proceeds within the contract (what the tiny model says is not checked)."""
    env = dealer(buyer=local_model, max_turns=2)
    step = await env.reset(seed=11_000)
    rng = random.Random(0)
    lo, hi = env.spec.reward_range
    turns = 0
    while not step.done:
        step = await env.step(optimal_policy(env, rng))
        turns += 1
        assert step.observation.startswith("Your car:") and step.observation.splitlines()[-1]
        assert step.info["invalid_action"] is False and lo <= step.reward <= hi
    assert 1 <= turns <= 2 and isinstance(step.info["success"], bool)
    assert env.conversation[-1][0] == "Buyer" and env.conversation[-1][1]
    await env.close()
