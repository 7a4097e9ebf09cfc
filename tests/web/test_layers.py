"""web/ is the thin HTTP layer: it parses requests and renders responses over the services, and
reaches neither the storage layer nor SQLAlchemy itself, save the exceptions listed below."""

from __future__ import annotations

import ast
from pathlib import Path

import identity_sync.web

WEB = Path(identity_sync.web.__file__).parent
#: Modules of web/ that still import storage/ or SQLAlchemy, and why.
EXCEPTIONS = {
    # Builds the app: opens the Database it is given or creates one, and answers OperationalError and
    # the pool's TimeoutError (database down, pool exhausted) with 503. Owned by the authentication
    # and middleware work of issue 11; translating those errors inside storage/ is left to it.
    "app.py": {"identity_sync.storage.db", "identity_sync.storage.resources", "sqlalchemy.exc"},
    # Chooses where the rate limiter's buckets live from the Database (its URL and autocommit engine).
    "limits.py": {"identity_sync.storage.db"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name.startswith(("identity_sync.storage", "sqlalchemy"))}


def test_web_does_not_import_storage_or_sqlalchemy() -> None:
    found = {path.name: _imports(path) for path in sorted(WEB.glob("*.py"))}
    unexpected = {name: sorted(modules - EXCEPTIONS.get(name, set())) for name, modules in found.items()
                  if modules - EXCEPTIONS.get(name, set())}
    assert unexpected == {}, f"web/ should reach storage through service/: {unexpected}"
    # An exception that no longer holds is taken off the list.
    stale = {name: sorted(modules - found.get(name, set())) for name, modules in EXCEPTIONS.items()
             if modules - found.get(name, set())}
    assert stale == {}, f"remove from EXCEPTIONS: {stale}"


def test_search_and_bulk_are_thin() -> None:
    """Root search and bulk execution live in service/: web/ only parses and renders them."""
    for name in ("search.py", "bulk.py"):
        tree = ast.parse((WEB / name).read_text("utf-8"))
        calls = {node.func.attr for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
        assert not calls & {"create", "replace", "patch", "delete"}, name  # no resource writes here
    bulk = (WEB / "bulk.py").read_text("utf-8")
    assert "bulkId:" not in bulk and "heapq" not in bulk  # references are resolved in service/bulk.py
