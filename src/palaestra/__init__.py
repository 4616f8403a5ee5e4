"""Palaestra: a training ground for language agents.

The public surface is short: ``make`` / ``register`` for environments, the core types, and ``evaluate``.
"""

from importlib.metadata import PackageNotFoundError, version

from palaestra.core import Action, Completion, EnvSpec, Step, Turn
from palaestra.envs import make, make_multi, register

try:
    __version__ = version("palaestra")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["Action", "Completion", "EnvSpec", "Step", "Turn", "__version__", "make", "make_multi", "register"]
