"""Sources the engine reads from, named by a job's ``--source`` specification:

* ``csv:DIR`` — a CSV export (``csv_source.py``);
* ``ldap://HOST:PORT/BASE_DN`` or ``ldaps://…`` — Active Directory or OpenLDAP (``ldap_source.py``,
  the ``[ldap]`` extra);
* ``graph:TENANT_ID`` — Microsoft Entra ID through Microsoft Graph (``graph_source.py``);
* ``scim:URL`` — any SCIM 2.0 service, one of our tenants included (``scim_source.py``).

Each kind is imported only when a job uses it, so an optional library is needed only by its users.
"""

from __future__ import annotations

from pathlib import Path

from identity_sync.engine.sources.base import Source, SourceOptions

KINDS = ("csv", "ldap", "ldaps", "graph", "scim")


class SourceSpecError(ValueError):
    """A ``--source`` that names no source we can read, or lacks what that source needs."""


def open_source(spec: str, options: SourceOptions | None = None) -> Source:
    """The source a job's ``--source`` names. Raises :class:`SourceSpecError` for a bad specification
    (checked when the job is created, not at its first cycle); connects lazily, at the first read."""
    options = options or SourceOptions()
    kind, _, rest = spec.partition(":")
    if kind == "csv" and rest:
        from identity_sync.engine.sources.csv_source import CsvSource

        directory = Path(rest).expanduser()
        if not directory.is_dir():
            raise SourceSpecError(f"source {spec!r}: {rest} is not a directory")
        return CsvSource(directory)
    if kind in ("ldap", "ldaps") and rest.startswith("//"):
        from identity_sync.engine.sources.ldap_source import open_ldap_source

        return open_ldap_source(spec, options)
    if kind == "graph" and rest:
        from identity_sync.engine.sources.graph_source import open_graph_source

        return open_graph_source(rest, options)
    if kind == "scim" and rest.startswith(("http://", "https://")):
        from identity_sync.engine.sources.scim_source import open_scim_source

        return open_scim_source(rest, options)
    raise SourceSpecError(f"source {spec!r}: expected one of csv:DIR, ldap://HOST:PORT/BASE_DN, ldaps://…, "
                          "graph:TENANT_ID, scim:URL")
