"""GET /fhir/R4/metadata: the CapabilityStatement, exactly what this server supports."""
from __future__ import annotations

from typing import Any

# resource type -> (interactions, search parameters with their FHIR types)
SUPPORTED: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "Practitioner": (("read", "search-type"), (("name", "string"),)),
    "HealthcareService": (("read", "search-type"), ()),
    "Schedule": (("read", "search-type"), (("actor", "reference"), ("service-type", "token"))),
    "Slot": (("search-type",), (("schedule", "reference"), ("start", "date"), ("status", "token"),
                                ("service-type", "token"))),
    "Appointment": (("read", "search-type", "create", "update", "patch"),
                    (("patient", "reference"), ("practitioner", "reference"), ("date", "date"),
                     ("status", "token"))),
    "Patient": (("read", "search-type"), (("identifier", "token"), ("name", "string"))),
}
PAGING = (("_count", "number"), ("_offset", "number"))


def _resource(resource_type: str) -> dict[str, Any]:
    interactions, params = SUPPORTED[resource_type]
    entry: dict[str, Any] = {"type": resource_type, "interaction": [{"code": code} for code in interactions]}
    if "search-type" in interactions:
        entry["searchParam"] = [{"name": name, "type": kind} for name, kind in (*params, *PAGING)]
    if "create" in interactions:
        entry["conditionalCreate"] = True
    return entry


def capability_statement() -> dict[str, Any]:
    """The server's CapabilityStatement (R4 4.0.1, JSON only, SMART bearer tokens)."""
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": "2026-12-04", "kind": "instance",
        "software": {"name": "hospital-booking"},
        "implementation": {"description": "Hospital appointment booking, FHIR R4 scheduling interface"},
        "fhirVersion": "4.0.1", "format": ["application/fhir+json"], "patchFormat": ["application/fhir+json"],
        "rest": [{"mode": "server",
                  "security": {"description": "Bearer tokens as for the native API; the tenant is the token's."},
                  "resource": [_resource(t) for t in SUPPORTED],
                  "operation": [{"name": "bulk-publish",
                                 "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/bulk-publish"}]}],
    }
