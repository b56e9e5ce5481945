"""Every document the code cites is in the repository, and every section it cites too.

Code, flag help texts, flagfiles, bench scripts, tools and tests may cite Markdown pages. A
cited page must exist in this repository (``docs/...`` and ``README.md`` resolve from the
repository root, other paths from the citing file's folder). Paths into the development
machine's shared notes (absolute, or relative out of the repository) are refused.

Sections are cited by name: the page, a comma, then the heading in double quotes, e.g.
``docs/methods/zskt.md, "Generator"``; more headings of the same page follow after "," or
"and". A cited name must be a heading of that page (without its number, if it has one). Only
the Markdown pages themselves may cite a section by number (a section sign and digits), and it
must be a numbered heading of the cited page; code and flagfiles may not: a number says
nothing to the reader and silently points elsewhere when the page is renumbered. Code (``.py``
and ``.sh`` files) uses no section sign at all.

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
CODE_SUFFIXES = (".py", ".sh")  # cite sections by name only

_PAGE = r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b"
# A Markdown file name, optionally with folders, then any section numbers cited right after it
# (one number, several separated by commas, or a range with a dash).
_MD_REFERENCE = re.compile(
    _PAGE + r"((?:\s*,?\s*§\s?\d+(?:\.\d+)*(?:\s?[-–]\s?\d+(?:\.\d+)*)?)*)")
_SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)(?:\s?[-–]\s?(\d+(?:\.\d+)*))?")
# A quoted heading name; it may run on to the next line (of a comment, too).
_QUOTED = r'"(?:[^"\n]|\n[ \t]*#?[ \t]*)+"'
_SEPARATOR = r"[ \t]*(?:,|and)[\s#]*"
# The page, then one or more quoted heading names, separated by "," or "and". A name may wrap
# onto the next line, in a docstring or a comment.
_NAMED_REFERENCE = re.compile(_PAGE + rf"((?:{_SEPARATOR}{_QUOTED})+)")
_NAME = re.compile(_QUOTED)
_SECTION_NUMBER = re.compile(r"§\s?\d")
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


def _heading_names(path: str) -> set[str]:
    """A page's heading texts without their numbers ("## 3. Losses" -> "Losses")."""
    with open(path, encoding="utf-8") as f:
        return {" ".join(m.group(1).split())
                for m in re.finditer(r"^#{1,6}\s+(?:\d+(?:\.\d+)*\.?\s+)?(.+?)\s*$", f.read(),
                                     re.MULTILINE)}


def _cited_names(names: str) -> list[str]:
    """The heading names in the quoted list that follows a page, a wrapped name joined again."""
    return [" ".join(re.sub(r"\n[ \t]*#?", " ", quoted[1:-1]).split())
            for quoted in _NAME.findall(names)]


def find_problems(path: str) -> list[str]:
    """Outside references in one file, as ``file:line: problem`` strings.

    Args:
      path: the file to read.

    Returns:
      One string per problem: a path outside the repository, a cited page that is not in the
      repository, a cited section that the page does not have, or (in code) a section cited by
      number.
    """
    where = os.path.relpath(path, REPO)
    pieces = _pieces(path)
    problems = []
    for number, text in pieces:
        if _OUTSIDE_PATH.search(text):
            problems.append(f"{where}:{number}: path outside the repository: {text.strip()}")
        if path.endswith(CODE_SUFFIXES) and _SECTION_NUMBER.search(text):
            problems.append(f"{where}:{number}: cite the section by its heading, e.g. "
                            f'docs/methods/zskt.md, "Generator", not by number: {text.strip()}')
        for match in _MD_REFERENCE.finditer(text):
            reference, sections = match.group(1), match.group(2)
            target = _resolve(reference, path)
            if target is None:
                problems.append(f"{where}:{number}: {reference} is not in the repository")
                continue
            known = _headings(target)
            cited = [s for pair in _SECTION.findall(sections) for s in pair if s]
            if cited and not path.endswith(".md") and not path.endswith(CODE_SUFFIXES):
                problems.append(f"{where}:{number}: cite the section of {reference} by its "
                                f"heading, not by number: {text.strip()}")
            for section in cited:
                if section not in known:
                    problems.append(f"{where}:{number}: {reference} has no section §{section}")
    # Named sections may wrap onto the next line: read the pieces as one text.
    text = "\n".join(piece for _, piece in pieces)
    for match in _NAMED_REFERENCE.finditer(text):
        number = pieces[text.count("\n", 0, match.start())][0]
        reference = match.group(1)
        target = _resolve(reference, path)
        if target is None:
            continue  # reported above
        known = _heading_names(target)
        for name in _cited_names(match.group(2)):
            if name not in known:
                problems.append(f'{where}:{number}: {reference} has no heading "{name}"')
    return problems


def test_the_code_cites_only_documents_in_the_repository():
    problems = [p for path in _scanned_files() for p in find_problems(path)]
    assert not problems, f"{len(problems)} outside references:\n" + "\n".join(problems[:50])


@pytest.mark.parametrize("text, bad", [
    ("# see zskt.md §9.2", True),
    ("Spec: /work/shared/specs/lopes.md", True),
    ("see ../shared/seeds/", True),
    ("(docs/methods/zskt.md §2)", True),  # a number, in code
    ("# (docs/methods/zskt.md §7-8, §9.3)", True),
    ('(docs/methods/zskt.md, "Generator")', False),
    ('(docs/methods/zskt.md, "Generators")', True),
    ('(docs/methods/zskt.md, "Losses" and "Teacher recipe")', False),
    ('(docs/methods/zskt.md, "Losses", "Teacher recipe" and "Tables")', True),
    ('# docs/methods/zskt.md, "The public replication, and\n# what this package follows"', False),
    ('"""docs/methods/zskt.md, "Transition curves and mean\n    transition errors"."""', True),
    ('docs/methods/lopes.md, "Data and networks", calls them "lenet"', False),
    ('(docs/methods/missing.md, "Generator")', True),
    ("user documentation: README.md", False),
])
def test_the_checker_tells_outside_references_apart(tmp_path, text, bad):
    citing = tmp_path / "module.py"
    citing.write_text(text + "\n", encoding="utf-8")
    assert bool(find_problems(str(citing))) == bad


@pytest.mark.parametrize("name, text, bad", [
    ("run.cfg", '# (docs/methods/zskt.md, "Published results"; paper §4.1)', False),
    ("run.cfg", "# (docs/methods/zskt.md §8)", True),
    ("page.md", "(see [notes](docs/methods/zskt.md) §7-8, §9.3)", False),
    ("page.md", "docs/methods/zskt.md §7-8, §9.3", False),
    ("page.md", "docs/methods/zskt.md §8-99", True),
])
def test_only_pages_cite_sections_by_number_and_those_exist(tmp_path, name, text, bad):
    citing = tmp_path / name
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
