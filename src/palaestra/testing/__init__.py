"""Tools for testing environments and agents, shipped for use in your own test suites."""

from palaestra.testing.check_env import EnvCheckError, acheck_env, check_env

__all__ = ["EnvCheckError", "acheck_env", "check_env"]
