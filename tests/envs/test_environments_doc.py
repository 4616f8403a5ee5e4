"""Every Python block in docs/environments.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from palaestra.envs import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "environments.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_doc_has_python_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index: int, capsys: pytest.CaptureFixture[str], run_doc_block) -> None:
    run_doc_block(BLOCKS[index], f"{DOC.name} block {index}")
    if "wordle.answers()" in BLOCKS[index]:
        # The quoted guess-count distribution is what the block prints.
        assert capsys.readouterr().out.strip() == "[(2, 70), (3, 1229), (4, 936), (5, 65)]"


TASK_DOCS = sorted((DOC.parent / "envs").glob("*.md"))
TASK_BLOCKS = [
    (path.name, i, block)
    for path in TASK_DOCS
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL))
]


def test_every_registered_environment_is_in_the_table_and_has_a_page() -> None:
    text = DOC.read_text(encoding="utf-8")
    # Built-in ids only: other test modules register the toys of palaestra.testing.
    builtin = [i for i, s in registry.registered().items() if s.entry_point.startswith("palaestra.envs.")]
    for env_id in builtin:
        assert f"| `{env_id}` |" in text, f"{env_id} is missing from the table of docs/environments.md"
    pages = " ".join(path.read_text(encoding="utf-8") for path in TASK_DOCS) + text
    for env_id in builtin:
        assert f"`{env_id}`" in pages


@pytest.mark.parametrize(("page", "index", "block"), TASK_BLOCKS, ids=[f"{p}-{i}" for p, i, _ in TASK_BLOCKS])
def test_task_page_block_runs(page: str, index: int, block: str, run_doc_block) -> None:
    run_doc_block(block, f"docs/envs/{page} block {index}")
