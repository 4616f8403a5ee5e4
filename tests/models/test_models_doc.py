"""The Python code blocks of docs/models.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


@pytest.mark.slow
def test_python_blocks_in_the_models_doc_run(embedded_dir: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, "docs/models.md should show how to use a model"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {"__name__": "__docs__"})
