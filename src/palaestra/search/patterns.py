"""``DesignAgent``: plays a ``Design`` (palaestra.search.design), one reasoning pattern per turn.

Messages are the prompt agent's (``PromptAgent.messages``: template, demonstrations, recent turns) with the
pattern's guidance, plan or reflections appended to the system message; actions are read with the prompt
agent's ``extract_action``, and votes with the teams' ``vote``. Model calls per turn:

- ``direct`` 1: the prompt agent exactly (the default design sends the very same requests).
- ``cot`` 1: reason, then an ``Action:`` line; later turns show only the action (the reasoning is dropped).
- ``react`` 1: ``Thought:`` then ``Action:`` (ReAct, Yao et al. 2023); the thoughts stay in the episode's
  conversation.
- ``reflect`` 1, or 2 after a failed step: a one-sentence reflection on the failure, kept in the context of
  later turns (Reflexion, Shinn et al. 2023, within one episode). A step failed when the environment marked
  it invalid or its reward was lower than the step before it.
- ``plan`` 2 on the first turn (a short plan, then the action), 1 afterwards; the plan stays in the context
  (plan-and-act).
- ``self-consistency`` k: k chain-of-thought samples, the majority of their actions (Wang et al. 2023).
- ``tree`` k proposals plus up to k*(depth-1) rollout calls: each distinct proposed action is tried on
  ``env.copy()`` for ``depth`` steps (the model continuing greedily on the copy) and the one with the best
  summed reward is played; ties go to the most proposed, then the first. Like LATS (Zhou et al. 2024) this
  uses the environment as a simulator, which a deployed agent usually cannot; the real environment is not
  touched by the lookahead. Environments that cannot be copied and stepped (a player's view of a
  multi-agent game) fall back to the majority vote.

A team design plays through ``palaestra.teams`` and a code design through ``palaestra.search.sandbox``; the
design's ``instructions`` reach them through a view of the environment whose instructions end with them.
Every action's ``calls`` are all the model calls of its turn, the one that gave the action last; its ``meta``
holds the design hash, the pattern and what the pattern decided with (thoughts, votes, plan, reflections,
lookahead scores). Model output is never trusted: an action that cannot be read is passed on unparsed and the
environment's invalid-action rule applies.
"""

from __future__ import annotations

import asyncio
import copy
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from palaestra.agents.prompt import PromptAgent, PromptConfig, demonstrations, extract_action
from palaestra.core.errors import PalaestraError, SpecError
from palaestra.core.types import Action, ChatRequest, Completion, Message, SamplingParams, Step, Turn
from palaestra.envs.base import Env, Policy
from palaestra.envs.multi import PlayerView
from palaestra.models.base import Model
from palaestra.search.design import Design
from palaestra.search.sandbox import SandboxedAgent, SandboxLimits
from palaestra.teams import Team, make_team, vote, vote_key

REASON_TOKENS = 96  # extra reply budget of the patterns that think before acting (cot, react, self-consistency)
REFLECTION_TOKENS = 48
PLAN_TOKENS = 96
MAX_NOTES = 3  # reflections shown at most (the most recent)
MAX_NOTE_CHARS = 300
MAX_PLAN_CHARS = 600
MAX_META_CHARS = 2000

COT_GUIDANCE = (
    "Before answering, think step by step in at most two short sentences. Then write the action on the last "
    "line as 'Action: <action>'."
)
REACT_GUIDANCE = (
    "Reply in two lines: 'Thought: <what you notice and what to do next>' then 'Action: <action>'. Your "
    "earlier thoughts are in the conversation; use them."
)
REFLECT_ASK = (
    "Your last action did not work. In one sentence, say what went wrong and what you will do differently. "
    "Do not give an action yet."
)
PLAN_ASK = "Before acting, write a short plan for this task in at most three steps. Do not give an action yet."
_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)", re.DOTALL)


class InstructedEnv(Env):
    """A view of a single-agent environment whose instructions end with extra text; everything else is the
    environment's. Stepping the view steps the environment; closing it closes only what it owns (a copy)."""

    def __init__(self, env: Env, extra: str, *, owns: bool = False) -> None:
        self.inner = env
        self.extra = extra
        self.owns = owns
        self.spec = env.spec
        self.action_tokens = env.action_tokens
        self.models = env.models
        self.instructions = f"{env.instructions}\n\n{extra}"

    def __getattr__(self, name: str) -> Any:  # state a scripted policy or a template may read
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        return await self.inner.reset(seed=seed, options=options)

    async def step(self, action: str) -> Step:
        return await self.inner.step(action)

    def copy(self) -> InstructedEnv:
        return InstructedEnv(self.inner.copy(), self.extra, owns=True)

    def scripted_policies(self) -> dict[str, Policy]:
        return self.inner.scripted_policies()

    async def close(self) -> None:
        if self.owns:
            await self.inner.close()


def with_instructions(env: Env, extra: str | None) -> Env:
    """``env`` as the agent should see it: its instructions followed by ``extra`` (``env`` itself if None)."""
    if extra is None:
        return env
    if isinstance(env, PlayerView):  # a view's instructions are a plain attribute: a shallow copy will do
        view = copy.copy(env)
        view.instructions = f"{env.instructions}\n\n{extra}"
        return view
    return InstructedEnv(env, extra)


# --------------------------------------------------------------------------- demonstrations

_SHOTS: dict[tuple[str, ...], tuple[Message, ...]] = {}


async def scripted_demonstrations(env: Env, policy_name: str, count: int) -> tuple[Message, ...]:
    """``count`` user/assistant turns of the scripted policy ``policy_name`` on the first train seeds
    (``optimal`` is exactly the prompt agent's demonstrations)."""
    if count <= 0:
        return ()
    if policy_name == "optimal":
        return await demonstrations(env, count)
    if isinstance(env, PlayerView):
        raise SpecError(
            f"demonstrations by the {policy_name!r} policy on a player of {env.spec.id} are not supported; "
            "use shots source scripted:optimal"
        )
    key = ("scripted", env.spec.to_json(), policy_name, str(count))
    if key not in _SHOTS:
        policy = env.scripted_policies().get(policy_name)
        if policy is None:
            raise SpecError(
                f"{env.spec.id} has no scripted policy {policy_name!r} for demonstrations; its policies: "
                f"{', '.join(env.scripted_policies()) or '(none)'}; or set the design's shots count to 0"
            )
        from palaestra.envs.registry import make_from_spec

        demo_env = make_from_spec(env.spec)
        rng = random.Random(0)
        messages: list[Message] = []
        seed, stop = env.spec.splits["train"]
        try:
            while len(messages) < 2 * count and seed < stop:
                step = await demo_env.reset(seed=seed)
                while not step.done and len(messages) < 2 * count:
                    action = policy(demo_env, rng)
                    messages += [Message("user", step.observation), Message("assistant", action)]
                    step = await demo_env.step(action)
                seed += 1
        finally:
            await demo_env.close()
        _SHOTS[key] = tuple(messages)
    return _SHOTS[key]


def run_demonstrations(env: Env, run_id: str, count: int) -> tuple[Message, ...]:
    """``count`` turns of a stored run's best episodes (highest return first, then lowest seed), from train
    seeds only, so no validation or test episode is ever shown. The store is ``$PALAESTRA_DB`` (else
    ./palaestra.db), as the CLI's."""
    if count <= 0:
        return ()
    from palaestra.store import Store

    with Store(None, readonly=True) as store:
        key = ("run", store.url, run_id, env.spec.id, str(count))
        if key in _SHOTS:
            return _SHOTS[key]
        run = store.get_run(run_id)
        if run.env_id != env.spec.id:
            raise SpecError(
                f"run {run.id} played {run.env_id}, not {env.spec.id}: its turns cannot be demonstrations here"
            )
        start, stop = env.spec.splits["train"]
        episodes = [e for e in store.episodes(run.id, with_turns=True, status="ok") if start <= e.seed < stop]
    episodes.sort(key=lambda e: (-e.total_return, e.seed))
    messages: list[Message] = []
    for episode in episodes:
        for turn in episode.turns:
            if len(messages) >= 2 * count:
                break
            messages += [Message("user", turn.observation), Message("assistant", turn.action.text)]
    if not messages:
        raise SpecError(
            f"run {run.id} has no successful-status episodes on {env.spec.id}'s train seeds ({start}..{stop - 1}) "
            "to draw demonstrations from; use a run played on train seeds, or shots source scripted:optimal"
        )
    _SHOTS[key] = tuple(messages)
    return _SHOTS[key]


# --------------------------------------------------------------------------- one turn


def _cut(text: str, limit: int = MAX_META_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _thought(reply: str) -> str:
    """What a reply says before its last ``Action:`` line (the reasoning), without a ``Thought:`` label."""
    head = re.split(r"(?im)^.*action\s*:", reply)
    text = head[0] if len(head) > 1 else ""
    return _cut(re.sub(r"(?i)^\s*thought\s*:\s*", "", text).strip())


def _sentence(reply: str) -> str:
    """The first sentence of a reply, on one line and at most ``MAX_NOTE_CHARS`` characters."""
    text = " ".join(reply.split())
    match = _SENTENCE.match(text)
    return (match.group(1) if match else text)[:MAX_NOTE_CHARS]


def failed(history: Sequence[Turn]) -> bool:
    """Whether the last step failed: the environment marked it invalid, or its reward fell below the step
    before it's."""
    if not history:
        return False
    last = history[-1].step
    if last.info.get("invalid_action"):
        return True
    return len(history) >= 2 and last.reward < history[-2].step.reward


@dataclass
class Decision:
    """One turn of a ``DesignAgent``: builds its requests, records its calls, makes the action."""

    agent: DesignAgent
    env: Env  # the environment as the agent sees it (with the design's instructions)
    history: Sequence[Turn]
    observation: str
    shots: tuple[Message, ...]
    calls: list[Completion] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def request(
        self,
        *,
        guidance: str = "",
        notes: Sequence[str] = (),
        ask: str = "",
        sample: int = 0,
        tokens: int | None = None,
        history: Sequence[Turn] | None = None,
        observation: str | None = None,
    ) -> ChatRequest:
        """The prompt agent's messages, with ``notes`` and ``guidance`` appended to the system message and
        ``ask`` to the last user message."""
        design = self.agent.design
        turns = self.history if history is None else history
        if design.pattern in ("cot", "self-consistency"):  # their reasoning is not kept: show the actions only
            turns = [replace(t, action=replace(t.action, raw=None)) for t in turns]
        seen = self.observation if observation is None else observation
        messages = list(self.agent.prompt.messages(self.env, turns, seen, self.shots))
        extra = [*notes, guidance]
        system = "\n\n".join([messages[0].content, *(e for e in extra if e)])
        messages[0] = Message("system", system)
        if ask:
            messages[-1] = Message("user", f"{messages[-1].content}\n\n{ask}")
        seed = None
        if design.temperature > 0:  # the prompt agent's seeds; each sample shifts it as PromptConfig.sample does
            seed = self.agent.seed * 1000 + len(turns) + 1_000_003 * sample
        sampling = SamplingParams(
            temperature=design.temperature,
            top_p=design.top_p,
            max_tokens=tokens or design.max_tokens or self.env.action_tokens,
            seed=seed,
        )
        return ChatRequest(tuple(messages), sampling, sample_index=sample)

    def reasoning_tokens(self) -> int:
        design = self.agent.design
        return design.max_tokens or self.env.action_tokens + REASON_TOKENS

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Concurrent calls (a local model batches them), recorded in request order."""
        completions = await asyncio.gather(*(self.agent.model.generate(r) for r in requests))
        self.calls.extend(completions)
        return list(completions)

    def action(self, completion: Completion, text: str | None) -> Action:
        """The turn's action from ``completion`` (moved to the end of ``calls``); unparsed when ``text`` is None."""
        calls = [c for c in self.calls if c is not completion] + [completion]
        meta = {"design": self.agent.design.hash, "pattern": self.agent.design.pattern, **self.meta}
        if text is None:
            return Action(text=completion.text, raw=completion.text, parsed=False, calls=tuple(calls), meta=meta)
        return Action(text=text, raw=completion.text, parsed=True, calls=tuple(calls), meta=meta)


async def play_direct(turn: Decision) -> Action:
    (completion,) = await turn.generate([turn.request()])
    return turn.action(completion, extract_action(completion.text))


async def play_reasoned(turn: Decision) -> Action:
    guidance = REACT_GUIDANCE if turn.agent.design.pattern == "react" else COT_GUIDANCE
    (completion,) = await turn.generate([turn.request(guidance=guidance, tokens=turn.reasoning_tokens())])
    turn.meta["thought"] = _thought(completion.text)
    return turn.action(completion, extract_action(completion.text))


async def play_reflect(turn: Decision) -> Action:
    reflection = None
    if failed(turn.history):
        (reply,) = await turn.generate([turn.request(ask=REFLECT_ASK, tokens=REFLECTION_TOKENS)])
        reflection = _sentence(reply.text) or None
    turn.meta["reflection"] = reflection
    if turn.agent.design.memory.persist:
        earlier = [t.action.meta.get("reflection") for t in turn.history]
        notes = [n for n in earlier if isinstance(n, str)] + ([reflection] if reflection else [])
        notes = notes[-MAX_NOTES:]
    else:
        notes = [reflection] if reflection else []
    turn.meta["reflections"] = notes
    shown = ["Lessons from your mistakes in this episode:\n" + "\n".join(f"- {n}" for n in notes)] if notes else []
    (completion,) = await turn.generate([turn.request(notes=shown)])
    return turn.action(completion, extract_action(completion.text))


async def play_plan(turn: Decision) -> Action:
    plan: str | None = None
    if not turn.history:
        (reply,) = await turn.generate([turn.request(ask=PLAN_ASK, tokens=PLAN_TOKENS)])
        plan = " ".join(reply.text.split())[:MAX_PLAN_CHARS] or None
        turn.meta["plan"] = plan
    elif turn.agent.design.memory.persist:
        written = turn.history[0].action.meta.get("plan")
        plan = written if isinstance(written, str) else None
    notes = [f"Your plan for this episode: {plan}"] if plan else []
    (completion,) = await turn.generate([turn.request(notes=notes)])
    return turn.action(completion, extract_action(completion.text))


async def play_self_consistency(turn: Decision) -> Action:
    k = turn.agent.design.k
    tokens = turn.reasoning_tokens()
    completions = await turn.generate([turn.request(guidance=COT_GUIDANCE, sample=i, tokens=tokens) for i in range(k)])
    answers = [extract_action(c.text) for c in completions]
    chosen = vote(answers)
    turn.meta["samples"] = [_cut(c.text, 500) for c in completions]
    turn.meta["answers"] = answers
    turn.meta["votes"] = dict(Counter(vote_key(a) for a in answers if a is not None))
    turn.meta["chosen"] = chosen
    if chosen is None:
        return turn.action(completions[0], None)
    index = next(i for i, a in enumerate(answers) if a is not None and vote_key(a) == vote_key(chosen))
    return turn.action(completions[index], answers[index])


async def play_tree(turn: Decision) -> Action:
    design = turn.agent.design
    proposals = await turn.generate([turn.request(sample=i) for i in range(design.k)])
    answers = [extract_action(c.text) for c in proposals]
    turn.meta["proposals"] = answers
    votes = Counter(vote_key(a) for a in answers if a is not None)
    candidates: dict[str, int] = {}  # vote key -> index of its first proposal
    for i, answer in enumerate(answers):
        if answer is not None:
            candidates.setdefault(vote_key(answer), i)
    if not candidates:
        turn.meta["scores"] = []
        return turn.action(proposals[0], None)
    scores = [await _lookahead(turn, answers[i] or "", votes[key], i) for key, i in candidates.items()]
    turn.meta["scores"] = scores
    scored = [s for s in scores if s["reward"] is not None]
    pool = scored or scores
    best = max(pool, key=lambda s: (s["reward"] if s["reward"] is not None else 0.0, s["votes"], -s["proposal"]))
    turn.meta["chosen"] = best["action"]
    index = best["proposal"]
    return turn.action(proposals[index], answers[index])


async def _lookahead(turn: Decision, action: str, votes: int, proposal: int) -> dict[str, Any]:
    """Play ``action`` on a copy of the environment, then let the model go on greedily for ``depth - 1``
    more steps on the copy; the summed reward scores the action."""
    entry: dict[str, Any] = {"action": action, "votes": votes, "proposal": proposal}
    try:
        clone = turn.env.copy()
    except PalaestraError as exc:
        return {**entry, "reward": None, "error": _cut(f"{type(exc).__name__}: {exc}", 300)}
    try:
        step = await clone.step(action)
        total, steps, rollout = step.reward, 1, [action]
        history = [*turn.history, Turn(turn.observation, Action(text=action), step)]
        while steps < turn.agent.design.depth and not step.done:
            request = turn.request(history=history, observation=step.observation)
            request = replace(request, sampling=replace(request.sampling, temperature=0.0, seed=None))
            (completion,) = await turn.generate([request])
            text = extract_action(completion.text)
            played = text if text is not None else completion.text
            observation = step.observation
            step = await clone.step(played)
            history.append(Turn(observation, Action(text=played, raw=completion.text, parsed=text is not None), step))
            total += step.reward
            steps += 1
            rollout.append(played[:200])
    except PalaestraError as exc:  # a view of a multi-agent game, or a finished episode, cannot be stepped
        return {**entry, "reward": None, "error": _cut(f"{type(exc).__name__}: {exc}", 300)}
    finally:
        await clone.close()
    success = step.info.get("success") if step.done else None
    return {
        **entry,
        "reward": total,
        "steps": steps,
        "done": step.done,
        "success": bool(success) if success is not None else None,
        "rollout": rollout,
    }


PLAYS = {
    "direct": play_direct,
    "cot": play_reasoned,
    "react": play_reasoned,
    "reflect": play_reflect,
    "plan": play_plan,
    "self-consistency": play_self_consistency,
    "tree": play_tree,
}


class DesignAgent:
    """An ``Agent`` that plays a ``Design``: its pattern, a team of its prompt agents, or its sandboxed code.

    Args:
        design: the design.
        model: the model every call goes to (required, as for the prompt agent).
        seed: the episode seed (reproducible sampling at temperature > 0).
        spec: the spec recorded with runs (default ``design:<hash>``).
        limits: sandbox limits for a code design.
    """

    def __init__(
        self,
        design: Design,
        model: Model | None,
        *,
        seed: int = 0,
        spec: str | None = None,
        limits: SandboxLimits | None = None,
    ) -> None:
        if model is None:
            raise SpecError("the 'design' agent needs a model: pass --model (e.g. --model smollm2-135m)")
        self.design = design
        self.model = model
        self.seed = seed
        self.spec = spec or design.agent_spec()
        config = PromptConfig(
            template=design.template,
            temperature=design.temperature,
            top_p=design.top_p,
            max_tokens=design.max_tokens,
            history=design.memory.history,
            shots=design.shots.count,
        )
        self.prompt = PromptAgent(model, config, seed=seed, spec=design.member_spec())
        self.sandboxed = (
            SandboxedAgent(design.code, model, limits, seed=seed, spec=self.spec) if design.code is not None else None
        )
        self.team: Team | None = None

    async def act(self, env: Env, history: Sequence[Turn], observation: str) -> Action:
        view = with_instructions(env, self.design.instructions)
        if self.sandboxed is not None:  # a failure of the code raises SandboxError: an error episode
            action = await self.sandboxed.act(view, history, observation)
            return replace(action, meta={**action.meta, "design": self.design.hash, "pattern": "code"})
        team_spec = self.design.team_spec()
        if team_spec is not None:
            if self.team is None:
                self.team = make_team(team_spec, env, self.model, seed=self.seed)
            action = await self.team.act(view, history, observation)
            return replace(action, meta={**action.meta, "design": self.design.hash, "pattern": "team"})
        turn = Decision(self, view, history, observation, await self.demonstrations(env))
        return await PLAYS[self.design.pattern](turn)

    async def demonstrations(self, env: Env) -> tuple[Message, ...]:
        count, source = self.design.shots.count, self.design.shots.source
        kind, _, name = source.partition(":")
        if kind == "run":
            return run_demonstrations(env, name, count)
        return await scripted_demonstrations(env, name, count)

    async def close(self) -> None:
        """Stop a code design's sandbox process, if any (the runner calls this after each episode)."""
        if self.sandboxed is not None:
            await self.sandboxed.close()
