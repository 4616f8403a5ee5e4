"""End to end with the real embedded SmolLM2-135M in a multi-agent game: the model plays one seat of the
repeated Prisoner's Dilemma against scripted tit-for-tat, and every one of its turns is stored with the
player, the round and the exact tokens."""

import pytest

from palaestra.runner import EvalConfig, evaluate
from palaestra.store import Store

pytestmark = pytest.mark.slow


async def test_the_model_plays_a_seat_against_a_scripted_partner(local_model, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'multi.db'}")
    config = EvalConfig(
        envs=("repeated-prisoners-dilemma-v0",),
        agents=("prompt + tit-for-tat",),
        episodes=2,
        env_kwargs={"repeated-prisoners-dilemma-v0": {"rounds": 3}},
    )
    result = await evaluate(config, store, model=local_model, progress=False)
    assert result.errors == 0 and result.ok == 2
    run = store.get_run(result.run_ids[0])
    assert run.model_spec == "smollm2-135m" and run.env_spec.multi_agent and run.env_spec.kwargs["rounds"] == 3
    tokenizer = local_model.tokenizer
    for episode in store.episodes(run.id, with_turns=True):
        assert episode.players == {"player_0": "prompt", "player_1": "tit-for-tat"}
        assert [(t.agent, t.round) for t in episode.turns] == [
            (p, r) for r in range(3) for p in ("player_0", "player_1")
        ]
        assert set(episode.metrics["returns"]) == {"player_0", "player_1"}
        assert episode.total_return == sum(episode.metrics["returns"].values())
        for turn in episode.turns:
            if turn.agent == "player_1":
                assert turn.action.calls == ()  # the scripted partner makes no model call
                continue
            (call,) = turn.action.calls
            assert (
                tokenizer.decode(call.completion_token_ids, skip_special_tokens=True).strip() == turn.action.raw.strip()
            )
            assert "Prisoner's Dilemma" in tokenizer.decode(call.prompt_token_ids)
            # whatever the model said, the environment judged it: a choice or a flagged invalid move
            moves = turn.step.info["moves"]
            assert (moves["player_0"] is None) == turn.step.info["invalid_action"]
