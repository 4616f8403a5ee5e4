"""Tools for testing environments and agents, shipped for use in your own test suites: the environment
conformance checker and a deterministic model (also reachable by spec as ``scripted:echo``)."""

from palaestra.models.scripted import ScriptedModel
from palaestra.testing.check_env import EnvCheckError, acheck_env, check_env

__all__ = ["EnvCheckError", "ScriptedModel", "acheck_env", "check_env"]
