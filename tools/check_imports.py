"""Fail when the modules of a package import each other in a cycle (run by `nox -s lint`).

    python tools/check_imports.py PACKAGE [PACKAGE ...]     e.g. slang-marching-cubes

Reads packages/<package>/src/<module>/ as text (nothing is imported) and builds the graph of
imports between its modules: every `import` and `from ... import` anywhere in a module, also
inside functions (a lazy import still makes a cycle of the design), but not under
`if TYPE_CHECKING:` (annotations only). `from . import x` counts as an import of submodule `x`
when there is one, else of the package's `__init__`. A package's `__init__` re-exports its
modules, so edges into `__init__` are not followed (every module would otherwise be in a cycle
with it). Prints every cycle found and exits 1 if there is any. Standard library only.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_names(src: Path) -> dict[str, Path]:
    """{dotted module name: file} of every module below ``src`` (the folder holding the package)."""
    names = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
            if name == "TYPE_CHECKING":
                for inner in node.body:
                    skipped.update(id(n) for n in ast.walk(inner))
    return skipped


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` (file ``path``) imports."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph(src: Path) -> dict[str, set[str]]:
    """{module: modules it imports} for the package(s) below ``src``, edges into packages'
    ``__init__`` modules left out (see the module docstring)."""
    modules = module_names(src)
    inits = {name for name, path in modules.items() if path.name == "__init__.py"}
    return {name: imports_of(name, path, set(modules)) - inits for name, path in modules.items()}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    failed = False
    for package in argv:
        src = ROOT / "packages" / package / "src"
        if not src.is_dir():
            print(f"{package}: no folder {src}", file=sys.stderr)
            return 2
        graph = package_graph(src)
        found = cycles(graph)
        for component in found:
            print(f"{package}: import cycle between {', '.join(component)}")
        if not found:
            print(f"{package}: {len(graph)} modules, no import cycle")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
