"""Environments: the contract, the registry and the built-in environments (registered lazily by id)."""

from palaestra.envs import builtin as _builtin  # noqa: F401  (registers the built-in ids)
from palaestra.envs.base import Env, Policy
from palaestra.envs.multi import (
    Channel,
    ChannelMessage,
    MultiAgentEnv,
    MultiPolicy,
    parallel_to_turn,
    turn_to_parallel,
)
from palaestra.envs.registry import (
    build_from_spec,
    make,
    make_any,
    make_from_spec,
    make_multi,
    register,
    registered,
    spec,
)

__all__ = [
    "Channel",
    "ChannelMessage",
    "Env",
    "MultiAgentEnv",
    "MultiPolicy",
    "Policy",
    "build_from_spec",
    "make",
    "make_any",
    "make_from_spec",
    "make_multi",
    "parallel_to_turn",
    "register",
    "registered",
    "spec",
    "turn_to_parallel",
]
