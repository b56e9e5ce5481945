"""The documentation's relative links resolve, and README.md stays short.

Every Markdown link or image in README.md and docs/**/*.md whose target is a relative path must
name a file or directory of the repository; a ``#fragment`` must name a heading of the target
page. Pages other engineers are still writing (docs/methods/, docs/architecture.md) are not
required to exist yet.
"""
import glob
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_LIMIT_BYTES = 15_000
# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)


def _pages():
    pages = [os.path.join(ROOT, "README.md")]
    pages += glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    return sorted(pages)


def _relative_links(page):
    with open(page, encoding="utf-8") as f:
        text = CODE_BLOCK.sub("", f.read())
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            continue  # http:, https:, mailto:
        yield target


def _anchor(heading):
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page):
    with open(page, encoding="utf-8") as f:
        text = CODE_BLOCK.sub("", f.read())
    return {_anchor(m) for m in re.findall(r"^#+\s+(.*)$", text, re.M)}


def _broken_links(page, root=ROOT):
    broken = []
    for target in _relative_links(page):
        path, _, fragment = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        inside = os.path.relpath(resolved, root).replace(os.sep, "/")
        if inside.startswith("..") or os.path.isabs(path):
            broken.append(f"{target} (outside the repository)")
        elif not os.path.exists(resolved):
            broken.append(f"{target} (no such file)")
        elif fragment and resolved.endswith(".md") and fragment not in _anchors(resolved):
            broken.append(f"{target} (no such heading)")
    return broken


@pytest.mark.parametrize("page", _pages(), ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(page):
    assert _broken_links(page) == []


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A `Title`, here\n[ok](#a-title-here) [gone](missing.md) [bad](#nowhere)\n"
                    "[out](../x.md) [web](https://example.org/y.md)\n"
                    "```\n[in code](ignored.md)\n```\n")
    assert _broken_links(str(page), root=str(tmp_path)) == [
        "missing.md (no such file)", "#nowhere (no such heading)",
        "../x.md (outside the repository)"]


def test_readme_is_short():
    size = os.path.getsize(os.path.join(ROOT, "README.md"))
    assert size < README_LIMIT_BYTES, f"README.md is {size} bytes; move detail to docs/"


def test_readme_layout_lists_every_top_level_entry():
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    entries = sorted({path.split("/", 1)[0] for path in tracked})
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        layout = f.read().split("## Layout", 1)[-1]
    assert [name for name in entries if f"`{name}" not in layout] == []
