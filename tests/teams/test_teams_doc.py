"""Every Python block in docs/teams.md runs as written and prints what the page shows after it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "teams.md"
PAIRS = re.findall(
    r"\`\`\`python\n(.*?)\`\`\`\n\n\`\`\`\n(.*?)\`\`\`", DOC.read_text(encoding="utf-8"), flags=re.DOTALL
)


def test_the_doc_has_examples_with_output() -> None:
    assert len(PAIRS) == 2


@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_doc_block_prints_what_the_doc_shows(index: int, capsys: pytest.CaptureFixture[str], run_doc_block) -> None:
    code, shown = PAIRS[index]
    run_doc_block(code, f"docs/teams.md block {index}")
    assert capsys.readouterr().out == shown
