"""Scenario rules on populations of 3 to 5 agents, against outcomes computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from palaestra.sim import CommonsScenario, NetworkScenario, gini

NONE, LOW, FAIR, HIGH = range(4)
IDLE, POST, REPOST, FOLLOW = range(4)


def test_gini_by_hand() -> None:
    assert gini(np.array([1.0, 1.0, 1.0])) == 0.0
    assert gini(np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.75)  # sum|xi-xj| = 6 over 2 n^2 mean = 8
    assert gini(np.array([1.0, 3.0])) == pytest.approx(0.25)  # |1-3| * 2 / (2 * 4 * 2)
    assert gini(np.zeros(3)) == 0.0


def test_commons_harvest_regrowth_and_migration() -> None:
    # Community 0: 3 agents, 100 tons, fair share 100/2/3; community 1: 2 agents, 40 tons, fair share 10.
    world = CommonsScenario.from_arrays(
        community=[0, 0, 0, 1, 1], temperament=[0, 0, 0, 0, 0], stock=[100.0, 40.0], migrate_prob=1.0
    )
    world.begin_step(np.random.default_rng(0))
    metrics = world.apply(np.array([FAIR, LOW, NONE, FAIR, HIGH], dtype=np.int8), np.random.default_rng(0))
    share0 = 100 / 2 / 3
    harvest = [share0, share0 / 2, 0.0, 10.0, 30.0]  # 25 of 100 taken; 40 of 40 asked in community 1
    assert world.wealth == pytest.approx(harvest)
    # Community 0: 75 left, doubles to 150, capped at 100. Community 1: 0 left, below 5: collapsed.
    assert world.stock == pytest.approx([100.0, 0.0])
    assert world.alive.tolist() == [True, False]
    # Both members of the collapsed lake move (probability 1) to the only healthy one.
    assert world.profiles.community.tolist() == [0, 0, 0, 0, 0]
    assert metrics["migrations"] == 2
    assert metrics["total_stock"] == pytest.approx(100.0)
    assert metrics["communities_alive"] == 1
    assert metrics["mean_gain"] == pytest.approx(sum(harvest) / 5)
    assert metrics["over_usage"] == pytest.approx(1 / 5)
    x = np.array(harvest)
    assert metrics["gini"] == pytest.approx(np.abs(x[:, None] - x[None, :]).sum() / (2 * 25 * x.mean()))


def test_commons_over_asked_lake_is_filled_proportionally_and_collapses() -> None:
    # 60 tons, 3 agents: fair share 10; requests 30 + 30 + 10 = 70 > 60, so each gets 60/70 of its request.
    world = CommonsScenario.from_arrays(community=[0, 0, 0], temperament=[2, 2, 2], stock=[60.0])
    world.begin_step(np.random.default_rng(0))
    metrics = world.apply(np.array([HIGH, HIGH, FAIR], dtype=np.int8), np.random.default_rng(0))
    assert world.wealth == pytest.approx([30 * 6 / 7, 30 * 6 / 7, 10 * 6 / 7])
    assert world.stock.tolist() == [0.0] and metrics["communities_alive"] == 0
    assert metrics["migrations"] == 0  # nowhere healthy to go


def test_commons_sustainable_lake_stays_full_and_depleted_one_regrows() -> None:
    world = CommonsScenario.from_arrays(
        community=[0, 0, 1, 1], temperament=[1, 1, 1, 1], stock=[100.0, 24.0], migrate_prob=0.0
    )
    world.begin_step(np.random.default_rng(0))
    metrics = world.apply(np.full(4, FAIR, dtype=np.int8), np.random.default_rng(0))
    # Fair shares take half of each lake: 100 -> 50 -> 100; 24 -> 12 -> 24 (still depleted, but nobody moves).
    assert world.stock == pytest.approx([100.0, 24.0])
    assert world.wealth == pytest.approx([25.0, 25.0, 6.0, 6.0])
    assert metrics["migrations"] == 0 and metrics["over_usage"] == 0.0


def test_commons_archetype_variables_bucket_the_stock() -> None:
    world = CommonsScenario.from_arrays(community=[0, 1, 2, 3], temperament=[0, 1, 2, 0], stock=[100, 60, 10, 3])
    world.begin_step(np.random.default_rng(0))
    levels = [world.decode(int(c))["stock"] for c in world.archetype_codes()]
    assert levels == [4, 3, 1, 0]  # full, plentiful, scarce, collapsed (3 < 5 starts collapsed)
    assert world.describe(int(world.archetype_codes()[1])) == "temperament=even-tempered, age=young, stock=plentiful"


def test_commons_parse_takes_the_first_action_word() -> None:
    world = CommonsScenario.from_arrays(community=[0], temperament=[0], stock=[100])
    assert world.parse("I'd say FAIR, not high.") == FAIR
    assert world.parse("None.") == NONE
    assert world.parse("fairly low") == LOW  # whole words only: 'fairly' is not 'fair'
    assert world.parse("I will go fishing") is None


def network() -> NetworkScenario:
    # 0 follows 1, 2 follows 1, 3 follows 0; topics 0, 0, 1, 1; a feed of 2 followed slots and 1 popular slot
    # drawn from a pool of one post, so the recommender has no randomness left.
    return NetworkScenario.from_follows([(0, 1), (2, 1), (3, 0)], topic=[0, 0, 1, 1], in_network=2, popular=1, pool=1)


def test_network_csr_and_followers() -> None:
    world = network()
    assert world.indptr.tolist() == [0, 1, 1, 2, 3]
    assert world.indices.tolist() == [1, 1, 0]
    assert world.followers().tolist() == [1, 2, 0, 0]


def test_network_posts_feeds_reposts_follows_by_hand() -> None:
    world = network()
    rng = np.random.default_rng(0)
    world.begin_step(rng)
    assert (world.feed == -1).all()
    first = world.apply(np.array([POST, POST, IDLE, IDLE], dtype=np.int8), rng)
    assert first == {"posts": 2, "reposts": 0, "new_follows": 0, "reach": 0.0, "largest_cascade": 1}
    # Items: 0 by agent 0, 1 by agent 1. Feeds now: followed accounts' posts, then the pool's one post
    # (item 1: both have 0 reposts, the newer first).
    world.begin_step(rng)
    assert world.feed.tolist() == [[1, -1, 1], [-1, -1, 1], [1, -1, 1], [0, -1, 1]]
    # Agent 0 reposts item 1; agent 1 cannot repost its own post; agent 2 reposts item 1; agent 3 follows
    # the author of the popular post (agent 1). The most reposted post so far is item 0 (tie: the oldest),
    # seen by agent 3 only.
    second = world.apply(np.array([REPOST, REPOST, REPOST, FOLLOW], dtype=np.int8), rng)
    assert second == {"posts": 0, "reposts": 2, "new_follows": 1, "reach": 0.25, "largest_cascade": 3}
    assert world.indices.tolist() == [1, 1, 0, 1] and world.indptr.tolist() == [0, 1, 1, 2, 4]
    assert world.item_root.tolist() == [0, 1, 1, 1] and world.item_author.tolist() == [0, 1, 0, 2]
    # Next step the most reposted post is item 1, in everyone's popular slot: reach 1.
    world.begin_step(rng)
    third = world.apply(np.array([FOLLOW, IDLE, FOLLOW, IDLE], dtype=np.int8), rng)
    # Agent 0 already follows 1, the author of every root it sees; agent 2 too: no new follows.
    assert third == {"posts": 0, "reposts": 0, "new_follows": 0, "reach": 1.0, "largest_cascade": 3}


def test_network_archetype_variables() -> None:
    world = network()
    rng = np.random.default_rng(0)
    world.begin_step(rng)
    world.apply(np.array([POST, POST, IDLE, IDLE], dtype=np.int8), rng)
    world.begin_step(rng)
    values = [world.decode(int(c)) for c in world.archetype_codes()]
    # Feeds of 2, 1, 2, 2 items: "a few posts"; the posts are by agents 0 and 1 (topic 0), so only
    # agents 0 and 1 (topic 0) see their topic.
    assert [v["feed"] for v in values] == [1, 1, 1, 1]
    assert [v["topic_in_feed"] for v in values] == [1, 1, 0, 0]
