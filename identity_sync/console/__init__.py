"""The web console at ``/admin`` (docs/console.md): server-rendered pages (Starlette + Jinja2),
operators' sessions and CSRF protection (auth.py), what the pages show (pages.py)."""

from identity_sync.console.routes import console_routes

__all__ = ["console_routes"]
