"""Training examples from stored trajectories: token ids to train on, with the loss on the agent's tokens only.

Two ways to get the tokens of a turn, chosen per turn:

- **exact**: the model call that produced the action recorded the tokens it saw and generated
  (``Completion.prompt_token_ids`` / ``completion_token_ids``; local models always do). The example is those
  tokens, unchanged: ``input_ids = prompt + completion``, labels on the completion only. The completion
  includes the end-of-turn token when the model stopped on it (``LocalModel`` keeps the token that ended
  generation, e.g. SmolLM2's ``<|im_end|>``), so the model also learns to stop; a reply cut by ``max_tokens``
  (``finish_reason="length"``) has no end token and none is added: the example is what the model did.
- **template** (the fallback, for text-only sources: API models without token ids, scripted-policy data from
  ``palaestra data generate``, imported files, team turns): the prompt is rebuilt exactly as the ``prompt``
  agent builds it at inference (``PromptAgent.messages`` with the same ``PromptConfig``, the environment
  rebuilt from its spec, the demonstrations of ``shots``) and tokenized with the tokenizer's chat template
  and the assistant turn opened, as ``LocalModel.prompt_token_ids`` does; the reply is the action's text
  (``raw`` if the agent kept the model's full reply, else ``text``) followed by the template's end-of-turn
  token, and the labels cover exactly those reply tokens. A model trained on scripted data is so trained on
  the very prompt format it is evaluated with.

Exact tokens are used only when they are the right ones: the final call's text must be the action's reply
(a team's final call may be an audit or one member's vote, so team turns are re-templated with the team's
answer, which distils the team into one prompted agent), and the tokens must come from this tokenizer (the
decoded completion starts with the recorded reply and the decoded prompt contains the turn's observation;
a scripted model's byte "tokens", or another model's, fail this and are re-templated).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from palaestra.agents.prompt import PromptAgent, PromptConfig, demonstrations
from palaestra.core.errors import SpecError
from palaestra.core.types import Completion, EnvSpec, Episode, Message, Turn
from palaestra.envs.base import Env
from palaestra.envs.multi import MultiAgentEnv, PlayerView
from palaestra.envs.registry import build_from_spec, make_any

if TYPE_CHECKING:
    from palaestra.store import Store

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy (and TRL) skips
EXACT = "exact"
TEMPLATE = "template"

T = TypeVar("T")


class NoTrainingDataError(SpecError):
    """The runs asked for give nothing to train on (no ok episode, or the filter kept none)."""


@dataclass(frozen=True)
class TrainingExample:
    """One model turn to train on.

    ``labels`` has one entry per input token: the token id where the model is trained to produce it (the
    agent's own reply), ``IGNORE_INDEX`` (-100) everywhere else (the prompt). ``source`` says where the
    example came from: ``run_id``, ``env_id``, ``seed``, ``turn`` (index in the episode), ``agent`` and
    ``round`` (None in single-agent episodes), ``reward`` (of this turn), ``episode_return``,
    ``player_return`` (the acting player's return in a multi-agent episode, else the episode return),
    ``success``, ``tokens`` (``"exact"`` or ``"template"``), ``template_reason`` (why not exact; None when
    exact), ``model`` (the spec of the model that produced the reply, if one did) and ``finish_reason``.
    """

    input_ids: list[int]
    labels: list[int]
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"{len(self.input_ids)} input ids but {len(self.labels)} labels")

    @property
    def prompt_length(self) -> int:
        """Tokens before the first trained one."""
        return next((i for i, label in enumerate(self.labels) if label != IGNORE_INDEX), len(self.labels))

    @property
    def prompt_ids(self) -> list[int]:
        return self.input_ids[: self.prompt_length]

    @property
    def completion_ids(self) -> list[int]:
        """The tokens trained on (the labelled positions)."""
        return [label for label in self.labels if label != IGNORE_INDEX]

    def to_dict(self) -> dict[str, Any]:
        return {"input_ids": list(self.input_ids), "labels": list(self.labels), "source": dict(self.source)}


def prompt_config_for(agent_spec: str | None) -> PromptConfig:
    """The ``PromptConfig`` of a ``prompt:...`` agent spec; the default one for any other agent (scripted
    policies, teams, imports), i.e. the format of ``--agent prompt``."""
    if agent_spec is not None:
        name, _, options = agent_spec.partition(":")
        if name == "prompt":
            return PromptConfig.parse(options)
    return PromptConfig()


def examples_from_episodes(
    episodes: Iterable[Episode],
    *,
    tokenizer: Any,
    env: Env | MultiAgentEnv | EnvSpec | None = None,
    prompt_config: PromptConfig | None = None,
    agents: Collection[str] | None = None,
    run_id: str | None = None,
    agent_spec: str | None = None,
    require_exact: bool = False,
) -> list[TrainingExample]:
    """One example per agent turn of the ``ok`` episodes (``error`` episodes are skipped: they stopped for an
    infrastructure reason and their last turns are not a decision to learn from).

    Args:
        tokenizer: a transformers tokenizer with a chat template (the model to be trained's).
        env: the environment the episodes were played in, or its spec (a run's ``env_spec``); needed only for
            re-templated turns. None builds each episode's environment from its registered id, which is
            wrong when the run overrode options (``max_turns`` is in some instructions): pass the spec then.
        prompt_config: the prompt format of re-templated turns; None takes it from ``agent_spec`` (or, in
            multi-agent episodes, from the player's spec in ``episode.players``) when that is a ``prompt``
            spec, else the default ``PromptConfig()``.
        agents: only the turns of these players (multi-agent episodes); None keeps every turn. Single-agent
            turns have ``agent=None``, so they are kept only when ``agents`` is None.
        run_id: recorded in each example's ``source``.
        agent_spec: the spec of the agent that played (a run's ``agent_spec``), for the prompt format.
        require_exact: raise ``SpecError`` for a turn without usable exact tokens instead of re-templating it.
    """
    builder = ExampleBuilder(tokenizer, env=env, prompt_config=prompt_config, require_exact=require_exact)
    out: list[TrainingExample] = []
    for episode in episodes:
        if episode.status == "ok":
            out += builder.episode(episode, agents=agents, run_id=run_id, agent_spec=agent_spec)
    return out


def examples_from_runs(
    store: Store,
    run_ids: Sequence[str],
    *,
    tokenizer: Any,
    prompt_config: PromptConfig | None = None,
    filter: Callable[[Episode], bool] | None = None,
    agents: Collection[str] | None = None,
    require_exact: bool = False,
) -> list[TrainingExample]:
    """Examples from the ``ok`` episodes of stored runs (each run's environment rebuilt from its spec).

    ``filter`` keeps only the episodes it returns True for (e.g. ``lambda e: e.success``).

    Raises:
        NoTrainingDataError: a run has no ok episode, or nothing is left after ``filter`` and ``agents``;
            the message names the runs and their counts. Nothing has been built or written then.
    """
    if not run_ids:
        raise NoTrainingDataError("nothing to train on: no runs given; name runs listed by `palaestra runs`")
    builder = ExampleBuilder(tokenizer, prompt_config=prompt_config, require_exact=require_exact)
    empty: list[str] = []
    loaded = []
    for ref in run_ids:
        run = store.get_run(ref)
        episodes = store.episodes(run.id, with_turns=True)
        ok = [e for e in episodes if e.status == "ok"]
        if not ok:
            errors = len(episodes) - len(ok)
            empty.append(f"run {run.id} has 0 ok episodes ({errors} error{'s' if errors != 1 else ''})")
        loaded.append((run, ok))
    if empty:
        raise NoTrainingDataError(
            f"nothing to train on: {'; '.join(empty)}. Play its seeds again (`palaestra eval --resume RUN`) "
            "or choose runs with ok episodes (`palaestra runs`)."
        )
    out: list[TrainingExample] = []
    total = kept = 0
    for run, ok in loaded:
        builder.add_env(run.env_spec)
        chosen = [e for e in ok if filter is None or filter(e)]
        total, kept = total + len(ok), kept + len(chosen)
        for episode in chosen:
            out += builder.episode(episode, agents=agents, run_id=run.id, agent_spec=run.agent_spec)
    if not out:
        names = ", ".join(run.id for run, _ in loaded)
        if kept == 0:
            why = f"the filter kept none of the {total} ok episodes of {names}"
        else:
            players = ", ".join(sorted(agents or ()))
            why = f"the {kept} chosen episodes of {names} have no turns" + (f" by {players}" if agents else "")
        raise NoTrainingDataError(f"nothing to train on: {why}")
    return out


# --------------------------------------------------------------------------- building


class ExampleBuilder:
    """Builds examples turn by turn; keeps the environments, demonstrations and prompt agents it rebuilt."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        env: Env | MultiAgentEnv | EnvSpec | None = None,
        prompt_config: PromptConfig | None = None,
        require_exact: bool = False,
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise SpecError(
                "the tokenizer has no chat template, so prompts cannot be built as the prompt agent builds them; "
                "use the tokenizer of a chat model (the model directory's tokenizer files)"
            )
        self.tokenizer = tokenizer
        self.prompt_config = prompt_config
        self.require_exact = require_exact
        self._specs: dict[str, EnvSpec] = {}
        self._envs: dict[str, Env | MultiAgentEnv] = {}
        self._views: dict[tuple[str, str], PlayerView] = {}
        self._shots: dict[tuple[str, str | None, int], tuple[Message, ...]] = {}
        self._agents: dict[PromptConfig, PromptAgent] = {}
        self._end_ids: list[int] | None = None
        if isinstance(env, EnvSpec):
            self.add_env(env)
        elif env is not None:
            self._specs[env.spec.id] = env.spec
            self._envs[env.spec.id] = env

    def add_env(self, spec: EnvSpec) -> None:
        """Use this spec to rebuild the environment of episodes with its id."""
        if self._specs.get(spec.id) != spec:
            self._specs[spec.id] = spec
            self._envs.pop(spec.id, None)
            self._views = {k: v for k, v in self._views.items() if k[0] != spec.id}
            self._shots = {k: v for k, v in self._shots.items() if k[0] != spec.id}

    def episode(
        self,
        episode: Episode,
        *,
        agents: Collection[str] | None = None,
        run_id: str | None = None,
        agent_spec: str | None = None,
    ) -> list[TrainingExample]:
        out = []
        histories: dict[str | None, list[Turn]] = {}
        returns = episode.metrics.get("returns") if isinstance(episode.metrics.get("returns"), dict) else None
        for index, turn in enumerate(episode.turns):
            history = histories.setdefault(turn.agent, [])
            if agents is None or turn.agent in agents:
                source = {
                    "run_id": run_id,
                    "env_id": episode.env_id,
                    "seed": episode.seed,
                    "turn": index,
                    "agent": turn.agent,
                    "round": turn.round,
                    "reward": float(turn.step.reward),
                    "episode_return": float(episode.total_return),
                    "player_return": float(returns.get(turn.agent, 0.0))
                    if returns is not None and turn.agent is not None
                    else float(episode.total_return),
                    "success": bool(episode.success),
                }
                spec = (episode.players or {}).get(turn.agent or "", agent_spec) if turn.agent else agent_spec
                out.append(self.turn(episode, turn, history, source, spec))
            history.append(turn)  # the prompt agent sees its own earlier turns (a player: only its own)
        return out

    def turn(
        self, episode: Episode, turn: Turn, history: Sequence[Turn], source: dict[str, Any], agent_spec: str | None
    ) -> TrainingExample:
        call = turn.action.calls[-1] if turn.action.calls else None
        reason = self._why_not_exact(turn, call)
        source = {
            **source,
            "model": call.model if call else None,
            "finish_reason": call.finish_reason if call else None,
        }
        if reason is None and call is not None:
            assert call.prompt_token_ids is not None and call.completion_token_ids is not None
            prompt, completion = list(call.prompt_token_ids), list(call.completion_token_ids)
            return TrainingExample(
                prompt + completion,
                [IGNORE_INDEX] * len(prompt) + completion,
                {**source, "tokens": EXACT, "template_reason": None},
            )
        if self.require_exact:
            raise SpecError(
                f"seed {episode.seed} turn {source['turn']} of {episode.env_id} has no exact tokens to train on "
                f"({reason}); drop require_exact to re-template such turns"
            )
        prompt = self.prompt_ids(episode, turn, history, agent_spec)
        reply = self.reply_ids(turn.action.raw if turn.action.raw is not None else turn.action.text)
        return TrainingExample(
            prompt + reply,
            [IGNORE_INDEX] * len(prompt) + reply,
            {**source, "tokens": TEMPLATE, "template_reason": reason},
        )

    def _why_not_exact(self, turn: Turn, call: Completion | None) -> str | None:
        """None when the final call's tokens are the ones to train on, else why not."""
        if call is None:
            return "no model call (scripted or imported)"
        if call.prompt_token_ids is None or call.completion_token_ids is None:
            return "the model recorded no token ids"
        if turn.action.raw is None or turn.action.raw != call.text:
            return "the final call's reply is not the action (a team's decision)"
        decoded = self.tokenizer.decode(list(call.completion_token_ids), skip_special_tokens=True)
        prompt_text = self.tokenizer.decode(
            list(call.prompt_token_ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        # LocalModel's text is the decoded completion, cut at a stop string: a prefix of the decoding.
        if not decoded.startswith(call.text) or (decoded and not call.text) or turn.observation not in prompt_text:
            return "the token ids are not this tokenizer's"
        return None

    # ------------------------------------------------------------------ the template fallback

    def messages(
        self, episode: Episode, turn: Turn, history: Sequence[Turn], agent_spec: str | None
    ) -> tuple[Message, ...]:
        """The chat messages the prompt agent would send for this turn."""
        config = self.prompt_config or prompt_config_for(agent_spec)
        agent = self._agents.get(config)
        if agent is None:
            from palaestra.models.scripted import ScriptedModel  # messages() never calls the model

            agent = self._agents[config] = PromptAgent(ScriptedModel("echo"), config)
        view = self._view(episode.env_id, turn.agent)
        key = (episode.env_id, turn.agent, config.shots)
        if key not in self._shots:
            self._shots[key] = _run_sync(demonstrations(view, config.shots))
        return agent.messages(view, history, turn.observation, self._shots[key])

    def prompt_ids(self, episode: Episode, turn: Turn, history: Sequence[Turn], agent_spec: str | None) -> list[int]:
        """The prompt tokens as ``LocalModel.prompt_token_ids`` makes them: chat template, assistant turn open."""
        messages = [{"role": m.role, "content": m.content} for m in self.messages(episode, turn, history, agent_spec)]
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def reply_ids(self, text: str) -> list[int]:
        """The tokens of an assistant reply followed by the template's end-of-turn token.

        Special-token text inside the reply (a literal ``<|im_end|>`` in imported data) is tokenized as
        plain text: a reply must not teach the model to end its turn in the middle.
        """
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return [*ids, *self.end_ids()]

    def end_ids(self) -> list[int]:
        """What the chat template writes right after an assistant reply, up to and including its first special
        token (SmolLM2: ``<|im_end|>``; the newline after it is not generated, so it is not trained on)."""
        if self._end_ids is None:
            probe = "Palaestra probe reply."
            base = [{"role": "user", "content": "Hello."}]
            opened = self.tokenizer.apply_chat_template(base, add_generation_prompt=True, tokenize=False)
            full = self.tokenizer.apply_chat_template([*base, {"role": "assistant", "content": probe}], tokenize=False)
            if not full.startswith(opened + probe):
                raise SpecError(
                    "this tokenizer's chat template does not write an assistant reply right after the opened "
                    "assistant turn, so text-only turns cannot be turned into examples with it; train on runs "
                    "with exact token ids (a local model's runs) instead"
                )
            tail = self.tokenizer(full[len(opened + probe) :], add_special_tokens=False)["input_ids"]
            special = set(self.tokenizer.all_special_ids)
            cut = next((i for i, t in enumerate(tail) if t in special), None)
            if cut is not None:
                self._end_ids = list(tail[: cut + 1])
            elif self.tokenizer.eos_token_id is not None:
                self._end_ids = [self.tokenizer.eos_token_id]
            else:
                self._end_ids = []
        return list(self._end_ids)

    def _env(self, env_id: str) -> Env | MultiAgentEnv:
        env = self._envs.get(env_id)
        if env is None:
            spec = self._specs.get(env_id)
            env = build_from_spec(spec) if spec is not None else make_any(env_id)
            self._envs[env_id] = env
        return env

    def _view(self, env_id: str, agent: str | None) -> Env:
        env = self._env(env_id)
        if isinstance(env, MultiAgentEnv):
            if agent is None:
                raise SpecError(f"a turn of multi-agent {env_id} names no player; was it stored by palaestra?")
            view = self._views.get((env_id, agent))
            if view is None:
                # As the runner does: views are made before reset, so they hold the pre-reset instructions.
                view = self._views[(env_id, agent)] = PlayerView(env, agent)
            return view
        if agent is not None:
            raise SpecError(f"a turn of single-agent {env_id} names player {agent!r}; is the environment right?")
        return env


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when an event loop already runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="palaestra-examples")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def load_tokenizer(model_spec: str | None = None) -> Any:
    """The tokenizer of a local model spec: the embedded SmolLM2 (default), ``local:<dir>``, or
    ``<local spec>+<checkpoint>`` (a checkpoint keeps its base model's tokenizer). Only the tokenizer is loaded."""
    from palaestra.core.errors import MissingDependencyError
    from palaestra.models.registry import split_spec
    from palaestra.models.spec import EMBEDDED_SPEC

    spec = (model_spec or EMBEDDED_SPEC).strip()
    checkpoint = split_spec(spec)
    if checkpoint is not None:
        spec = checkpoint[0]
    if spec == EMBEDDED_SPEC:
        from palaestra.models.embedded import ensure_embedded_model

        path = ensure_embedded_model()
    elif spec.startswith("local:") and len(spec) > len("local:"):
        path = Path(spec.removeprefix("local:")).expanduser()
        if not path.is_dir():
            raise SpecError(f"model spec {spec!r}: {str(path)!r} is not a model directory")
    else:
        raise SpecError(
            f"training examples need a local model's tokenizer; {spec!r} is not one. Use {EMBEDDED_SPEC!r} or "
            "'local:<model directory>' (the model you will train)"
        )
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MissingDependencyError("building training examples", "pip install 'palaestra[local]'") from exc
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot load a tokenizer from {path}: {exc}") from exc


def save_hf_dataset(examples: Sequence[TrainingExample], path: str | Path) -> None:
    """Save examples as a Hugging Face ``datasets`` dataset (``save_to_disk``): columns ``input_ids``,
    ``labels`` (ready for TRL's ``SFTTrainer``) and one per ``source`` key. ``path`` must not exist yet."""
    from palaestra.core.errors import MissingDependencyError

    try:
        import datasets
    except ImportError as exc:
        raise MissingDependencyError("the 'hf' export", "pip install 'palaestra[train]'") from exc
    target = Path(path)
    if target.exists():
        raise SpecError(f"{target} already exists; choose a new directory for the dataset (nothing was written)")
    if not examples:
        raise NoTrainingDataError("nothing to train on: no examples; nothing was written")
    columns = dict(source_columns(examples))
    ids = datasets.List(datasets.Value("int64"))
    kinds = {"input_ids": ids, "labels": ids, **{k: datasets.Value(v) for k, v in _SOURCE_TYPES.items()}}
    # Declared types: a column that is all None here (``agent`` in single-agent runs) keeps its type, so the
    # datasets of several exports can be concatenated.
    features = datasets.Features({k: kinds[k] for k in columns}) if set(columns) <= set(kinds) else None
    datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(target))


_SOURCE_TYPES = {
    "run_id": "string",
    "env_id": "string",
    "seed": "int64",
    "turn": "int64",
    "agent": "string",
    "round": "int64",
    "reward": "float64",
    "episode_return": "float64",
    "player_return": "float64",
    "success": "bool",
    "model": "string",
    "finish_reason": "string",
    "tokens": "string",
    "template_reason": "string",
}


def source_columns(examples: Sequence[TrainingExample]) -> Mapping[str, list[Any]]:
    """The examples as columns (``input_ids``, ``labels`` and one per ``source`` key), for a datasets table."""
    keys = list(dict.fromkeys(k for e in examples for k in e.source))
    columns: dict[str, list[Any]] = {
        "input_ids": [e.input_ids for e in examples],
        "labels": [e.labels for e in examples],
    }
    for key in keys:
        columns[key] = [e.source.get(key) for e in examples]
    return columns
