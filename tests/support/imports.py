"""The project's imports as its source states them, for tests/docs/project-imports.md.

Every module of the four packages is parsed (ast), never imported, and every
`import` and `from ... import` statement in it is an import: at module level
or inside a function, a class or a `try`. Statements under `if TYPE_CHECKING:`
(or `if typing.TYPE_CHECKING:`) are left out: they never run.

An import names the module it loads: `from gage_queue import active` loads
`gage_queue.active` when that is a module of the project, else the package
`gage_queue` (its `__init__`); relative imports are resolved against the
importing module. The parent packages Python also initialises on the way
(`gage_queue/__init__.py` for `import gage_queue.locks`) are not counted as
imports of their own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("gage_runs", "gage_queue", "gage_worker", "gage_submit")
# Third-party packages whose place in the project is a rule.
WATCHED = ("celery", "kombu", "billiard")

# Which project packages a package may import, and where it may import the
# watched third-party packages (module prefixes; absent: nowhere).
ALLOWED_PACKAGES = {
    "gage_runs": (),
    "gage_queue": ("gage_runs",),
    "gage_submit": ("gage_queue", "gage_runs"),
    "gage_worker": ("gage_queue", "gage_runs"),
}
# Rules for the watched packages: gage_runs uses none, gage_queue kombu in
# its broker package only. gage_submit and gage_worker have none (shown only;
# that `gage_submit.cli` loads none of them is checked by running it).
ALLOWED_WATCHED: dict[str, dict[str, tuple[str, ...]] | None] = {
    "gage_runs": {},
    "gage_queue": {"kombu": ("gage_queue.broker",)},
    "gage_submit": None,
    "gage_worker": None,
}


@dataclass(frozen=True)
class Import:
    """One import statement's target, in `module` at `path:line`."""

    module: str  # the importing module
    target: str  # the module it loads (a project module, or a dotted third-party name)
    path: str  # relative to the repo
    line: int
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=4)
def project_modules(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of the packages under `root`: dotted name -> source file."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: list[ast.stmt], in_function: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under `body`, skipping `if TYPE_CHECKING:` blocks."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.orelse, in_function)
            continue
        nested = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                  ast.Lambda))
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, field, ()) or ():
                if isinstance(child, ast.stmt):
                    yield from _statements([child], nested)
                elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                    yield from _statements(child.body, nested)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, root: Path = REPO, packages: tuple[str, ...] = PACKAGES
               ) -> list[Import]:
    """The imports of one project module, in source order."""
    modules = project_modules(root, packages)
    path = modules[module]
    tree = ast.parse(path.read_text(), str(path))
    rel = str(path.relative_to(root))
    found = []
    for node, in_function in _statements(tree.body, False):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _resolve(module, path.name == "__init__.py", node)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        for target in dict.fromkeys(targets):
            found.append(Import(module, target, rel, node.lineno, in_function))
    return sorted(found, key=lambda i: i.line)


@lru_cache(maxsize=4)
def all_imports(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> tuple[Import, ...]:
    return tuple(i for module in project_modules(root, packages)
                 for i in imports_of(module, root, packages))


def package_of(name: str) -> str:
    return name.split(".")[0]


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def show_package_imports() -> None:
    """Per package, the other project packages and the watched packages it imports."""
    for package in PACKAGES:
        imported = sorted({
            package_of(i.target) for i in all_imports()
            if package_of(i.module) == package and package_of(i.target) != package
            and package_of(i.target) in (*PACKAGES, *WATCHED)
        })
        print(f"{package}: {', '.join(imported) or '-'}")


def show_watched(package: str) -> None:
    """Which (sub)packages of `package` have modules importing a watched third-party package."""
    modules = project_modules()
    for watched in WATCHED:
        where = sorted({
            i.module if modules[i.module].name == "__init__.py" else i.module.rpartition(".")[0]
            for i in all_imports()
            if package_of(i.module) == package and package_of(i.target) == watched
        })
        print(f"{watched}: {', '.join(where) or '-'}")


def violations() -> list[str]:
    """Imports that break the rules, one line each with its file and line."""
    found = []
    for i in all_imports():
        package, target = package_of(i.module), package_of(i.target)
        if target in PACKAGES and target != package and target not in ALLOWED_PACKAGES[package]:
            found.append(f"{i.where}: {i.module} imports {i.target}"
                         f" ({package} may import {' and '.join(ALLOWED_PACKAGES[package]) or 'none of the others'})")
        elif target in WATCHED and ALLOWED_WATCHED[package] is not None and not _within(
                i.module, ALLOWED_WATCHED[package].get(target, ())):
            allowed = ALLOWED_WATCHED[package].get(target)
            found.append(f"{i.where}: {i.module} imports {i.target}"
                         f" ({target} {'only in ' + ', '.join(allowed) if allowed else 'nowhere in ' + package})")
    return found


def show_violations() -> None:
    print("\n".join(violations()) or "none")


def module_graph(root: Path = REPO, packages: tuple[str, ...] = PACKAGES
                 ) -> dict[str, dict[str, Import]]:
    """Project module -> the project modules it imports (-> the first import of each)."""
    modules = project_modules(root, packages)
    graph: dict[str, dict[str, Import]] = {name: {} for name in modules}
    for i in all_imports(root, packages):
        if i.target in modules and i.target != i.module:
            graph[i.module].setdefault(i.target, i)
    return graph


def import_cycles(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> list[list[Import]]:
    """One cycle of imports (each edge an `Import`) per strongly connected group of modules."""
    graph = module_graph(root, packages)
    cycles = []
    for group in _strongly_connected(graph):
        if len(group) > 1:
            cycles.append(_cycle_in(graph, group))
    return cycles


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; groups in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(sorted(group))
    return sorted(groups)


def _cycle_in(graph: dict[str, dict[str, Import]], group: list[str]) -> list[Import]:
    """A shortest cycle through the group's first module (breadth first, inside the group)."""
    start, members = group[0], set(group)
    previous: dict[str, Import] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target, edge in sorted(graph[node].items()):
            if target not in members:
                continue
            if target == start:
                path = [edge]
                while path[0].module != start:
                    path.insert(0, previous[path[0].module])
                return path
            if target not in previous:
                previous[target] = edge
                queue.append(target)
    raise AssertionError(f"no cycle through {start} in {group}")


def format_cycle(cycle: list[Import]) -> str:
    """`a -> b -> a`, then each import with its file and line."""
    names = " -> ".join([cycle[0].module, *(edge.target for edge in cycle)])
    lines = [f"  {edge.where}: {edge.module} imports {edge.target}"
             f"{' (in a function)' if edge.in_function else ''}" for edge in cycle]
    return "\n".join([names, *lines])
