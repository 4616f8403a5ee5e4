"""Teams end to end with the real embedded SmolLM2-135M: ``evaluate`` plays ``dylan:3`` and ``single`` on
reasoning-arithmetic-v0; the calls are stored with their token ids and each action's meta holds the transcript.

Kept short (2 rounds, 8-token answers, 2 episodes each): the real model makes a few tokens per second on 2 cores.
Meta is checked on the episodes as played (an executor that keeps them), not after a store round trip.
"""

from __future__ import annotations

import pytest

from palaestra.core.types import Episode
from palaestra.runner import AsyncioExecutor, EpisodeJob, EvalConfig, evaluate
from palaestra.store import Store
from palaestra.teams.accounting import account

pytestmark = pytest.mark.slow

DYLAN = "dylan:3,rounds=2/prompt:max_tokens=8,shots=1"
SINGLE = "single/prompt:max_tokens=8,shots=1"


class KeepingExecutor(AsyncioExecutor):
    """The default executor, also keeping every episode it played by agent spec."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.played: dict[str, list[Episode]] = {}

    async def play(self, job: EpisodeJob) -> Episode:
        episode = await super().play(job)
        self.played.setdefault(job.agent_spec, []).append(episode)
        return episode


async def test_dylan_and_single_play_reasoning_with_the_embedded_model(local_model, tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'teams.db'}")
    config = EvalConfig(envs=("reasoning-arithmetic-v0",), agents=(DYLAN, SINGLE), episodes=2, concurrency=4)
    executor = KeepingExecutor(local_model, 4)
    result = await evaluate(config, store, model=local_model, executor=executor, progress=False)
    assert result.errors == 0 and result.ok == 4

    for run_id in result.run_ids:
        run = store.get_run(run_id)
        for stored in store.episodes(run_id, with_turns=True):
            assert stored.status == "ok" and len(stored.turns) == 1
            calls = stored.turns[0].action.calls
            assert calls and all(c.completion_token_ids and c.prompt_token_ids for c in calls)
            assert len(calls) in ((1,) if run.agent_spec == SINGLE else (3, 6))  # dylan: 1 or 2 rounds of 3

    for spec, n_members in ((DYLAN, 3), (SINGLE, 1)):
        episodes = executor.played[spec]
        assert len(episodes) == 2
        for episode in episodes:
            action = episode.turns[0].action
            meta = action.meta
            assert meta["topology"] == spec.split(":")[0].split("/")[0] and len(meta["members"]) == n_members
            assert 1 <= meta["rounds"] <= (2 if spec == DYLAN else 1)
            member_messages = [m for m in meta["messages"] if m["from"].startswith("m")]
            assert len(member_messages) == len(action.calls)  # one message per member call, no ranker here
            assert set(meta["first_answers"]) == set(meta["members"])
            assert isinstance(episode.turns[0].step.info["success"], bool)
            if spec == DYLAN:
                assert sum(meta["importance"].values()) == pytest.approx(1.0, abs=1e-5)  # rounded to 6 places
        summary = account(episodes)
        assert summary.episodes == 2 and summary.tokens_per_episode > 0
    store.close()
