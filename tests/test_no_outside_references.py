"""Every document the code cites is in the repository.

Code, flag help texts, flagfiles, bench scripts, tools and tests may cite Markdown pages (e.g.
``docs/methods/zskt.md §3``). A cited page must exist in this repository (``docs/...`` and
``README.md`` resolve from the repository root, other paths from the citing file's folder),
and a cited section must be a numbered heading of that page. Paths into the development
machine's shared notes (absolute, or relative out of the repository) are refused.
"""
from __future__ import annotations

import os
import re

import pytest

from helpers import REPO

SCANNED_DIRS = ("zskd_tf", "bench", "flags", "tools", "tests", os.path.join("docs", "methods"))
TEXT_SUFFIXES = (".py", ".sh", ".cfg", ".md", ".txt", ".toml", ".json", ".yaml", ".yml")

# A Markdown file name, optionally with folders, then any section numbers cited right after it:
# "docs/methods/zskt.md §3", "docs/methods/lopes.md §6, §7", "docs/methods/zskd.md §1-3".
_MD_REFERENCE = re.compile(
    r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b"
    r"((?:\s*,?\s*§\s?\d+(?:\.\d+)*(?:\s?[-–]\s?\d+(?:\.\d+)*)?)*)")
_SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)(?:\s?[-–]\s?(\d+(?:\.\d+)*))?")
# Written so that this file does not match itself.
_OUTSIDE_PATH = re.compile(r"/wor[k]/|\.\./share[d]")


def _scanned_files():
    for top in SCANNED_DIRS:
        for folder, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in sorted(files):
                if name.endswith(TEXT_SUFFIXES):
                    yield os.path.join(folder, name)


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
    """Outside references in one file, as ``file:line: problem`` strings."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    where = os.path.relpath(path, REPO)
    problems = []
    for number, line in enumerate(lines, 1):
        if _OUTSIDE_PATH.search(line):
            problems.append(f"{where}:{number}: path outside the repository: {line.strip()}")
        for match in _MD_REFERENCE.finditer(line):
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
    ("# see zskt" ".md §9.2", True),
    ("Spec: /wor" "k/shared/specs/lopes" ".md", True),
    ("see ../shar" "ed/seeds/", True),
    ("(docs/methods/zskt" ".md §99)", True),
    ("(docs/methods/zskt" ".md §8-99)", True),
    ("(docs/methods/zskt.md §7-8, §9.3)", False),
    ("(docs/methods/zskt.md §2)", False),
    ("user documentation: README.md", False),
])
def test_the_checker_tells_outside_references_apart(tmp_path, text, bad):
    citing = tmp_path / "module.py"
    citing.write_text(text + "\n", encoding="utf-8")
    assert bool(find_problems(str(citing))) == bad
