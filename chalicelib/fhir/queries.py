"""FHIR reads and searches in SQL: each resource type's rows, filters and order, declared
once; PostgreSQL renders the resources (render.py) and the Bundle's entries as JSON text."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlencode

from chalicelib.booking import read_source as source
from chalicelib.cache.tickets import Fill
from chalicelib.fhir import render, versions
from chalicelib.fhir.search import Query

_BUSY = ("EXISTS (SELECT 1 FROM appointment a WHERE a.tenant_id = s.tenant_id AND a.slot_id = s.id"
         " AND a.status <> 'cancelled')")
_NAME_MATCH = "(starts_with(lower({col}), :{p}) OR strpos(lower({col}), ' ' || :{p}) > 0)"


@dataclass(frozen=True)
class Table:
    """One resource type: its FHIR rendering, rows (alias names as render.py expects, the
    tenant as :t), order, and the SQL condition of each filter (the value as :<name>)."""

    resource_type: str
    render: str
    rows: str
    order: str
    conditions: dict[str, str] = field(default_factory=dict)


_DEP_OF = "JOIN department dep ON dep.tenant_id = {a}.tenant_id AND dep.id = {a}.department_id"

TABLES = {t.resource_type: t for t in (
    Table("Practitioner", render.PRACTITIONER, "doctor d WHERE d.tenant_id = :t", "d.name, d.id",
          {"_id": "d.id = CAST(:_id AS bigint)", "name": _NAME_MATCH.format(col="d.name", p="name")}),
    Table("HealthcareService", render.HEALTHCARE_SERVICE, "department dep WHERE dep.tenant_id = :t",
          "dep.name, dep.id", {"_id": "dep.id = CAST(:_id AS bigint)"}),
    Table("Schedule", render.SCHEDULE, f"doctor d {_DEP_OF.format(a='d')} WHERE d.tenant_id = :t", "d.name, d.id",
          {"_id": "d.id = CAST(:_id AS bigint)", "actor": "d.id = CAST(:actor AS bigint)",
           "service-type": "d.department_id = CAST(:service_type AS bigint)"}),
    Table("Slot", render.SLOT,
          f"slot s {_DEP_OF.format(a='s')} WHERE s.tenant_id = :t AND s.day = ANY(CAST(:days AS date[]))"
          " AND s.starts_at > now() AND s.withdrawn_at IS NULL", "s.starts_at, s.id",
          {"schedule": "s.doctor_id = CAST(:schedule AS bigint)",
           "service-type": "s.department_id = CAST(:service_type AS bigint)",
           "status": f"({_BUSY}) = (:status = 'busy')"}),
    Table("Appointment", render.APPOINTMENT,
          "appointment a JOIN patient p ON p.tenant_id = a.tenant_id AND p.id = a.patient_id"
          " JOIN doctor d ON d.tenant_id = a.tenant_id AND d.id = a.doctor_id"
          f" {_DEP_OF.format(a='a')} WHERE a.tenant_id = :t", "a.starts_at, a.id",
          {"_id": "a.id = CAST(:_id AS bigint)", "patient": "a.patient_id = CAST(:patient AS bigint)",
           "practitioner": "a.doctor_id = CAST(:practitioner AS bigint)",
           "date": "a.day = CAST(:date AS date)", "status": "a.status = :status",
           "live-slot": "a.slot_id = CAST(:live_slot AS bigint) AND a.status <> 'cancelled'"}),
    Table("Patient", render.PATIENT, "patient p WHERE p.tenant_id = :t", "p.name, p.id",
          {"_id": "p.id = CAST(:_id AS bigint)", "identifier": "lower(p.record_number) = :identifier",
           "name": _NAME_MATCH.format(col="p.name", p="name")}),
)}


def _where(table: Table, query: Query) -> tuple[str, dict[str, object]]:
    """The rows of `table` that match `query`, and the statement's parameters."""
    sql, params = table.rows, dict[str, object](t=query.clientId)
    for name, value in query.filters:
        sql += " AND " + table.conditions[name]
        params[name.replace("-", "_")] = value
    if query.days:
        params["days"] = "{" + ",".join(day.isoformat() for day in query.days) + "}"
    return sql, params


def read(fill: Fill, resource_type: str, query: Query) -> Optional[str]:
    """One resource by id, stamped with its version (None: no such resource in the tenant)."""
    table = TABLES[resource_type]
    rows, params = _where(table, query)
    found = source.scalar(fill, f"SELECT ({table.render})::text FROM {rows}", **params)
    return versions.stamp_text(found) if found is not None else None


def search(fill: Fill, resource_type: str, query: Query) -> Optional[str]:
    """A searchset Bundle of one page (`_count` from `_offset`), with a `next` link when more match."""
    table = TABLES[resource_type]
    rows, params = _where(table, query)
    found = source.run(
        fill,
        f"""SELECT coalesce(json_agg(json_build_object('resource', m.r, 'search', json_build_object('mode', 'match'))
                                     ORDER BY m.n) FILTER (WHERE m.n <= :lim), '[]'::json)::text, count(*) > :lim
            FROM (SELECT q.r, row_number() OVER () AS n
                  FROM (SELECT {table.render} AS r FROM {rows} ORDER BY {table.order}
                        LIMIT :lim + 1 OFFSET :off) q) m""",
        lim=query.count, off=query.offset, **params)
    entries, more = found[0]
    return versions.stamp_bundle(bundle(resource_type, query, entries, more))


def page_link(resource_type: str, query: Query, offset: int) -> str:
    """The URL of one page of a search (its filters in canonical order)."""
    pairs = [(n, v) for n, v in query.filters]
    if query.days:
        after_last = query.days[-1] + dt.timedelta(days=1)
        pairs += [("start", "ge" + query.days[0].isoformat()), ("start", "lt" + after_last.isoformat())]
    pairs += [("_count", str(query.count)), ("_offset", str(offset))]
    return f"/fhir/R4/{resource_type}?{urlencode(pairs)}"


def bundle(resource_type: str, query: Query, entries: str, more: bool) -> str:
    """A searchset Bundle around entries rendered as JSON (FHIR forbids an empty `entry` list)."""
    links = [f'{{"relation":"self","url":"{page_link(resource_type, query, query.offset)}"}}']
    if more:
        links.append(f'{{"relation":"next","url":"{page_link(resource_type, query, query.offset + query.count)}"}}')
    entry = f',"entry":{entries}' if entries != "[]" else ""
    return f'{{"resourceType":"Bundle","type":"searchset","link":[{",".join(links)}]{entry}}}'
