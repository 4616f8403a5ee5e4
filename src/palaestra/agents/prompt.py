"""``PromptAgent``: turns instructions and history into chat messages, calls a model, parses the action."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from palaestra.core.errors import SpecError
from palaestra.core.types import Action, ChatRequest, Message, SamplingParams, Turn
from palaestra.envs.base import Env
from palaestra.envs.multi import MultiAgentEnv, PlayerView
from palaestra.models.base import Model

_MARKER = re.compile(r"action\s*:\s*(.+)", re.IGNORECASE)
_STRIP = " \t\"'`*"


def extract_action(reply: str) -> str | None:
    """The action in a model reply: the text after the last ``Action:`` marker if there is one, else the
    first non-empty line. None when the reply holds nothing usable (the environment then sees the raw
    reply as an invalid action)."""
    lines = [line.strip(_STRIP) for line in reply.strip().splitlines()]
    for line in reversed(lines):
        match = _MARKER.search(line)
        if match and match.group(1).strip(_STRIP):
            return match.group(1).strip(_STRIP)
    for line in lines:
        if line:
            return line
    return None


@dataclass(frozen=True)
class PromptConfig:
    """Options of the ``prompt`` agent, settable in its spec: ``prompt:temperature=0.7,history=4``."""

    template: str = "default"  # a file in palaestra/agents/prompts (without .jinja) or a path
    temperature: float = 0.0
    top_p: float = 1.0
    # Reply budget in tokens; None takes the environment's ``action_tokens`` (16 for a move or a word, more
    # for a question or a sales pitch).
    max_tokens: int | None = None
    # How many past turns the prompt keeps (the system message is always kept). On a CPU the prompt is
    # most of the cost (prefill: about 900 tokens/s on 2 cores, benchmarks/prompt_validity.py), so it stays short.
    history: int = 2
    # Demonstration turns before the episode: the environment's optimal policy playing the first seeds of
    # the train split (never an evaluated seed). Zero-shot, SmolLM2-135M echoes the observation instead of
    # acting on every maze seed tried; with two demonstrations its first replies are valid actions.
    shots: int = 2
    # Which sample this agent is when several play the same seed at temperature > 0 (self-training explores
    # k samples per seed): it shifts the sampling seed, nothing else.
    sample: int = 0

    @classmethod
    def parse(cls, options: str) -> PromptConfig:
        """Parse ``key=value,key=value``; unknown keys or bad values raise ``SpecError``."""
        values: dict[str, object] = {}
        types = {
            "template": str,
            "temperature": float,
            "top_p": float,
            "max_tokens": int,
            "history": int,
            "shots": int,
            "sample": int,
        }
        for item in filter(None, (part.strip() for part in options.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in types:
                raise SpecError(
                    f"bad prompt-agent option {item!r}; use key=value with keys {', '.join(types)}, "
                    "e.g. 'prompt:temperature=0.7,history=4'"
                )
            try:
                values[key] = types[key](value)
            except ValueError:
                raise SpecError(f"prompt-agent option {key} needs a {types[key].__name__}, got {value!r}") from None
        return cls(**values)  # type: ignore[arg-type]


def load_template(name: str) -> jinja2.Template:
    path = Path(name)
    if path.suffix == ".jinja" and path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        resource = resources.files("palaestra.agents") / "prompts" / f"{name}.jinja"
        if not resource.is_file():
            available = sorted(
                p.name.removesuffix(".jinja") for p in (resources.files("palaestra.agents") / "prompts").iterdir()
            )
            raise SpecError(
                f"no prompt template {name!r}; built-in templates: {', '.join(available)}, "
                "or give a path to a .jinja file"
            )
        text = resource.read_text(encoding="utf-8")
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False).from_string(text)


_DEMONSTRATIONS: dict[tuple[str, int], tuple[Message, ...]] = {}


async def demonstrations(env: Env, shots: int) -> tuple[Message, ...]:
    """``shots`` user/assistant turns of the environment's ``optimal`` policy on the first train seeds.

    Computed once per process for each environment spec; an environment without an ``optimal`` policy
    cannot give demonstrations (a ``SpecError`` says to use ``shots=0``).
    """
    if shots <= 0:
        return ()
    if isinstance(env, PlayerView):
        return await _player_demonstrations(env, shots)
    key = (env.spec.to_json(), shots)
    if key not in _DEMONSTRATIONS:
        policy = env.scripted_policies().get("optimal")
        if policy is None:
            raise SpecError(f"{env.spec.id} has no optimal policy to demonstrate; use 'prompt:shots=0'")
        from palaestra.envs.registry import make_from_spec

        demo_env = make_from_spec(env.spec)
        rng = random.Random(0)
        messages: list[Message] = []
        seed = env.spec.splits["train"][0]
        while len(messages) < 2 * shots:  # an episode may end before enough turns: go on with the next seed
            step = await demo_env.reset(seed=seed)
            while not step.done and len(messages) < 2 * shots:
                action = policy(demo_env, rng)
                messages += [Message("user", step.observation), Message("assistant", action)]
                step = await demo_env.step(action)
            seed += 1
        await demo_env.close()
        _DEMONSTRATIONS[key] = tuple(messages)
    return _DEMONSTRATIONS[key]


async def _player_demonstrations(view: PlayerView, shots: int) -> tuple[Message, ...]:
    """Demonstrations for one seat of a multi-agent environment: every seat plays the environment's
    ``demo_policy`` on the first train seeds, and the turns of this seat are kept."""
    key = (view.spec.to_json() + view.agent, shots)
    if key not in _DEMONSTRATIONS:
        from palaestra.envs.registry import build_from_spec

        name = view.env.demo_policy
        policy = view.env.scripted_policies().get(name)
        if policy is None:
            raise SpecError(f"{view.spec.id} has no {name!r} policy to demonstrate; use 'prompt:shots=0'")
        env = build_from_spec(view.spec)
        assert isinstance(env, MultiAgentEnv)
        rng = random.Random(0)
        messages: list[Message] = []
        first = view.spec.splits["train"][0]
        try:
            for seed in range(first, first + 20):  # an episode may give this seat too few turns: try more seeds
                steps = await env.reset(seed=seed)
                observations = {p: s.observation for p, s in steps.items()}
                while env.agents and len(messages) < 2 * shots:
                    actions = {p: policy(env, p, rng) for p in env.acting()}
                    if view.agent in actions:
                        messages += [
                            Message("user", observations[view.agent]),
                            Message("assistant", actions[view.agent]),
                        ]
                    for p, s in (await env.step(actions)).items():
                        observations[p] = s.observation
                if len(messages) >= 2 * shots:
                    break
        finally:
            await env.close()
        _DEMONSTRATIONS[key] = tuple(messages)
    return _DEMONSTRATIONS[key]


class PromptAgent:
    """A model prompted with the environment's instructions and the recent history of the episode.

    The model sees its own earlier replies verbatim (``Action.raw``), so the conversation is what it wrote.
    """

    def __init__(self, model: Model, config: PromptConfig | None = None, *, seed: int = 0, spec: str = "prompt"):
        self.model = model
        self.config = config or PromptConfig()
        self.spec = spec
        self._seed = seed
        self._template = load_template(self.config.template)

    def messages(
        self, env: Env, history: Sequence[Turn], observation: str, shots: Sequence[Message] = ()
    ) -> tuple[Message, ...]:
        system = self._template.render(instructions=env.instructions, env_id=env.spec.id).strip()
        out = [Message("system", system), *shots]
        recent = history[-self.config.history :] if self.config.history > 0 else []
        for turn in recent:
            out.append(Message("user", turn.observation))
            out.append(Message("assistant", turn.action.raw if turn.action.raw is not None else turn.action.text))
        out.append(Message("user", observation))
        return tuple(out)

    async def act(self, env: Env, history: Sequence[Turn], observation: str) -> Action:
        sampling = SamplingParams(
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            max_tokens=self.config.max_tokens or env.action_tokens,
            seed=self._seed * 1000 + len(history) + 1_000_003 * self.config.sample
            if self.config.temperature > 0
            else None,
        )
        shots = await demonstrations(env, self.config.shots)
        request = ChatRequest(self.messages(env, history, observation, shots), sampling)
        completion = await self.model.generate(request)
        action = extract_action(completion.text)
        if action is None:
            return Action(text=completion.text, raw=completion.text, parsed=False, calls=(completion,))
        return Action(text=action, raw=completion.text, parsed=True, calls=(completion,))
