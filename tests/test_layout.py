"""Package boundaries: shared SQuAD code sits below both the harness and the compression pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imported_top_packages(package: str) -> dict[str, set[str]]:
    """Top-level package of every import in ``package``, by file."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


@pytest.mark.parametrize("package, forbidden", [("squad", {"harness", "compression"}),
                                                ("engines", {"harness", "compression", "squad"}),
                                                ("compression", {"harness"})])
def test_shared_code_does_not_reach_into_the_harness(package, forbidden):
    offenders = {path: sorted(names & forbidden) for path, names in _imported_top_packages(package).items()
                 if names & forbidden}
    assert not offenders, f"{package}/ must not import {sorted(forbidden)}: {offenders}"
