"""FHIR resource versions and conditional reads.

Every resource the server emits carries `meta.versionId`, a digest of its content (without
`meta`), so the same content has the same version in a read, in a search and across
containers. A read answers with the weak ETag `W/"<versionId>"`; a search or a bulk file
with `W/` and its cache entry's tag. `If-None-Match` compares weakly (RFC 9110, 13.1.2): a
client may send a tag with or without `W/`.

Stamping runs when a cache entry is filled, never on a hit: a hit only finds the version
at its fixed place at the start of a read's body.
"""
from __future__ import annotations

import hashlib
from typing import Any, Optional

import orjson
from chalice import Response

_VERSION_MARK = '"meta":{"versionId":"'
VERSION_CHARS = 16


def stamp(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with `meta.versionId` (its content's digest), keys ordered so that the
    version sits right after `resourceType` and `id`."""
    content = {name: value for name, value in resource.items() if name != "meta"}
    digest = hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=VERSION_CHARS // 2)
    head = {"resourceType": content.pop("resourceType"), "id": content.pop("id"),
            "meta": {"versionId": digest.hexdigest()}}
    return {**head, **content}


def stamp_text(resource_json: str) -> str:
    """`stamp` of a resource given as JSON text (as PostgreSQL renders it)."""
    return orjson.dumps(stamp(orjson.loads(resource_json))).decode()


def stamp_bundle(bundle_json: str) -> str:
    """A Bundle whose entries' resources are stamped."""
    bundle = orjson.loads(bundle_json)
    for entry in bundle.get("entry", ()):
        entry["resource"] = stamp(entry["resource"])
    return orjson.dumps(bundle).decode()


def version_of(body: str) -> Optional[str]:
    """The versionId of a stamped resource's JSON text (None: not a stamped resource)."""
    start = body.find(_VERSION_MARK, 0, 200)
    if start < 0:
        return None
    start += len(_VERSION_MARK)
    return body[start:start + VERSION_CHARS]


def _opaque(tag: str) -> str:
    """An entity tag without its weakness indicator."""
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def conditional(response: Response, if_none_match: Optional[str], single: bool) -> Response:
    """A cached FHIR answer with its weak ETag (a read's: its versionId), or 304 when the
    client already holds that version. Anything but a 200 passes unchanged."""
    if response.status_code != 200:
        return response
    headers = dict(response.headers or {})
    version = version_of(response.body) if single else None
    opaque = f'"{version}"' if version is not None else _opaque(str(headers.get("ETag", '""')))
    headers["ETag"] = "W/" + opaque
    if if_none_match and (if_none_match.strip() == "*"
                          or opaque in (_opaque(tag) for tag in if_none_match.split(","))):
        headers.pop("Content-Type", None)
        return Response(body="", status_code=304, headers=headers)
    return Response(body=response.body, status_code=200, headers=headers)
