"""Sample runs and episodes for the store tests, built straight from the core types (no runner needed).

Imported by the tests and by the subprocesses they start, so it holds no fixtures, only plain functions.
"""

from __future__ import annotations

from palaestra.core import (
    Action,
    Completion,
    EnvSpec,
    Episode,
    InvalidActionRule,
    Normalization,
    Step,
    Turn,
    Usage,
)

SPEC = EnvSpec(
    id="maze-fo-v0",
    entry_point="palaestra.envs.builtin:Maze",
    description="a fully observed maze",
    max_turns=20,
    reward_range=(-1.0, 1.0),
    invalid_action=InvalidActionRule("penalty", -0.5, "unparseable moves cost 0.5"),
    normalization=Normalization(-1.0, 0.25, 1.0, "scripted policies, 1000 episodes"),
    kwargs={"size": 5, "walls": [[1, 2], [3, 4]]},
)
OTHER_SPEC = EnvSpec(id="wordle-v1", entry_point="palaestra.envs.builtin:Wordle")

# Text that breaks naive storage or display: non-ASCII, markup, quotes, a backslash, newlines.
AWKWARD = "naïve — 日本語 🎲 <script>alert('x')</script> \"quoted\" back\\slash\nsecond line"


def completion(seed: int, turn: int, call: int, *, with_tokens: bool = True) -> Completion:
    base = seed * 1000 + turn * 10 + call
    return Completion(
        text=f"thinking {base} {AWKWARD}\nmove: north",
        model="smollm2-135m",
        finish_reason="length" if call else "stop",
        usage=Usage(prompt_tokens=100 + turn, completion_tokens=7),
        latency_s=0.125 + call,
        prompt_token_ids=tuple(range(base, base + 100 + turn)) if with_tokens else None,
        completion_token_ids=(base, 2, 3, 50_000, 0, 1, 49_151) if with_tokens else None,
        # Values whose repr needs all 17 digits: a lossy float path would change them.
        logprobs=tuple(-0.1 * k - 1e-12 * base for k in range(7)) if with_tokens else None,
        cached=call == 1,
    )


def make_episode(
    seed: int,
    n_turns: int = 4,
    *,
    status: str = "ok",
    obs_size: int = 0,
    env_id: str = SPEC.id,
    info_extra: dict | None = None,
) -> Episode:
    """A deterministic episode with every kind of turn the store must keep apart.

    Turn 0 made two model calls, turn 1 none (a scripted move), turn 2 was not parsed (an invalid
    action), the rest one call each; ``obs_size`` pads every observation (large observations).
    """
    padding = "#" * obs_size
    turns = []
    for i in range(n_turns):
        if i == 0:
            calls: tuple[Completion, ...] = (completion(seed, i, 0), completion(seed, i, 1))
        elif i == 1:
            calls = ()
        else:
            calls = (completion(seed, i, 0, with_tokens=i % 3 != 0),)
        invalid = i == 2
        last = i == n_turns - 1
        info = {"invalid_action": invalid, "position": [i, seed], "nested": {"a": [1, 2.5, None, "ü"]}}
        if last:
            info["success"] = seed % 2 == 0
        info.update(info_extra or {})
        turns.append(
            Turn(
                observation=f"obs {seed}/{i} {AWKWARD} {padding}",
                action=Action(
                    text="north" if not invalid else "fly away",
                    raw=calls[-1].text if calls else None,
                    parsed=not invalid,
                    calls=calls,
                ),
                step=Step(
                    observation=f"obs {seed}/{i + 1} {AWKWARD} {padding}",
                    reward=-0.5 if invalid else 0.1 * i,
                    terminated=last and seed % 2 == 0,
                    truncated=last and seed % 2 == 1,
                    info=info,
                ),
            )
        )
    return Episode(
        env_id=env_id,
        seed=seed,
        status=status,  # type: ignore[arg-type]
        turns=turns,
        first_observation=f"obs {seed}/0 {AWKWARD} {padding}",
        total_return=sum(t.step.reward for t in turns),
        success=status == "ok" and seed % 2 == 0,
        terminated=bool(turns) and turns[-1].step.terminated,
        truncated=bool(turns) and turns[-1].step.truncated,
        error="ModelError: timed out after 30 s" if status == "error" else None,
        wall_s=1.5 + seed,
        started_at=1_700_000_000.25 + seed,
    )


MULTI_SPEC = EnvSpec(
    id="govsim-fishery-v0",
    entry_point="palaestra.envs.govsim:GovSimEnv",
    max_turns=36,
    invalid_action=InvalidActionRule("penalty", 0.0, "harvest counted as 0"),
    multi_agent=True,
)


def make_multi_episode(seed: int) -> Episode:
    """A two-player episode over two rounds: players tagged on turns, a team's meta on one action, metrics."""
    turns = []
    for round_ in range(2):
        for player in ("alice", "bob"):
            meta = {"team": "dylan", "messages": [{"round": 0, "from": "m1", "to": None, "text": AWKWARD}]}
            turns.append(
                Turn(
                    observation=f"{player} sees round {round_} {AWKWARD}",
                    action=Action(text="10", raw="Harvest: 10", meta=meta if player == "bob" else {}),
                    step=Step(f"{player} after {round_}", 10.0, round_ == 1, False, {"invalid_action": False}),
                    agent=player,
                    round=round_,
                )
            )
    return Episode(
        env_id=MULTI_SPEC.id,
        seed=seed,
        turns=turns,
        first_observation="alice sees round 0",
        total_return=40.0,
        success=True,
        terminated=True,
        players={"alice": "prompt", "bob": "dylan:3/prompt"},
        metrics={"survival_time": 12, "equality": 1.0, "returns": {"alice": 20.0, "bob": 20.0}, "success": True},
        wall_s=2.0,
        started_at=1_700_000_000.5,
    )
