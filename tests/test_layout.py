"""Package boundaries: cmdline sits below everything, shared SQuAD code below both the harness and the compression
pipeline, and the experiments above them all."""

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


# cmdline (errors, signals, child processes of every command line) is below everything; experiments/, benchmarks/
# and submission/ (applications of compression and of the harness) above everything: nothing imports them, nor
# does one application import another (``obert-compress experiment`` runs ``python -m experiments`` as a child
# process)
_APPLICATIONS = {"experiments", "benchmarks", "submission"}


@pytest.mark.parametrize("package, forbidden", [("cmdline", {"squad", "engine_introspection", "harness", "compression",
                                                             *_APPLICATIONS}),
                                                ("squad", {"harness", "compression", *_APPLICATIONS}),
                                                ("engine_introspection", {"harness", "compression", "squad", *_APPLICATIONS}),
                                                ("harness", _APPLICATIONS),
                                                ("compression", {"harness", *_APPLICATIONS}),
                                                ("experiments", _APPLICATIONS - {"experiments"}),
                                                ("benchmarks", _APPLICATIONS - {"benchmarks"}),
                                                ("submission", _APPLICATIONS - {"submission"})])
def test_shared_code_does_not_reach_into_the_harness(package, forbidden):
    offenders = {path: sorted(names & forbidden) for path, names in _imported_top_packages(package).items()
                 if names & forbidden}
    assert not offenders, f"{package}/ must not import {sorted(forbidden)}: {offenders}"


# --- Import layering: every import points one way (issue 25) ---
# Counted: every import statement anywhere in a file, function bodies included (a lazy import is still a
# dependency, only a later one). ``import a.b`` and ``from a.b import c`` depend on a.b, or on a.b.c when that is
# a module; a package's __init__ is a module of its own. Not counted: the parent packages Python initialises on
# the way (importing harness.backends.base runs harness/backends/__init__.py first), or a package's __init__
# could never import its own submodules, which is what packages are for.

# every top-level package of the checkout but the tests: squad, engine_introspection, harness, compression, experiments...
_PROJECT_PACKAGES = tuple(sorted(path.parent.name for path in REPO.glob("*/__init__.py") if path.parent.name != "tests"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(path): path for package in _PROJECT_PACKAGES if (REPO / package / "__init__.py").is_file()
            for path in sorted((REPO / package).rglob("*.py"))}


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (see above for what counts)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the package, up level - 1 packages
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                targets.update(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                               for alias in node.names)
        # ``import a.b.c`` of a name that is not a module (never here) falls back to the longest module prefix
        graph[name] = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one node (Tarjan), as a readable path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:  # a shortest way back to the start, for the message
        start = min(component)
        paths = {start: [start]}
        frontier = [start]
        while frontier and start not in {n for f in frontier for n in graph[f]}:
            nxt_frontier = []
            for node in frontier:
                for nxt in sorted(graph[node] & component):
                    if nxt not in paths:
                        paths[nxt] = paths[node] + [nxt]
                        nxt_frontier.append(nxt)
            frontier = nxt_frontier
        last = next(f for f in frontier if start in graph[f])
        cycles.append(paths[last] + [start] + [f"(and {len(component)} modules in all: {sorted(component)})"])
    return cycles


def test_harness_modules_import_one_way():
    modules = {name: path for name, path in _project_modules().items() if name.split(".")[0] == "harness"}
    graph = {name: {t for t in targets if t in modules} for name, targets in _import_graph(modules).items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles in harness/:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_top_level_packages_import_one_way():
    """Between the top-level packages (squad, engine_introspection, harness, compression, experiments...) a cycle, e.g. harness ->
    compression -> harness, is refused (harness may use compression, never the reverse)."""
    assert {"squad", "engine_introspection", "harness", "compression"} <= set(_PROJECT_PACKAGES), _PROJECT_PACKAGES
    modules = _project_modules()
    graph: dict[str, set[str]] = {}
    for name, targets in _import_graph(modules).items():
        graph.setdefault(name.split(".")[0], set()).update(t.split(".")[0] for t in targets)
    graph = {package: targets - {package} for package, targets in graph.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles between packages:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles():
    """The two tests above pass on an empty answer, so the finder itself is checked on known graphs."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0][:4] == ["a", "b", "c", "a"]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
