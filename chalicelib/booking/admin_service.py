"""The schedule-management writes (role `admin` of the tenant): guard, validate, run the
action in one transaction (once per Idempotency-Key), invalidate what it touched, return
the result for the interface to answer."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from pydantic import TypeAdapter, ValidationError

from chalicelib.audit import writes as audit_writes
from chalicelib.audit.actor import Actor
from chalicelib.audit.writes import answer_summary
from chalicelib.auth import Principal, require_role, require_tenant
from chalicelib.booking import patient_records, publication, schedules
from chalicelib.booking.admin_models import (
    AbsenceBody,
    BulkPatientsBody,
    DepartmentBody,
    DepartmentChange,
    DoctorBody,
    DoctorChange,
    PatientBody,
    PatientFields,
    RecordNumber,
    SlotPublicationBody,
    WorkingHoursBody,
)
from chalicelib.booking.errors import InvalidRequest
from chalicelib.booking.idempotency import request_hash, run_once
from chalicelib.booking.models import BodyModel, TenantQuery, parse, parse_path_id
from chalicelib.booking.outcome import WriteResult
from chalicelib.booking.service import idempotency_of, invalidated
from chalicelib.db import connection as db

Write = Callable[[db.Transaction], WriteResult]
_RECORD_NUMBER = TypeAdapter(RecordNumber)


def _admin(principal: Principal, client_id: int) -> None:
    require_tenant(principal, client_id)
    require_role(principal, "admin")


def _admin_body(principal: Principal, model: type[BodyModel], body: Mapping[str, Any]) -> Any:
    """The body validated against `model`, from an admin of the body's tenant (else 403)."""
    parsed = parse(model, body)
    _admin(principal, parsed.clientId)
    return parsed


def _run(principal: Principal, key: Optional[str], operation: str, request: Mapping[str, Any],
         write: Write) -> WriteResult:
    """`write` in one transaction (with an Idempotency-Key: at most once, see run_once),
    then invalidate and answer."""
    audited = _audited(Actor.in_request(principal), operation, write)
    idempotency = idempotency_of(principal, key)
    if idempotency is not None:
        return invalidated(run_once(idempotency, operation, request_hash({"operation": operation, **request}), audited))
    with db.transaction() as conn:
        result = audited(conn)
    return invalidated(result.committed_at(conn.position))


def _audited(actor: Actor, operation: str, write: Write) -> Write:
    """`write`, recorded in the audit trail in the same transaction when it succeeds (the
    event keeps ids and counts of the answer, and the appointments it cancelled)."""

    def run(conn: db.Transaction) -> WriteResult:
        result = write(conn)
        if result.status < 400:
            audit_writes.record(conn, actor, operation, answer_summary(result.body))
        return result

    return run


def create_department(principal: Principal, body: Mapping[str, Any], key: Optional[str]) -> WriteResult:
    b = _admin_body(principal, DepartmentBody, body)
    return _run(principal, key, "department.create", body, lambda c: schedules.create_department(c, b))


def _on_one(principal: Principal, path_id: str, what: str, model: type[BodyModel], body: Mapping[str, Any],
            key: Optional[str], operation: str,
            action: Callable[[db.Transaction, int, Any], WriteResult]) -> WriteResult:
    """A write to the department or doctor named in the path (`what`: "department id" or "doctor id")."""
    ident = parse_path_id(path_id, what)
    b = _admin_body(principal, model, body)
    return _run(principal, key, operation, {"id": ident, **body}, lambda c: action(c, ident, b))


def change_department(principal: Principal, department: str, body: Mapping[str, Any],
                      key: Optional[str]) -> WriteResult:
    return _on_one(principal, department, "department id", DepartmentChange, body, key, "department.change",
                   schedules.change_department)


def create_doctor(principal: Principal, body: Mapping[str, Any], key: Optional[str]) -> WriteResult:
    b = _admin_body(principal, DoctorBody, body)
    return _run(principal, key, "doctor.create", body, lambda c: schedules.create_doctor(c, b))


def change_doctor(principal: Principal, doctor: str, body: Mapping[str, Any], key: Optional[str]) -> WriteResult:
    return _on_one(principal, doctor, "doctor id", DoctorChange, body, key, "doctor.change", schedules.change_doctor)


def replace_working_hours(principal: Principal, doctor: str, body: Mapping[str, Any],
                          key: Optional[str]) -> WriteResult:
    return _on_one(principal, doctor, "doctor id", WorkingHoursBody, body, key, "doctor.hours",
                   schedules.replace_working_hours)


def add_absence(principal: Principal, doctor: str, body: Mapping[str, Any], key: Optional[str]) -> WriteResult:
    return _on_one(principal, doctor, "doctor id", AbsenceBody, body, key, "absence.add", schedules.add_absence)


def remove_absence(principal: Principal, doctor: str, absence: str, query: Mapping[str, str],
                   key: Optional[str]) -> WriteResult:
    doctor_id, absence_id = parse_path_id(doctor, "doctor id"), parse_path_id(absence, "absence id")
    q = parse(TenantQuery, query)
    _admin(principal, q.clientId)
    return _run(principal, key, "absence.remove", {"id": doctor_id, "absenceId": absence_id, **query},
                lambda c: schedules.remove_absence(c, q.clientId, doctor_id, absence_id))


def create_patient(principal: Principal, body: Mapping[str, Any], key: Optional[str]) -> WriteResult:
    b = _admin_body(principal, PatientBody, body)
    return _run(principal, key, "patient.create", body, lambda c: patient_records.create_patient(c, b))


def upsert_patient(principal: Principal, record_number: str, body: Mapping[str, Any],
                   key: Optional[str]) -> WriteResult:
    try:
        record = _RECORD_NUMBER.validate_python(record_number)
    except ValidationError:
        raise InvalidRequest("The record number in the path must be 1 to 40 printable ASCII characters.") from None
    b = _admin_body(principal, PatientFields, body)
    return _run(principal, key, "patient.upsert", {"recordNumber": record, **body},
                lambda c: patient_records.upsert_patient(c, record, b))


def import_patients(principal: Principal, body: Mapping[str, Any], key: Optional[str]) -> WriteResult:
    b = _admin_body(principal, BulkPatientsBody, body)
    patients = patient_records.valid_rows(b.patients)
    return _run(principal, key, "patient.bulk", body,
                lambda c: patient_records.import_patients(c, b.clientId, patients))


def set_slot_publication(principal: Principal, body: Mapping[str, Any], key: Optional[str]) -> WriteResult:
    b = _admin_body(principal, SlotPublicationBody, body)
    return _run(principal, key, "publication.set", body, lambda c: publication.set_publication(c, b))
