"""The README and the pages of docs/, read the way the tests that keep them true need them.

The README is the front door and each page of docs/ holds one subject; a test that holds a table,
a command or a figure of the docs against the code reads the page that holds it, by name.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"


def page(name: str) -> Path:
    """``docs/<name>.md``, which must exist (a test naming a page that moved fails here)."""
    path = DOCS / f"{name}.md"
    assert path.is_file(), f"docs/{name}.md is gone: which page holds its content now?"
    return path


def pages() -> list[Path]:
    """The README and every page of docs/, in that order."""
    return [README, *sorted(DOCS.glob("*.md"))]


def name(path: Path) -> str:
    """A page as the docs name it: ``README.md``, ``docs/docker.md``."""
    return str(path.relative_to(REPO))


def without_code_blocks(text: str) -> str:
    """``text`` with its fenced code blocks left out (what they hold is not prose or a link)."""
    return re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)


def code_blocks(text: str, language: str) -> list[str]:
    """The contents of each fenced code block of ``language`` (indented ones too, in a list)."""
    blocks = re.findall(rf"^(\s*)```{language}\n(.*?)^\s*```", text, flags=re.S | re.M)
    return [re.sub(rf"^{indent}", "", body, flags=re.M) for indent, body in blocks]
