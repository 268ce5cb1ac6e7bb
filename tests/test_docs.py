"""The docs are reference: every relative link and every path of this repository they name resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A repository path in backticks: `citycard/...`, `tests/...`, `docs/...` (globs and placeholders aside).
_PATH = re.compile(r"`((?:citycard|tests|docs|benchmarks|infra)/[^`\s:]+)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_and_paths_resolve(doc: Path):
    text = doc.read_text(encoding="utf-8")
    missing = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (doc.parent / target.split("#")[0]).exists():
            missing.append(target)
    for path in _PATH.findall(text):
        if any(c in path for c in "*<>{}") or path.endswith("/…"):
            continue
        if not (ROOT / path.rstrip(".,;")).exists():
            missing.append(path)
    assert not missing, f"{doc.name} names what does not exist: {missing}"
