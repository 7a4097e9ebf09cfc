"""The ``identity-sync`` command. Its commands, options, ``--json`` keys, exit codes and environment
variables are a public interface that scripts rely on: extend it, don't change it.

One module per command group, each registering itself on ``app`` below; ``_common`` holds what they
share (configuration, database, errors, output) and imports none of them, so that the modules form no
import cycle (tests/cli/test_package.py checks it).
"""

from __future__ import annotations

import typer

from identity_sync.cli import audit, auth, jobs, operations, operators, serve, tenants

app = typer.Typer(help="identity-sync: a SCIM 2.0 provisioning target for Microsoft Entra ID and Okta.",
                  no_args_is_help=True, add_completion=False)
# The order of registration is the order of `identity-sync --help`.
operations.register(app, jobs.job_app)  # engine; job start|pause|history (docs/engine.md)
serve.register(app)  # serve, migrate
tenants.register(app)  # tenant, token
audit.register(app)  # tombstones, audit
auth.register(app)  # client, keys, entra (docs/security.md)
jobs.register(app)  # job: the provisioning engine (docs/engine.md)
operators.register(app)  # operator: who may log in to the web console (docs/console.md)


def main() -> None:
    app(prog_name="identity-sync")


__all__ = ["app", "main"]
