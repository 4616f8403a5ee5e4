"""Environments: the contract, the registry and the built-in environments (registered lazily by id)."""

from palaestra.envs import builtin as _builtin  # noqa: F401  (registers the built-in ids)
from palaestra.envs.base import Env, Policy
from palaestra.envs.registry import make, make_from_spec, register, registered, spec

__all__ = ["Env", "Policy", "make", "make_from_spec", "register", "registered", "spec"]
