"""Stored resources as SCIM JSON: ``id``, ``schemas`` and ``meta`` added, references given their
``$ref``, and ``attributes``/``excludedAttributes`` applied (RFC 7644 §3.9)."""

from __future__ import annotations

from typing import Any

from identity_sync.errors import BadRequest
from identity_sync.scim import definitions as d
from identity_sync.scim.filter import parse_patch_path
from identity_sync.scim.registry import GROUP, USER, Resolved, ResourceType
from identity_sync.scim.resource import schemas_of
from identity_sync.service.resources import StoredResource, etag

LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
#: Default of ``IDSYNC_ATTRIBUTE_LIST_MAX_NAMES``: the most names in ``attributes`` or
#: ``excludedAttributes``. Every name is applied to every resource of a page, so 100,000 names
#: over a 1,000-resource page were 14 s of one worker's CPU (issue 11); the User schema with its
#: extensions has about 120 attribute and sub-attribute paths, so no honest list is longer.
MAX_NAMES = 200


def check_name_count(text: str | None, max_names: int, parameter: str) -> None:
    """``400 invalidValue`` (RFC 7644 §3.12: "not compatible with the operation") when ``text``
    names more than ``max_names`` attributes; counted before anything is parsed."""
    if text and text.count(",") >= max_names:
        names = sum(1 for part in text.split(",") if part.strip())
        if names > max_names:
            raise BadRequest(f"'{parameter}' names at most {max_names} attributes; {names} were given.",
                             "invalidValue")


def location(tenant_url: str, rt: ResourceType, resource_id: str) -> str:
    return f"{tenant_url}/{rt.endpoint}/{resource_id}"


def render(rt: ResourceType, stored: StoredResource, tenant_url: str,
           projection: Projection | None = None) -> dict[str, Any]:
    doc = stored.doc
    out: dict[str, Any] = {"schemas": schemas_of(rt, doc), "id": stored.id}
    out.update(doc)
    if rt is USER and d.ENTERPRISE_SCHEMA in doc and "manager" in doc[d.ENTERPRISE_SCHEMA]:
        manager = doc[d.ENTERPRISE_SCHEMA]["manager"]
        if "value" in manager:
            out[d.ENTERPRISE_SCHEMA] = {
                **doc[d.ENTERPRISE_SCHEMA],
                "manager": {**manager, "$ref": location(tenant_url, USER, manager["value"])},
            }
    for name, items in (stored.related or {}).items():
        if name == "members":
            out["members"] = [member(tenant_url, m["value"], m["type"]) for m in items]
        elif items:  # a User's `groups`, present only when it has some
            out["groups"] = [{"value": g["value"], "$ref": location(tenant_url, GROUP, g["value"]),
                              "display": g["display"], "type": "direct"} for g in items]
    out["meta"] = {
        "resourceType": rt.name,
        "created": stored.created_at,
        "lastModified": stored.last_modified,
        "location": location(tenant_url, rt, stored.id),
        "version": etag(stored.version),
    }
    return projection.apply(out) if projection else out


def member(tenant_url: str, member_id: str, kind: str) -> dict[str, Any]:
    return {"value": member_id, "$ref": location(tenant_url, USER if kind == "User" else GROUP, member_id),
            "type": kind}


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


class Projection:
    """``attributes`` (only these, plus ``returned: always``) or ``excludedAttributes``."""

    def __init__(self, rt: ResourceType, attributes: str | None, excluded: str | None, *,
                 max_names: int = MAX_NAMES) -> None:
        check_name_count(attributes, max_names, "attributes")
        check_name_count(excluded, max_names, "excludedAttributes")
        self.include = _paths(rt, attributes)
        self.exclude = _paths(rt, excluded)

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)

    def returns(self, attribute: str) -> bool:
        """Whether a core attribute with ``returned: default`` will be in the response: lets the
        caller skip loading what nobody asked for (``excludedAttributes=members``)."""
        if self.include:
            return any(r.container is None and r.attribute.name == attribute for r in self.include)
        return not any(r.container is None and r.attribute.name == attribute and r.sub is None
                       for r in self.exclude)

    def selects_sub_attribute_of(self, attribute: str) -> bool:
        return any(r.attribute.name == attribute and r.sub is not None for r in self.include)

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        if self.include:
            out: dict[str, Any] = {"schemas": resource["schemas"], "id": resource["id"]}
            for resolved in self.include:
                _copy(resource, out, resolved)
            return out
        out = dict(resource)
        for resolved in self.exclude:
            if resolved.target.returned != "always":
                _drop(out, resolved)
        return out


def _paths(rt: ResourceType, text: str | None) -> list[Resolved]:
    if not text:
        return []
    resolved = []
    for part in text.split(","):
        if not part.strip():
            continue
        extension = rt.extension(part.strip())
        if extension is not None:
            # A whole extension named by its URN: RFC 7644 §3.10 names attributes, but clients (and
            # our own engine's SCIM source) name the extension itself, meaning all its attributes.
            resolved += [rt.resolve(parse_patch_path(f"{extension.id}:{a.name}").attr, scim_type="invalidValue")
                         for a in extension.attributes]
            continue
        path = parse_patch_path(part.strip())
        if path.filter is not None:
            raise BadRequest("Attribute lists cannot contain filters.", "invalidValue")
        resolved.append(rt.resolve(path.attr, scim_type="invalidValue"))
    return resolved


def _container(resource: dict[str, Any], resolved: Resolved) -> dict[str, Any] | None:
    return resource.get(resolved.container) if resolved.container else resource


def _copy(source: dict[str, Any], out: dict[str, Any], resolved: Resolved) -> None:
    container = _container(source, resolved)
    if not container or resolved.attribute.name not in container:
        return
    target = out.setdefault(resolved.container, {}) if resolved.container else out
    value = container[resolved.attribute.name]
    if resolved.sub is None:
        target[resolved.attribute.name] = value
        return
    sub = resolved.sub.name
    if isinstance(value, list):
        picked = [{sub: item[sub]} for item in value if isinstance(item, dict) and sub in item]
        existing = target.get(resolved.attribute.name)
        if isinstance(existing, list) and len(existing) == len(picked):
            picked = [{**a, **b} for a, b in zip(existing, picked, strict=True)]
        if picked:
            target[resolved.attribute.name] = picked
    elif isinstance(value, dict) and sub in value:
        target.setdefault(resolved.attribute.name, {})[sub] = value[sub]


def _drop(out: dict[str, Any], resolved: Resolved) -> None:
    container = _container(out, resolved)
    if not container or resolved.attribute.name not in container:
        return
    if resolved.container:
        container = out[resolved.container] = dict(container)
    if resolved.sub is None:
        del container[resolved.attribute.name]
        if resolved.container and not container:  # the extension's last attribute: no empty object
            del out[resolved.container]
        return
    value = container[resolved.attribute.name]
    sub = resolved.sub.name
    if isinstance(value, list):
        container[resolved.attribute.name] = [{k: v for k, v in i.items() if k != sub} for i in value]
    elif isinstance(value, dict):
        container[resolved.attribute.name] = {k: v for k, v in value.items() if k != sub}
