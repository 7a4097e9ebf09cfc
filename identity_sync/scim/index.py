"""The searchable values of a document, one entry per leaf value.

Storage keeps these entries in an indexed table so that a filter on *any* attribute (the seed
lets an admin choose any attribute as the matching property) is an index lookup, never a scan of
documents. Each entry is ``(path, element, key)``:

* ``path`` — the lower-cased attribute path, ``enterprise:attr`` for extension attributes (a
  short prefix per extension URN) and ``attr.sub`` for sub-attributes (:attr:`Resolved.index_path`);
* ``element`` — the position in a multi-valued attribute, so that ``emails[type eq "work" and
  value eq "x"]`` can require both terms to hold for the *same* email;
* ``key`` — the value in comparison form (:func:`value_key`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from identity_sync.scim import attributes as t
from identity_sync.scim.attributes import Attribute
from identity_sync.scim.registry import ResourceType, canonical_key, index_prefix

IndexEntry = tuple[str, int, str]


def value_key(attr: Attribute, value: Any) -> str:
    """The form in which a value of ``attr`` is indexed and compared: booleans as ``true``/
    ``false``, ``caseExact: false`` strings through :func:`canonical_key`, others verbatim."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if attr.type in (t.STRING, t.REFERENCE) and not attr.case_exact:
        return canonical_key(text)
    return text


def index_entries(rt: ResourceType, doc: dict[str, Any], keys: Iterable[str] | None = None) -> list[IndexEntry]:
    """The entries of ``doc``; with ``keys``, of those top-level attributes only (each top-level
    attribute's entries depend on its value alone)."""
    entries: list[IndexEntry] = []
    items = doc.items() if keys is None else ((key, doc[key]) for key in keys if key in doc)
    for key, value in items:
        extension = rt.extension(key)
        if extension is not None:
            prefix = index_prefix(extension.id)
            for ext_key, ext_value in value.items():
                attr = extension.attribute(ext_key)
                if attr is not None:
                    _add(entries, prefix + attr.name.lower(), attr, ext_value)
            continue
        attr = rt.common_attribute(key) or rt.core.attribute(key)
        if attr is not None and attr.name not in ("id", "meta"):
            _add(entries, attr.name.lower(), attr, value)
    return entries


def _add(entries: list[IndexEntry], path: str, attr: Attribute, value: Any) -> None:
    items = value if attr.multi_valued and isinstance(value, list) else [value]
    for element, item in enumerate(items):
        if attr.is_complex:
            if not isinstance(item, dict):
                continue
            for sub_name, sub_value in item.items():
                sub = attr.sub(sub_name)
                if sub is not None and sub_value is not None:
                    entries.append((f"{path}.{sub.name.lower()}", element, value_key(sub, sub_value)))
        elif item is not None:
            entries.append((path, element, value_key(attr, item)))
