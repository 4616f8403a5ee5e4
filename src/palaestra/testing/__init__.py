"""Tools for testing environments and agents, shipped for use in your own test suites: the conformance
checkers of single- and multi-agent environments and a deterministic model (spec ``scripted:echo``)."""

from palaestra.models.scripted import ScriptedModel
from palaestra.testing.check_env import EnvCheckError, acheck_env, check_env
from palaestra.testing.check_multi_env import acheck_multi_env, check_multi_env

__all__ = ["EnvCheckError", "ScriptedModel", "acheck_env", "acheck_multi_env", "check_env", "check_multi_env"]
