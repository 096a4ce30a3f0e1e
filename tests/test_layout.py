"""Package boundaries: cmdline sits below everything, shared SQuAD code below both the harness and the compression
pipeline, and the applications (experiments, benchmarks, submission) above them all. Imports point one way inside
every package and between packages; a ``python -m PACKAGE`` child process a file starts counts as an import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# every top-level package of the checkout but the tests: squad, engine_introspection, harness, compression, experiments...
_PROJECT_PACKAGES = tuple(sorted(path.parent.name for path in REPO.glob("*/__init__.py") if path.parent.name != "tests"))


def _python_m_modules(tree: ast.AST, packages: tuple[str, ...] = _PROJECT_PACKAGES) -> set[str]:
    """The project modules a file starts as ``python -m MODULE`` child processes: a list or tuple literal in which
    "-m", right after the interpreter (``sys.executable``, or any expression but a string literal), is followed by a
    string naming a module of ``packages`` (``[sys.executable, "-m", "harness", "run", ...]``). Not counted: a string
    before "-m" (``["python", "-m", ...]``: a command line shown to the user) and ``("-m", NAME)`` alone (a pattern to
    match), neither starts a process; nor an argv built in pieces (``["-m", NAME, ...]`` spliced in later)."""
    found = set()
    for node in ast.walk(tree):
        # harness.isolated.run_module("pkg.module", args): the harness's own way to start a python -m child
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "run_module"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                and node.args[0].value.split(".")[0] in packages):
            found.add(node.args[0].value)
        if not isinstance(node, (ast.List, ast.Tuple)):
            continue
        for before, flag, module in zip(node.elts, node.elts[1:], node.elts[2:]):
            if (isinstance(flag, ast.Constant) and flag.value == "-m" and not isinstance(before, ast.Constant)
                    and isinstance(module, ast.Constant) and isinstance(module.value, str)
                    and module.value.split(".")[0] in packages):
                found.add(module.value)
    return found


def _imported_top_packages(package: str) -> dict[str, set[str]]:
    """Top-level package of every import in ``package``, and of every ``python -m`` child it starts, by file."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {module.split(".")[0] for module in _python_m_modules(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


# cmdline (errors, signals, child processes of every command line) is below everything; experiments/, benchmarks/
# and submission/ (applications of compression and of the harness) above everything: nothing imports them or starts
# them as ``python -m`` children, nor does one application import another
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
# could never import its own submodules, which is what packages are for. A ``python -m`` child a file starts
# (:func:`_python_m_modules`) depends on the module run: PACKAGE/__main__.py where there is one.


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
    packages = tuple(sorted({name.split(".")[0] for name in modules}))
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
        targets.update(f"{module}.__main__" if f"{module}.__main__" in modules else module
                       for module in _python_m_modules(ast.parse(path.read_text(), filename=str(path)), packages))
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


@pytest.mark.parametrize("package", _PROJECT_PACKAGES)
def test_the_modules_of_each_package_import_one_way(package):
    modules = {name: path for name, path in _project_modules().items() if name.split(".")[0] == package}
    graph = {name: {t for t in targets if t in modules} for name, targets in _import_graph(modules).items()}
    cycles = _cycles(graph)
    assert not cycles, f"import cycles in {package}/:\n" + "\n".join(" -> ".join(c) for c in cycles)


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
    """The tests above pass on an empty answer, so the finder itself is checked on known graphs."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0][:4] == ["a", "b", "c", "a"]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_python_m_children_count_as_imports(tmp_path):
    """A ``python -m`` child a file starts depends on the module it runs (its __main__), and can close a cycle; a
    command line shown to the user, a pattern to match or a module outside the project is no dependency."""
    tree = ast.parse('run([sys.executable, "-m", "experiments", "real-accuracy"])\n'
                     'run(("taskset", "-c", cores, sys.executable, "-m", "harness.isolated"))\n'
                     'shown = ["python", "-m", "submission", *argv]\n'
                     'patterns = (("-m", "benchmarks"), ("-m", "pytest"))\n'
                     'run([sys.executable, "-m", "pytest", "-q"])\n'
                     'run_module("benchmarks.jobs", [job, result], result_path=result)\n')
    assert _python_m_modules(tree, ("benchmarks", "experiments", "harness", "submission")) == {
        "experiments", "harness.isolated", "benchmarks.jobs"}
    files = {"pkg": "", "pkg.__main__": "from pkg.cli import main\n", "pkg.cli": "from pkg import runner\n",
             "pkg.runner": "import subprocess, sys\n\n\ndef again():\n    subprocess.run([sys.executable, '-m', 'pkg'])\n"}
    modules = {}
    for name, text in files.items():
        modules[name] = tmp_path / f"{name.replace('.', '_')}.py"
        modules[name].write_text(text)
    graph = _import_graph(modules)
    assert graph["pkg.runner"] == {"pkg.__main__"}
    assert _cycles(graph)[0][:4] == ["pkg.__main__", "pkg.cli", "pkg.runner", "pkg.__main__"]
