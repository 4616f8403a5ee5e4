"""The environment registry: ``register(id, entry_point, ...)`` and ``make(id, **overrides)``."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from palaestra.core.errors import SpecError, UnknownSpecError
from palaestra.core.types import EnvSpec, InvalidActionRule, Normalization, parse_env_id
from palaestra.envs.base import Env
from palaestra.envs.multi import MultiAgentEnv

_REGISTRY: dict[str, EnvSpec] = {}

# Fields of the spec that ``make`` accepts as overrides; everything else goes to the constructor.
_SPEC_OVERRIDES = ("max_turns",)


def register(
    id: str,
    entry_point: str,
    *,
    description: str = "",
    max_turns: int = 50,
    reward_range: tuple[float, float] = (float("-inf"), float("inf")),
    invalid_action: InvalidActionRule,
    normalization: Normalization | None = None,
    splits: dict[str, tuple[int, int]] | None = None,
    kwargs: dict[str, Any] | None = None,
    multi_agent: bool = False,
) -> EnvSpec:
    """Register an environment under a versioned id such as ``"maze-fo-v0"``.

    Args:
        id: ``<name>-v<version>``.
        entry_point: ``"package.module:ClassName"``, imported only when the environment is made.
        invalid_action: what the environment does with an invalid action (every environment declares one).
        kwargs: default constructor arguments.
        multi_agent: the class is a ``MultiAgentEnv`` (built with ``make_multi``); ``max_turns`` counts rounds.
    """
    parse_env_id(id)
    if ":" not in entry_point:
        raise SpecError(f"entry_point {entry_point!r} must look like 'package.module:ClassName'")
    fields: dict[str, Any] = {}
    if splits is not None:
        fields["splits"] = dict(splits)
    spec = EnvSpec(
        id=id,
        entry_point=entry_point,
        description=description,
        max_turns=max_turns,
        reward_range=reward_range,
        invalid_action=invalid_action,
        normalization=normalization,
        kwargs=dict(kwargs or {}),
        multi_agent=multi_agent,
        **fields,
    )
    _REGISTRY[id] = spec
    return spec


def spec(id: str) -> EnvSpec:
    """The registered spec of ``id``; an error naming close matches when it is unknown."""
    try:
        return _REGISTRY[id]
    except KeyError:
        raise UnknownSpecError("environment", id, _REGISTRY, hint="List them with `palaestra envs`.") from None


def registered() -> dict[str, EnvSpec]:
    """All registered specs by id, sorted by id."""
    return dict(sorted(_REGISTRY.items()))


def load_entry_point(entry_point: str) -> Any:
    module_name, _, attr = entry_point.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SpecError(f"entry point {entry_point!r}: module {module_name} has no {attr!r}") from None


def _build(base: EnvSpec, overrides: dict[str, Any]) -> Any:
    spec_fields = {k: overrides.pop(k) for k in _SPEC_OVERRIDES if k in overrides}
    kwargs = {**base.kwargs, **overrides}
    cls = load_entry_point(base.entry_point)
    try:
        env = cls(**kwargs)
    except TypeError as exc:
        raise SpecError(f"cannot make {base.id} with arguments {kwargs}: {exc}") from None
    env.spec = dataclasses.replace(base, kwargs=kwargs, **spec_fields)
    return env


def make(id: str, **overrides: Any) -> Env:
    """Build the single-agent environment registered as ``id``. ``max_turns`` overrides the spec; other
    overrides go to the constructor. The returned environment's ``spec`` records the arguments actually used."""
    base = spec(id)
    if base.multi_agent:
        raise SpecError(f"{id} is a multi-agent environment; build it with palaestra.make_multi({id!r})")
    env: Env = _build(base, overrides)
    return env


def make_multi(id: str, **overrides: Any) -> MultiAgentEnv:
    """Build the multi-agent environment registered as ``id`` (overrides as for :func:`make`)."""
    base = spec(id)
    if not base.multi_agent:
        raise SpecError(f"{id} is a single-agent environment; build it with palaestra.make({id!r})")
    env: MultiAgentEnv = _build(base, overrides)
    return env


def make_any(id: str, **overrides: Any) -> Env | MultiAgentEnv:
    """Build ``id`` whether it has one player or several (for code that handles both, like the runner)."""
    return make_multi(id, **overrides) if spec(id).multi_agent else make(id, **overrides)


def build_from_spec(env_spec: EnvSpec) -> Env | MultiAgentEnv:
    """Rebuild an environment of either kind from a stored spec (e.g. from a run's lineage)."""
    cls = load_entry_point(env_spec.entry_point)
    env = cls(**env_spec.kwargs)
    env.spec = env_spec
    if not isinstance(env, Env | MultiAgentEnv):
        raise SpecError(f"{env_spec.entry_point} is not a palaestra Env or MultiAgentEnv")
    return env


def make_from_spec(env_spec: EnvSpec) -> Env:
    """Rebuild a single-agent environment from a stored spec (e.g. from a run's lineage)."""
    env = build_from_spec(env_spec)
    if not isinstance(env, Env):
        raise SpecError(f"{env_spec.id} is a multi-agent environment; use build_from_spec()")
    return env
