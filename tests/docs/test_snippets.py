"""Every Python snippet in the docs and the README compiles and imports only the public API.

Snippets are the ```` ```python ```` fences and MyST ```` ```{code-block} python ```` directives,
also inside other directives. An import from ``worker`` or ``routing`` must name something in
that package's ``__all__``; importing their inner modules is refused, since those move.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FRONT_DOORS = ("worker", "routing")
PYTHON_DIRECTIVES = (["{code-block}", "python"], ["{code}", "python"])
# Directives whose body is not Markdown, so it holds no nested snippets.
VERBATIM_DIRECTIVES = ("{eval-rst}", "{code-block}", "{code}", "{literalinclude}", "{include}")


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # 1-based line of the opening fence
    source: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _directive_body(content: str) -> str:
    """A MyST directive's content without its ``:option: value`` lines or ``---`` block."""
    lines = content.splitlines(keepends=True)
    if lines and lines[0].strip() == "---":
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), 0)
        return "".join(lines[end + 1 :])
    start = 0
    while start < len(lines) and lines[start].startswith(":"):
        start += 1
    return "".join(lines[start:])


def snippets_in(text: str, path: Path, first_line: int = 1) -> list[Snippet]:
    """The Python snippets of a Markdown text whose first line is ``first_line`` of ``path``."""
    found: list[Snippet] = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type != "fence" or token.map is None:
            continue
        words = token.info.split()
        line = first_line + token.map[0]
        if words[:1] == ["python"] or words[:2] in (
            ["{code-block}", "python"],
            ["{code}", "python"],
        ):
            body = token.content if words[0] == "python" else _directive_body(token.content)
            found.append(Snippet(path, line, body))
        elif words and words[0].startswith("{") and words[0] not in VERBATIM_DIRECTIVES:
            found.extend(snippets_in(token.content, path, line + 1))
    return found


def all_snippets() -> list[Snippet]:
    return [
        snippet
        for path in DOCUMENTS
        for snippet in snippets_in(path.read_text(encoding="utf-8"), path)
    ]


SNIPPETS = all_snippets()


def test_the_docs_have_snippets() -> None:
    assert len({snippet.path for snippet in SNIPPETS}) >= 5, [s.name for s in SNIPPETS]


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: snippet.name)
def test_snippet_compiles(snippet: Snippet) -> None:
    compile(snippet.source, snippet.name, "exec", dont_inherit=True)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: snippet.name)
def test_snippet_imports_only_the_front_doors(snippet: Snippet) -> None:
    problems: list[str] = []
    for node in ast.walk(ast.parse(snippet.source, snippet.name)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            package, _, inner = node.module.partition(".")
            if package not in FRONT_DOORS:
                continue
            if inner:
                problems.append(f"line {node.lineno}: from {node.module} import (an inner module)")
                continue
            public = set(importlib.import_module(package).__all__)
            problems.extend(
                f"line {node.lineno}: {alias.name} is not in {package}.__all__"
                for alias in node.names
                if alias.name not in public
            )
        elif isinstance(node, ast.Import):
            problems.extend(
                f"line {node.lineno}: import {alias.name} (an inner module)"
                for alias in node.names
                if alias.name.partition(".")[0] in FRONT_DOORS and "." in alias.name
            )
    assert not problems, f"{snippet.name}: " + "; ".join(problems)


def test_the_fence_parser_finds_nested_and_directive_snippets() -> None:
    text = (
        "# Title\n\n"
        "```python\nfrom worker import send\n```\n\n"
        "````{note}\nSee:\n\n```{code-block} python\n:caption: x.py\n\nx = 1\n```\n````\n\n"
        "```{eval-rst}\n.. code-block:: python\n\n   y = 2\n```\n\n"
        "```console\n$ runworker\n```\n"
    )
    found = snippets_in(text, ROOT / "example.md")
    assert [(snippet.line, snippet.source) for snippet in found] == [
        (3, "from worker import send\n"),
        (10, "\nx = 1\n"),
    ]
