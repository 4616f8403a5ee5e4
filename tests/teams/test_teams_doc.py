"""Every Python block in docs/teams.md runs as written and prints what the page shows after it."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "teams.md"
PAIRS = re.findall(
    r"\`\`\`python\n(.*?)\`\`\`\n\n\`\`\`\n(.*?)\`\`\`", DOC.read_text(encoding="utf-8"), flags=re.DOTALL
)


def test_the_doc_has_examples_with_output() -> None:
    assert len(PAIRS) == 2


@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_doc_block_prints_what_the_doc_shows(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code, shown = PAIRS[index]
    module = types.ModuleType(f"palaestra_teams_doc_{index}")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, f"docs/teams.md block {index}", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    assert capsys.readouterr().out == shown
