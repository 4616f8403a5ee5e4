"""The runner: plays episodes concurrently behind one executor boundary and writes them to the store."""

from palaestra.runner.episode import run_episode
from palaestra.runner.evaluate import EvalConfig, EvalResult, evaluate, resume
from palaestra.runner.executor import AsyncioExecutor, EpisodeJob, Executor
from palaestra.runner.multi import run_multi_episode

__all__ = [
    "AsyncioExecutor",
    "EpisodeJob",
    "EvalConfig",
    "EvalResult",
    "Executor",
    "evaluate",
    "resume",
    "run_episode",
    "run_multi_episode",
]
