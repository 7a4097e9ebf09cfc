"""Every setting is read through ``Settings`` (config.py): no module of the package reads the
environment itself, so that a value from the config file is never ignored by one part of the
service, and every variable is documented and validated in one place (issue 11)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import identity_sync
from identity_sync.config import Settings

PACKAGE = Path(identity_sync.__file__).parent
#: The modules allowed to touch the environment, with what they may do and why.
ALLOWED: dict[str, str] = {
    # The one reader: Settings (IDSYNC_*), IDSYNC_CONFIG, XDG_DATA_HOME, and prometheus-client's own
    # PROMETHEUS_MULTIPROC_DIR, which the library reads itself (so it cannot be a setting of ours).
    "config.py": "read",
    # `serve --workers N` passes IDSYNC_WORKERS and PROMETHEUS_MULTIPROC_DIR to the worker processes
    # uvicorn spawns, which build their Settings from the environment they inherit: writes only.
    "cli/serve.py": "write",
}


def _environment_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, kind) of each use of the environment: kind is ``write`` for an assignment to
    ``os.environ[…]`` or ``os.environ.pop(…)``, else ``read``."""
    uses: list[tuple[int, str]] = []
    stores = {id(node.value) for node in ast.walk(tree)
              if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del)}
    pops = {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "pop"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os" and \
                {alias.name for alias in node.names} & {"environ", "getenv", "environb", "getenvb"}:
            uses.append((node.lineno, "read"))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in ("getenv", "getenvb", "environb"):
                uses.append((node.lineno, "read"))
            elif node.attr in ("environ", "putenv", "unsetenv"):
                uses.append((node.lineno, "write" if id(node) in stores | pops or node.attr != "environ" else "read"))
    return uses


def test_only_config_reads_the_environment() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        uses = _environment_uses(ast.parse(path.read_text("utf-8")))
        allowed = ALLOWED.get(name)
        bad = [line for line, kind in uses if allowed is None or (allowed == "write" and kind == "read")]
        if bad:
            found[name] = bad
    assert found == {}, f"read the environment through Settings (config.py), not here: {found}"


def test_the_check_sees_reads_and_writes() -> None:
    tree = ast.parse("import os\nfrom os import getenv\na = os.environ.get('X')\nb = os.getenv('Y')\n"
                     "os.environ['Z'] = '1'\nos.environ.pop('Z', None)\nc = 'W' in os.environ\n")
    assert sorted(_environment_uses(tree)) == [(2, "read"), (3, "read"), (4, "read"), (5, "write"), (6, "write"),
                                               (7, "read")]


def test_every_variable_the_service_reads_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDSYNC_CONFIG", "")
    monkeypatch.setenv("IDSYNC_WORKERS", "3")
    monkeypatch.setenv("IDSYNC_RATE_LIMIT_STORE", "memory")
    settings = Settings()
    assert (settings.workers, settings.rate_limit_store) == (3, "memory")
