"""Preference pairs: two episodes of one seed compared at the turn where their actions part, with the exact
tokens of that turn; no pair where the prompts differ, the actions never part, or the returns tie."""

from __future__ import annotations

import pytest

from palaestra.core.types import Action, Episode, Step, Turn
from palaestra.improve.examples import IGNORE_INDEX, NoTrainingDataError, TrainingExample
from palaestra.improve.preferences import parting_turn, preference_pairs


def turn(observation: str, action: str, reward: float = 0.0) -> Turn:
    return Turn(observation, Action(action), Step(f"after {action}", reward))


def episode(seed: int, actions: list[str], total: float, observations: list[str] | None = None) -> Episode:
    observations = observations or [f"state {i}" for i in range(len(actions))]
    ep = Episode("maze-fo-v0", seed, total_return=total)
    ep.turns = [turn(o, a) for o, a in zip(observations, actions, strict=True)]
    return ep


def examples(ep: Episode, prompt_of=lambda index, obs: [100 + index, len(obs)]) -> list[TrainingExample]:
    """Stand-in token ids: the prompt from the turn index and observation, the reply from the action's text."""
    out = []
    for index, t in enumerate(ep.turns):
        prompt, reply = prompt_of(index, t.observation), [ord(c) for c in t.action.text]
        out.append(TrainingExample(prompt + reply, [IGNORE_INDEX] * len(prompt) + reply, {"tokens": "exact"}))
    return out


def test_pairs_come_from_the_parting_turn_and_the_better_return() -> None:
    best = episode(3, ["up", "up", "left"], total=-2.0)
    worse = episode(3, ["up", "down", "down", "down"], total=-4.0, observations=["state 0", "state 1", "x", "y"])
    worst = episode(3, ["right"], total=-9.0, observations=["state 0"])
    other_seed = episode(4, ["left"], total=0.0)
    assert parting_turn(best, worse) == 1 and parting_turn(best, worst) == 0
    sourced = [("r1", e, examples(e)) for e in (best, worse, worst, other_seed)]
    pairs, stats = preference_pairs(sourced)
    # widest gap first: best vs worst (7), worse vs worst (5), best vs worse (2)
    got = [("".join(map(chr, p.chosen_ids)), "".join(map(chr, p.rejected_ids)), p.source["turn"]) for p in pairs]
    assert got == [("up", "right", 0), ("up", "down", 1)]
    assert stats.duplicates == 1  # best vs worst and worse vs worst give the same tokens at turn 0
    assert pairs[0].prompt_ids == [100, len("state 0")] and pairs[1].prompt_ids == [101, len("state 1")]
    assert pairs[1].source["chosen_return"] == -2.0 and pairs[1].source["rejected_return"] == -4.0
    assert stats.seeds == 1 and stats.pairs == 2  # seed 4 has one episode: nothing to compare


def test_no_pair_without_a_difference_or_with_different_prompts() -> None:
    a, b = episode(1, ["up", "up"], total=-1.0), episode(1, ["up", "up"], total=-3.0)  # same actions
    with pytest.raises(NoTrainingDataError, match="1 took the same actions"):
        preference_pairs([("r", a, examples(a)), ("r", b, examples(b))])
    c, d = episode(1, ["up"], total=-1.0), episode(1, ["down"], total=-1.0)  # a tie
    with pytest.raises(NoTrainingDataError, match=r"differ by no more than 0\.0"):
        preference_pairs([("r", c, examples(c)), ("r", d, examples(d))])
    e = episode(1, ["down"], total=-5.0)
    other_format = examples(e, prompt_of=lambda index, obs: [7, 7, 7])  # e.g. another prompt template
    with pytest.raises(NoTrainingDataError, match="1 parted at turns whose prompts differ"):
        preference_pairs([("r", c, examples(c)), ("r", e, other_format)])
    with pytest.raises(NoTrainingDataError, match="no seed has two ok episodes"):
        preference_pairs([("r", c, examples(c))])
    f = episode(1, ["down"], total=-5.0)
    pairs, _ = preference_pairs([("r", c, examples(c)), ("r", f, examples(f))], margin=3.0)
    assert len(pairs) == 1
    with pytest.raises(NoTrainingDataError):
        preference_pairs([("r", c, examples(c)), ("r", f, examples(f))], margin=4.0)


def test_at_most_max_pairs_per_seed_widest_gaps_first() -> None:
    eps = [episode(2, [f"a{i}"], total=float(-i)) for i in range(5)]  # 10 pairs, all parting at turn 0
    pairs, stats = preference_pairs([("r", e, examples(e)) for e in eps], max_pairs_per_seed=3)
    assert [p.source["gap"] for p in pairs] == [4.0, 3.0, 3.0] and stats.pairs == 3


def test_exact_tokens_of_a_real_local_model_pair_up(tiny_spec: str) -> None:
    """Two sampled episodes of the tiny model on one maze seed: the pair's tokens are the calls' own."""
    import asyncio

    from palaestra.agents import make_agent
    from palaestra.envs import make
    from palaestra.improve.examples import examples_from_episodes
    from palaestra.models import make_model
    from palaestra.runner.episode import run_episode

    model = make_model(tiny_spec)

    async def play(sample: int) -> Episode:
        env = make("maze-fo-v0", max_turns=2)
        agent = make_agent(f"prompt:history=0,shots=0,max_tokens=4,temperature=1.0,sample={sample}", env, model)
        return await run_episode(env, agent, 5)

    a, b = asyncio.run(play(0)), asyncio.run(play(1))
    a.total_return, b.total_return = 1.0, 0.0  # pretend a did better: the pair is about the tokens here
    ex_a = examples_from_episodes([a], tokenizer=model.tokenizer, agent_spec="prompt:history=0,shots=0")
    ex_b = examples_from_episodes([b], tokenizer=model.tokenizer, agent_spec="prompt:history=0,shots=0")
    assert {e.source["tokens"] for e in ex_a + ex_b} == {"exact"}
    (pair,), _ = preference_pairs([("ra", a, ex_a), ("rb", b, ex_b)])
    assert pair.source["turn"] == 0  # the two samples differ from their first reply
    call_a, call_b = a.turns[0].action.calls[-1], b.turns[0].action.calls[-1]
    assert pair.prompt_ids == list(call_a.prompt_token_ids) == list(call_b.prompt_token_ids)
    assert pair.chosen_ids == list(call_a.completion_token_ids)
    assert pair.rejected_ids == list(call_b.completion_token_ids)
