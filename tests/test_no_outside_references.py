"""Every document the code cites is in the repository.

Code, flag help texts, flagfiles, bench scripts, tools and tests may cite Markdown pages (e.g.
``docs/methods/zskt.md §3``). A cited page must exist in this repository (``docs/...`` and
``README.md`` resolve from the repository root, other paths from the citing file's folder),
and a cited section must be a numbered heading of that page. Paths into the development
machine's shared notes (absolute, or relative out of the repository) are refused.

In test modules only comments and docstrings are read: their string literals are test data
(e.g. the broken links a link checker must find), not citations.
"""
from __future__ import annotations

import ast
import io
import os
import re
import tokenize

import pytest

from helpers import REPO

SCANNED_DIRS = ("zskd_tf", "bench", "flags", "tools", "tests", os.path.join("docs", "methods"))
TEXT_SUFFIXES = (".py", ".sh", ".cfg", ".md", ".txt", ".toml", ".json", ".yaml", ".yml")
# Pages of issue 23 that another engineer writes in parallel; cited before they are merged.

# A Markdown file name, optionally with folders, then any section numbers cited right after it:
# "docs/methods/zskt.md §3", "docs/methods/lopes.md §6, §7", "docs/methods/zskd.md §1-3".
_MD_REFERENCE = re.compile(
    r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b"
    r"((?:\s*,?\s*§\s?\d+(?:\.\d+)*(?:\s?[-–]\s?\d+(?:\.\d+)*)?)*)")
_SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)(?:\s?[-–]\s?(\d+(?:\.\d+)*))?")
_OUTSIDE_PATH = re.compile(r"/work/|\.\./shared")


def _scanned_files():
    for top in SCANNED_DIRS:
        for folder, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in sorted(files):
                if name.endswith(TEXT_SUFFIXES):
                    yield os.path.join(folder, name)


def _comments_and_docstrings(source: str) -> list[tuple[int, str]]:
    """(line number, text) of a Python module's comments and docstring lines."""
    lines = source.splitlines()
    pieces = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                first, last = body[0].lineno, body[0].end_lineno
                pieces += [(n, lines[n - 1]) for n in range(first, last + 1)]
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            pieces.append((token.start[0], token.string))
    return sorted(pieces)


def _pieces(path: str) -> list[tuple[int, str]]:
    """The (line number, text) pieces of a file that may cite documents."""
    with open(path, encoding="utf-8", errors="replace") as f:
        source = f.read()
    in_tests = os.path.relpath(path, REPO).split(os.sep)[0] == "tests"
    if in_tests and path.endswith(".py"):
        return _comments_and_docstrings(source)
    return list(enumerate(source.splitlines(), 1))


def _resolve(reference: str, citing_file: str) -> str | None:
    """The cited file's path if it exists inside the repository, else None."""
    candidates = [os.path.join(REPO, reference),
                  os.path.join(os.path.dirname(citing_file), reference)]
    for path in candidates:
        path = os.path.realpath(path)
        if path.startswith(os.path.realpath(REPO) + os.sep) and os.path.isfile(path):
            return path
    return None


def _headings(path: str) -> set[str]:
    """Section numbers of a page's numbered headings ("## 3. Title" -> "3")."""
    with open(path, encoding="utf-8") as f:
        return {m.group(1) for m in re.finditer(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", f.read(),
                                                re.MULTILINE)}


def find_problems(path: str) -> list[str]:
    """Outside references in one file, as ``file:line: problem`` strings.

    Args:
      path: the file to read.

    Returns:
      One string per problem: a path outside the repository, a cited page that is not in the
      repository, or a cited section that the page does not have.
    """
    where = os.path.relpath(path, REPO)
    problems = []
    for number, text in _pieces(path):
        if _OUTSIDE_PATH.search(text):
            problems.append(f"{where}:{number}: path outside the repository: {text.strip()}")
        for match in _MD_REFERENCE.finditer(text):
            reference, sections = match.group(1), match.group(2)
            target = _resolve(reference, path)
            if target is None:
                problems.append(f"{where}:{number}: {reference} is not in the repository")
                continue
            known = _headings(target)
            cited = [s for pair in _SECTION.findall(sections) for s in pair if s]
            for section in cited:
                if section not in known:
                    problems.append(f"{where}:{number}: {reference} has no section §{section}")
    return problems


def test_the_code_cites_only_documents_in_the_repository():
    problems = [p for path in _scanned_files() for p in find_problems(path)]
    assert not problems, f"{len(problems)} outside references:\n" + "\n".join(problems[:50])


@pytest.mark.parametrize("text, bad", [
    ("# see zskt.md §9.2", True),
    ("Spec: /work/shared/specs/lopes.md", True),
    ("see ../shared/seeds/", True),
    ("(docs/methods/zskt.md §99)", True),
    ("(docs/methods/zskt.md §8-99)", True),
    ("(docs/methods/zskt.md §7-8, §9.3)", False),
    ("(docs/methods/zskt.md §2)", False),
    ("user documentation: README.md", False),
])
def test_the_checker_tells_outside_references_apart(tmp_path, text, bad):
    citing = tmp_path / "module.py"
    citing.write_text(text + "\n", encoding="utf-8")
    assert bool(find_problems(str(citing))) == bad


def test_test_modules_are_read_in_comments_and_docstrings_only():
    source = ('"""Module docstring citing zskt.md §9.2."""\n'
              'BROKEN_LINK = "missing.md"  # a comment citing ecosystem.md\n'
              'def test():\n    """Docstring citing repro.md."""\n')
    pieces = _comments_and_docstrings(source)
    texts = " ".join(text for _, text in pieces)
    assert "zskt.md" in texts and "ecosystem.md" in texts and "repro.md" in texts
    assert "missing.md" not in texts
    assert [n for n, _ in pieces] == [1, 2, 4]
