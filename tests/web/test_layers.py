"""web/ is the thin HTTP layer: it parses requests and renders responses over the services, and
reaches neither the storage layer nor SQLAlchemy itself, save the exceptions listed below. The
console (console/) is a thin HTTP layer too: it never imports SQLAlchemy (a database that is down
reaches both as storage's DatabaseUnavailable, issue 11 item 7)."""

from __future__ import annotations

import ast
from pathlib import Path

import identity_sync.console
import identity_sync.web

WEB = Path(identity_sync.web.__file__).parent
CONSOLE = Path(identity_sync.console.__file__).parent
#: Modules of web/ that still import storage/, and why. None may import SQLAlchemy.
EXCEPTIONS = {
    # Builds the app: opens the Database it is given or creates one, and answers storage's
    # DatabaseUnavailable (database down, locked, pool exhausted) with 503 + Retry-After. The
    # resource type it renders is StoredResource's.
    "app.py": {"identity_sync.storage.db", "identity_sync.storage.errors", "identity_sync.storage.resources"},
    # Chooses where the rate limiter's buckets live from the Database (its URL and autocommit engine).
    "limits.py": {"identity_sync.storage.db"},
}
#: Modules of console/ that still import SQLAlchemy, and why (every other import of it fails).
CONSOLE_SQLALCHEMY: dict[str, str] = {}


def _imported(source: str) -> set[str]:
    """Every module ``source`` imports (``from a.b import c`` counts as ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _imports(path: Path) -> set[str]:
    found = _imported(path.read_text("utf-8"))
    return {name for name in found if name.startswith(("identity_sync.storage", "sqlalchemy"))}


def _is_sqlalchemy(module: str) -> bool:
    return module == "sqlalchemy" or module.startswith("sqlalchemy.")


def test_web_does_not_import_storage_or_sqlalchemy() -> None:
    found = {path.name: _imports(path) for path in sorted(WEB.glob("*.py"))}
    unexpected = {name: sorted(modules - EXCEPTIONS.get(name, set())) for name, modules in found.items()
                  if modules - EXCEPTIONS.get(name, set())}
    assert unexpected == {}, f"web/ should reach storage through service/: {unexpected}"
    # An exception that no longer holds is taken off the list.
    stale = {name: sorted(modules - found.get(name, set())) for name, modules in EXCEPTIONS.items()
             if modules - found.get(name, set())}
    assert stale == {}, f"remove from EXCEPTIONS: {stale}"
    assert not any(_is_sqlalchemy(m) for modules in EXCEPTIONS.values() for m in modules)


def test_web_and_console_do_not_import_sqlalchemy() -> None:
    """Database errors are storage's DatabaseUnavailable: no HTTP module catches, or otherwise
    needs, anything of SQLAlchemy's."""
    web = {f"web/{path.name}": sorted(m for m in _imports(path) if _is_sqlalchemy(m)) for path in WEB.glob("*.py")}
    console = {f"console/{path.name}": sorted(m for m in _imports(path) if _is_sqlalchemy(m))
               for path in CONSOLE.glob("*.py") if path.name not in CONSOLE_SQLALCHEMY}
    found = {name: modules for name, modules in {**web, **console}.items() if modules}
    assert found == {}, f"move the database work into storage/ or service/: {found}"
    stale = [name for name in CONSOLE_SQLALCHEMY if not any(map(_is_sqlalchemy, _imports(CONSOLE / name)))]
    assert stale == [], f"remove from CONSOLE_SQLALCHEMY: {stale}"


def test_the_audit_sees_sqlalchemy_imports() -> None:
    """The audit itself: each spelling of an import of SQLAlchemy is found, also inside a function."""
    for source in ("import sqlalchemy as sa", "from sqlalchemy.exc import OperationalError",
                   "from sqlalchemy import exc", "import sqlalchemy.exc",
                   "def f():\n    from sqlalchemy.engine import make_url\n"):
        assert any(map(_is_sqlalchemy, _imported(source))), source
    assert not any(map(_is_sqlalchemy, _imported("import sqlalchemy_utils\nfrom identity_sync import errors")))


#: SQLAlchemy's names for a database that is down, which only storage/ may use (it translates
#: them into DatabaseUnavailable).
_OUTAGE_NAMES = {"OperationalError", "DBAPIError", "DisconnectionError", "InterfaceError", "connection_invalidated"}


def _outage_names(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found.update(alias.name for alias in node.names if alias.name in _OUTAGE_NAMES)
        elif isinstance(node, ast.Attribute) and node.attr in _OUTAGE_NAMES:
            found.add(node.attr)
    return found


def test_only_storage_handles_a_database_outage_by_sqlalchemy_s_names() -> None:
    package = WEB.parent
    found = {str(path.relative_to(package)): sorted(names) for path in sorted(package.rglob("*.py"))
             if path.relative_to(package).parts[0] != "storage"
             and (names := _outage_names(path.read_text("utf-8")))}
    assert found == {}, f"catch storage.errors.DatabaseUnavailable instead: {found}"
    assert _outage_names("from sqlalchemy.exc import OperationalError") == {"OperationalError"}
    assert _outage_names("try:\n    pass\nexcept sa.exc.DBAPIError as e:\n    e.connection_invalidated\n") == {
        "DBAPIError", "connection_invalidated"}
