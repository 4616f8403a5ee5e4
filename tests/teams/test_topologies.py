"""Each team topology with scripted members: votes, debate, DyLAN, the centralized ledgers, limits, bad output."""

from __future__ import annotations

import json

import pytest
from team_samples import role_of, team_model

from palaestra.agents import make_agent, needs_model
from palaestra.core.errors import SpecError
from palaestra.core.types import ChatRequest
from palaestra.envs import make
from palaestra.envs.reasoning import ReasoningEnv, item_for_seed
from palaestra.runner import run_episode
from palaestra.teams import make_team, optimize_team, vote, vote_key
from palaestra.teams.dylan import importance_scores, split_ratings

OBS = "What is 6 + 2?\nReply 'Answer: <whole number>'."
NO_SHOTS = "/prompt:shots=0"


async def decide(spec: str, table, env: ReasoningEnv):
    model = team_model(table)
    team = make_team(spec + NO_SHOTS, env, model, seed=0)
    action = await team.act(env, [], OBS)
    json.dumps(action.meta)  # meta is JSON
    return action, model


# --------------------------------------------------------------------------- voting


def test_vote_counts_equal_answers_once_and_breaks_ties_by_first_given() -> None:
    assert vote(["Answer: 7", "answer: 8", "8.", None]) == "answer: 8"
    assert vote(["Answer: 7", "Answer: 8", "8", "7"]) == "Answer: 7"  # 2 to 2: the first given wins
    assert vote([None, None]) is None
    assert vote_key("  **Answer:  Ada**. ") == "ada" == vote_key("ada")


async def test_independent_majority_vote_and_audit(item_env: ReasoningEnv) -> None:
    table = {("m1", 1): "Answer: 7", ("m2", 1): "answer: 8", ("m3", 1): "Answer: 8"}
    action, model = await decide("independent:3", table, item_env)
    assert action.text == "answer: 8" and action.parsed
    assert len(action.calls) == model.calls == 3
    meta = action.meta
    assert meta["topology"] == "independent" and meta["members"] == ["m1", "m2", "m3"] and meta["rounds"] == 1
    assert meta["first_answers"] == {"m1": "Answer: 7", "m2": "answer: 8", "m3": "Answer: 8"}
    assert meta["final"] == "answer: 8"
    assert [(m["round"], m["from"], m["to"]) for m in meta["messages"]] == [(1, f"m{i}", "team") for i in (1, 2, 3)]
    assert meta["audit"] == [
        {"answer": "Answer: 7", "members": ["m1"], "reward": 0.0, "success": False, "invalid_action": False},
        {"answer": "answer: 8", "members": ["m2", "m3"], "reward": 1.0, "success": True, "invalid_action": False},
    ]
    # the audit stepped copies: the environment itself still waits for the team's answer
    step = await item_env.step(action.text)
    assert step.reward == 1.0


async def test_independent_tie_goes_to_the_first_member_and_rounds_pool_votes(item_env: ReasoningEnv) -> None:
    table = {("m1", 1): "Answer: 7", ("m2", 1): "Answer: 8"}
    action, _ = await decide("independent:2", table, item_env)
    assert action.text == "Answer: 7"
    action, model = await decide("independent:2,rounds=3", table, item_env)
    assert model.calls == 6 and action.meta["rounds"] == 3 and action.text == "Answer: 7"


async def test_no_usable_answer_passes_the_raw_reply_as_an_invalid_action(item_env: ReasoningEnv) -> None:
    action, _ = await decide("independent:2", {("m1", 1): "", ("m2", 1): "  "}, item_env)
    assert not action.parsed and action.meta["final"] is None and action.meta["audit"] == []
    step = await item_env.step(action.text)
    assert step.info["invalid_action"] is True


async def test_single_is_one_call_with_the_same_meta(item_env: ReasoningEnv) -> None:
    action, model = await decide("single", {("m1", 1): "Answer: 8"}, item_env)
    assert model.calls == 1 and action.text == "Answer: 8"
    assert action.meta["members"] == ["m1"] and action.meta["messages"][0]["to"] == "env"
    assert action.meta["audit"][0]["success"] is True


async def test_calls_are_every_member_call_in_order_with_token_ids(item_env: ReasoningEnv) -> None:
    table = {("m1", 1): "Answer: 7", ("m2", 1): "Answer: 8", ("m3", 1): "Answer: 9", ("m1", 2): "Answer: 8"}
    action, model = await decide("decentralized:3,rounds=2", table, item_env)
    texts = [bytes(c.completion_token_ids or ()).decode() for c in action.calls]
    assert texts == ["Answer: 7", "Answer: 8", "Answer: 9", "Answer: 8", "Answer: 8", "Answer: 9"]
    assert [role_of(r) for r in model.requests] == [("m1", 1), ("m2", 1), ("m3", 1), ("m1", 2), ("m2", 2), ("m3", 2)]
    assert action.usage.total_tokens == sum(c.usage.total_tokens for c in action.calls) > 0


async def test_members_differ_by_persona_and_a_persona_is_in_the_system_prompt(item_env: ReasoningEnv) -> None:
    _, model = await decide("independent:2", {("m1", 1): "8", ("m2", 1): "8"}, item_env)
    first, second = (r.messages[0].content for r in model.requests)
    assert "You are m1, one of 2 members" in first and "You are m2, one of 2 members" in second
    assert "step by step" in first and "simplest way" in second
    assert first.startswith(item_env.instructions)


# --------------------------------------------------------------------------- debate


async def test_debate_members_see_the_others_and_revise(item_env: ReasoningEnv) -> None:
    table = {
        ("m1", 1): "Answer: 7",
        ("m2", 1): "Answer: 8",
        ("m3", 1): "Answer: 8",
        ("m1", 2): "Answer: 8",  # m1 is convinced
    }
    action, model = await decide("decentralized:3", table, item_env)
    assert action.text == "Answer: 8" and action.meta["rounds"] == 2  # unanimous after round 2: no round 3
    assert model.calls == 6
    revise = model.requests[3].messages[-1].content  # m1, round 2
    assert "Round 2. In round 1 the other members answered:\nm2: Answer: 8\nm3: Answer: 8" in revise
    assert "Your answer was: Answer: 7" in revise
    assert action.meta["first_answers"]["m1"] == "Answer: 7"  # the first answer, not the revision


async def test_debate_stops_at_once_when_unanimous(item_env: ReasoningEnv) -> None:
    action, model = await decide("decentralized:3", {(m, 1): "Answer: 8" for m in ("m1", "m2", "m3")}, item_env)
    assert model.calls == 3 and action.meta["rounds"] == 1


@pytest.mark.parametrize(
    ("spec", "calls"),
    [
        ("decentralized:3,rounds=4", 12),
        ("dylan:3,rounds=4,keep=2", 3 + 3 + 1 + 2 + 2),  # ranker at round 3 keeps 2
        ("centralized:3,rounds=4", 1 + 3 + 3 * 2),  # plan, 3 workers, then progress + 1 worker per round
    ],
)
async def test_members_that_never_agree_stop_at_the_round_limit(spec: str, calls: int, item_env) -> None:
    def stubborn(who: str, number: int, request: ChatRequest) -> str:
        if who == "orchestrator":
            return "Done: no\nProgress: yes\nNext: m1\nInstruction: try again"
        if who == "ranker":
            return "Best: 1, 2"
        return {"m1": "Answer: 7", "m2": "Answer: 8", "m3": "Answer: 9"}[who] + "\nRatings: 3 3"

    action, model = await decide(spec, stubborn, item_env)
    assert action.meta["rounds"] == 4 and model.calls == calls
    assert action.text == "Answer: 7"  # a 1-1-1 tie: the first member's answer


# --------------------------------------------------------------------------- DyLAN


async def test_dylan_importance_scores_on_a_hand_computed_case(item_env: ReasoningEnv) -> None:
    table = {
        ("m1", 1): "Answer: 7",
        ("m2", 1): "Answer: 8",
        ("m3", 1): "Answer: 9",
        ("m1", 2): "Answer: 8\nRatings: 4 1",  # m1 rates m2 4, m3 1
        ("m2", 2): "Answer: 8\nRatings: 2 2",  # m2 rates m1 2, m3 2
        ("m3", 2): "Answer: 9\nRatings: 1 5",  # m3 rates m1 1, m2 5
    }
    action, model = await decide("dylan:3,rounds=2", table, item_env)
    meta = action.meta
    assert action.text == "Answer: 8" and meta["rounds"] == 2 and model.calls == 6
    assert meta["ratings"] == [
        {"round": 2, "from": "m1", "to": {"m2": 4, "m3": 1}},
        {"round": 2, "from": "m2", "to": {"m1": 2, "m3": 2}},
        {"round": 2, "from": "m3", "to": {"m1": 1, "m2": 5}},
    ]
    # Round 2: the final answer 8 came from m1 and m2: 1/2 each, m3 0.
    # Back to round 1: m1 gives 1/2 x 4/5 = 0.4 to m2 and 1/2 x 1/5 = 0.1 to m3; m2 gives 1/2 x 2/4 = 0.25 to
    # m1 and 0.25 to m3; m3 (importance 0) gives nothing. Round 1: m1 0.25, m2 0.4, m3 0.35.
    # Sums: m1 0.75, m2 0.9, m3 0.35, total 2.0; normalised: 0.375, 0.45, 0.175.
    assert meta["node_importance"] == [{"m1": 0.25, "m2": 0.4, "m3": 0.35}, {"m1": 0.5, "m2": 0.5, "m3": 0.0}]
    assert meta["importance"] == {"m1": 0.375, "m2": 0.45, "m3": 0.175}
    # the ratings line is not part of the answer, and round 2 prompts list the others with numbers
    assert model.requests[3].messages[-1].content.count("\n1. m2: Answer: 8\n2. m3: Answer: 9\n") == 1


def test_importance_over_three_rounds_by_hand() -> None:
    rounds = [{"a": "1", "b": "2"}, {"a": "2", "b": "2"}, {"a": "2", "b": "1"}]
    ratings = {(2, "a"): {"b": 1.0}, (2, "b"): {"a": 3.0}, (3, "a"): {"b": 1.0}, (3, "b"): {"a": 1.0}}
    scores, nodes = importance_scores(rounds, ratings, final="2")
    # round 3: a gave the final answer: a 1. Round 2: a passes all to b: b 1. Round 1: b passes all to a: a 1.
    assert nodes == [{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}, {"a": 1.0, "b": 0.0}]
    assert scores == {"a": 2 / 3, "b": 1 / 3}


def test_split_ratings() -> None:
    assert split_ratings("Answer: 8\nRatings: 4 1", 2) == ([4, 1], "Answer: 8\n")
    assert split_ratings("Answer: 8 Ratings: [5, 3]", 2) == ([5, 3], "Answer: 8 ")
    assert split_ratings("Answer: 8\nRatings: 4 9", 2)[0] is None  # out of 1..5
    assert split_ratings("Answer: 8\nRatings: 4", 2)[0] is None  # too few
    assert split_ratings("Answer: 8", 2) == (None, "Answer: 8")


async def test_dylan_stops_early_when_more_than_two_thirds_agree(item_env: ReasoningEnv) -> None:
    action, model = await decide("dylan:3", {(m, 1): "Answer: 8" for m in ("m1", "m2", "m3")}, item_env)
    assert model.calls == 3 and action.meta["rounds"] == 1
    assert action.meta["importance"] == {
        "m1": pytest.approx(1 / 3),
        "m2": pytest.approx(1 / 3),
        "m3": pytest.approx(1 / 3),
    }
    # 2 of 3 is not more than 2/3: a second round is played, where all agree
    table = {
        ("m1", 1): "Answer: 8",
        ("m2", 1): "Answer: 8",
        ("m3", 1): "Answer: 9",
        ("m3", 2): "Answer: 8\nRatings: 5 5",
    }
    table |= {("m1", 2): "Answer: 8\nRatings: 5 1", ("m2", 2): "Answer: 8\nRatings: 5 1"}
    action, model = await decide("dylan:3,rounds=4", table, item_env)
    assert model.calls == 6 and action.meta["rounds"] == 2 and action.text == "Answer: 8"


async def test_dylan_ranker_keeps_its_picks_from_round_three(item_env: ReasoningEnv) -> None:
    def replies(who: str, number: int, request: ChatRequest) -> str:
        if who == "ranker":
            return "Best: 3, 1"
        return f"Answer: {who[1]}\nRatings: 2 2 2"  # m1 says 1, m2 says 2...: never agreeing

    action, model = await decide("dylan:4,rounds=3,keep=2", replies, item_env)
    assert [role_of(r) for r in model.requests][8:] == [("ranker", 1), ("m1", 3), ("m3", 3)]
    assert model.calls == 4 + 4 + 1 + 2
    assert action.meta["ranking"] == {"round": 3, "kept": ["m1", "m3"], "by": "ranker"}
    ranker_prompt = model.requests[8].messages[-1].content
    assert "1. Answer: 1\n2. Answer: 2\n3. Answer: 3\n4. Answer: 4" in ranker_prompt
    # in round 3, m1 sees only the other kept member's answer
    assert "1. m3: Answer: 3\nYour answer was: Answer: 1" in model.requests[9].messages[-1].content


async def test_dylan_malformed_ranker_and_ratings_fall_back_to_the_ratings(item_env: ReasoningEnv) -> None:
    def replies(who: str, number: int, request: ChatRequest) -> str:
        if who == "ranker":
            return "I cannot decide."
        ratings = {"m1": "5 1 5", "m2": "1 1 5", "m3": "no idea", "m4": "1 5 1"}[who]  # m3's is malformed
        return f"Answer: {who[1]}\nRatings: {ratings}"

    action, _ = await decide("dylan:4,rounds=3,keep=2", replies, item_env)
    # ratings received in round 2 (each rater's scores over what it saw, normalised by how many it rated):
    # m1 from m2 1, m3 (uniform) 1, m4 1 -> lowest; m2 from m1 5, m3 1, m4 5; m3 from m1 1, m2 1, m4 1;
    # m4 from m1 5, m2 5, m3 1. So m2 and m4 lead (11/3 each), kept in team order.
    assert action.meta["ranking"] == {"round": 3, "kept": ["m2", "m4"], "by": "ratings"}
    assert {"round": 2, "from": "m3", "to": None} in action.meta["ratings"]


async def test_team_optimisation_keeps_the_top_k_members_by_importance() -> None:
    seeds = make("reasoning-arithmetic-v0").spec.seeds("train", 3)
    answers = {
        item_for_seed("arithmetic", s, "train").question: int(item_for_seed("arithmetic", s, "train").answer)
        for s in seeds
    }

    def replies(who: str, number: int, request: ChatRequest) -> str:
        question = request.messages[-1].content.split("\nReply")[0]
        right = answers[question]
        own = {"m1": right, "m2": right + 1, "m3": right, "m4": right + 2}[who]
        if number == 1:
            return f"Answer: {own}"
        others = [m for m in ("m1", "m2", "m3", "m4") if m != who]
        return f"Answer: {own}\nRatings: " + " ".join("5" if m in ("m1", "m3") else "1" for m in others)

    model = team_model(replies)
    selection = await optimize_team(
        "dylan:4,rounds=2" + NO_SHOTS, "reasoning-arithmetic-v0", model, episodes=3, top_k=2
    )
    assert selection.episodes == 3 and selection.kept == ("m1", "m3")
    # By hand, every episode: round 2 final = right (m1, m3: 1/2 each). m1 rates m2 1, m3 5, m4 1 -> 1/14,
    # 5/14, 1/14 of its 1/2; m3 rates m1 5, m2 1, m4 1. Round 1: m1 5/14, m2 1/7, m3 5/14, m4 1/7.
    # Sums: m1 1/2 + 5/14 = 6/7, m3 6/7, m2 1/7, m4 1/7; total 2 -> m1 3/7, m3 3/7, m2 1/14, m4 1/14.
    assert selection.scores == pytest.approx({"m1": 3 / 7, "m2": 1 / 14, "m3": 3 / 7, "m4": 1 / 14}, abs=1e-6)
    assert selection.spec == "dylan:2,rounds=2,roster=m1.m3/prompt:shots=0"
    team = make_team(selection.spec, make("reasoning-arithmetic-v0"), model)
    assert team.members == ("m1", "m3")


# --------------------------------------------------------------------------- centralized


def orchestrated(progress: list[str], workers: dict[str, str], plans: list[str] | None = None):
    """Replies: the task ledger (from ``plans`` in turn), progress ledgers in turn, workers by name."""
    plans = list(plans or ["Facts: 6 and 2\nGuesses: it is a sum\nPlan: add them"])
    queue = list(progress)

    def reply(who: str, number: int, request: ChatRequest) -> str:
        if who != "orchestrator":
            return workers[who]
        if "task ledger" in request.messages[-1].content and "progress ledger" not in request.messages[-1].content:
            return plans.pop(0) if len(plans) > 1 else plans[0]
        return queue.pop(0)

    return reply


async def test_centralized_ledgers_assign_work_and_finish_when_done(item_env: ReasoningEnv) -> None:
    progress = [
        "Done: no\nProgress: yes\nNext: worker 2\nInstruction: check 6 + 2 again",
        "Done: yes\nProgress: yes\nNext: m1\nInstruction: none\nFinal: Answer: 8",
    ]
    reply = orchestrated(progress, {"m1": "Answer: 7", "m2": "Answer: 8", "m3": "Answer: 9"})
    action, model = await decide("centralized:3", reply, item_env)
    meta = action.meta
    assert action.text == "Answer: 8" and meta["ended"] == "done" and meta["rounds"] == 3
    assert model.calls == 1 + 3 + 1 + 1 + 1  # plan, 3 workers, progress, m2, progress
    assert meta["ledgers"] == [
        {"round": 1, "facts": "6 and 2", "guesses": "it is a sum", "plan": "add them", "malformed": False}
    ]
    assert meta["progress"][0] == {
        "round": 2, "done": False, "progress": True, "next": "m2", "instruction": "check 6 + 2 again",
        "final": None, "malformed": False,
    }  # fmt: skip
    worker_prompt = model.requests[5].messages[-1].content
    assert role_of(model.requests[5])[0] == "m2"
    assert "The orchestrator's plan: add them\nInstruction from the orchestrator: check 6 + 2 again" in worker_prompt
    assert {"round": 2, "from": "orchestrator", "to": "m2", "text": "check 6 + 2 again"} in meta["messages"]


async def test_centralized_replans_after_three_stalls(item_env: ReasoningEnv) -> None:
    stall = "Done: no\nProgress: no\nNext: m1\nInstruction: try again"
    plans = ["Facts: a\nGuesses: b\nPlan: first plan", "Facts: a\nGuesses: c\nPlan: second plan"]
    reply = orchestrated([stall] * 5, {"m1": "Answer: 7", "m2": "Answer: 9"}, plans)
    action, model = await decide("centralized:2,rounds=6", reply, item_env)
    meta = action.meta
    assert meta["replans"] == 1 and [(x["round"], x["plan"]) for x in meta["ledgers"]] == [
        (1, "first plan"),
        (4, "second plan"),  # rounds 2, 3, 4 stalled: re-plan in round 4
    ]
    replan = next(r for r in model.requests if "The last plan made no progress" in r.messages[-1].content)
    assert "Answers tried so far: Answer: 7; Answer: 9." in replan.messages[-1].content
    assert meta["ended"] == "round limit" and meta["rounds"] == 6
    # after the re-plan, workers get the new plan
    assert "The orchestrator's plan: second plan" in model.requests[-1].messages[-1].content


async def test_progress_takes_a_stall_off_the_count(item_env: ReasoningEnv) -> None:
    no, yes = "Done: no\nProgress: no\nNext: m1", "Done: no\nProgress: yes\nNext: m1"
    reply = orchestrated([no, no, yes, no, no], {"m1": "Answer: 7", "m2": "Answer: 9"})
    action, _ = await decide("centralized:2,rounds=6", reply, item_env)
    # stalls: 1, 2, 1, 2, 3 -> the re-plan comes in round 6, not 4
    assert [x["round"] for x in action.meta["ledgers"]] == [1, 6]


@pytest.mark.parametrize("garbage", ["", "???", "<b>Done</b> maybe", "x" * 3000, "Done: perhaps\nNext: m9"])
async def test_centralized_survives_malformed_orchestrator_output(garbage: str, item_env: ReasoningEnv) -> None:
    def reply(who: str, number: int, request: ChatRequest) -> str:
        return garbage if who == "orchestrator" else {"m1": "Answer: 8", "m2": "Answer: 9", "m3": "Answer: 8"}[who]

    action, _ = await decide("centralized:3,rounds=5", reply, item_env)
    meta = action.meta
    assert action.text == "Answer: 8" and meta["ended"] == "round limit"
    assert meta["ledgers"][0]["malformed"] is True and all(p["malformed"] for p in meta["progress"])
    # every progress ledger is a stall: re-plan in round 4; workers are taken in turn: m1, m2, m3, m1
    assert meta["replans"] == 1
    workers = [m["to"] for m in meta["messages"] if m["from"] == "orchestrator" and m["to"].startswith("m")]
    assert workers == ["m1", "m2", "m3", "m1"]


# --------------------------------------------------------------------------- specs, make_agent, audit


def test_make_agent_builds_teams_and_they_need_a_model() -> None:
    env = make("reasoning-logic-v0")
    agent = make_agent("dylan:3,rounds=2/prompt:temperature=0.7", env, team_model({}))
    assert agent.spec == "dylan:3,rounds=2/prompt:temperature=0.7"
    assert needs_model("dylan:3") and needs_model("single") and needs_model("independent,rounds=2")
    assert not needs_model("optimal")
    with pytest.raises(SpecError, match="--model"):
        make_agent("dylan:3", env, None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dylan:0", "at least 1"),
        ("dylan:1", "2 to 16 members"),
        ("single:2", "1 to 1 members"),
        ("single,rounds=2", "at most 1 rounds"),
        ("dylan:3,foo=1", "no option 'foo'.*keep, rank_round"),
        ("independent:3,keep=2", "no option 'keep'"),
        ("dylan:3,rounds=x", "whole number"),
        ("dylan:3,rounds", "key=value"),
        ("dylan:3/optimal", "must be 'prompt"),
        ("dylan:3/", "empty member spec"),
        ("dylan:3/prompt:colour=red", "bad prompt-agent option"),
        ("dylan:3,keep=5", "more than the team's 3"),
        ("dylan:3,roster=m1.m2", "roster names 2"),
        ("dylan,roster=1+3", "roster=m1.m3"),
        ("dylan:3,audit=maybe", "true or false"),
        ("dylanx:3", "unknown team topology"),
        ("dylan:3,rounds=2,rounds=3", "given twice"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        make_team(spec, make("reasoning-logic-v0"), team_model({}))


def test_good_specs() -> None:
    env, model = make("reasoning-logic-v0"), team_model({})
    team = make_team("independent:3,rounds=2/prompt:temperature=0.7", env, model)
    assert (team.config.members, team.config.rounds, team.member_config.temperature) == (3, 2, 0.7)
    assert make_team("dylan", env, model).members == ("m1", "m2", "m3", "m4")
    team = make_team("dylan,roster=m2.m5,audit=false", env, model)
    assert team.members == ("m2", "m5") and team.config.audit is False
    assert make_team("centralized:1", env, model).config.stalls == 3


async def test_audit_off_and_an_environment_that_cannot_be_stepped(item_env: ReasoningEnv) -> None:
    action, _ = await decide("independent:2,audit=false", {("m1", 1): "8", ("m2", 1): "8"}, item_env)
    assert "audit" not in action.meta
    await item_env.step("Answer: 8")  # the episode is over: a copy cannot be stepped
    action, _ = await decide("independent:2", {("m1", 1): "8", ("m2", 1): "7"}, item_env)
    assert [(a["answer"], a["reward"], a["success"]) for a in action.meta["audit"]] == [
        ("8", None, None),
        ("7", None, None),
    ]
    assert action.meta["audit"][0]["error"].startswith("EnvError")


async def test_a_team_plays_a_whole_episode_through_the_runner() -> None:
    env = make("reasoning-arithmetic-v0")
    item = item_for_seed("arithmetic", 11_000, "test")
    table = {("m1", 1): "Answer: 0", ("m2", 1): f"Answer: {item.answer}", ("m3", 1): f"Answer: {item.answer}"}
    agent = make_agent("independent:3" + NO_SHOTS, env, team_model(table), seed=11_000)
    episode = await run_episode(env, agent, 11_000)
    assert episode.status == "ok" and episode.success and episode.total_return == 1.0
    assert episode.turns[0].action.meta["first_answers"]["m1"] == "Answer: 0"
    assert episode.usage.total_tokens == sum(c.usage.total_tokens for c in episode.turns[0].action.calls)


async def test_a_team_plays_one_seat_of_a_multi_agent_game() -> None:
    from palaestra.agents.players import make_players
    from palaestra.envs import make_multi
    from palaestra.runner.multi import run_multi_episode
    from palaestra.testing.toys import register_toys

    register_toys()
    env = make_multi("toy-sum-v0")
    model = team_model(lambda who, number, request: "say 2")
    players = make_players("independent:2/prompt:shots=0 + optimal*2", env, model, seed=1)
    episode = await run_multi_episode(env, players, 1)
    assert episode.status == "ok", episode.error
    team_turns = [t for t in episode.turns if t.agent == env.possible_agents[0]]
    assert team_turns and all(t.action.text == "say 2" for t in team_turns)
    # a player's view cannot be stepped alone: the audit says so instead of scoring
    assert team_turns[0].action.meta["audit"][0]["success"] is None
