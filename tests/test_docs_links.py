"""The documentation holds together: links resolve, and a new user has one path through it.

* every relative link of README.md and docs/*.md points at a file that exists and, with a
  ``#fragment``, at a heading (or ``<a id>``) of that file;
* the reading path — getting started, concepts, architecture, configuration, security,
  benchmarks, troubleshooting — is the numbered list of README.md's "Documentation" section,
  in that order, and each page of it ends with a "Next" section linking the page after it.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
READING_PATH = [
    "getting-started.md",
    "concepts.md",
    "architecture.md",
    "configuration.md",
    "security.md",
    "benchmarks.md",
    "troubleshooting.md",
]

#: A fence opener: up to three spaces (more inside list items), three or more backticks or
#: tildes, and an info string without backticks (CommonMark), so a line that starts with an
#: inline code span such as four backticks is not a fence.
_OPENER = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})[^`]*$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def outside_fences(text: str) -> str:
    """``text`` without its fenced code blocks."""
    kept = []
    fence = None
    for line in text.splitlines():
        if fence is None:
            opener = _OPENER.match(line)
            if opener:
                fence = opener["fence"]
            else:
                kept.append(line)
        elif line.strip() == fence:
            fence = None
    return "\n".join(kept)


def prose(text: str) -> str:
    """``text`` without its fenced code blocks and inline code."""
    return re.sub(r"`+[^`\n]*`+", "", outside_fences(text))


def slug(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"`", "", title.strip().lower())
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set(re.findall(r'<a id="([^"]+)"', text))
    seen: dict[str, int] = {}
    for line in outside_fences(text).splitlines():
        heading = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if heading:
            base = slug(heading[1])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in _LINK.findall(prose(text)):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (
            fragment
            and file.suffix == ".md"
            and fragment not in anchors(file.read_text(encoding="utf-8"))
        ):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Some `code` here\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#some-code-here) [gone](c.md) [bad anchor](a.md#nope) [self](#top)\n"
        '`[not a link](x.md)`\n\n```\n[also not](y.md)\n```\n<a id="top"></a>\n'
    )
    assert broken_links(page) == ["c.md", "a.md#nope"]


def test_readme_lists_the_reading_path_in_order() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Documentation") :]
    numbered = re.findall(r"^\d+\. \[[^]]+\]\(docs/([\w-]+\.md)\)", section, flags=re.MULTILINE)
    assert numbered == READING_PATH


@pytest.mark.parametrize(("page", "following"), list(itertools.pairwise(READING_PATH)))
def test_each_page_of_the_path_leads_to_the_next(page: str, following: str) -> None:
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    last_section = text[text.rindex("\n## ") :]
    assert last_section.startswith("\n## Next\n")
    assert f"]({following})" in last_section
