"""Team accounting on hand-built episodes: tokens, messages, rounds, error amplification, coordination errors."""

from __future__ import annotations

import pytest

from palaestra.core.types import Action, Completion, Episode, Step, Turn, Usage
from palaestra.teams.accounting import account, first_answers_right


def episode(seed: int, success: bool, first: dict[str, bool | None], *, tokens: int = 10, rounds: int = 1) -> Episode:
    """One single-turn team episode; ``first`` says whether each member's first answer was right (None: the
    member gave no answer)."""
    answers = {m: (None if right is None else ("8" if right else f"{seed}{m}")) for m, right in first.items()}
    audit = [{"answer": a, "members": [m], "success": first[m]} for m, a in answers.items() if a is not None]
    meta = {"first_answers": answers, "audit": audit, "rounds": rounds, "messages": [{}] * (2 * rounds)}
    call = Completion("x", "scripted", usage=Usage(tokens - 2, 2))
    action = Action("8" if success else "0", calls=(call,), meta=meta)
    step = Step("done", float(success), terminated=True, info={"invalid_action": False, "success": success})
    return Episode("reasoning-arithmetic-v0", seed, turns=[Turn("q", action, step)], success=success, terminated=True)


EPISODES = [
    episode(1, True, {"m1": True, "m2": False}, tokens=30, rounds=2),
    episode(2, False, {"m1": True, "m2": False}, tokens=50, rounds=3),  # the team lost m1's right answer
    episode(3, False, {"m1": False, "m2": False}, tokens=10, rounds=1),
    episode(4, True, {"m1": True, "m2": None}, tokens=30, rounds=2),  # m2 gave no answer: wrong
    Episode("reasoning-arithmetic-v0", 5, status="error", error="ModelError: down"),  # left out
]


def test_accounting_by_hand() -> None:
    result = account(EPISODES)
    assert result.episodes == 4
    assert result.tokens_per_episode == (30 + 50 + 10 + 30) / 4
    assert result.rounds_per_episode == (2 + 3 + 1 + 2) / 4
    assert result.messages_per_episode == (4 + 6 + 2 + 4) / 4
    assert result.error_rate == 2 / 4
    # first answers: right, wrong, right, wrong, wrong, wrong, right, none -> 5 wrong of 8
    assert result.member_error_rate == 5 / 8
    assert result.baseline_error_rate == 5 / 8
    assert result.error_amplification == pytest.approx((2 / 4) / (5 / 8))  # 0.8
    assert result.coordination_errors == 1 and result.coordination_error_share == 1 / 2
    assert [e.coordination_error for e in result.per_episode] == [False, True, False, False]
    assert result.to_dict()["error_amplification"] == pytest.approx(0.8)
    assert "per_episode" not in result.to_dict()


def test_a_single_agents_episodes_are_the_baseline_when_given() -> None:
    single = [episode(s, s != 3, {"m1": s != 3}) for s in (1, 2, 3, 4)]  # 1 failure in 4
    result = account(EPISODES, single=single)
    assert result.baseline_error_rate == 1 / 4
    assert result.error_amplification == pytest.approx(2.0)
    assert result.member_error_rate == 5 / 8  # still reported


def test_no_errors_and_unscored_answers() -> None:
    perfect = [episode(1, True, {"m1": True})]
    result = account(perfect)
    assert result.error_rate == 0.0 and result.error_amplification is None
    assert result.coordination_error_share is None
    meta = {
        "first_answers": {"m1": "8", "m2": "9", "m3": None},
        "audit": [{"answer": "8", "members": ["m1"], "success": None}],
    }
    assert first_answers_right(meta) == {"m1": None, "m2": None, "m3": False}
    assert first_answers_right({"first_answers": {"m1": "8"}}) == {"m1": None}  # audit off: unknown
    assert account([]).episodes == 0
