"""The fixture of team tests: a reasoning environment started on a hand-written item."""

from __future__ import annotations

import pytest
from team_samples import ITEM

from palaestra.envs import make
from palaestra.envs.reasoning import ReasoningEnv


@pytest.fixture
async def item_env() -> ReasoningEnv:
    """reasoning-arithmetic-v0 started on ITEM (answer 8), demonstrations off in the specs used here."""
    env = make("reasoning-arithmetic-v0")
    assert isinstance(env, ReasoningEnv)
    await env.reset(options={"item": ITEM})
    return env
