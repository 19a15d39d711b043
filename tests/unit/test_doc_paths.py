"""Every file path the docs, policies and Makefile name exists (a newcomer follows them)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# a repository path as the docs write it: a top-level folder, then a file with an extension
# (not one in an example error message, `policies/team.yaml:9:16: ...`)
_PATH = re.compile(
    r"(?<![\w/.-])"
    r"((?:docs|router|classifiers|policies|tests|bench|deploy)/[\w./-]*\w"
    r"\.(?:md|py|yaml|yml|jsonl|json|toml|skops))"
    r"(?![\w]|:\d)"
)


def test_every_path_the_docs_name_exists() -> None:
    sources = [REPO / "README.md", REPO / "Makefile", REPO / "policies/README.md"]
    sources += [*(REPO / "docs").glob("*.md"), *(REPO / "policies").glob("*.yaml")]
    named = {
        (str(source.relative_to(REPO)), found)
        for source in sources
        for found in _PATH.findall(source.read_text())
    }
    assert len(named) > 50  # (the pattern finds what the docs name)
    missing = sorted(f"{source}: {found}" for source, found in named if not (REPO / found).exists())
    assert missing == []


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as -."""
    found = set()
    for heading in re.findall(r"(?m)^#+ (.+)$", markdown):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_markdown_link_resolves_from_its_page() -> None:
    """A link in a page (README, docs/, policies/, classifiers/) points at a file that exists,
    relative to that page as GitHub reads it, and at a heading that exists in it."""
    pages = [REPO / "README.md", REPO / "policies/README.md", REPO / "classifiers/README.md"]
    pages += sorted((REPO / "docs").glob("*.md"))
    broken, checked = [], 0
    for page in pages:
        text = page.read_text()
        for target in _LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            checked += 1
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert checked > 30 and broken == []
