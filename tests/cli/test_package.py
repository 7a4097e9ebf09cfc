"""The CLI package's shape: every module imports on its own, and the modules form no import cycle
(the old ``cli`` ↔ ``cli_auth`` one was hidden in function-level imports, so this reads every
import statement, lazy ones included, not only what ``import`` happens to execute)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import identity_sync
import identity_sync.cli

CLI = Path(identity_sync.cli.__file__).parent
MODULES = sorted(f"identity_sync.cli.{info.name}" for info in pkgutil.iter_modules([str(CLI)]))


def _imports(module: str) -> set[str]:
    """The identity_sync.cli modules that ``module`` imports anywhere in its source."""
    path = CLI / "__init__.py" if module == "identity_sync.cli" else CLI / f"{module.rsplit('.', 1)[1]}.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            # `from identity_sync.cli import jobs` imports the package and its module jobs.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{module}: use absolute imports"
            continue
        found.update(name for name in names if name == "identity_sync.cli" or name in MODULES)
    found.discard(module)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None (depth-first search with colours)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            cycle = visit(target, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_the_package_has_one_module_per_command_group() -> None:
    assert {"identity_sync.cli._common", "identity_sync.cli.serve", "identity_sync.cli.tenants",
            "identity_sync.cli.auth", "identity_sync.cli.jobs", "identity_sync.cli.operations",
            "identity_sync.cli.operators", "identity_sync.cli.audit"} <= set(MODULES)


def test_every_cli_module_imports_and_the_modules_form_no_cycle() -> None:
    for module in MODULES:
        assert importlib.import_module(module).__name__ == module
    graph = {module: _imports(module) for module in [*MODULES, "identity_sync.cli"]}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"
    # Only the package's __init__ (which builds the app) imports the package itself.
    assert not [m for m in MODULES if "identity_sync.cli" in graph[m]]
    # _common is what the others share: it imports none of them.
    assert graph["identity_sync.cli._common"] == set()


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_nothing_outside_the_cli_imports_it() -> None:
    """The CLI is the outermost layer: the service, web and engine never reach back into it."""
    package = Path(identity_sync.__file__).parent
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if CLI not in path.parents and "identity_sync.cli" in path.read_text("utf-8")
                 and path.name != "__main__.py"]
    assert offenders == []
