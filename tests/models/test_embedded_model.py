"""The embedded model: converted once into a plain transformers directory, safely under concurrency."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from palaestra.models.embedded import (
    GGUF_FILE,
    MANIFEST,
    embedded_gguf_path,
    ensure_embedded_model,
    materialize,
    sha256_file,
)


def test_the_gguf_is_found_without_importing_its_package() -> None:
    path = embedded_gguf_path()
    assert path.name == GGUF_FILE and path.stat().st_size > 50_000_000


def test_concurrent_materialize_builds_once(tmp_path: Path) -> None:
    target = tmp_path / "models" / "thing"
    builds: list[int] = []

    def build(out: Path) -> None:
        builds.append(1)
        time.sleep(0.2)  # long enough for the other threads to arrive and wait on the lock
        (out / "weights").write_text("w")
        (out / "done").write_text("ok")

    def complete(path: Path) -> bool:
        return (path / "done").is_file()

    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(materialize(target, build, complete))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and sorted(results) == [False, False, False, True]
    assert (target / "weights").read_text() == "w"
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".thing.tmp")] == []


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "thing"

    def build(out: Path) -> None:
        (out / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        materialize(target, build, lambda p: (p / "done").is_file())
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.slow
def test_conversion_is_complete_and_reused(embedded_dir: Path) -> None:
    manifest = json.loads((embedded_dir / MANIFEST).read_text())
    assert manifest["source_sha256"] == sha256_file(embedded_gguf_path())
    assert (embedded_dir / "model.safetensors").is_file() and (embedded_dir / "config.json").is_file()
    template = (
        json.loads((embedded_dir / "tokenizer_config.json").read_text()).get("chat_template")
        or (embedded_dir / "chat_template.jinja").read_text()
    )
    assert "<|im_start|>" in template and "add_generation_prompt" in template
    before = (embedded_dir / MANIFEST).stat().st_mtime_ns
    messages: list[str] = []
    started = time.perf_counter()
    assert ensure_embedded_model(progress=messages.append) == embedded_dir
    assert time.perf_counter() - started < 2, "the second call must not convert again"
    assert messages == [] and (embedded_dir / MANIFEST).stat().st_mtime_ns == before
