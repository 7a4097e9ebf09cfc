"""``identity-sync operator …``: who may log in to the web console at ``/admin`` (docs/console.md).
Registered on the main command by ``cli/__init__.py``; its commands, options and ``--json`` keys are a
public interface, like the rest of the CLI. A password is never an option's value (it would be
in the shell's history and in ``ps``): it comes from a file or is typed, hidden, twice."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer

from identity_sync.cli._common import fail, open_database, print_rows
from identity_sync.service.operators import ROLES, TENANT_ADMIN, OperatorError, OperatorService, check_password

operator_app = typer.Typer(help="Operators of the web console (/admin): create, list, disable, set a password.",
                           no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def register(app: typer.Typer) -> None:
    app.add_typer(operator_app, name="operator")


def _service() -> OperatorService:
    _, db = open_database()
    return OperatorService(db)


def _fail(message: str) -> None:
    fail(message)


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            # One line: a trailing newline (echo "…" > file) is not part of the password.
            return password_file.read_text("utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"--password-file {password_file} cannot be read: {getattr(exc, 'strerror', None) or exc}")
    try:
        first = getpass.getpass("Password: ")
        check_password(first)
        if getpass.getpass("Password (again): ") != first:
            _fail("the passwords differ")
    except OperatorError as exc:
        _fail(str(exc))
    except (EOFError, KeyboardInterrupt):
        _fail("no password given (type it at the prompt, or use --password-file FILE)")
    return first


@operator_app.command("create")
def operator_create(
    name: str,
    role: Annotated[str, typer.Option(help=f"What the operator may do: {', '.join(ROLES)} (viewer: see only; "
                                           "tenant-admin: one tenant only, with --tenant).")] = "viewer",
    tenant: Annotated[str | None, typer.Option("--tenant", help="The one tenant a tenant-admin sees and manages.")]
    = None,
    password_file: Annotated[Path | None, typer.Option("--password-file", help="A file holding the password (its "
                                                       "first line); else it is asked for, twice.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an operator who may log in to the console (password: 12 characters or more)."""
    if role not in ROLES:
        _fail(f"--role must be one of {', '.join(ROLES)}")
    if (role == TENANT_ADMIN) != (tenant is not None):
        _fail("--role tenant-admin needs --tenant NAME, and --tenant needs --role tenant-admin")
    service = _service()  # before the prompt: no password is asked for a database that is not there
    password = _password(password_file)
    try:
        operator = service.create(name, role, password, tenant=tenant)
    except OperatorError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(operator.describe()))
    else:
        scope = f" of tenant '{operator.tenant}'" if operator.tenant else ""
        typer.echo(f"Operator '{operator.name}' created ({operator.role}{scope}); log in at /admin/login.")


@operator_app.command("list")
def operator_list(as_json: JsonFlag = False) -> None:
    """List operators (never their passwords or hashes)."""
    rows = [o.describe() for o in _service().list()]
    if not as_json:
        rows = [{**row, "disabled": "yes" if row["disabled"] else "no"} for row in rows]
    print_rows(rows, as_json, "operators", ("operator", "role", "tenant", "created_at", "disabled"))


@operator_app.command("disable")
def operator_disable(name: str) -> None:
    """Disable an operator: no more logins, and their open console sessions end."""
    try:
        _service().disable(name)
    except OperatorError as exc:
        _fail(str(exc))
    typer.echo(f"Operator '{name}' disabled.")


@operator_app.command("password")
def operator_password(
    name: str,
    password_file: Annotated[Path | None, typer.Option("--password-file", help="A file holding the new password "
                                                       "(its first line); else it is asked for, twice.")] = None,
) -> None:
    """Set an operator's password; their open console sessions end."""
    service = _service()
    password = _password(password_file)
    try:
        service.set_password(name, password)
    except OperatorError as exc:
        _fail(str(exc))
    typer.echo(f"Operator '{name}': password changed; their console sessions have ended.")
