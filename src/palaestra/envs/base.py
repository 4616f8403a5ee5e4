"""The single-agent environment contract, what it shares with multi-agent ones, and scripted policies."""

from __future__ import annotations

import abc
import copy
import random
from typing import TYPE_CHECKING, Any, Protocol, Self

from palaestra.core.errors import EnvError
from palaestra.core.types import EnvSpec, Step

if TYPE_CHECKING:  # models sit above environments; only partner models are reached, lazily
    from palaestra.models.base import Model
    from palaestra.models.pool import ModelPool


class Policy(Protocol):
    """A scripted policy: reads the live environment's state and returns an action string.

    Scripted policies may look at state the agent cannot see (the maze layout, Wordle's answer): they are
    baselines and data generators, not agents under evaluation.
    """

    def __call__(self, env: Env, rng: random.Random) -> str: ...


class EnvBase:
    """What single-agent and multi-agent environments share: the spec, partner models, ``copy`` and ``close``."""

    spec: EnvSpec
    # Completion tokens a model agent should allow for one action (its default reply budget): a move or a
    # word needs few, a question or a sales pitch more.
    action_tokens: int = 16
    # Set by the runner before ``reset``: the evaluation's model pool. Environments with a model partner
    # (an oracle, a simulated buyer) take it from here with ``partner_model``, so one instance serves every
    # episode (and shares batches with the agent when the spec is the same).
    models: ModelPool | None = None

    def copy(self) -> Self:
        """An independent copy in the same state (for tree search and branching).

        Partner models are shared with the copy, not duplicated: the copy uses them while this environment
        (or the runner's pool) keeps them open, and closing the copy does not close them.
        """
        memo: dict[int, Any] = {}
        own = self.__dict__.get("_own_models")
        for pool in (self.models, own):
            if pool is not None:
                memo[id(pool)] = pool
                memo.update({id(m): m for m in pool.shared_models()})
        clone = copy.deepcopy(self, memo)
        if own is not None:
            del clone.__dict__["_own_models"]
            clone.models = own
        return clone

    async def close(self) -> None:
        """Release resources (processes, connections). Safe to call twice.

        Subclasses that override it call ``await super().close()`` so partner models built here are closed.
        """
        pool = self.__dict__.pop("_own_models", None)
        if pool is not None:
            await pool.close()

    def partner_model(self, model: str | Model) -> Model:
        """The model behind a partner (oracle, buyer...): a ready ``Model`` is used as is; a spec string is
        taken from the runner's pool (``self.models``) or, outside the runner, from a pool this environment
        owns and closes in ``close()``."""
        if not isinstance(model, str):
            return model
        pool = self.models
        if pool is None:
            pool = self.__dict__.get("_own_models")
            if pool is None:
                from palaestra.models.pool import ModelPool

                pool = self.__dict__["_own_models"] = ModelPool()
        return pool.get(model)

    def _split_of(self, seed: int | None) -> str | None:
        """The split (``train``, ``validation``, ``test``) whose seed range holds ``seed``; None when the seed
        is None, in no range, or the environment has no spec yet. Environments that split a finite set of
        instances (answers, houses, personas) draw a seed's instance from its split's share."""
        spec = getattr(self, "spec", None)
        if seed is None or spec is None:
            return None
        return next((name for name, (lo, hi) in spec.splits.items() if lo <= seed < hi), None)

    def _require_spec(self) -> EnvSpec:
        try:
            return self.spec
        except AttributeError:
            raise EnvError(
                f"{type(self).__name__} has no spec: create environments with palaestra.make(id), "
                "not by calling the class directly"
            ) from None


class Env(EnvBase, abc.ABC):
    """An async, text-in text-out, multi-turn environment.

    ``spec`` is set by :func:`palaestra.envs.make`; ``instructions`` tells the agent the rules and the exact
    action format. Episodes are reproducible: the same seed gives the same episode for the same actions.
    """

    instructions: str = ""

    @abc.abstractmethod
    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        """Start a new episode and return its first observation (reward 0)."""

    @abc.abstractmethod
    async def step(self, action: str) -> Step:
        """Apply one action. Unparseable or illegal actions follow ``spec.invalid_action``; never raise."""

    def scripted_policies(self) -> dict[str, Policy]:
        """Scripted policies by name (``optimal``, ``random``, ``noisy``...); empty when none exist."""
        return {}
