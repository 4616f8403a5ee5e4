"""The Python code blocks of docs/simulate.md run as written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "simulate.md"


def test_python_blocks_in_the_simulate_doc_run(run_doc_block: Callable[[str, str], None]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, "docs/simulate.md should show how to run a simulation from Python"
    for i, block in enumerate(blocks):
        run_doc_block(block, f"{DOC.name}:{i}")
