"""Patient records written by the hospital: create, upsert by record number, bulk import
(all or nothing). Each action writes inside the caller's transaction and touches the
patient search scope."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import orjson
from pg8000.exceptions import DatabaseError

from chalicelib.booking import scopes
from chalicelib.booking.admin_models import BulkPatient, PatientBody, PatientFields
from chalicelib.booking.errors import Conflict, InvalidRequest
from chalicelib.booking.models import parse
from chalicelib.booking.outcome import Touched, WriteResult
from chalicelib.db import connection as db
from chalicelib.db.connection import sqlstate

_UNIQUE_VIOLATION = "23505"
_COLUMNS = "id, name, birth_date, record_number"
# Upserts many patients in one statement; `inserted` tells a new row from an updated one.
_UPSERT_SQL = f"""
INSERT INTO patient (tenant_id, record_number, name, birth_date)
SELECT :t, r, n, b FROM unnest(CAST(:r AS text[]), CAST(:n AS text[]), CAST(:b AS date[])) AS u(r, n, b)
ON CONFLICT (tenant_id, record_number) DO UPDATE SET name = EXCLUDED.name, birth_date = EXCLUDED.birth_date
RETURNING {_COLUMNS}, xmax = 0 AS inserted"""


def _patient(row: Sequence[Any]) -> dict[str, Any]:
    return {"id": row[0], "name": row[1], "birthDate": row[2].isoformat(), "recordNumber": row[3]}


def _changed(tenant: int, status: int, body: dict[str, Any]) -> WriteResult:
    return WriteResult(status, orjson.dumps(body).decode(), Touched(tenant, (), (), (scopes.PATIENTS,)))


def create_patient(conn: db.Transaction, body: PatientBody) -> WriteResult:
    """POST /api/admin/patients: 201; 409 `duplicate_record_number`."""
    conn.run("SAVEPOINT new_patient")
    try:
        row = conn.run(f"""INSERT INTO patient (tenant_id, record_number, name, birth_date)
                           VALUES (:t, :r, :n, :b) RETURNING {_COLUMNS}""",
                       t=body.clientId, r=body.recordNumber, n=body.name, b=body.birthDate)[0]
    except DatabaseError as exc:
        if sqlstate(exc) != _UNIQUE_VIOLATION:
            raise
        conn.run("ROLLBACK TO SAVEPOINT new_patient")
        raise Conflict("A patient with this record number already exists.",
                       code="duplicate_record_number") from None
    return _changed(body.clientId, 201, {"patient": _patient(row)})


def upsert_patient(conn: db.Transaction, record_number: str, body: PatientFields) -> WriteResult:
    """PUT /api/admin/patients/by-record/{recordNumber}: 201 created or 200 updated."""
    row = conn.run(_UPSERT_SQL, t=body.clientId, r=[record_number], n=[body.name], b=[body.birthDate])[0]
    return _changed(body.clientId, 201 if row[4] else 200, {"patient": _patient(row)})


def valid_rows(rows: Sequence[Mapping[str, Any]]) -> list[BulkPatient]:
    """Every row validated; 400 naming the first bad row's index (and its field), or the
    second row that repeats a record number."""
    parsed: list[BulkPatient] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        try:
            patient = parse(BulkPatient, row)
        except InvalidRequest as bad:
            raise InvalidRequest(f"patients[{index}]: {bad.message}",
                                 details=[{"index": index, **d} for d in bad.details or []]) from None
        key = patient.recordNumber
        if key in seen:
            raise InvalidRequest(f"patients[{index}]: record number repeats patients[{seen[key]}].",
                                 details=[{"index": index, "field": "recordNumber",
                                           "message": f"repeats patients[{seen[key]}]"}])
        seen[key] = index
        parsed.append(patient)
    return parsed


def import_patients(conn: db.Transaction, tenant: int, patients: Sequence[BulkPatient]) -> WriteResult:
    """POST /api/admin/patients/bulk: every patient upserted by record number in one
    statement; 200 with how many were created and updated."""
    rows = conn.run(_UPSERT_SQL, t=tenant, r=[p.recordNumber for p in patients], n=[p.name for p in patients],
                    b=[p.birthDate for p in patients])
    created = sum(1 for row in rows if row[4])
    return _changed(tenant, 200, {"created": created, "updated": len(rows) - created})
