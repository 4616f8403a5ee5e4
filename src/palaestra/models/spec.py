"""Model spec strings: ``make_model(spec, **options)`` turns ``"smollm2-135m"`` and friends into a Model.

Backends are imported only when a spec asks for them, so ``import palaestra.models`` never pulls in torch.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from palaestra.core.errors import SpecError, UnknownSpecError
from palaestra.core.types import ChatRequest
from palaestra.models.base import Model

EMBEDDED_SPEC = "smollm2-135m"

# What ``UnknownSpecError`` lists; keep in step with ``make_model`` and docs/models.md.
SPEC_FORMS = (
    EMBEDDED_SPEC,
    "local:<model directory>",
    "openai:<model>@<base url>",
    "openai:<model>",
    "scripted:echo",
    "scripted:cycle:<reply>|<reply>|...",
    "<local spec>+<checkpoint id>",
)

# The base URL must start with a scheme, so a model name may itself contain '@' (``claude@2024``).
_OPENAI_RE = re.compile(r"^(?P<model>.+?)@(?P<url>https?://\S+)$")


def make_model(spec: str, *, cache: str | Path | bool | None = None, **options: Any) -> Model:
    """Build the model a spec string names.

    Args:
        spec: one of ``smollm2-135m``, ``local:<dir>``, ``openai:<model>@<base url>``, ``openai:<model>``
            (base URL from ``PALAESTRA_OPENAI_BASE_URL`` / ``OPENAI_BASE_URL``, else api.openai.com),
            ``scripted:echo``, ``scripted:cycle:<a>|<b>|...``.
        cache: wrap the model in a request cache: ``True`` for an in-memory cache, a path for a SQLite file.
        options: passed to the backend's constructor (e.g. ``max_batch_size`` for local models,
            ``max_concurrency`` for OpenAI-compatible servers, ``fail_on_calls`` for scripted ones).

    Raises:
        UnknownSpecError: the spec matches none of the forms above.
        SpecError: the spec has a known form but a bad value (e.g. a directory that does not exist).
    """
    model = _make_uncached(spec.strip(), options)
    if cache is None or cache is False:
        return model
    from palaestra.models.cache import CachedModel

    return CachedModel(model, None if cache is True else Path(cache))


def _make_uncached(spec: str, options: dict[str, Any]) -> Model:
    from palaestra.models.registry import split_spec

    if split_spec(spec) is not None:
        return _make_checkpoint(spec, options)
    kind, _, rest = spec.partition(":")
    if spec == EMBEDDED_SPEC:
        from palaestra.models.local import LocalModel

        return LocalModel.embedded(**options)
    if kind == "local" and rest:
        from palaestra.models.local import LocalModel

        path = Path(rest).expanduser()
        if not path.is_dir():
            raise SpecError(
                f"model spec {spec!r}: {str(path)!r} is not a directory. 'local:' takes a transformers model "
                f"directory (config.json, weights, tokenizer); download one first, e.g. "
                f"'hf download <repo id> --local-dir <dir>', or use {EMBEDDED_SPEC!r}."
            )
        return LocalModel(path, **options)
    if kind == "openai" and rest:
        from palaestra.models.openai import OpenAIModel

        match = _OPENAI_RE.match(rest)
        if match:
            return OpenAIModel(match["model"], match["url"], **options)
        if "@" in rest and "://" in rest:
            raise SpecError(
                f"model spec {spec!r}: the base URL must start with http:// or https://, "
                f"e.g. 'openai:gpt-4o-mini@https://api.openai.com/v1'"
            )
        return OpenAIModel(rest, None, **options)
    if kind == "scripted" and rest:
        from palaestra.models.scripted import ScriptedModel

        return ScriptedModel.from_spec(spec, **options)
    raise UnknownSpecError(
        "model spec",
        spec,
        SPEC_FORMS,
        hint="See docs/models.md for what each form means.",
    )


def _make_checkpoint(spec: str, options: dict[str, Any]) -> Model:
    """A local base model with a registry checkpoint (and its ancestors) applied: ``smollm2-135m+c-1a2b3c4d``."""
    from palaestra.models.local import LocalModel
    from palaestra.models.registry import Registry, split_spec

    base_spec, ref = split_spec(spec) or ("", "")
    registry = Registry(options.pop("registry", None))
    chain = registry.chain(ref)
    trained_on = chain[0].record.base_model
    if trained_on != base_spec:
        raise SpecError(
            f"checkpoint {ref} was trained on {trained_on!r}, not {base_spec!r}: its weights only fit that base. "
            f"Use '{trained_on}+{ref}'."
        )
    base = _make_uncached(base_spec, dict(options))
    if not isinstance(base, LocalModel):
        raise SpecError(f"checkpoints apply to local models only; {base_spec!r} is {type(base).__name__}")
    expected = chain[0].base_weights_hash
    if expected is not None and base.weights_hash != expected:
        raise SpecError(
            f"checkpoint {ref} was trained on {base_spec} with weights {expected}, but {base_spec} now has "
            f"{base.weights_hash}; the adapter would not fit. Retrain it on these weights."
        )
    for checkpoint in chain:
        if checkpoint.model_dir is not None:  # full fine-tuning: the weights replace everything before
            base = LocalModel(checkpoint.model_dir, **{k: v for k, v in options.items() if k != "spec"})
        elif checkpoint.adapter_dir is not None:
            base.apply_adapter(checkpoint.adapter_dir)
    base.spec = spec
    base.weights_hash = chain[-1].record.weights_hash
    return base


def request_seed(request: ChatRequest) -> int | None:
    """The seed a backend should sample a request with, or None when the request gives none.

    Sample 0 uses ``sampling.seed`` as given; later samples of the same request (``sample_index > 0``) get
    distinct seeds derived from it, so asking for several samples with one seed does not repeat one reply.
    """
    seed = request.sampling.seed
    if seed is None:
        return None
    if request.sample_index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{request.sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: fits torch's and servers' signed int64


def palaestra_home() -> Path:
    """Where palaestra keeps caches: ``$PALAESTRA_HOME``, else ``~/.cache/palaestra``."""
    return Path(os.environ.get("PALAESTRA_HOME") or Path.home() / ".cache" / "palaestra").expanduser()
