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
