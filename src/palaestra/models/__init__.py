"""LLM backends behind one protocol, ``Model.generate(ChatRequest) -> Completion``, built from spec strings.

``make_model("smollm2-135m")`` (the embedded default), ``"local:<dir>"``, ``"openai:<model>@<base url>"``,
``"scripted:echo"``. The torch-based backends are imported on first use, so this package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from palaestra.models.base import Model
from palaestra.models.cache import CachedModel, CacheStats
from palaestra.models.pool import ModelPool
from palaestra.models.scripted import ScriptedModel
from palaestra.models.spec import EMBEDDED_SPEC, SPEC_FORMS, make_model, palaestra_home, request_seed

if TYPE_CHECKING:
    from palaestra.models.embedded import ensure_embedded_model
    from palaestra.models.local import BatchStats, LocalModel
    from palaestra.models.openai import OpenAIModel

_LAZY = {
    "LocalModel": "palaestra.models.local",
    "BatchStats": "palaestra.models.local",
    "OpenAIModel": "palaestra.models.openai",
    "ensure_embedded_model": "palaestra.models.embedded",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'palaestra.models' has no attribute {name!r}")


__all__ = [
    "EMBEDDED_SPEC",
    "SPEC_FORMS",
    "BatchStats",
    "CacheStats",
    "CachedModel",
    "LocalModel",
    "Model",
    "ModelPool",
    "OpenAIModel",
    "ScriptedModel",
    "ensure_embedded_model",
    "make_model",
    "palaestra_home",
    "request_seed",
]
